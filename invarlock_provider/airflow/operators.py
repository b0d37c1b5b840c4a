"""RunEvaluationOperator, BuildReportOperator and ArchiveOperator.

Each is the Airflow face of one CLI command (``run``, ``report``, ``archive`` + ``prune``) and
returns a small XCom: URIs and sha256, verdict, ratio; never a local path, because the next task
may run on a host that shares nothing with this one but the store. ``output_root`` and
``reports_root`` are local folders or ``s3://`` work-store folders (``conn_id`` names their
connection); a task's local scratch is its own temporary folder, removed when it ends. Retries are
safe: an evaluation's run folder is named from the Airflow run, so a retry (on any worker) finds its
own finished run and reuses it, or replaces its own unfinished one; reports are replaced with the
evaluation written last; archiving the same evidence is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator

from invarlock_provider.airflow.links import EvidenceLink

if TYPE_CHECKING:
    from invarlock_provider.reporting.lineage import Lineage

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


def _reference(value: Any, location: str, digest: str) -> tuple[str, str | None]:
    """A path or URI, or the XCom dict an upstream operator returned (location + its sha256)."""
    if isinstance(value, dict):
        return str(value[location]), value.get(digest)
    return str(value), None


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}" if "://" in root else str(Path(root) / name)


def _failed(exc: Exception, conn_id: str | None) -> Exception:
    """The library's one-line error as the task's failure, naming the connection it went through;
    an endpoint's user:password is redacted, since the message lands in task logs and alerts."""
    from airflow.sdk.exceptions import AirflowException

    from invarlock_provider.errors import redact_url_credentials

    suffix = f" (connection {conn_id!r})" if conn_id and "s3://" in str(exc) else ""
    return AirflowException(redact_url_credentials(f"{exc}{suffix}"))


class _LineageOnComplete:
    """OpenLineage for the OpenLineage provider's listener, from what ``execute`` recorded.

    ``execute`` sets ``_lineage`` once it knows what the task read and wrote; a task that failed
    before that reports none. The OpenLineage client is imported here only, never when a DAG parses.
    """

    _lineage: Lineage | None = None
    _lineage_facet = "evaluation"

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from invarlock_provider.airflow.lineage import operator_lineage

        return operator_lineage(self._lineage, self._lineage_facet)


