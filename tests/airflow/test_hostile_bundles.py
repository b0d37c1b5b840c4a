"""Malformed but digest-consistent bundles, generated (hypothesis): every reader names a bad bundle
and none shows a traceback.

Each example takes a real bundle of real runs, changes one to three fields of its run reports, its
evaluation or its manifest to a hostile value (NaN, infinities, huge or negative numbers, wrong
types, odd strings and names, deep nesting, a missing key), recomputes every digest a forger would
(tests/storage/forgery.py) and writes it into a store prefix of its own. Then ``verify``, ``ls``,
``history`` and ``prune --dry-run`` run over that prefix (the real CLI, in process) and the
Evidence page is built for the bundle: a traceback anywhere fails the example, and a bundle that
does not verify must be named by each command. The number of examples is bounded for CI
(``INVARLOCK_HOSTILE_EXAMPLES``, default 500); the seed database is not kept.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from invarlock_provider.storage.local import LocalFolderStore
from invarlock_provider.storage.uri import join_key, parse_store_uri
from tests.storage.conftest import cli
from tests.storage.forgery import forge, read_bundle, write_bundle

EXAMPLES = int(os.environ.get("INVARLOCK_HOSTILE_EXAMPLES", "500"))
REPORT = "hostile"

# Where a forger changes a document; "#" is an index into the list found there.
PATHS = {
    "evaluation": [
        "subject", "subject.path", "subject.sha256", "subject.run_id", "baseline", "baseline.path",
        "baseline.sha256", "policy", "policy.bootstrap", "policy.bootstrap.replicates", "policy.bootstrap.seed",
        "policy.bootstrap.confidence", "policy.ratio_limit", "policy.drift_band", "policy.min_tokens",
        "policy.guards.spectral.ratio_cap", "policy.guards.spectral.max_caps", "policy_digest", "gates", "gates.#",
        "gates.#.passed", "gates.#.name", "verdict", "tier", "primary_metric", "primary_metric.ratio",
        "primary_metric.ci", "primary_metric.delta_logloss", "pairing", "pairing.ok", "guards", "guards.#.violations",
        "created_at", "schema_version", "evaluation_digest", "reasons",
    ],
    "report": [
        "data", "data.seq_len", "data.stride", "data.preview_n", "data.final_n", "data.candidate_windows",
        "data.seed", "data.windows_digest", "data.dataset_digest", "evaluation_windows", "evaluation_windows.final",
        "evaluation_windows.final.window_ids", "evaluation_windows.final.window_ids.#",
        "evaluation_windows.final.logloss.#", "evaluation_windows.final.token_counts.#",
        "evaluation_windows.final.token_digests.#", "evaluation_windows.preview.logloss", "meta", "meta.model_id",
        "meta.weights_digest", "meta.tokenizer_hash", "guards", "guards.#", "guards.#.metrics.modules.#.sigma_max",
        "guards.#.metrics.modules", "metrics", "metrics.primary_metric", "run_id", "schema_version", "edit",
    ],
    "manifest": [
        "files", "files.#", "files.#.path", "files.#.sha256", "files.#.size", "evidence_id", "report_name",
        "created_at", "verdict", "ratio", "ci", "run_ids", "run_ids.subject", "tier", "policy_digest",
        "object_lock", "signing", "address", "schema_version",
    ],
}  # fmt: skip


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


NAMES = st.sampled_from(
    ["", ".", "..", "../x", "/abs", "baseline", "report.json\n", "ev-0123456789abcdef01234567", "a/b", "x" * 300]
)
HOSTILE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, -1e-320, 2_000_000, 10**19, 0.0]),
    st.text(max_size=30),
    NAMES,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.integers(min_value=70, max_value=400).map(nested),
    st.just("DELETE"),
)


def set_path(document: Any, path: str, value: Any, choice: int) -> None:
    """Put ``value`` at ``path`` (``#``: an element chosen by ``choice``); a path that does not
    lead anywhere in this document changes nothing."""
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = _step(node, part, choice)
        if node is None:
            return
    if last == "#":
        if isinstance(node, list) and node:
            index = choice % len(node)
            if value == "DELETE":
                del node[index]
            else:
                node[index] = value
        return
    if isinstance(node, dict):
        if value == "DELETE":
            node.pop(last, None)
        else:
            node[last] = value


def _step(node: Any, part: str, choice: int) -> Any:
    if part == "#":
        return node[choice % len(node)] if isinstance(node, list) and node else None
    return node.get(part) if isinstance(node, dict) else None


MUTATION = st.tuples(
    st.sampled_from(["subject", "baseline", "evaluation", "manifest"]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10_000),
    HOSTILE_VALUES,
)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, real_runs: dict[str, Path]) -> dict[str, Any]:
    """A real bundle (subject quant8 against the baseline) in a local store the Evidence pages serve."""
    root = tmp_path_factory.mktemp("hostile")
    output = root / "reports" / REPORT
    code, _, stderr = cli("report", "--run", str(real_runs["quant8"]), "--baseline", str(real_runs["baseline"]),
                          "--format", "html", "--output", str(output), "--copy-baseline")  # fmt: skip
    assert code == 0, stderr
    store = LocalFolderStore(parse_store_uri((root / "evidence").as_uri()))
    from invarlock_provider.storage.archive import archive_report

    result = archive_report(store, output)
    return {"root": root / "evidence", "store": store, "files": read_bundle(store, result.bundle_key)}


_numbers = itertools.count()


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_every_reader_names_a_hostile_bundle_and_none_shows_a_traceback(
    hostile: dict[str, Any], monkeypatch: pytest.MonkeyPatch, mutations: list
) -> None:
    from fastapi import HTTPException

    from invarlock_provider.airflow import evidence_index, evidence_pages
    from invarlock_provider.airflow.evidence_index import Filters
    from invarlock_provider.airflow.evidence_store import EvidenceSource
    from invarlock_provider.airflow.ui_shell import Shell
    from invarlock_provider.errors import InvarlockError
    from invarlock_provider.storage.bundle_reader import guarded, verify_remote_bundle

    by_document: dict[str, list] = {"subject": [], "baseline": [], "evaluation": [], "manifest": []}
    for document, path_choice, element_choice, value in mutations:
        paths = PATHS["report" if document in ("subject", "baseline") else document]
        by_document[document].append((paths[path_choice % len(paths)], value, element_choice))

    def mutate(document: str):
        def apply(parsed: Any) -> None:
            for path, value, choice in by_document[document]:
                set_path(parsed, path, value, choice)

        return apply if by_document[document] else None

    store, prefix = hostile["store"], f"h{next(_numbers)}"
    keeps_digest = any(path == "evaluation_digest" for path, _, _ in by_document["evaluation"])
    forged_id, files = forge(
        hostile["files"],
        subject=mutate("subject"),
        baseline=mutate("baseline"),
        evaluation=mutate("evaluation"),
        keep_evaluation_digest=keeps_digest,
    )
    base = join_key(prefix, REPORT, forged_id)
    manifest = json.loads(files["manifest.json"])
    if isinstance(manifest, dict):
        manifest["address"] = store.uri.locate(base)
        changes = mutate("manifest")
        if changes is not None:
            changes(manifest)
        files["manifest.json"] = json.dumps(manifest, allow_nan=True).encode()
    uri = write_bundle(store, base, files, address=False)
    target = store.uri.locate(prefix)

    bad = not guarded(uri, lambda: verify_remote_bundle(store, base, uri)).ok
    event("does not verify" if bad else "still verifies")

    code, stdout, stderr = cli("verify", target)
    assert "Traceback" not in stdout + stderr and code in (0, 1, 2), stderr
    assert (code != 0) == bad, (stdout, stderr, mutations)
    if bad:
        assert uri in stdout + stderr
    for command in (["ls", target], ["history", target], ["prune", target, "--keep-last", "1", "--dry-run"]):
        code, stdout, stderr = cli(*command)
        assert code in (0, 2) and "Traceback" not in stdout + stderr, (command, stderr)
        if bad and code == 0:
            assert uri in stdout + stderr, (command, stdout, stderr)

    monkeypatch.setenv("INVARLOCK_ARCHIVE_URI", hostile["root"].as_uri())
    shell = Shell("/invarlock")
    listing = evidence_index.evidence_page(shell, EvidenceSource(target, None, "dag"), Filters())
    assert "<h1>Evidence</h1>" in listing  # a listing names a bundle it reads, or names it as left out
    try:
        page = evidence_pages.bundle_page(shell, uri, evidence_pages.BundleLinks("/files", "/bundle.zip"))
    except (HTTPException, InvarlockError):
        return  # the app serves these as its styled error pages
    assert uri in page or evidence_pages.esc(uri) in page
    if bad:
        assert "NOT VERIFIED" in page or "<h1>Evaluation report" not in page
