"""kill -9 at every store call of run upload, report upload, archive (signature included) and prune,
on a local folder and on SeaweedFS: after every kill nothing looks complete that is not, and a rerun
converges to evidence that verifies with the trusted key.

Each trial runs the real CLI in its own process (``tests/storage/faults.py``), counts its store
calls, and kills it with SIGKILL just before call N. Reads between two writes leave the store as
the next write found it, so by default a trial is run before every call that changes something
(write, copy, delete) and once at the end; ``INVARLOCK_CRASH_EVERY_CALL=1`` runs one trial before
every call, reads included. The table of trials is printed and written to
``test-artifacts/crash-points.md``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from invarlock_provider.layout import completed_runs as local_completed_runs
from invarlock_provider.layout import publish_latest
from invarlock_provider.reporting.run_report import load_run_report
from invarlock_provider.reporting.verify import verify_path
from invarlock_provider.storage.archive import archive_report
from invarlock_provider.storage.bundle_reader import list_bundles, verify_remote_bundle
from invarlock_provider.storage.handoff import stage_reports
from invarlock_provider.storage.index import ArchivedRuns, archive_records
from invarlock_provider.storage.signing import Trust, TrustedKey, generate_key_pair, load_signing_key
from invarlock_provider.storage.stores import open_store
from invarlock_provider.storage.uri import parse_store_uri
from invarlock_provider.storage.workstore import completed_runs, read_latest, upload_run, work_location
from tests.storage.conftest import date_evaluation
from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY

REPO = Path(__file__).resolve().parents[2]
STORE_WRITES = ("put_file", "copy_from", "delete", "delete_if_match")
LOCAL_WRITES = ("write_bytes_atomic", "write_json_atomic", "publish_latest", "rename", "rmtree")
ARTIFACT = REPO / "test-artifacts" / "crash-points.md"


@dataclass
class Trial:
    operation: str
    backend: str
    at: int
    call: str
    after_kill: str
    after_rerun: str


@dataclass
class Scenario:
    """One operation on one backend: how to set up a fresh store, the command, and the checks."""

    operation: str
    backend: str
    setup: Callable[[Path], dict[str, Any]]  # -> context, with "args" (the CLI arguments)
    consistent: Callable[[dict[str, Any]], str]  # after a kill: what is there, or raises
    converged: Callable[[dict[str, Any]], str]  # after the rerun: what is there, or raises
    rerun_args: Callable[[dict[str, Any]], list[str]] | None = None


class Harness:
    def __init__(self, seaweed: Any, root: Path, keys: Path) -> None:
        self.seaweed, self.root, self.keys = seaweed, root, keys
        self.trust = Trust((TrustedKey("nightly", load_signing_key(keys / "private.pem").fingerprint),))
        self.bucket = "crash-points"  # one bucket, a prefix per trial: a server holds few buckets
        seaweed.client().create_bucket(Bucket=self.bucket)

    def env(self, log: Path, at: int | None) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.seaweed.endpoint,
            "INVARLOCK_S3_PATH_STYLE": "1",
            "INVARLOCK_FAULT_LOG": str(log),
            "INVARLOCK_FAULT_ACTION": "kill",
        }
        env.pop("INVARLOCK_FAULT_AT", None)
        if at is not None:
            env["INVARLOCK_FAULT_AT"] = str(at)
        return env

    def invoke(
        self, context: dict[str, Any], args: list[str], log: Path, at: int | None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tests.storage.faults", *args],
            cwd=context["cwd"],
            env={**self.env(log, at), "INVARLOCK_HOME": str(context["cwd"] / ".invarlock")},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def fresh(self, scenario: Scenario, name: str) -> dict[str, Any]:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
        folder = self.root / name
        folder.mkdir(parents=True)
        context = {"cwd": folder, "bucket": f"{self.bucket}/{name}", "harness": self}
        context.update(scenario.setup(context))
        return context

    def run(self, scenario: Scenario, every_call: bool) -> list[Trial]:
        counting = self.fresh(scenario, f"{scenario.operation}-{scenario.backend}-count")
        log = counting["cwd"] / "calls.log"
        done = self.invoke(counting, counting["args"], log, None)
        assert done.returncode == 0, done.stderr
        calls = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
        # On a local folder its file commits are the store's; next to S3 they are private scratch.
        writes = STORE_WRITES + (LOCAL_WRITES if scenario.backend == "local" else ())
        points = [n for n, call in enumerate(calls) if every_call or call.split(" ", 1)[0] in writes]
        trials = []
        for at in points:
            context = self.fresh(scenario, f"{scenario.operation}-{scenario.backend}-{at}")
            log = context["cwd"] / "calls.log"
            killed = self.invoke(context, context["args"], log, at)
            assert killed.returncode == -signal.SIGKILL, (at, calls[at], killed.returncode, killed.stderr[-2000:])
            after_kill = scenario.consistent(context)
            rerun = self.invoke(context, (scenario.rerun_args or (lambda c: c["args"]))(context), log, None)
            assert rerun.returncode == 0, (at, calls[at], rerun.stderr[-2000:])
            trials.append(
                Trial(scenario.operation, scenario.backend, at, calls[at], after_kill, scenario.converged(context))
            )
        return trials


# --- what each operation must leave -------------------------------------------------------------------


def _runs_location(context: dict[str, Any], name: str) -> Any:
    return work_location(f"{context['work']}/runs/{name}", context["harness"].seaweed.settings())


def newest_run_is_complete(context: dict[str, Any], name: str) -> str:
    """Every run that looks complete parses; the newest-run pointer names one of them."""
    location = _runs_location(context, name)
    if isinstance(location, Path):
        runs = local_completed_runs(location)
        for run in runs:
            load_run_report(run / "report.json", "run")
        link = location / "report.json"
        if link.exists():
            assert link.resolve().parent in {run.resolve() for run in runs}, "the link names an incomplete run"
        return f"{len(runs)} complete runs, link {'on ' + link.resolve().parent.name if link.exists() else 'absent'}"
    runs = completed_runs(location)
    for run in runs:
        raw = location.store.read_bytes(f"{location.key}/{run}/report.json")
        load_run_report_bytes(raw, run)
    latest = read_latest(location)
    if latest is not None:
        key, digest = latest
        assert key.split("/")[-2] in runs, "latest.json names an incomplete run"
        from invarlock_provider.fileio import sha256_bytes

        assert sha256_bytes(location.store.read_bytes(key)) == digest, "latest.json promises other bytes"
    return f"{len(runs)} complete runs, latest {'on ' + latest[0].split('/')[-2] if latest else 'absent'}"


def load_run_report_bytes(raw: bytes, run: str) -> None:
    from invarlock_provider.reporting.run_report import parse_run_report

    parse_run_report(raw, Path(run), "run")


def runs_converged(context: dict[str, Any], name: str) -> str:
    state = newest_run_is_complete(context, name)
    assert "latest absent" not in state and "link absent" not in state, state
    return state


def reports_folder_state(context: dict[str, Any]) -> str:
    """A reports folder counts once its evaluation is there: then it verifies."""
    target = f"{context['work']}/reports/q8"
    scratch = context["cwd"] / f"check-{len(list(context['cwd'].glob('check-*')))}"
    try:
        folder, _ = stage_reports(target, scratch, context["harness"].seaweed.settings())
    except Exception as exc:  # the folder does not count yet: no evaluation
        assert "no evaluation.report.json" in str(exc), str(exc)
        return "no evaluation (does not count)"
    if not (folder / "evaluation.report.json").is_file():
        return "no evaluation (does not count)"
    result = verify_path(folder)
    assert result.ok, [c for c in result.checks if not c.ok]
    return "evaluation verifies"


def reports_converged(context: dict[str, Any]) -> str:
    state = reports_folder_state(context)
    assert state == "evaluation verifies", state
    return state


def evidence_state(context: dict[str, Any]) -> str:
    """Every bundle that lists as complete verifies with the trusted key; every record of an archived
    run names a bundle that verifies and holds it."""
    harness = context["harness"]
    store = open_store(parse_store_uri(context["evidence"]), harness.seaweed.settings())
    states = []
    for bundle in list_bundles(store, store.uri.prefix):
        if bundle.complete:
            verification = verify_remote_bundle(store, bundle.key, bundle.uri, harness.trust)
            assert verification.ok, (bundle.uri, verification.failed())
        states.append(bundle.state)
    records = archive_records(store)
    archived = ArchivedRuns.from_sources(store, None, harness.trust)
    for digest in records:
        assert archived.check(digest) is None, archived.check(digest)
    summary = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))) or "no bundle"
    return f"{summary}; {len(records)} runs recorded"


def evidence_converged(context: dict[str, Any], complete: int) -> str:
    state = evidence_state(context)
    assert state.startswith(f"{complete} complete") and "incomplete" not in state and "damaged" not in state, state
    return state


# --- scenarios ----------------------------------------------------------------------------------------------


def make_scenarios(real_runs: dict[str, Path], reports: Path, keys: Path) -> list[Scenario]:
    signing = ["--signing-key", str(keys / "private.pem")]
    trusted = ["--trusted-key", str(keys / "public.pem")]

    def work_root(context: dict[str, Any], backend: str) -> str:
        return f"s3://{context['bucket']}/work" if backend == "s3" else str(context["cwd"] / "work")

    def evidence_root(context: dict[str, Any], backend: str) -> str:
        return f"s3://{context['bucket']}/evidence" if backend == "s3" else (context["cwd"] / "evidence").as_uri()

    def with_runs(context: dict[str, Any], backend: str) -> None:
        for name, run in (("base", "baseline"), ("q8", "quant8")):
            location = _runs_location(context, name)
            if isinstance(location, Path):
                shutil.copytree(real_runs[run].parent, location / real_runs[run].parent.name)
            else:
                upload_run(location, real_runs[run].parent)

    def with_reports(context: dict[str, Any], backend: str) -> None:
        with_runs(context, backend)
        from click.testing import CliRunner

        from invarlock_provider.cli import main

        args = ["report", "--run", f"{context['work']}/runs/q8", "--baseline", f"{context['work']}/runs/base",
                "--format", "html", "--output", f"{context['work']}/reports/q8", "--copy-baseline",
                "--endpoint-url", context["harness"].seaweed.endpoint, "--path-style"]  # fmt: skip
        env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1"}
        result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.stderr

    def with_two_bundles(context: dict[str, Any], backend: str) -> None:
        store = open_store(parse_store_uri(context["evidence"]), context["harness"].seaweed.settings())
        folder = context["cwd"] / "reports" / "quant8_balanced"
        shutil.copytree(reports, context["cwd"] / "reports")
        key = load_signing_key(keys / "private.pem")
        for days in (20, 2):
            date_evaluation(folder, datetime.now(UTC) - timedelta(days=days))
            archive_report(store, folder, signing_key=key)

    def with_archived_old_run(context: dict[str, Any], backend: str) -> None:
        """runs/q8 holds an old run (archived in a verified bundle) and a newer one (not archived)."""
        location = _runs_location(context, "q8")
        old = context["cwd"] / "old" / "20200101_000000"
        shutil.copytree(real_runs["quant8"].parent, old)
        newer = context["cwd"] / "newer" / "20200102_000000"
        shutil.copytree(real_runs["baseline"].parent, newer)
        for run in (old, newer):
            if isinstance(location, Path):
                shutil.copytree(run, location / run.name)
                publish_latest(location, location / run.name)
            else:
                upload_run(location, run)
        store = open_store(parse_store_uri(context["evidence"]), context["harness"].seaweed.settings())
        archive_report(store, reports / "quant8_balanced", signing_key=load_signing_key(keys / "private.pem"))

    scenarios = []
    for backend in ("local", "s3"):

        def base(backend: str = backend) -> Callable[[dict[str, Any]], dict[str, Any]]:
            def setup(context: dict[str, Any]) -> dict[str, Any]:
                return {"work": work_root(context, backend), "evidence": evidence_root(context, backend)}

            return setup

        def then(first: Callable, more: Callable, args: Callable, backend: str = backend) -> Callable:
            def setup(context: dict[str, Any]) -> dict[str, Any]:
                context.update(first(context))
                more(context, backend)
                return {"args": args(context)}

            return setup

        scenarios += [
            Scenario(
                "run upload",
                backend,
                then(
                    base(), lambda c, b: None, lambda c: ["run", "--profile", "dev", "--out", f"{c['work']}/runs/base"]
                ),
                lambda c: newest_run_is_complete(c, "base"),
                lambda c: runs_converged(c, "base"),
            ),
            Scenario(
                "report upload",
                backend,
                then(
                    base(),
                    with_runs,
                    lambda c: [
                        "report",
                        "--run",
                        f"{c['work']}/runs/q8",
                        "--baseline",
                        f"{c['work']}/runs/base",
                        "--format",
                        "html",
                        "--output",
                        f"{c['work']}/reports/q8",
                        "--copy-baseline",
                    ],
                ),
                reports_folder_state,
                reports_converged,
            ),
            Scenario(
                "archive (signed)",
                backend,
                then(
                    base(),
                    with_reports,
                    lambda c: ["archive", f"{c['work']}/reports/q8", "--to", c["evidence"], *signing],
                ),
                evidence_state,
                lambda c: evidence_converged(c, 1),
            ),
            Scenario(
                "prune bundles",
                backend,
                then(base(), with_two_bundles, lambda c: ["prune", c["evidence"], "--keep-last", "1", *trusted]),
                evidence_state,
                lambda c: evidence_converged(c, 1),
                rerun_args=lambda c: ["prune", c["evidence"], "--keep-last", "1", "--grace", "0s", *trusted],
            ),
            Scenario(
                "prune runs",
                backend,
                then(
                    base(),
                    with_archived_old_run,
                    lambda c: ["prune", f"{c['work']}/runs", "--evidence", c["evidence"], "--keep-last", "1", *trusted],
                ),
                lambda c: newest_run_is_complete(c, "q8"),
                lambda c: runs_converged(c, "q8"),
            ),
        ]
    return scenarios


def table(trials: list[Trial]) -> str:
    lines = [
        "| operation | store | kill before call | call | after the kill | after a rerun |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {t.operation} | {t.backend} | {t.at} | `{t.call[:70]}` | {t.after_kill} | {t.after_rerun} |" for t in trials
    ]
    return "\n".join(lines)


@pytest.mark.slow
def test_every_kill_point_leaves_nothing_half_complete_and_a_rerun_converges(
    seaweed, real_runs: dict[str, Path], reports: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    generate_key_pair(tmp_path / "keys")
    harness = Harness(seaweed, tmp_path / "trials", tmp_path / "keys")
    every_call = os.environ.get("INVARLOCK_CRASH_EVERY_CALL") == "1"
    only = os.environ.get("INVARLOCK_CRASH_ONLY")  # e.g. "archive", to rerun one operation's trials
    trials = []
    for scenario in make_scenarios(real_runs, reports, tmp_path / "keys"):
        if only is None or only in scenario.operation:
            trials += harness.run(scenario, every_call)
    text = table(trials)
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(f"{len(trials)} trials, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n{text}\n")
    with capsys.disabled():
        print(f"\n{text}\n{len(trials)} trials: every kill left nothing half complete, every rerun converged")
    operations = {(t.operation, t.backend) for t in trials}
    assert (only is not None or len(operations) == 10) and all(t.after_rerun for t in trials)
    assert json.loads(json.dumps([t.__dict__ for t in trials]))  # the table is plain data
