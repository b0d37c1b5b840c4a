"""Run dags/invarlock_nightly.py once with dag.test() and print the evidence and the verdicts.

Airflow's task logs go to $AIRFLOW_HOME/quickstart-nightly.log so the screen shows the outcome:
task states, where each bundle is, its verdict and ratio, and that it verifies offline.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_nightly_dag():
    spec = importlib.util.spec_from_file_location("invarlock_nightly", REPO / "dags" / "invarlock_nightly.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_folders(runs: Path) -> set[str]:
    return {p.relative_to(runs).as_posix() for p in runs.glob("*/*") if p.is_dir()}


def main() -> int:
    from invarlock_provider.airflow.defaults import archive_target, workdir
    from invarlock_provider.storage.bundle_reader import list_bundles, verify_bundle_folder
    from invarlock_provider.storage.stores import open_store

    log_path = Path(os.environ["AIRFLOW_HOME"]) / "quickstart-nightly.log"
    print(f"running the invarlock_nightly DAG (task logs: {log_path}) ...", flush=True)
    started = datetime.now(UTC).replace(microsecond=0)
    runs = workdir() / "runs"
    runs_before = run_folders(runs)
    with log_path.open("w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        dag_run = load_nightly_dag().test(logical_date=None)
    states = sorted(
        (ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""), str(ti.state))
        for ti in dag_run.get_task_instances()
    )
    elapsed = (dag_run.end_date - dag_run.start_date).total_seconds() if dag_run.end_date else float("nan")
    scoring = sum(
        json.loads((runs / name / "report.json").read_text())["meta"]["timings"]["score_s"]
        for name in run_folders(runs) - runs_before
        if (runs / name / "report.json").is_file()
    )
    print(f"DAG run {dag_run.run_id}: {dag_run.state} in {elapsed:.1f} s ({scoring:.1f} s of it scoring windows)")
    for task, state in states:
        print(f"  {task:<22} {state}")
    if str(dag_run.state) != "success":
        print(f"the nightly run failed; see {log_path}", file=sys.stderr)
        return 1

    target = archive_target()
    bundles = [
        b for b in list_bundles(open_store(target), "") if b.complete and b.created_at and b.created_at >= started
    ]
    print(f"\nevidence: {target}")
    print(f"  {'report':<28} {'verdict':<8} {'ratio':>8}  verify  bundle")
    for bundle in sorted(bundles, key=lambda b: b.uri):
        manifest = bundle.manifest or {}
        folder = Path(bundle.uri.removeprefix("file://"))
        verified = "ok" if verify_bundle_folder(folder).ok else "FAILED"
        print(f"  {bundle.report_name:<28} {manifest['verdict']:<8} {manifest['ratio']:>8.4f}  {verified:<6}  {folder}")
    kept = run_folders(runs)
    pruned = sorted(runs_before - kept)
    print(f"\nruns ({runs}): {len(kept)} kept, {len(pruned)} archived runs pruned (retention in configs/nightly.yaml)")
    for name in sorted(kept):
        print(f"  kept    {name}")
    for name in pruned:
        print(f"  pruned  {name}")
    print(f"\nreports: {workdir() / 'reports'}  (open */evaluation.html in a browser)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
