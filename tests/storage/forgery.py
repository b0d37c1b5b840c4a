"""What an attacker with write access to the bucket can do: rewrite a bundle and recompute every
digest (report sha256s, the evaluation's content digest, the evidence id, the manifest), so that
nothing but the content itself, its address and a trusted signature can tell.

Documents are written with ``allow_nan=True`` and as the mutation leaves them: a forger is not
bound by our writers' rules.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

from invarlock_provider.fileio import sha256_bytes
from invarlock_provider.storage.bundle import MANIFEST_FILE, REQUIRED_FILES
from invarlock_provider.storage.objectstore import ObjectStore
from invarlock_provider.storage.signing import SIGNATURE_FILE
from invarlock_provider.storage.uri import join_key
from invarlock_provider.storage.workstore import put_bytes

SUBJECT, BASELINE, EVALUATION = REQUIRED_FILES
Mutation = Callable[[Any], Any] | None


def dumps(document: Any) -> bytes:
    return json.dumps(document, indent=2, allow_nan=True).encode()


def content_digest(evaluation: dict[str, Any]) -> str:
    """The evaluation's own digest as verify recomputes it, also over values our writer refuses."""
    body = {key: value for key, value in evaluation.items() if key != "evaluation_digest"}
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())


def evidence_id_of(files: dict[str, bytes]) -> str:
    listing = [[name, sha256_bytes(files[name])] for name in sorted(REQUIRED_FILES)]
    canonical = json.dumps(listing, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "ev-" + hashlib.sha256(canonical).hexdigest()[:24]


def read_bundle(store: ObjectStore, base: str) -> dict[str, bytes]:
    """Every object of a bundle by its path inside it."""
    return {info.key[len(base) + 1 :]: store.read_bytes(info.key) for info in store.list(base)}


def forge(
    files: dict[str, bytes],
    *,
    subject: Mutation = None,
    baseline: Mutation = None,
    evaluation: Mutation = None,
    manifest: Mutation = None,
    keep_evaluation_digest: bool = False,
) -> tuple[str, dict[str, bytes]]:
    """A digest-consistent bundle from ``files`` after the mutations (each takes the parsed document
    and returns the new one, or changes it in place and returns None); its evidence id and files."""
    out = {name: data for name, data in files.items() if name != SIGNATURE_FILE}
    for name, mutate in ((SUBJECT, subject), (BASELINE, baseline)):
        if mutate is not None:
            out[name] = dumps(_apply(json.loads(out[name]), mutate))
    document = json.loads(out[EVALUATION])
    document["subject"]["sha256"] = sha256_bytes(out[SUBJECT])
    document["baseline"]["sha256"] = sha256_bytes(out[BASELINE])
    if evaluation is not None:
        document = _apply(document, evaluation)
    if not keep_evaluation_digest and isinstance(document, dict):
        document["evaluation_digest"] = content_digest(document)
    out[EVALUATION] = dumps(document)
    new_id = evidence_id_of(out)
    listed = json.loads(out[MANIFEST_FILE])
    listed["evidence_id"] = new_id
    listed["files"] = [
        {"path": name, "sha256": sha256_bytes(data), "size": len(data)}
        for name, data in out.items()
        if name != MANIFEST_FILE
    ]
    listed.pop("signing", None)  # a forger holds no trusted key
    if manifest is not None:
        listed = _apply(listed, manifest)
    out[MANIFEST_FILE] = dumps(listed)
    return new_id, out


def _apply(document: Any, mutate: Callable[[Any], Any]) -> Any:
    document = copy.deepcopy(document)
    result = mutate(document)
    return document if result is None else result


def write_bundle(store: ObjectStore, base: str, files: dict[str, bytes], *, address: bool = True) -> str:
    """Put ``files`` at ``base`` (manifest last, as a careful forger would); with ``address`` the
    manifest is made to claim this very address. Returns the bundle's URI."""
    if address and MANIFEST_FILE in files:
        listed = json.loads(files[MANIFEST_FILE])
        if isinstance(listed, dict):
            listed["address"] = store.uri.locate(base)
            files = {**files, MANIFEST_FILE: dumps(listed)}
    for name, data in sorted(files.items(), key=lambda item: item[0] == MANIFEST_FILE):
        put_bytes(store, join_key(base, name), data)
    return store.uri.locate(base)
