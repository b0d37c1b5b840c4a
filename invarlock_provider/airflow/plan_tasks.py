"""The evaluate, report and archive tasks of a DAG driven by a plan task (the nightly's ``plan``,
the arrivals DAG's ``discover``): the plan task returns the subjects the evaluations map over and
pushes the settings (preset, profile, tier, tiers file and its sha256, baseline) under XCom key
``settings``; where runs, reports and evidence go comes from the deployment's environment."""

from __future__ import annotations

from typing import Any

from invarlock_provider.airflow.defaults import (
    archive_conn_id,
    archive_target,
    evaluation_pool,
    evaluation_queue,
    hub_conn_id,
    object_lock_days,
    object_lock_mode,
    reports_root,
    runs_root,
    signing_conn_id,
    work_conn_id,
)
from invarlock_provider.airflow.operators import (
    ArchiveOperator,
    BuildReportOperator,
    RunEvaluationOperator,
    evidence_outlets,
)


def evaluation_settings(preset: str, profile: str) -> dict[str, Any]:
    """What every evaluation task of the example DAGs shares: the work store, the hub token's
    connection, and the GPU queue and pool."""
    return {
        "preset": preset,
        "profile": profile,
        "output_root": runs_root(),
        "conn_id": work_conn_id(),
        "hub_conn_id": hub_conn_id(),
        "queue": evaluation_queue(),
        "pool": evaluation_pool(),
    }


def from_plan(plan_task_id: str, key: str) -> str:
    return f"{{{{ ti.xcom_pull(task_ids='{plan_task_id}', key='settings')['{key}'] or '' }}}}"


def evaluate_report_archive(plan: Any) -> tuple[RunEvaluationOperator, Any]:
    """``evaluate_baseline``, then per subject of ``plan.output`` a mapped ``evaluate_subject``,
    ``build_report`` and ``archive`` (to ``INVARLOCK_ARCHIVE_URI``, whose Asset the archives update);
    returns the baseline task and the mapped archive task, for the DAG to wire its ends."""
    setting = plan.task_id
    evaluation = evaluation_settings(from_plan(setting, "preset"), from_plan(setting, "profile"))
    baseline = RunEvaluationOperator(
        task_id="evaluate_baseline",
        run_name="baseline",
        model=from_plan(setting, "baseline_model"),
        revision=from_plan(setting, "baseline_revision"),
        **evaluation,
    )
    subjects = RunEvaluationOperator.partial(task_id="evaluate_subject", **evaluation).expand_kwargs(plan.output)
    reports = BuildReportOperator.partial(
        task_id="build_report",
        baseline=baseline.output,
        tier=from_plan(setting, "tier"),
        tiers_path=from_plan(setting, "tiers"),
        tiers_sha256=from_plan(setting, "tiers_sha256"),
        reports_root=reports_root(),
        conn_id=work_conn_id(),
    ).expand(subject=subjects.output)
    target = archive_target()
    archives = ArchiveOperator.partial(
        task_id="archive",
        target=target,
        # Declared here: a mapped operator's __init__ (which adds it when unmapped) never runs at parse time.
        outlets=evidence_outlets(target),
        conn_id=archive_conn_id(),
        work_conn_id=work_conn_id(),
        object_lock_days=object_lock_days(),
        lock_mode=object_lock_mode(),
        signing_conn_id=signing_conn_id(),
    ).expand(report_dir=reports.output)
    plan >> baseline
    return baseline, archives