class RunEvaluationOperator(_LineageOnComplete, BaseOperator):
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
        "device_map",
        "conn_id",
    )
    operator_extra_links = (EvidenceLink(),)
    _lineage_facet = "run"

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
        batch_size: int | str | None = None,
        seed: int | None = None,
        device_map: str | None = None,
        max_memory: dict[str, str] | None = None,
        threads: int | str | None = None,
        concurrent: int | None = None,
        in_subprocess: bool = True,
        conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
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
        self.device_map = device_map
        self.max_memory = dict(max_memory or {})
        self.threads = threads
        self.concurrent = concurrent
        self.in_subprocess = in_subprocess

    def _arguments(self, out: str, run_dir_name: str, context: Any) -> list[str]:
        args = ["run", "--json", "--no-progress", "--out", out, "--run-dir-name", run_dir_name]
        for flag, value in (
            ("-c", self.preset),
            ("--model", self.model),
            ("--edit", self.edit),
            ("--profile", self.profile),
            ("--device", self.device),
            ("--dtype", self.dtype),
            ("--batch-size", self.batch_size),
            ("--seed", self.seed),
            ("--device-map", self.device_map),
            ("--threads", self.threads),
            ("--concurrent", self.concurrent),
        ):
            if value not in (None, ""):
                args += [flag, str(value)]
        for device, size in self.max_memory.items():
            args += ["--max-memory", f"{device}={size}"]
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
        import tempfile

        from invarlock_provider.airflow.hooks import EvidenceStoreHook
        from invarlock_provider.errors import InvarlockError
        from invarlock_provider.storage.workstore import RemoteFolder

        hook = EvidenceStoreHook(self.conn_id or None)
        out = _join(self.output_root, self.run_name)
        run_dir_name = airflow_run_dir_name(context)
        try:
            location = hook.work_location(out)
            if isinstance(location, RemoteFolder):
                finished = _own_stored_run(location.child(run_dir_name), context["ti"].run_id, self.log)
                environment = hook.environment()  # the subprocess reaches the store as this task does
            else:
                finished = _own_local_run(location / run_dir_name, context["ti"].run_id, self.log)
                environment = {}
        except InvarlockError as exc:
            raise _failed(exc, self.conn_id) from None
        if finished is not None:
            self._lineage = _run_lineage(finished)
            return finished
        args = self._arguments(out, run_dir_name, context)
        with tempfile.TemporaryDirectory(prefix="invarlock-evaluate-") as scratch:
            # The run's scratch (a store run scores here before its upload) ends with the task.
            env = {**os.environ, **environment, "TMPDIR": scratch}
            summary = self._run_subprocess(args, env) if self.in_subprocess else self._run_in_process(args, env)
        if not summary["report"].startswith("s3://"):
            summary = {**summary, "report": Path(summary["report"]).resolve().as_uri()}
            summary["run_dir"] = Path(summary["run_dir"]).resolve().as_uri()
        self._lineage = _run_lineage(summary)
        return {**summary, "reused": False, "link": summary["report"]}

    def _run_subprocess(self, args: list[str], env: dict[str, str]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException

        command = [sys.executable, "-m", "invarlock_provider.cli", *args]
        self.log.info("Running %s", " ".join(command))
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        for line in result.stderr.strip().splitlines()[-20:]:
            self.log.info("invarlock: %s", line)
        if result.returncode != 0:
            last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no output"
            suffix = f" (connection {self.conn_id!r})" if self.conn_id and "s3://" in last else ""
            raise AirflowException(f"invarlock run failed (exit {result.returncode}): {last}{suffix}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def _run_in_process(self, args: list[str], env: dict[str, str]) -> dict[str, Any]:
        from click.testing import CliRunner

        from invarlock_provider.cli import main

        result = CliRunner().invoke(main, args, catch_exceptions=False, env=env)
        if result.exit_code != 0:
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(f"invarlock run failed (exit {result.exit_code}): {result.stderr.strip()}")
        return json.loads(result.stdout.strip().splitlines()[-1])


def _run_lineage(summary: dict[str, Any]) -> Lineage:
    from invarlock_provider.reporting.lineage import run_lineage

    run = {
        "run_id": summary["run_id"],
        "edit": summary["model"]["edit"],
        "report_sha256": summary["report_sha256"],
        "ppl_final": summary["ppl_final"],
        "tokens": summary["tokens"],
    }
    return run_lineage(summary, summary["run_dir"], run)


def _not_ours(where: str, owner: Any, airflow_run_id: str) -> Exception:
    from airflow.sdk.exceptions import AirflowException

    return AirflowException(f"{where} belongs to Airflow run {owner!r}, not {airflow_run_id!r}")


def _own_local_run(run_dir: Path, airflow_run_id: str, log: Any) -> dict[str, Any] | None:
    """This DAG run's finished run (reused), or None after removing its unfinished one."""
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        if run_dir.exists():
            log.info("Replacing this DAG run's unfinished evaluation %s", run_dir)
            shutil.rmtree(run_dir)
        return None
    report = json.loads(report_path.read_text())
    owner = report.get("meta", {}).get("labels", {}).get("airflow_run_id")
    if owner != airflow_run_id:
        raise _not_ours(str(run_dir), owner, airflow_run_id)
    from invarlock_provider.layout import publish_latest, run_summary

    log.info("Reusing this DAG run's finished evaluation %s", run_dir)
    publish_latest(run_dir.parent, run_dir)  # a try killed before it moved the pointer left it behind
    summary = run_summary(report, report_path)
    uri = report_path.resolve().as_uri()
    return {**summary, "run_dir": run_dir.resolve().as_uri(), "report": uri, "reused": True, "link": uri}


def _own_stored_run(run_dir: Any, airflow_run_id: str, log: Any) -> dict[str, Any] | None:
    """The same for a run folder in a work store: a complete run (report.json and events.jsonl)
    of this DAG run is reused; anything less that is there is deleted, so the run starts clean."""
    from invarlock_provider.fileio import sha256_bytes
    from invarlock_provider.layout import summarize_run
    from invarlock_provider.storage.workstore import is_complete, publish_latest

    store = run_dir.store
    present = [info.key for info in store.list(run_dir.key)]
    report_key = f"{run_dir.key}/report.json"
    if report_key in present:
        raw = store.read_bytes(report_key)
        owner = json.loads(raw).get("meta", {}).get("labels", {}).get("airflow_run_id")
        if owner != airflow_run_id:
            raise _not_ours(run_dir.uri, owner, airflow_run_id)
        if is_complete(present, run_dir.key):
            log.info("Reusing this DAG run's finished evaluation %s", run_dir.uri)
            publish_latest(run_dir.parent)  # a try killed before it moved latest.json left it behind
            report_uri = run_dir.child("report.json").uri
            summary = summarize_run(json.loads(raw), run_dir.uri, report_uri, sha256_bytes(raw))
            return {**summary, "reused": True, "link": report_uri}
    if present:
        log.info("Replacing this DAG run's unfinished evaluation %s (%d objects)", run_dir.uri, len(present))
        outcome = store.delete(present)
        if outcome.errors:
            from invarlock_provider.errors import InvarlockError

            raise InvarlockError(f"{run_dir.uri}: cannot remove the unfinished run: {outcome.errors}")
    return None


class BuildReportOperator(_LineageOnComplete, BaseOperator):
    """Pair a subject with its baseline (``invarlock report``) into reports/<report_name>/
    (default: the subject's run name and the tier, e.g. ``quant8_balanced``).

    ``tiers_path`` is a tiers.yaml with the team's own limits (``invarlock report --tiers``); empty
    or None: the bundled configs/tiers.yaml. The resolved limits are in the evaluation's ``policy``.
    """

    template_fields: Sequence[str] = (
        "subject",
        "baseline",
        "report_name",
        "reports_root",
        "tier",
        "tiers_path",
        "conn_id",
    )
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
        conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
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
        import tempfile

        from invarlock_provider.airflow.hooks import EvidenceStoreHook
        from invarlock_provider.errors import InvarlockError
        from invarlock_provider.reporting.evaluation import run_name
        from invarlock_provider.reporting.lineage import evaluation_lineage
        from invarlock_provider.reporting.policy import load_tier
        from invarlock_provider.reporting.summary import evaluation_summary
        from invarlock_provider.storage.handoff import load_run, write_report
        from invarlock_provider.storage.uri import check_segment

        hook = EvidenceStoreHook(self.conn_id or None)
        subject_ref, subject_sha = _reference(self.subject, "report", "report_sha256")
        baseline_ref, baseline_sha = _reference(self.baseline, "report", "report_sha256")
        try:
            settings = hook.s3_settings if "s3://" in f"{subject_ref}{baseline_ref}{self.reports_root}" else None
            with tempfile.TemporaryDirectory(prefix="invarlock-report-") as tmp:
                scratch = Path(tmp)
                started = time.perf_counter()
                subject = load_run(subject_ref, "subject", scratch, settings, subject_sha)
                name = check_segment(self.report_name or f"{run_name(subject.path)}_{self.tier}", "report_name")
                baseline = load_run(baseline_ref, "baseline", scratch, settings, baseline_sha)
                fetch_s = time.perf_counter() - started
                policy = load_tier(self.tier, Path(self.tiers_path) if self.tiers_path else None)
                written = write_report(
                    _join(self.reports_root, name),
                    subject,
                    baseline,
                    policy,
                    scratch=scratch,
                    settings=settings,
                    copy_baseline=self.copy_baseline,
                    with_events=self.with_events,
                    html=self.html,
                )
            self._lineage = evaluation_lineage(
                written.evaluation, subject.data, written.report_dir, {"report_name": name}
            )
            link = written.page
            if link.startswith("s3://"):
                folder = hook.work_location(link)
                link = folder.store.link(folder.key, LINK_EXPIRY_S)
        except InvarlockError as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(_failed(exc, self.conn_id))) from None
        summary = {
            **evaluation_summary(written.evaluation, written.evaluation_uri),
            "evaluation_sha256": written.evaluation_sha256,
            "report_dir": written.report_dir,
            "conn_id": self.conn_id or None,  # how the evidence pages read report_dir
            "link": link,
            "handoff_s": round(fetch_s + written.publish_s, 4),
        }
        ci = summary["ci"]
        interval = f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""
        self.log.info(
            "%s [%s] ratio %s%s: %s", summary["verdict"], self.tier, summary["ratio"], interval, written.evaluation_uri
        )
        for reason in summary["reasons"]:  # the evaluation's own line per failed gate: value and limit
            self.log.warning("failed gate %s", reason)
        if self.fail_on_verdict and summary["verdict"] != "PASS":
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"verdict FAIL for {name}: {'; '.join(summary['reasons'])}")
        return summary


