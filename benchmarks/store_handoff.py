"""The work store's cost: the share of each nightly task's wall time spent handing artifacts through
the store (upload + download + sha256 checks), on the embedded preset's ci profile, SeaweedFS on
127.0.0.1.

1. Airflow tasks: the nightly DAG (baseline + quant8) on the CeleryExecutor deployment of the tests
   (tests/airflow/celery_deployment.py: two workers in their own mount namespaces, no shared disk);
   a task's wall time is its task instance's duration, its handoff what its XCom says
   (``handoff_s``). Needs root, Debian's postgresql and redis-server, like the test.
2. The CLI commands those tasks run, timed from process start to exit (``handoff_s`` of --json).

    python benchmarks/store_handoff.py [--repeats 3] [--skip-airflow]

Target (issue: no shared disk): handoff <= 5% of every task's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer  # noqa: E402


def invarlock(env: dict[str, str], *args: str) -> tuple[float, dict]:
    begin = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "invarlock_provider.cli", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - begin
    if result.returncode != 0:
        raise SystemExit(f"invarlock {' '.join(args)} failed: {result.stderr.strip()}")
    return wall, json.loads(result.stdout.strip().splitlines()[-1])


def one_night(env: dict[str, str], work: str, evidence: str) -> list[tuple[str, float, float]]:
    rows = []
    for name, edit in (("baseline", "noop"), ("quant8", "quant8")):
        wall, summary = invarlock(env, "run", "--profile", "ci", "--edit", edit, "--out", f"{work}/runs/{name}")
        rows.append((f"evaluate ({name})", wall, summary["handoff_s"]))
    report = f"{work}/reports/quant8_balanced"
    wall, summary = invarlock(
        env,
        "report",
        "--run",
        f"{work}/runs/quant8",
        "--baseline",
        f"{work}/runs/baseline",
        "--format",
        "html",
        "--output",
        report,
        "--copy-baseline",
        "--with-events",
    )
    rows.append(("build_report", wall, summary["handoff_s"]))
    wall, summary = invarlock(env, "archive", report, "--to", evidence)
    rows.append(("archive (server-side copy)", wall, summary["handoff_s"]))
    return rows


PLAN = """\
preset: causal_lm/tiny_pydocs_128
profile: ci
tier: balanced
subjects:
  - {name: quant8, edit: quant8}
"""


def airflow_nights(tmp: Path, server: SeaweedServer, repeats: int) -> list[list[tuple[str, float, float]]]:
    """(task, task-instance duration, handoff) per task of each nightly run."""
    from tests.airflow.celery_deployment import deployment

    server.client().create_bucket(Bucket="nightly")
    (tmp / "nightly.yaml").write_text(PLAN)
    connection = {
        "conn_type": "aws",
        "login": ACCESS_KEY,
        "password": SECRET_KEY,
        "extra": {"endpoint_url": server.endpoint, "region_name": "us-east-1", "path_style": True},
    }
    settings = {
        "INVARLOCK_WORK_URI": "s3://nightly/work",
        "INVARLOCK_ARCHIVE_URI": "s3://nightly/evidence",
        "INVARLOCK_ARCHIVE_CONN_ID": "invarlock_evidence",
        "AIRFLOW_CONN_INVARLOCK_EVIDENCE": json.dumps(connection),
        "INVARLOCK_EVALUATION_QUEUE": "gpu",
        "INVARLOCK_NIGHTLY_CONFIG": str(tmp / "nightly.yaml"),
    }
    nights = []
    with deployment(tmp / "airflow", ROOT / "dags", settings) as airflow:
        airflow.wait_for_dag("invarlock_nightly")
        for _ in range(repeats):
            run_id = airflow.trigger("invarlock_nightly")
            if len(nights) == 0:
                airflow.unpause("invarlock_nightly")
            state = airflow.wait_for_run("invarlock_nightly", run_id, timeout=600)
            if state != "success":
                raise SystemExit(f"nightly run {run_id}: {state}")
            rows = []
            for ti in sorted(airflow.task_instances("invarlock_nightly", run_id), key=lambda t: t["task_id"]):
                value = airflow.xcom("invarlock_nightly", run_id, ti["task_id"], map_index=ti["map_index"])
                handoff = value.get("handoff_s") if isinstance(value, dict) else None
                if handoff is not None:
                    rows.append((ti["task_id"], float(ti["duration"]), float(handoff)))
            nights.append(rows)
    return nights


def print_table(title: str, nights: list[list[tuple[str, float, float]]]) -> None:
    print(title)
    print(f"{'task':<28}{'wall s':>9}{'handoff s':>11}{'share':>8}")
    for position, (task, _, _) in enumerate(nights[0]):
        walls = sorted(night[position][1] for night in nights)
        handoffs = sorted(night[position][2] for night in nights)
        wall, handoff = walls[len(walls) // 2], handoffs[len(handoffs) // 2]
        print(f"{task:<28}{wall:>9.2f}{handoff:>11.3f}{handoff / wall:>8.1%}")


def client_setup_seconds() -> float:
    """What any process pays once before its first S3 request: importing boto3 and building a client."""
    code = (
        "import time; t = time.perf_counter(); import boto3\n"
        "boto3.session.Session(aws_access_key_id='a', aws_secret_access_key='b', region_name='us-east-1')"
        ".client('s3', endpoint_url='http://127.0.0.1:9')\n"
        "print(time.perf_counter() - t)"
    )
    command = [sys.executable, "-c", code]
    runs = [float(subprocess.run(command, capture_output=True, text=True, check=True).stdout) for _ in range(3)]
    return sorted(runs)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="nights to time; the table shows the median")
    parser.add_argument("--skip-airflow", action="store_true", help="only the CLI commands")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="invarlock-handoff-") as tmp:
        server = SeaweedServer(Path(tmp) / "weed")
        server.start()
        try:
            server.client().create_bucket(Bucket="handoff")
            (Path(tmp) / "scratch").mkdir()
            env = {
                **os.environ,
                "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": server.endpoint,
                "INVARLOCK_S3_PATH_STYLE": "1",
                "TMPDIR": str(Path(tmp) / "scratch"),
                "INVARLOCK_HOME": str(Path(tmp) / "home"),
            }
            commands = [one_night(env, "s3://handoff/work", "s3://handoff/evidence") for _ in range(args.repeats)]
            tasks = None if args.skip_airflow else airflow_nights(Path(tmp), server, args.repeats)
        finally:
            server.stop()
    print(f"embedded preset, ci profile, SeaweedFS on 127.0.0.1; median of {args.repeats} nights")
    if tasks is not None:
        print_table("\nAirflow task instances (CeleryExecutor, isolated workers): duration vs XCom handoff_s", tasks)
    print_table("\nCLI commands, process start to exit", commands)
    print(f"\nof each handoff, once per process: import boto3 + build an S3 client {client_setup_seconds():.3f} s")


if __name__ == "__main__":
    main()
