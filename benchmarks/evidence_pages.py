"""Evidence pages of the Airflow plugin over a big bucket: SeaweedFS on 127.0.0.1 with N real bundles
of one report name (one per night) and M of another, served by Airflow's own API server app.

Two on-demand DAG runs (``dag.test``, embedded model, ci profile) then archive into the same prefix
under the first report name, so the task tabs, the run tab and an older run's tab (its folder rebuilt
by the second run) are timed over the same bucket.

Prints the plugin's import and app-build time inside an API server process, then each page's time
cold (manifests not yet read) and warm (best of three, the immutable-file cache filled), measured
in-process through Airflow's app: the server's time, no network.

    python benchmarks/evidence_pages.py [--bundles 1000] [--others 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.airflow.nights import build_bundles  # noqa: E402  (the repository root, put on the path above)
from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer  # noqa: E402

DAG_ID = "invarlock_on_demand"

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


def on_demand_run(report_name: str) -> str:
    """One run of the on-demand DAG file as Airflow would parse it; its run id."""
    spec = importlib.util.spec_from_file_location("dag_on_demand", REPO / "dags" / f"{DAG_ID}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = module.dag.test(run_conf={"profile": "ci", "report_name": report_name})
    if run.state != "success":
        raise SystemExit(f"{DAG_ID} run {run.run_id} ended {run.state}")
    return run.run_id


def task(run_id: str, task_id: str) -> str:
    return f"/invarlock/task/{DAG_ID}/{quote(run_id, safe='')}/{task_id}/-1"


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
                    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
                    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
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
            begin = time.perf_counter()
            os.environ["INVARLOCK_WORKDIR"] = str(root / "work")
            os.environ["INVARLOCK_HOME"] = str(root / "work" / ".invarlock")
            older, newer = (on_demand_run("bench_balanced") for _ in range(2))
            print(f"two on-demand DAG runs archived under bench_balanced in {time.perf_counter() - begin:.1f} s")

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

                every = args.bundles + args.others + 2
                one_name = {"report": "bench_balanced"}
                week = (now - timedelta(days=7)).date().isoformat()
                compared = [f"bench_balanced/{ids[-1]}", f"bench_balanced/{ids[-2]}"]
                pages = [
                    ("task tab: build_report (newest run)", task(newer, "build_report"), {}),
                    ("task tab: archive (verify included)", task(newer, "archive"), {}),
                    ("task tab: build_report (older run)", task(older, "build_report"), {}),
                    ("task tab: gate (no evidence)", task(newer, "gate"), {}),
                    ("run tab", f"/invarlock/run/{DAG_ID}/{quote(newer, safe='')}", {}),
                    ("bundle page (verify included)", f"/invarlock/evidence/bench_balanced/{ids[-1]}", {}),
                    ("bundle.zip (fetch, verify, zip)", f"/invarlock/evidence/bench_balanced/{ids[-1]}/bundle.zip", {}),
                    ("compare two bundles", "/invarlock/evidence/compare", {"params": {"bundle": compared}}),
                    (f"Evidence, all ({every} bundles)", "/invarlock/evidence", {}),
                    ("Evidence, all, page 2", "/invarlock/evidence", {"params": {"page": "2"}}),
                    ("Evidence, all, 200 rows", "/invarlock/evidence", {"params": {"per": "200"}}),
                    (f"Evidence, one name ({args.bundles + 2})", "/invarlock/evidence", {"params": one_name}),
                    ("Evidence, verdict=FAIL", "/invarlock/evidence", {"params": {"verdict": "FAIL"}}),
                    ("Evidence, last 7 days", "/invarlock/evidence", {"params": {"since": week}}),
                ]
                print(f"{'page':<40} {'cold ms':>8} {'warm ms':>8} {'KiB':>7}")
                print("-" * 66)
                for label, path, kwargs in pages:
                    cold, size = timed(get, path, **kwargs)
                    warm = min(timed(get, path, **kwargs)[0] for _ in range(3))
                    print(f"{label:<40} {cold * 1000:8.1f} {warm * 1000:8.1f} {size / 1024:7.1f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