class ArchiveOperator(_LineageOnComplete, BaseOperator):
    """Archive a reports folder (``invarlock archive``), then apply retention (``invarlock prune``).

    ``report_dir`` is a path, a URI, or BuildReportOperator's XCom (its ``report_dir`` and
    ``evaluation_sha256``, checked after download); ``work_conn_id`` is the work store's connection
    (default: ``conn_id``, the evidence store's). A static ``target`` is also the task's Asset outlet
    (:func:`evidence_outlets`; pass it to ``.partial(outlets=...)`` when mapping). ``object_lock_days``
    locks every archived object for that many days in ``lock_mode`` (GOVERNANCE or COMPLIANCE).
    ``signing_conn_id`` names a connection whose password is an Ed25519 private key (PEM): the
    bundle's manifest is signed with it (any secrets backend works; the key stays in memory).
    """

    template_fields: Sequence[str] = (
        "report_dir",
        "target",
        "conn_id",
        "work_conn_id",
        "runs_root",
        "max_age",
        "bucket_max_age",
        "signing_conn_id",
    )
    operator_extra_links = (EvidenceLink(),)

    def __init__(
        self,
        *,
        report_dir: Any,
        target: str,
        conn_id: str | None = None,
        work_conn_id: str | None = None,
        object_lock_days: int | None = None,
        lock_mode: str = "GOVERNANCE",
        runs_root: str | None = None,
        keep_last: int | None = None,
        max_age: str | None = None,
        bucket_keep_last: int | None = None,
        bucket_max_age: str | None = None,
        index_path: str | None = None,
        signing_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs:
            kwargs["outlets"] = evidence_outlets(target)
        super().__init__(**kwargs)
        self.report_dir = report_dir
        self.target = target
        self.conn_id = conn_id
        self.work_conn_id = work_conn_id
        self.object_lock_days = object_lock_days
        self.lock_mode = lock_mode
        self.runs_root = runs_root
        self.keep_last = keep_last
        self.max_age = max_age
        self.bucket_keep_last = bucket_keep_last
        self.bucket_max_age = bucket_max_age
        self.index_path = index_path
        self.signing_conn_id = signing_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        import tempfile
        from datetime import UTC, datetime

        from invarlock_provider.airflow.hooks import EvidenceStoreHook
        from invarlock_provider.errors import InvarlockError
        from invarlock_provider.reporting.evaluation import EVALUATION_FILE
        from invarlock_provider.storage.archive import archive_report
        from invarlock_provider.storage.handoff import stage_reports
        from invarlock_provider.storage.retention import parse_duration, prune_bundles
        from invarlock_provider.storage.signing import deployment_trust
        from invarlock_provider.storage.stores import check_store
        from invarlock_provider.storage.uri import join_key

        reference, digest = _reference(self.report_dir, "report_dir", "evaluation_sha256")
        work_conn = self.work_conn_id or self.conn_id or None
        work = EvidenceStoreHook(work_conn)
        now = datetime.now(UTC)
        try:
            signing_key = _signing_key(self.signing_conn_id) if self.signing_conn_id else None
            store = EvidenceStoreHook(self.conn_id or None).get_store(self.target)
            check_store(store)  # an unusable evidence store fails the task before anything is fetched
            local_work = not reference.startswith("s3://")
            with tempfile.TemporaryDirectory(prefix="invarlock-archive-") as scratch:
                settings = work.s3_settings if not local_work else None
                started = time.perf_counter()
                report_dir, sources = stage_reports(reference, Path(scratch), settings, digest)
                staged_s = time.perf_counter() - started
                result = archive_report(
                    store,
                    report_dir,
                    object_lock_days=self.object_lock_days,
                    lock_mode=self.lock_mode,
                    index_path=_index_path(self.index_path) if local_work else None,
                    now=now,
                    sources=sources,
                    signing_key=signing_key,
                )
                self._lineage = _archive_lineage(report_dir, result)
            pruned = (
                _prune_runs(work, self.runs_root, self.keep_last, self.max_age, store, self.index_path, now)
                if self.runs_root
                else []
            )
            if self.bucket_keep_last is not None or self.bucket_max_age:
                pruning = prune_bundles(
                    store,
                    store.uri.prefix,
                    keep_last=self.bucket_keep_last,
                    max_age=parse_duration(self.bucket_max_age) if self.bucket_max_age else None,
                    now=now,
                    trust=deployment_trust(),
                )
                for uri in pruning.unverified:
                    self.log.warning("kept, does not verify (invarlock verify %s names what is wrong)", uri)
            link = store.link(join_key(result.bundle_key, EVALUATION_FILE), LINK_EXPIRY_S)
        except InvarlockError as exc:
            raise _failed(exc, self.conn_id) from None
        self.log.info("%s evidence %s at %s", result.verdict, result.evidence_id, result.bundle_uri)
        event = {
            "verdict": result.verdict,
            "ratio": result.ratio,
            "ci": result.ci,
            "tier": result.tier,
            "report_name": result.report_name,
            "bundle_uri": result.bundle_uri,
            "evidence_id": result.evidence_id,
            "subject_model": result.subject_model,
            "subject_weights_digest": result.subject_weights_digest,
        }
        outlet_events = context.get("outlet_events") if hasattr(context, "get") else None
        for asset in self.outlets if outlet_events is not None else []:
            outlet_events[asset].extra.update(event)  # what a DAG scheduled on the evidence Asset reads
        return {
            "bundle_uri": result.bundle_uri,
            "evidence_id": result.evidence_id,
            "manifest_sha256": result.manifest_sha256,
            "verdict": result.verdict,
            "already_archived": result.already_archived,
            "signer": result.signer,
            "conn_id": self.conn_id or None,  # how the evidence pages read the bundle
            "pruned_runs": pruned,
            "link": link,
            "handoff_s": round(staged_s, 4),
        }


def _signing_key(conn_id: str) -> Any:
    """The connection's password as an Ed25519 key; errors name the connection, never its content."""
    from airflow.sdk import BaseHook

    from invarlock_provider.errors import BadInputError
    from invarlock_provider.storage.signing import parse_signing_key

    where = f"signing connection {conn_id!r}"
    pem = BaseHook.get_connection(conn_id).password
    if not pem:
        raise BadInputError(f"{where}: its password must hold the Ed25519 private key (PEM)")
    return parse_signing_key(pem.encode(), where)


def _archive_lineage(report_dir: Path, result: Any) -> Lineage:
    """The bundle's lineage from the folder that was archived (the subject's report.json is in it)."""
    from invarlock_provider.layout import REPORT_FILE
    from invarlock_provider.reporting.evaluation import EVALUATION_FILE
    from invarlock_provider.reporting.lineage import evaluation_lineage

    evaluation = json.loads((report_dir / EVALUATION_FILE).read_text())
    subject = json.loads((report_dir / REPORT_FILE).read_text())
    extra = {
        "report_name": result.report_name,
        "evidence_id": result.evidence_id,
        "bundle_uri": result.bundle_uri,
        "manifest_sha256": result.manifest_sha256,
    }
    return evaluation_lineage(evaluation, subject, result.bundle_uri, extra)


def _index_path(configured: str | None) -> Path:
    from invarlock_provider.storage.index import default_index_path

    return Path(configured) if configured else default_index_path()


def _prune_runs(
    work: Any,
    runs_root: str,
    keep_last: int | None,
    max_age: str | None,
    evidence: Any,
    index_path: str | None,
    now: Any,
) -> list[str]:
    """Archived runs only, never the newest. What counts as archived is the evidence store's own
    record (readable from any worker), plus the local archive index for local runs, and only once
    the bundle a record names verifies (with the deployment's trusted keys)."""
    from invarlock_provider.storage.index import ArchivedRuns, read_index
    from invarlock_provider.storage.retention import prune_archived_runs
    from invarlock_provider.storage.signing import deployment_trust
    from invarlock_provider.storage.workstore import RemoteFolder

    if keep_last is None and not max_age:
        return []
    runs = work.work_location(runs_root)
    index = None if isinstance(runs, RemoteFolder) else read_index(_index_path(index_path))
    archived = ArchivedRuns.from_sources(evidence, index, deployment_trust(), getattr(evidence, "settings", None))
    return prune_archived_runs(runs, keep_last=keep_last, max_age=max_age, archived=archived, now=now)


class PruneRunsOperator(BaseOperator):
    """Retention for runs (``invarlock prune RUNS --evidence TARGET``): archived runs only, never the
    newest; local or in a work store (``work_conn_id``), with the evidence store's record of what is
    archived (``evidence_target`` through ``conn_id``)."""

    template_fields: Sequence[str] = ("runs_root", "keep_last", "max_age", "evidence_target", "conn_id", "work_conn_id")

    def __init__(
        self,
        *,
        runs_root: str,
        evidence_target: str,
        keep_last: int | str | None = None,
        max_age: str | None = None,
        conn_id: str | None = None,
        work_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.runs_root = runs_root
        self.evidence_target = evidence_target
        self.keep_last = keep_last
        self.max_age = max_age
        self.conn_id = conn_id
        self.work_conn_id = work_conn_id

    def execute(self, context: Any) -> list[str]:
        from datetime import UTC, datetime

        from invarlock_provider.airflow.hooks import EvidenceStoreHook
        from invarlock_provider.errors import InvarlockError

        keep_last = int(self.keep_last) if self.keep_last not in (None, "", "None") else None
        try:
            evidence = EvidenceStoreHook(self.conn_id or None).get_store(self.evidence_target)
            work = EvidenceStoreHook(self.work_conn_id or self.conn_id or None)
            pruned = _prune_runs(
                work, self.runs_root, keep_last, self.max_age or None, evidence, None, datetime.now(UTC)
            )
        except InvarlockError as exc:
            raise _failed(exc, self.conn_id) from None
        self.log.info("Pruned %d archived runs", len(pruned))
        return pruned
