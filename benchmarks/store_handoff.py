"""The work store's cost: the share of each nightly task's wall time spent handing artifacts through
the store (upload + download + sha256 checks), on the embedded preset's ci profile, SeaweedFS on
127.0.0.1. Each task is the CLI command its operator runs, timed from process start to exit; the
handoff seconds are what the command itself reports (``handoff_s`` in its --json summary).

    python benchmarks/store_handoff.py [--repeats 3]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="nights to time; the table shows the median")
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
            nights = [one_night(env, "s3://handoff/work", "s3://handoff/evidence") for _ in range(args.repeats)]
        finally:
            server.stop()
    print(f"embedded preset, ci profile, SeaweedFS on 127.0.0.1; median of {args.repeats} nights")
    print(f"{'task':<28}{'wall s':>9}{'handoff s':>11}{'share':>8}")
    for position, (task, _, _) in enumerate(nights[0]):
        walls = sorted(night[position][1] for night in nights)
        handoffs = sorted(night[position][2] for night in nights)
        wall, handoff = walls[len(walls) // 2], handoffs[len(handoffs) // 2]
        print(f"{task:<28}{wall:>9.2f}{handoff:>11.3f}{handoff / wall:>8.1%}")


if __name__ == "__main__":
    main()
