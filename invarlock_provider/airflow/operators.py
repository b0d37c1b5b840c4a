"""RunEvaluationOperator, BuildReportOperator and ArchiveOperator.

Each is the Airflow face of one CLI command (``run``, ``report``, ``archive`` + ``prune``) and
returns a small XCom (paths, URIs, verdict, ratio). Retries are safe: an evaluation's run folder
is named from the Airflow run, so a retry finds its own finished run and reuses it (or replaces
its own unfinished one); reports are rewritten atomically; archiving the same evidence is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, BaseOperator

from invarlock_provider.airflow.links import EvidenceLink

LINK_EXPIRY_S = 7 * 24 * 3600


def airflow_run_dir_name(context: Any) -> str:
    """A timestamped folder name that is the same for every try of one task in one DAG run."""
    dag_run = context["dag_run"]
    when = getattr(dag_run, "run_after", None) or getattr(dag_run, "logical_date", None)
    suffix = int(hashlib.sha256(dag_run.run_id.encode()).hexdigest(), 16) % 100
    return f"{when:%Y%m%d_%H%M%S}_{suffix:02d}"


def evidence_outlets(target: str) -> list[Asset]:
    """The Asset an archive target is, for a task's ``outlets``; none for a templated target.

    Airflow records outlets when it parses a DAG, before templates render, and never runs a mapped
    operator's ``__init__`` then, so a mapped archive task passes this to ``.partial(outlets=...)``;
    ArchiveOperator uses the same function, so both declare one Asset per target.
    """
    if "{{" in target:
        return []
    uri = Asset(uri=target).uri  # Airflow's normal form (no trailing slash), so one name per location
    return [Asset(name=f"invarlock-evidence:{uri}", uri=uri)]


def _report_path(value: Any) -> str:
    """Accept a path, or the XCom dict RunEvaluationOperator returns."""
    if isinstance(value, dict):
        return str(value["report"])
    return str(value)


class RunEvaluationOperator(BaseOperator):
    """Evaluate one model (``invarlock run``); in a subprocess by default, so GPU memory, threads
    and the network policy end with it."""

    template_fields: Sequence[str] = (
        "preset",
        "model",
        "edit",
        "run_name",
        "output_root",
        "profile",
        "device",
        "dtype",
    )
    operator_extra_links = (EvidenceLink(),)

    def __init__(
        self,
        *,
        run_name: str,
        preset: str | None = None,
        model: str | None = None,
        edit: str | None = None,
        output_root: str = "runs",
        profile: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
        seed: int | None = None,
        in_subprocess: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run_name = run_name
        self.preset = preset
        self.model = model
        self.edit = edit
        self.output_root = output_root
        self.profile = profile
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.seed = seed
        self.in_subprocess = in_subprocess

    def _arguments(self, out: Path, run_dir_name: str, context: Any) -> list[str]:
        args = ["run", "--json", "--no-progress", "--out", str(out), "--run-dir-name", run_dir_name]
        for flag, value in (
            ("-c", self.preset),
            ("--model", self.model),
            ("--edit", self.edit),
            ("--profile", self.profile),
            ("--device", self.device),
            ("--dtype", self.dtype),
            ("--batch-size", self.batch_size),
            ("--seed", self.seed),
        ):
            if value not in (None, ""):
                args += [flag, str(value)]
        ti = context["ti"]
        for key, value in (
            ("airflow_dag_id", ti.dag_id),
            ("airflow_run_id", ti.run_id),
            ("airflow_task_id", ti.task_id),
            ("airflow_map_index", ti.map_index),
        ):
            args += ["--label", f"{key}={value}"]
        return args

    def execute(self, context: Any) -> dict[str, Any]:
        out = Path(self.output_root) / self.run_name
        run_dir_name = airflow_run_dir_name(context)
        run_dir = out / run_dir_name
        finished = _own_finished_run(run_dir, context["ti"].run_id)
        if finished is not None:
            self.log.info("Reusing this DAG run's finished evaluation %s", run_dir)
            return finished
        if run_dir.exists():
            self.log.info("Replacing this DAG run's unfinished evaluation %s", run_dir)
            shutil.rmtree(run_dir)
        args = self._arguments(out, run_dir_name, context)
        summary = self._run_subprocess(args) if self.in_subprocess else self._run_in_process(args)
        return {**summary, "reused": False, "link": Path(summary["report"]).resolve().as_uri()}

    def _run_subprocess(self, args: list[str]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException

        command = [sys.executable, "-m", "invarlock_provider.cli", *args]
        self.log.info("Running %s", " ".join(command))
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=dict(os.environ))
        for line in result.stderr.strip().splitlines()[-20:]:
            self.log.info("invarlock: %s", line)
        if result.returncode != 0:
            last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no output"
            raise AirflowException(f"invarlock run failed (exit {result.returncode}): {last}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def _run_in_process(self, args: list[str]) -> dict[str, Any]:
        from click.testing import CliRunner

        from invarlock_provider.cli import main

        result = CliRunner().invoke(main, args, catch_exceptions=False)
        if result.exit_code != 0:
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(f"invarlock run failed (exit {result.exit_code}): {result.stderr.strip()}")
        return json.loads(result.stdout.strip().splitlines()[-1])


def _own_finished_run(run_dir: Path, airflow_run_id: str) -> dict[str, Any] | None:
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        return None
    report = json.loads(report_path.read_text())
    owner = report.get("meta", {}).get("labels", {}).get("airflow_run_id")
    if owner != airflow_run_id:
        from airflow.sdk.exceptions import AirflowException

        raise AirflowException(f"{run_dir} belongs to Airflow run {owner!r}, not {airflow_run_id!r}")
    from invarlock_provider.layout import run_summary

    return {**run_summary(report, report_path), "reused": True, "link": report_path.resolve().as_uri()}


class BuildReportOperator(BaseOperator):
    """Pair a subject with its baseline (``invarlock report``) into reports/<report_name>/
    (default: the subject's run name and the tier, e.g. ``quant8_balanced``).

    ``tiers_path`` is a tiers.yaml with the team's own limits (``invarlock report --tiers``); empty
    or None: the bundled configs/tiers.yaml. The resolved limits are in the evaluation's ``policy``.
    """

    template_fields: Sequence[str] = ("subject", "baseline", "report_name", "reports_root", "tier", "tiers_path")
    operator_extra_links = (EvidenceLink(),)

    def __init__(
        self,
        *,
        subject: Any,
        baseline: Any,
        report_name: str | None = None,
        reports_root: str = "reports",
        tier: str = "balanced",
        tiers_path: str | None = None,
        html: bool = True,
        copy_baseline: bool = True,
        with_events: bool = True,
        fail_on_verdict: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.subject = subject
        self.baseline = baseline
        self.report_name = report_name
        self.reports_root = reports_root
        self.tier = tier
        self.tiers_path = tiers_path
        self.html = html
        self.copy_baseline = copy_baseline
        self.with_events = with_events
        self.fail_on_verdict = fail_on_verdict

    def execute(self, context: Any) -> dict[str, Any]:
        from invarlock_provider.errors import InvarlockError
        from invarlock_provider.layout import resolve_report
        from invarlock_provider.reporting.evaluation import HTML_FILE, copy_run_events, run_name, write_evaluation
        from invarlock_provider.reporting.html import write_html
        from invarlock_provider.reporting.policy import load_tier
        from invarlock_provider.reporting.run_report import load_run_report
        from invarlock_provider.reporting.summary import evaluation_summary
        from invarlock_provider.storage.uri import check_segment

        try:
            subject = load_run_report(resolve_report(_report_path(self.subject)), "subject")
            name = self.report_name or f"{run_name(subject.path)}_{self.tier}"
            output = Path(self.reports_root) / check_segment(name, "report_name")
            baseline = load_run_report(resolve_report(_report_path(self.baseline)), "baseline")
            policy = load_tier(self.tier, Path(self.tiers_path) if self.tiers_path else None)
            target, evaluation = write_evaluation(output, subject, baseline, policy, copy_baseline=self.copy_baseline)
            if self.with_events:
                copy_run_events(subject.path.parent, output)
            if self.html:
                write_html(target, evaluation)
        except InvarlockError as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from None
        page = output / HTML_FILE if self.html else target
        summary = {
            **evaluation_summary(evaluation, str(target)),
            "report_dir": str(output),
            "link": page.resolve().as_uri(),
        }
        self.log.info("%s [%s] ratio %s: %s", summary["verdict"], self.tier, summary["ratio"], target)
        if self.fail_on_verdict and summary["verdict"] != "PASS":
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"verdict FAIL for {output.name}: {'; '.join(summary['reasons'])}")
        return summary


class ArchiveOperator(BaseOperator):
    """Archive a reports folder (``invarlock archive``), then apply retention (``invarlock prune``).

    A static ``target`` is also the task's Asset outlet (:func:`evidence_outlets`; pass it to
    ``.partial(outlets=...)`` when mapping). ``object_lock_days`` locks every archived object for
    that many days in ``lock_mode`` (GOVERNANCE or COMPLIANCE); the bucket needs Object Lock.
    """

    template_fields: Sequence[str] = ("report_dir", "target", "conn_id", "runs_root", "max_age", "bucket_max_age")
    operator_extra_links = (EvidenceLink(),)

    def __init__(
        self,
        *,
        report_dir: Any,
        target: str,
        conn_id: str | None = None,
        object_lock_days: int | None = None,
        lock_mode: str = "GOVERNANCE",
        runs_root: str | None = None,
        keep_last: int | None = None,
        max_age: str | None = None,
        bucket_keep_last: int | None = None,
        bucket_max_age: str | None = None,
        index_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs:
            kwargs["outlets"] = evidence_outlets(target)
        super().__init__(**kwargs)
        self.report_dir = report_dir
        self.target = target
        self.conn_id = conn_id
        self.object_lock_days = object_lock_days
        self.lock_mode = lock_mode
        self.runs_root = runs_root
        self.keep_last = keep_last
        self.max_age = max_age
        self.bucket_keep_last = bucket_keep_last
        self.bucket_max_age = bucket_max_age
        self.index_path = index_path

    def execute(self, context: Any) -> dict[str, Any]:
        from datetime import UTC, datetime

        from invarlock_provider.airflow.hooks import EvidenceStoreHook
        from invarlock_provider.errors import InvarlockError
        from invarlock_provider.reporting.evaluation import EVALUATION_FILE
        from invarlock_provider.storage.archive import archive_report
        from invarlock_provider.storage.index import default_index_path
        from invarlock_provider.storage.retention import parse_duration, prune_archived_runs, prune_bundles
        from invarlock_provider.storage.uri import join_key

        report_dir = Path(self.report_dir["report_dir"] if isinstance(self.report_dir, dict) else self.report_dir)
        index_path = Path(self.index_path) if self.index_path else default_index_path()
        store = EvidenceStoreHook(self.conn_id or None).get_store(self.target)
        now = datetime.now(UTC)
        try:
            result = archive_report(
                store,
                report_dir,
                object_lock_days=self.object_lock_days,
                lock_mode=self.lock_mode,
                index_path=index_path,
                now=now,
            )
            pruned = (
                prune_archived_runs(
                    Path(self.runs_root),
                    keep_last=self.keep_last,
                    max_age=self.max_age,
                    index_path=index_path,
                    now=now,
                )
                if self.runs_root
                else []
            )
            if self.bucket_keep_last is not None or self.bucket_max_age:
                prune_bundles(
                    store,
                    store.uri.prefix,
                    keep_last=self.bucket_keep_last,
                    max_age=parse_duration(self.bucket_max_age) if self.bucket_max_age else None,
                    now=now,
                )
        except InvarlockError as exc:
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(str(exc)) from None
        link = store.link(join_key(result.bundle_key, EVALUATION_FILE), LINK_EXPIRY_S)
        self.log.info("%s evidence %s at %s", result.verdict, result.evidence_id, result.bundle_uri)
        return {
            "bundle_uri": result.bundle_uri,
            "evidence_id": result.evidence_id,
            "manifest_sha256": result.manifest_sha256,
            "verdict": result.verdict,
            "already_archived": result.already_archived,
            "pruned_runs": pruned,
            "link": link,
        }


class PruneRunsOperator(BaseOperator):
    """Retention for local runs (``invarlock prune runs/``): archived runs only, never the newest."""

    template_fields: Sequence[str] = ("runs_root", "keep_last", "max_age")

    def __init__(
        self, *, runs_root: str, keep_last: int | str | None = None, max_age: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.runs_root = runs_root
        self.keep_last = keep_last
        self.max_age = max_age

    def execute(self, context: Any) -> list[str]:
        from datetime import UTC, datetime

        from invarlock_provider.storage.index import default_index_path
        from invarlock_provider.storage.retention import prune_archived_runs

        keep_last = int(self.keep_last) if self.keep_last not in (None, "", "None") else None
        pruned = prune_archived_runs(
            Path(self.runs_root),
            keep_last=keep_last,
            max_age=self.max_age or None,
            index_path=default_index_path(),
            now=datetime.now(UTC),
        )
        self.log.info("Pruned %d archived runs", len(pruned))
        return pruned
