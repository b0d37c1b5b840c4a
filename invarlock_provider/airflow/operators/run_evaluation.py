"""RunEvaluationOperator: ``invarlock run`` in a subprocess, with its progress in the task log."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from invarlock_provider.airflow.links import EvidenceLink
from invarlock_provider.airflow.operators._common import LineageOnComplete, join, task_failure

if TYPE_CHECKING:
    from invarlock_provider.reporting.lineage import Lineage


SCRATCH_PREFIXES = ("invarlock-evaluate-", "invarlock-run-")


def airflow_run_dir_name(context: Any) -> str:
    """A timestamped folder name that is the same for every try of one task in one DAG run."""
    dag_run = context["dag_run"]
    when = getattr(dag_run, "run_after", None) or getattr(dag_run, "logical_date", None)
    suffix = int(hashlib.sha256(dag_run.run_id.encode()).hexdigest(), 16) % 100
    return f"{when:%Y%m%d_%H%M%S}_{suffix:02d}"


class RunEvaluationOperator(LineageOnComplete, BaseOperator):
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
        "revision",
        "hub_conn_id",
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
        task_limit: int | None = None,
        device_map: str | None = None,
        max_memory: dict[str, str] | None = None,
        threads: int | str | None = None,
        concurrent: int | None = None,
        in_subprocess: bool = True,
        kill_grace_s: float = 15.0,
        conn_id: str | None = None,
        revision: str | None = None,
        hub_conn_id: str | None = None,
        reuse: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reuse = reuse
        self.conn_id = conn_id
        self.revision = revision
        self.hub_conn_id = hub_conn_id
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
        self.task_limit = task_limit
        self.device_map = device_map
        self.max_memory = dict(max_memory or {})
        self.threads = threads
        self.concurrent = concurrent
        self.in_subprocess = in_subprocess
        self.kill_grace_s = kill_grace_s
        self._process: Any = None

    def _arguments(self, out: str, run_dir_name: str, context: Any) -> list[str]:
        args = ["run", "--json", "--no-progress", "--out", out, "--run-dir-name", run_dir_name]
        for flag, value in (
            ("-c", self.preset),
            ("--model", self.model),
            ("--revision", self.revision),
            ("--edit", self.edit),
            ("--profile", self.profile),
            ("--device", self.device),
            ("--dtype", self.dtype),
            ("--batch-size", self.batch_size),
            ("--seed", self.seed),
            ("--task-limit", self.task_limit),
            ("--device-map", self.device_map),
            ("--threads", self.threads),
            ("--concurrent", self.concurrent),
        ):
            if value not in (None, ""):
                args += [flag, str(value)]
        for device, size in self.max_memory.items():
            args += ["--max-memory", f"{device}={size}"]
        if not self.reuse:
            args.append("--no-reuse")
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
        from invarlock_provider.scratch import owned_temporary_directory, remove_dead_scratch

        for folder in remove_dead_scratch(SCRATCH_PREFIXES):
            self.log.info("Removed the scratch folder of a try that died: %s", folder)
        out = join(self.output_root, self.run_name)
        run_dir_name = airflow_run_dir_name(context)
        finished, environment = self._committed_run(out, run_dir_name, context)
        if finished is not None:
            self._lineage = _run_lineage(finished)
            return finished
        args = self._arguments(out, run_dir_name, context)
        with owned_temporary_directory("invarlock-evaluate-") as scratch:
            # The run's scratch (a store run scores here before its upload) ends with the task.
            env = {**os.environ, **environment, **self._hub_environment(), "TMPDIR": str(scratch)}
            try:
                summary = self._run_subprocess(args, env) if self.in_subprocess else self._run_in_process(args, env)
            except Exception:
                # An earlier try of this DAG run (one whose runner died) may have committed meanwhile:
                # its complete run is this task's result, and this try's run was discarded.
                finished, _ = self._committed_run(out, run_dir_name, context)
                if finished is None:
                    raise
                self.log.info("An earlier try of this DAG run committed %s; using it", finished["run_dir"])
                self._lineage = _run_lineage(finished)
                return finished
        if not summary["report"].startswith("s3://"):
            summary = {**summary, "report": Path(summary["report"]).resolve().as_uri()}
            summary["run_dir"] = Path(summary["run_dir"]).resolve().as_uri()
        self._lineage = _run_lineage(summary)
        return {**summary, "reused": False, "link": summary["report"]}

    def _committed_run(self, out: str, run_dir_name: str, context: Any) -> tuple[dict[str, Any] | None, dict]:
        """This DAG run's committed run (to reuse), and the environment the subprocess needs: the
        connection's credentials, for the work store and for ``s3://`` model and data inputs."""
        from invarlock_provider.airflow.hooks import EvidenceStoreHook
        from invarlock_provider.errors import InvarlockError
        from invarlock_provider.storage.workstore import RemoteFolder

        hook = EvidenceStoreHook(self.conn_id or None)
        try:
            location = hook.work_location(out)
            if isinstance(location, RemoteFolder):
                finished = _own_stored_run(location.child(run_dir_name), context["ti"].run_id, self.log)
                return finished, hook.environment()  # the subprocess reaches the store as this task does
            # s3:// inputs (a checkpoint, a corpus) are read through the same connection
            return _own_local_run(location / run_dir_name, context["ti"].run_id, self.log), hook.environment()
        except InvarlockError as exc:
            raise task_failure(exc, self.conn_id) from None

    def _hub_environment(self) -> dict[str, str]:
        """The hub token of ``hub_conn_id`` (its password, from any secrets backend), for the run's
        process only: it is in no argument, log line, XCom or report."""
        if not self.hub_conn_id:
            return {}
        from airflow.sdk import BaseHook

        token = BaseHook.get_connection(self.hub_conn_id).password
        if not token:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"connection {self.hub_conn_id!r}: no password (the hub token) set")
        return {"HF_TOKEN": token}

    def _run_subprocess(self, args: list[str], env: dict[str, str]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException

        from invarlock_provider.airflow.operators.subprocess_runner import CliProcess

        self._process = CliProcess(args, env, self.log, self.kill_grace_s)
        try:
            finished = self._process.run()
        finally:
            self._process = None
        if finished.returncode != 0:
            last = finished.tail[-1] if finished.tail else "no output"
            suffix = f" (connection {self.conn_id!r})" if self.conn_id and "s3://" in last else ""
            raise AirflowException(f"invarlock run failed (exit {finished.returncode}): {last}{suffix}")
        return json.loads(finished.stdout.strip().splitlines()[-1])

    def on_kill(self) -> None:
        """Airflow's SIGTERM to this task: stop the evaluation's process group (SIGTERM, then
        SIGKILL after ``kill_grace_s``); the run ends with a ``killed`` event and no report."""
        process = getattr(self, "_process", None)
        if process is not None:
            process.terminate()

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
    of this DAG run is reused. A report.json without events is a commit cut off before its
    second write: completed from the committer's staged events. Anything else there (left by a
    version that wrote the folder in place) is deleted, so the run starts clean."""
    from invarlock_provider.fileio import sha256_bytes
    from invarlock_provider.layout import summarize_run
    from invarlock_provider.storage.store_tries import complete_stored_run
    from invarlock_provider.storage.workstore import is_complete, publish_latest

    store = run_dir.store
    present = [info.key for info in store.list(run_dir.key)]
    report_key = f"{run_dir.key}/report.json"
    if report_key in present:
        raw = store.read_bytes(report_key)
        owner = json.loads(raw).get("meta", {}).get("labels", {}).get("airflow_run_id")
        if owner != airflow_run_id:
            raise _not_ours(run_dir.uri, owner, airflow_run_id)
        complete = is_complete(present, run_dir.key)
        if not complete and complete_stored_run(run_dir, raw):
            log.info("Completed the commit of %s from its committer's staged events", run_dir.uri)
            complete = True
        if complete:
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
