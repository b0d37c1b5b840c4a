"""A run told to stop, a run whose parent dies, a retry that resumes, and tries racing for one run
folder: real `invarlock run` processes on the embedded model, signalled at a known point (a
checkpoint event in the run's staged timeline), never at a guessed time."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from invarlock_provider.evaluation.checkpoint import encode
from invarlock_provider.layout import AlreadyCommittedError
from invarlock_provider.run_sites import TRIES_DIR, LocalTrySite

RUN_DIR = "20261205_020000_07"
ARGS = ["--profile", "release", "--threads", "1", "--json", "--no-progress"]


def cli_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "invarlock_provider.cli", "run", *ARGS, "--out", str(out), *extra]


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "INVARLOCK_CHECKPOINT_INTERVAL_S": "0.2", **extra}


def staged_events(out: Path) -> list[dict]:
    events = []
    for path in sorted((out / TRIES_DIR).glob(f"{RUN_DIR}/*/run/events.jsonl")):
        events += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return events


def wait_for_checkpoint(out: Path, process: subprocess.Popen, windows: int, timeout: float = 120) -> int:
    """Windows in the first checkpoint at or past ``windows`` (the run is then between batches)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        saved = [e["data"]["windows"] for e in staged_events(out) if e["event"] == "checkpoint_saved"]
        if saved and saved[-1] >= windows:
            return saved[-1]
        time.sleep(0.02)
    raise AssertionError("no checkpoint reached")


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")  # a zombie has released everything; only its exit status is left


