"""The nightly DAG with and without reuse of unchanged runs: wall time of the DAG run and the time
its evaluations spent scoring, night after night on unchanged inputs.

Real Airflow (``dag.test()``, a fresh SQLite home), the embedded model and a plan with a baseline,
a quant8 subject and a pruned negative control on --profile. Night 0 fills the work folder; then
nights alternate between ``INVARLOCK_REUSE=0`` (every run scores) and reuse (every run finds its
unchanged predecessor). Scoring time is the sum of the runs' ``meta.timings.score_s``; the device
is what the runs report (``meta.device``).

    python benchmarks/nightly_reuse.py [--profile release] [--pairs 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAMES = ("baseline", "quant8", "pruned70_control")
PLAN = """\
preset: causal_lm/tiny_pydocs_128
profile: {profile}
tier: balanced
baseline: {{model: null}}
subjects:
  - {{name: quant8, edit: quant8}}
  - {{name: pruned70_control, edit: "prune:sparsity=0.7", expect: FAIL}}
retention: {{keep_last: 3, max_age: 30d}}
"""


def load_nightly():
    spec = importlib.util.spec_from_file_location("dag_nightly", REPO / "dags" / "invarlock_nightly.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def night(work: Path, reuse: bool) -> dict[str, object]:
    os.environ["INVARLOCK_REUSE"] = "1" if reuse else "0"
    begin = time.perf_counter()
    dag_run = load_nightly().test(logical_date=None)
    wall = time.perf_counter() - begin
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    if str(dag_run.state) != "success":
        raise SystemExit(f"nightly failed: {states}")
    reports = []
    for name in NAMES:
        newest = sorted(p for p in (work / "runs" / name).iterdir() if p.is_dir() and (p / "report.json").is_file())
        reports.append(json.loads((newest[-1] / "report.json").read_text()))
    return {
        "wall_s": wall,
        "score_s": sum(r["meta"]["timings"]["score_s"] for r in reports),
        "run_total_s": sum(r["meta"]["timings"]["total_s"] for r in reports),
        "reused": sum(r["meta"]["reused_from"] is not None for r in reports),
        "device": reports[0]["meta"]["device"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="release", choices=("dev", "ci", "release"))
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="invarlock-bench-") as tmp:
        root = Path(tmp)
        plan = root / "nightly.yaml"
        plan.write_text(PLAN.format(profile=args.profile))
        os.environ.update(
            {
                "AIRFLOW_HOME": str(root / "airflow"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "INVARLOCK_WORKDIR": str(root / "work"),
                "INVARLOCK_HOME": str(root / "work" / ".invarlock"),
                "INVARLOCK_NIGHTLY_CONFIG": str(plan),
            }
        )
        airflow = Path(sys.executable).with_name("airflow")
        subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
        night(root / "work", reuse=False)  # night 0: something to reuse, caches warm
        results: dict[bool, list[dict[str, object]]] = {False: [], True: []}
        for _ in range(args.pairs):
            for reuse in (False, True):
                results[reuse].append(night(root / "work", reuse))

    device = results[True][0]["device"]
    print(f"nightly DAG (dag.test), embedded model, profile {args.profile}, {len(NAMES)} evaluations; device {device}")
    print(f"median of {args.pairs} nights each, alternating\n")
    print("| nights | DAG wall s | scoring s (sum) | evaluations' run time s (sum) | runs reused |")
    print("|---|---:|---:|---:|---:|")
    for reuse, label in ((False, "INVARLOCK_REUSE=0"), (True, "reuse (default)")):
        rows = results[reuse]
        wall = statistics.median(float(r["wall_s"]) for r in rows)
        score = statistics.median(float(r["score_s"]) for r in rows)
        total = statistics.median(float(r["run_total_s"]) for r in rows)
        reused = statistics.median(int(r["reused"]) for r in rows)
        print(f"| {label} | {wall:.1f} | {score:.2f} | {total:.1f} | {reused:.0f} of {len(NAMES)} |")


if __name__ == "__main__":
    main()
