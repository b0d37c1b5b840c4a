"""Run dags/invarlock_nightly.py once with dag.test() and print the evidence and the verdicts.

Airflow's task logs go to $AIRFLOW_HOME/quickstart-nightly.log so the screen shows the outcome:
each task as it starts and ends (read from the DAG run's own task instances while it runs), task
states, where each bundle is, its verdict and ratio, and that it verifies offline.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

REPO = Path(__file__).resolve().parents[1]


def load_nightly_dag():
    spec = importlib.util.spec_from_file_location("invarlock_nightly", REPO / "dags" / "invarlock_nightly.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def task_change(evaluation: dict) -> str:
    """The first task's paired accuracy change and its interval, e.g. ``-0.12 (-0.51..+0.26) n=813``."""
    paired = next((t.get("paired") for t in evaluation.get("tasks") or [] if t.get("paired")), None)
    if not paired:
        return "-"
    low, high = paired["interval"]
    return f"{100 * paired['difference']:+.2f} ({100 * low:+.2f}..{100 * high:+.2f}) n={paired['n']}"


FINISHED = {"success", "failed", "upstream_failed", "skipped", "removed"}


class TaskProgress:
    """Prints each task of the newest run of a DAG as it starts and ends, from the metadata database
    (dag.test() runs the tasks in this process, with their logs sent to a file)."""

    def __init__(self, dag_id: str, console: TextIO) -> None:
        self.dag_id, self.console = dag_id, console
        self.started: dict[str, datetime] = {}
        self.ended: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> TaskProgress:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.report()  # what ended since the last look

    def _watch(self) -> None:
        while not self.stop.wait(1.0):
            with contextlib.suppress(Exception):  # the database is busy with the run itself: look again
                self.report()

    def report(self) -> None:
        from airflow.models import DagRun, TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            run = session.query(DagRun).filter(DagRun.dag_id == self.dag_id).order_by(DagRun.id.desc()).first()
            if run is None:
                return
            rows = [
                (
                    ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""),
                    str(ti.state),
                    ti.start_date,
                    ti.end_date,
                )
                for ti in session.query(TaskInstance).filter(
                    TaskInstance.dag_id == self.dag_id, TaskInstance.run_id == run.run_id
                )
            ]
        for task, state, start, end in sorted(
            rows, key=lambda row: (row[2] or datetime.max.replace(tzinfo=UTC), row[0])
        ):
            if start is not None and task not in self.started:
                self.started[task] = start
                print(f"  started   {task}", file=self.console, flush=True)
            if state in FINISHED and task not in self.ended:
                self.ended.add(task)
                took = f"{(end - start).total_seconds():6.1f} s" if start and end else "      -"
                print(f"  {state:<9} {task:<24} {took}", file=self.console, flush=True)


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
    with (
        open(os.dup(sys.stdout.fileno()), "w", buffering=1) as console,  # the screen, past the redirect
        log_path.open("w") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        dag = load_nightly_dag()  # Airflow's logging, set up on import, goes to the log too
        with TaskProgress(dag.dag_id, console):
            dag_run = dag.test(logical_date=None)
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
    print(f"  {'report':<28} {'verdict':<12} {'ratio':>8}  {'task change, pp (95% CI)':<26}  verify  bundle")
    for bundle in sorted(bundles, key=lambda b: b.uri):
        manifest = bundle.manifest or {}
        folder = Path(bundle.uri.removeprefix("file://"))
        verification = verify_bundle_folder(folder)
        verified = "ok" if verification.ok else "FAILED"
        ratio = f"{manifest['ratio']:.4f}" if manifest.get("ratio") is not None else "-"
        print(
            f"  {bundle.report_name:<28} {manifest['verdict']:<12} {ratio:>8}  "
            f"{task_change(verification.evaluation or {}):<26}  {verified:<6}  {folder}"
        )
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