def per_window(report: dict) -> dict[str, list[float]]:
    return {split: report["evaluation_windows"][split]["logloss"] for split in ("preview", "final")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted") / "base"
    result = subprocess.run(cli_command(out), capture_output=True, text=True, env=environment(), check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(Path(json.loads(result.stdout)["report"]).read_text())


@pytest.mark.slow
def test_sigterm_at_60_percent_then_a_retry_resumes_to_the_same_numbers(tmp_path: Path, uninterrupted: dict) -> None:
    out = tmp_path / "base"
    command = cli_command(out, "--run-dir-name", RUN_DIR)
    killed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
    at = wait_for_checkpoint(out, killed, 480)  # 60% of 800 windows
    killed.send_signal(signal.SIGTERM)
    _, stderr = killed.communicate(timeout=30)
    assert killed.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "error: killed by SIGTERM; no report written"
    events = staged_events(out)
    assert events[-1]["phase"] == "error" and events[-1]["event"] == "killed", events[-1]
    assert len({e["run_id"] for e in events}) == 1
    assert not list(out.rglob("report.json"))

    retry = subprocess.run(command, capture_output=True, text=True, env=environment(), check=False)
    assert retry.returncode == 0, retry.stderr
    assert f"invarlock run: [score] resuming at {at}/800 windows from the checkpoint" in retry.stderr
    report = json.loads((out / RUN_DIR / "report.json").read_text())
    assert per_window(report) == per_window(uninterrupted)
    assert report["metrics"]["primary_metric"] == uninterrupted["metrics"]["primary_metric"]
    resumed = report["meta"]["resumed_from"]
    assert resumed["run_id"] == events[0]["run_id"] and sum(resumed["windows_reused"].values()) == at
    committed = [json.loads(line) for line in (out / RUN_DIR / "events.jsonl").read_text().splitlines()]
    assert {e["run_id"] for e in committed} == {report["run_id"]} != {events[0]["run_id"]}
    assert not (out / TRIES_DIR).exists()  # the killed try's staging went with the commit
    print(f"killed at {at}/800; retry scored {800 - at} windows in {report['meta']['timings']['score_s']} s, "
          f"an uninterrupted run 800 in {uninterrupted['meta']['timings']['score_s']} s")  # fmt: skip


@pytest.mark.slow
def test_a_run_dies_within_seconds_of_its_parent(tmp_path: Path) -> None:
    """The parent is SIGKILLed (it runs no handler); the child hears of it through PR_SET_PDEATHSIG."""
    out = tmp_path / "base"
    parent_code = (
        "import os, subprocess, sys, time\n"
        f"command = {cli_command(out, '--run-dir-name', RUN_DIR)!r}\n"
        "env = {**os.environ, 'INVARLOCK_PARENT_PID': str(os.getpid())}\n"
        "child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code],
        stdout=subprocess.PIPE,
        text=True,
        env=environment(),
        start_new_session=True,
    )
    child = int(parent.stdout.readline())
    wait_for_checkpoint(out, parent, 100)
    parent.kill()
    parent.wait()
    killed_at = time.monotonic()
    while not gone(child) and time.monotonic() - killed_at < 5:
        time.sleep(0.05)
    assert gone(child), "the run outlived its parent by 5 s"
    events = staged_events(out)
    assert events[-1]["event"] == "killed" and not list(out.rglob("report.json"))


@pytest.mark.slow
def test_checkpoints_of_other_inputs_are_discarded_with_the_reason(tmp_path: Path, uninterrupted: dict) -> None:
    out = tmp_path / "base"
    tries = out / TRIES_DIR / RUN_DIR
    key = {"weights_digest": "0" * 64, "tokenizer_hash": "x"}
    (tries / "base-other-model").mkdir(parents=True)
    (tries / "base-other-model" / "checkpoint.json").write_bytes(encode("r", key, 16, {"preview": [1.0] * 400}))
    (tries / "base-truncated").mkdir()
    (tries / "base-truncated" / "checkpoint.json").write_bytes(encode("r", key, 16, {"preview": [1.0]})[:50])
    command = cli_command(out, "--run-dir-name", RUN_DIR)
    result = subprocess.run(command, capture_output=True, text=True, env=environment(), check=False)
    assert result.returncode == 0, result.stderr
    discarded = [line for line in result.stderr.splitlines() if "checkpoint_discarded" in line]
    assert len(discarded) == 2, result.stderr
    assert any(
        "base-other-model" in line and "weights_digest: checkpoint 000000000000..." in line for line in discarded
    )
    assert any("base-truncated" in line and "not valid JSON" in line for line in discarded), discarded
    report = json.loads((out / RUN_DIR / "report.json").read_text())
    assert report["meta"]["resumed_from"] is None and per_window(report) == per_window(uninterrupted)


def staged_run(site: LocalTrySite, text: str) -> Path:
    from datetime import UTC, datetime

    run_dir, run_id = site.prepare(datetime.now(UTC))
    (run_dir / "events.jsonl").write_text(json.dumps({"run_id": run_id, "event": text}) + "\n")
    (run_dir / "report.json").write_text(json.dumps({"run_id": run_id}))
    return run_dir


def test_of_two_live_tries_the_second_to_commit_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    first, second = LocalTrySite(tmp_path, RUN_DIR), LocalTrySite(tmp_path, RUN_DIR)
    first_dir, second_dir = staged_run(first, "first"), staged_run(second, "second")
    first.commit(first_dir)
    assert second_dir.is_dir(), "a live try's staging is its own until it ends"
    with pytest.raises(AlreadyCommittedError, match="another try of this run committed it first"):
        second.commit(second_dir)
    final = tmp_path / RUN_DIR
    assert json.loads((final / "events.jsonl").read_text())["event"] == "first"
    assert json.loads((final / "report.json").read_text())["run_id"] == first.run_id
    assert (tmp_path / "report.json").resolve() == (final / "report.json").resolve()
    assert not (tmp_path / TRIES_DIR).exists()


def test_a_dead_tries_staging_is_removed_by_the_commit(tmp_path: Path) -> None:
    dead = LocalTrySite(tmp_path, RUN_DIR)
    staged_run(dead, "dead")
    owner = tmp_path / TRIES_DIR / RUN_DIR / dead.run_id / ".owner.json"
    record = json.loads(owner.read_text())
    owner.write_text(json.dumps({**record, "start_ticks": record["start_ticks"] + 1}))  # a PID reused since
    live = LocalTrySite(tmp_path, RUN_DIR)
    live.commit(staged_run(live, "live"))
    assert not (tmp_path / TRIES_DIR).exists()


@pytest.mark.slow
def test_a_full_run_folder_is_one_line_and_no_report(tmp_path: Path) -> None:
    """The run folder on a 12 KiB tmpfs of its own (a private mount namespace): the checkpoint that
    does not fit is a warning, the report that does not fit is one `error:` line and exit 1."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the full folder is a tmpfs mounted in a private mount namespace")
    small = tmp_path / "small"
    small.mkdir()
    run = " ".join(cli_command(small / "base", "--run-dir-name", RUN_DIR)).replace("release", "dev")
    script = f"mount -t tmpfs -o size=12k tmpfs {small} && exec {run}"
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert re.fullmatch(r"error: .*/base/\.tries/.*: No space left on device; no report written", lines[-1]), lines
    assert any(re.search(r"checkpoint_failed: reason .*checkpoint\.json: No space left on device", x) for x in lines)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("INVARLOCK_CHECKPOINT_INTERVAL_S", "soon", "expected seconds, got 'soon'"),
        ("INVARLOCK_PROGRESS_INTERVAL_S", "0", "expected seconds > 0, got '0'"),
        ("INVARLOCK_KILL_GRACE_S", "-3", "expected seconds > 0, got '-3'"),
    ],
)
def test_a_bad_interval_setting_is_one_line_before_anything_is_written(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    command = cli_command(tmp_path / "base", "--run-dir-name", RUN_DIR)
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, variable: value}, check=False)
    assert result.returncode == 2 and result.stderr == f"error: {variable}: {expected}\n"
    assert not (tmp_path / "base").exists()
