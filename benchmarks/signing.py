"""What signing costs per bundle: Ed25519 over the manifest, the extra object, and the checks in
verify, on a local folder and on SeaweedFS (127.0.0.1), with a real 400+400-window bundle.

Each row is the median of --repeats fresh archives (new evidence each time) or verifications.

    python benchmarks/signing.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.archive import build_evidence
from tests.storage.seaweed import SeaweedServer


def median_s(action, repeats: int) -> float:
    samples = []
    for attempt in range(repeats):
        begin = time.perf_counter()
        action(attempt)
        samples.append(time.perf_counter() - begin)
    return statistics.median(samples)


def measure(label: str, store, report_dir: Path, key, trust, repeats: int) -> None:
    from invarlock_provider.storage.archive import archive_report
    from invarlock_provider.storage.bundle import MANIFEST_FILE
    from invarlock_provider.storage.bundle_reader import verify_remote_bundle
    from invarlock_provider.storage.signing import SIGNATURE_FILE, check_signature, sign_manifest
    from invarlock_provider.storage.uri import join_key

    bases: dict[bool, str] = {}

    def archive(signed: bool) -> float:
        def run(attempt: int) -> None:
            for info in list(store.list(store.uri.prefix)):  # a fresh bundle, and a new manifest, each time
                store.delete([info.key])
            bases[signed] = archive_report(store, report_dir, signing_key=key if signed else None).bundle_key

        return median_s(run, repeats)

    def row(step: str, unsigned: float | None, signed: float) -> None:
        extra = signed - (unsigned or 0.0)
        before = f"{unsigned * 1000:12.2f}" if unsigned is not None else f"{'-':>12}"
        print(f"{label:<14} {step:<38} {before} {signed * 1000:10.2f} {extra * 1000:9.2f}")

    row("archive (upload + manifest)", archive(False), archive(True))
    base = bases[True]
    raw = store.read_bytes(join_key(base, MANIFEST_FILE))
    signature = store.read_bytes(join_key(base, SIGNATURE_FILE))
    manifest = json.loads(raw)
    row("sign the manifest (Ed25519)", None, median_s(lambda _: sign_manifest(raw, key), repeats))
    row("check signature + trust", None, median_s(lambda _: check_signature(raw, manifest, signature, trust), repeats))
    plain = median_s(lambda _: verify_remote_bundle(store, base, base), repeats)
    trusted = median_s(lambda _: verify_remote_bundle(store, base, base, trust), repeats)
    row("verify the bundle (no trust / trusted)", plain, trusted)
    assert verify_remote_bundle(store, base, base, trust).ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from invarlock_provider.storage.local import LocalFolderStore
    from invarlock_provider.storage.s3 import S3Store
    from invarlock_provider.storage.signing import Trust, TrustedKey, generate_key_pair, load_signing_key
    from invarlock_provider.storage.uri import parse_store_uri

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fingerprint = generate_key_pair(root / "keys")
        key_load = median_s(lambda _: load_signing_key(root / "keys" / "private.pem"), args.repeats)
        key = load_signing_key(root / "keys" / "private.pem")
        trust = Trust((TrustedKey("bench", fingerprint),))
        report_dir = build_evidence(root, events_mb=1)
        server = SeaweedServer(root / "seaweed")
        server.start()
        try:
            server.client().create_bucket(Bucket="bench")
            stores = {
                "local folder": LocalFolderStore(parse_store_uri((root / "evidence").as_uri())),
                "SeaweedFS": S3Store(parse_store_uri("s3://bench/nightly"), server.settings()),
            }
            print(f"key load (PEM, mode check): {key_load * 1000:.2f} ms")
            print(f"{'store':<14} {'step':<38} {'unsigned ms':>12} {'signed ms':>10} {'extra ms':>9}")
            print("-" * 88)
            for label, store in stores.items():
                measure(label, store, report_dir, key, trust, args.repeats)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
