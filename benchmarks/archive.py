"""Archive and prune throughput against a real S3-compatible server (SeaweedFS on 127.0.0.1).

1. Upload one evidence bundle (with a large events.jsonl) through ``archive_report`` and the
   same bytes through raw parallel boto3 ``put_object`` calls; compare MB/s.
2. Prune 10,000 objects (200 bundles x 50 objects) with ``prune_bundles``; objects/s.

    python benchmarks/archive.py [--events-mb 64] [--objects 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report_build import synthetic_report
from invarlock_provider.reporting.evaluation import write_evaluation
from invarlock_provider.reporting.policy import load_tier
from invarlock_provider.reporting.run_report import load_run_report
from invarlock_provider.storage.archive import archive_report
from invarlock_provider.storage.bundle import collect_bundle
from invarlock_provider.storage.retention import prune_bundles
from invarlock_provider.storage.s3 import S3Settings, S3Store
from invarlock_provider.storage.uri import parse_store_uri
from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer


def build_evidence(root: Path, events_mb: int) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    base = {s: rng.normal(3.0, 0.3, 400) for s in ("preview", "final")}
    subject = {s: base[s] + rng.normal(0.002, 0.01, 400) for s in base}
    for name, losses in (("baseline", base), ("subject", subject)):
        (root / "runs" / name).mkdir(parents=True)
        (root / "runs" / name / "report.json").write_text(json.dumps(synthetic_report(name, 400, losses)))
    reports = {n: load_run_report(root / "runs" / n / "report.json", n) for n in ("subject", "baseline")}
    out = root / "reports" / "bench_balanced"
    write_evaluation(out, reports["subject"], reports["baseline"], load_tier("balanced"), copy_baseline=True)
    line = json.dumps({"ts": "2026-01-01T00:00:00+00:00", "phase": "score", "data": {"pad": "x" * 1000}}) + "\n"
    with (out / "events.jsonl").open("w") as handle:
        for _ in range(events_mb * 1024 * 1024 // len(line)):
            handle.write(line)
    return out


def raw_parallel_put(client, bucket: str, files: list[tuple[str, Path]]) -> float:
    def put(item: tuple[str, Path]) -> None:
        key, path = item
        with path.open("rb") as body:
            client.put_object(Bucket=bucket, Key=key, Body=body)

    begin = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, files))
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-mb", type=int, default=64)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = SeaweedServer(root / "seaweed")
        server.start()
        try:
            client = server.client()
            settings = S3Settings(
                endpoint_url=server.endpoint,
                region_name="us-east-1",
                path_style=True,
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
            )
            report_dir = build_evidence(root, args.events_mb)
            bundle = collect_bundle(report_dir)
            total_bytes = sum(f.size for f in bundle.files)
            archive_times, raw_times = [], []
            for attempt in range(args.repeats):
                bucket = f"bench-{attempt}"
                client.create_bucket(Bucket=bucket)
                client.put_object(Bucket=bucket, Key="warm-up", Body=b"x" * 65536)  # the server allocates volumes
                store = S3Store(parse_store_uri(f"s3://{bucket}/archive"), settings)
                assert store.client is not None  # build the client outside the timing, like the raw client
                raw_files = [(f"raw/{f.name}", f.path) for f in bundle.files]
                if attempt % 2:  # alternate which goes first
                    raw_times.append(raw_parallel_put(client, bucket, raw_files))
                begin = time.perf_counter()
                archive_report(store, report_dir)
                archive_times.append(time.perf_counter() - begin)
                if not attempt % 2:
                    raw_times.append(raw_parallel_put(client, bucket, raw_files))
            archive_s, raw_s = min(archive_times), min(raw_times)

            client.create_bucket(Bucket="prune")
            per_bundle = 50
            bundles = args.objects // per_bundle
            manifest = json.dumps(
                {"schema_version": "invarlock.bundle/1", "files": [], "created_at": "2020-01-01T00:00:00+00:00"}
            ).encode()

            def seed(index: int) -> None:
                base = f"old/r{index % 10}/ev-{index:024x}"
                client.put_object(Bucket="prune", Key=f"{base}/manifest.json", Body=manifest)
                for number in range(per_bundle - 1):
                    client.put_object(Bucket="prune", Key=f"{base}/f{number}.json", Body=b"{}")

            with ThreadPoolExecutor(max_workers=16) as pool:
                list(pool.map(seed, range(bundles)))
            store = S3Store(parse_store_uri("s3://prune/old"), settings)
            begin = time.perf_counter()
            report = prune_bundles(store, "old", keep_last=None, max_age=timedelta(days=30), now=datetime.now(UTC))
            prune_s = time.perf_counter() - begin
        finally:
            server.stop()

    mb = total_bytes / 2**20
    print(f"SeaweedFS 4.48 on 127.0.0.1; bundle of {len(bundle.files)} files, {mb:.1f} MiB; best of {args.repeats}")
    print(f"{'measurement':<46} {'seconds':>8} {'rate':>16}")
    print("-" * 72)
    print(f"{'archive_report (checksums, verify, manifest)':<46} {archive_s:8.2f} {mb / archive_s:11.1f} MiB/s")
    print(f"{'raw parallel boto3 put_object, same bytes':<46} {raw_s:8.2f} {mb / raw_s:11.1f} MiB/s")
    print(f"{'archive / raw throughput':<46} {'':8} {raw_s / archive_s:15.2f}x")
    print(
        f"{f'prune {report.deleted_objects} objects ({bundles} bundles)':<46} {prune_s:8.2f} "
        f"{report.deleted_objects / prune_s:9.0f} objects/s"
    )


if __name__ == "__main__":
    main()
