"""Evidence pages of the Airflow plugin over a big bucket: SeaweedFS on 127.0.0.1 with N real bundles
of one report name (one per night) and M of another, served by Airflow's own API server app.

Prints the plugin's import and app-build time inside an API server process, then each page's time
cold (manifests not yet read) and warm (the immutable-file cache filled): one bundle's report page
(with its server-side verify), the Evidence page of one report name, and the Evidence page of all.

    python benchmarks/evidence_pages.py [--bundles 1000] [--others 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.airflow.nights import build_bundles
from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer

IMPORT_PROBE = """
import time, sys
import airflow.api_fastapi.app, airflow.api_fastapi.core_api.security
begin = time.perf_counter()
from invarlock_provider.airflow.plugin import InvarlockPlugin
loaded = time.perf_counter()
InvarlockPlugin().fastapi_apps
built = time.perf_counter()
heavy = [m for m in ("torch", "transformers", "datasets", "boto3", "numpy") if m in sys.modules]
print(f"{(loaded - begin) * 1000:.1f} {(built - loaded) * 1000:.1f} {','.join(heavy) or 'none'}")
"""


def timed(get, path: str, **kwargs) -> tuple[float, int]:
    begin = time.perf_counter()
    response = get(path, **kwargs)
    elapsed = time.perf_counter() - begin
    if response.status_code != 200:
        raise SystemExit(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
    return elapsed, len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=int, default=1000)
    parser.add_argument("--others", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = SeaweedServer(root / "seaweed")
        server.start()
        try:
            server.client().create_bucket(Bucket="evidence")
            connection = {
                "conn_type": "aws",
                "login": ACCESS_KEY,
                "password": SECRET_KEY,
                "extra": {"endpoint_url": server.endpoint, "region_name": "us-east-1", "path_style": True},
            }
            os.environ.update(
                {
                    "AIRFLOW_HOME": str(root / "airflow"),
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                    "AIRFLOW_CONN_BENCH_S3": json.dumps(connection),
                    "INVARLOCK_ARCHIVE_URI": "s3://evidence/nightly",
                    "INVARLOCK_ARCHIVE_CONN_ID": "bench_s3",
                }
            )
            airflow = Path(sys.executable).with_name("airflow")
            subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)

            from invarlock_provider.storage.s3 import S3Store
            from invarlock_provider.storage.uri import parse_store_uri

            store = S3Store(parse_store_uri("s3://evidence/nightly"), server.settings())
            now = datetime.now(UTC).replace(microsecond=0)
            begin = time.perf_counter()
            ids = build_bundles(root / "bench", store, "bench_balanced", args.bundles, now, seed=1)
            build_bundles(root / "other", store, "other_balanced", args.others, now, seed=2)
            print(f"archived {args.bundles} + {args.others} bundles in {time.perf_counter() - begin:.1f} s")

            probe = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True)
            module_ms, app_ms, heavy = probe.stdout.split()
            print(f"plugin module import {module_ms} ms, app build {app_ms} ms (API server modules loaded)")
            print(f"heavy modules imported by the plugin: {heavy}")

            from airflow.api_fastapi.app import create_app, get_auth_manager
            from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
            from fastapi.testclient import TestClient

            with TestClient(create_app()) as client:
                token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="bench", role="viewer"))

                def get(path: str, **kwargs):
                    return client.get(path, headers={"Authorization": f"Bearer {token}"}, **kwargs)

                one_name = {"params": {"report": "bench_balanced"}}
                pages = [
                    ("one report (verify included)", f"/invarlock/evidence/bench_balanced/{ids[-1]}", {}),
                    (f"Evidence, one name ({args.bundles} bundles)", "/invarlock/evidence", one_name),
                    (f"Evidence, all ({args.bundles + args.others} bundles)", "/invarlock/evidence", {}),
                ]
                print(f"{'page':<42} {'cold s':>8} {'warm s':>8} {'KiB':>7}")
                print("-" * 68)
                for label, path, kwargs in pages:
                    cold, size = timed(get, path, **kwargs)
                    warm = min(timed(get, path, **kwargs)[0] for _ in range(3))
                    print(f"{label:<42} {cold:8.3f} {warm:8.3f} {size / 1024:7.1f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
