"""The arrivals DAG for real (dag.test, embedded model): a checkpoint is evaluated once, after its
marker, never while it is still being uploaded, and its verdict and bundle are in the asset event."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.airflow.conftest import load_dag
from tests.airflow.test_dags import asset_events, bundles, task_states
from tests.storage.conftest import cli


def upload(source: Path, target: Path, *, complete: bool) -> None:
    """As a training job does: the files, then (when done) the marker, last."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "config.json", target / "config.json")
    if complete:
        for path in sorted(source.iterdir()):
            shutil.copy2(path, target / path.name)
        (target / "_SUCCESS").write_text("")


@pytest.mark.slow
def test_each_checkpoint_is_evaluated_once_after_its_marker(
    workdir: Path, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = tmp_path / "checkpoints"
    upload(tiny_model_dir, watched / "step-1000", complete=True)
    upload(tiny_model_dir, watched / "step-2000", complete=False)  # still uploading
    plan = tmp_path / "nightly.yaml"
    plan.write_text(
        "preset: causal_lm/tiny_pydocs_128\nprofile: ci\ntier: balanced\nbaseline: {model: null}\n"
        "subjects:\n  - {name: quant8, edit: quant8}\n"
        f"arrivals: {{watch: {watched}, marker: _SUCCESS}}\n"
    )
    monkeypatch.setenv("INVARLOCK_NIGHTLY_CONFIG", str(plan))
    dag = load_dag("invarlock_arrivals")

    first = dag.test(logical_date=None)
    states = task_states(first)
    assert str(first.state) == "success", states
    assert {k for k in states if k.startswith("evaluate_subject")} == {"evaluate_subject[0]"}
    events = [extra for task, _, extra in asset_events(first, with_extra=True) if task == "archive"]
    assert len(events) == 1
    assert events[0]["verdict"] == "PASS" and events[0]["subject_model"] == str(watched / "step-1000")
    assert events[0]["report_name"] == "step-1000_balanced"
    assert cli("verify", events[0]["bundle_uri"])[0] == 0

    second = dag.test(logical_date=None)  # nothing new: skipped, nothing evaluated
    assert set(task_states(second).values()) == {"skipped"}, task_states(second)

    upload(tiny_model_dir, watched / "step-2000", complete=True)
    third = dag.test(logical_date=None)
    assert str(third.state) == "success", task_states(third)
    events = [extra for task, _, extra in asset_events(third, with_extra=True) if task == "archive"]
    assert [e["subject_model"] for e in events] == [str(watched / "step-2000")]
    assert {b.parent.name for b in bundles(workdir / "evidence")} == {"step-1000_balanced", "step-2000_balanced"}
    baseline_runs = sorted((workdir / "runs" / "baseline").glob("2*/report.json"))
    assert len(baseline_runs) == 2
    reused = json.loads(baseline_runs[-1].read_text())["meta"]["reused_from"]
    assert reused is not None and reused["run_id"] == json.loads(baseline_runs[0].read_text())["run_id"]


def test_the_arrivals_dag_parses_without_a_watched_prefix_and_skips(workdir: Path) -> None:
    dag = load_dag("invarlock_arrivals")
    assert dag.max_active_runs == 1
    assert {t.task_id for t in dag.tasks} == {
        "discover", "evaluate_baseline", "evaluate_subject", "build_report", "archive", "gate",
    }  # fmt: skip
    run = dag.test(logical_date=None)
    assert set(task_states(run).values()) == {"skipped"}
