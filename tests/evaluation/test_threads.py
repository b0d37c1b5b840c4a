"""Thread sizing: the cores a process may use, divided among the evaluations running beside it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.threads import (
    CONCURRENT_ENV,
    RUNTIME_DIR_ENV,
    THREADS_ENV,
    EvaluationRegistry,
    ThreadSizer,
    UsableCores,
    cgroup_cpu_quota,
    thread_request,
    threads_for,
)


@pytest.mark.parametrize(
    ("cores", "evaluations", "threads"),
    [(2, 1, 2), (2, 2, 1), (2, 4, 1), (16, 1, 16), (16, 3, 5), (16, 4, 4), (64, 5, 12), (1, 8, 1)],
)
def test_the_default_for_a_core_count_and_concurrency(cores: int, evaluations: int, threads: int) -> None:
    assert threads_for(cores, evaluations) == threads


@given(st.integers(1, 512), st.integers(1, 64))
def test_evaluations_never_ask_for_more_threads_than_cores_unless_one_each(cores: int, evaluations: int) -> None:
    threads = threads_for(cores, evaluations)
    assert threads >= 1
    assert threads * evaluations <= cores or threads == 1


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "400000 100000\n"}, 4.0),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_the_cgroup_quota_is_read_from_v2_and_v1_files(
    tmp_path: Path, files: dict[str, str], quota: float | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path) == quota


def test_options_and_environment_are_checked_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert thread_request(None, None).threads is None
    assert thread_request("auto", "3").concurrent == 3
    assert thread_request("4", None).threads == 4
    monkeypatch.setenv(THREADS_ENV, "2")
    monkeypatch.setenv(CONCURRENT_ENV, "5")
    assert (thread_request(None, None).threads, thread_request(None, None).concurrent) == (2, 5)
    assert thread_request("auto", "1").threads is None  # the option wins over the environment
    for threads, concurrent, named in (
        ("0", None, "--threads"),
        ("x", None, "--threads"),
        (None, "-1", "--concurrent"),
    ):
        with pytest.raises(BadInputError, match=named):
            thread_request(threads, concurrent)
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(BadInputError, match=THREADS_ENV):
        thread_request(None, None)


HOLDER = """
import sys, time
from pathlib import Path
from invarlock_provider.evaluation.threads import EvaluationRegistry
registry = EvaluationRegistry(Path(sys.argv[1]))
registry.register()
print("registered", flush=True)
time.sleep(60)
"""


def _hold(folder: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "registered"
    return process


def test_the_live_count_follows_other_evaluations_and_forgets_killed_ones(tmp_path: Path) -> None:
    folder = tmp_path / "evaluations"
    mine = EvaluationRegistry(folder)
    mine.register()
    assert mine.live() == 1
    others = [_hold(folder), _hold(folder)]
    try:
        assert mine.live() == 3
        others[0].send_signal(signal.SIGKILL)  # no clean-up: its lock goes with the process
        others[0].wait()
        assert mine.live() == 2
        assert len(list(folder.glob("*.lock"))) == 2  # the dead one's file is gone too
    finally:
        for process in others:
            process.kill()
            process.wait()
    assert mine.live() == 1
    mine.unregister()
    assert not list(folder.glob("*.lock"))


def test_the_sizer_gives_cores_back_when_another_evaluation_starts_and_takes_them_again(tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    folder = tmp_path / "evaluations"
    sizer = ThreadSizer(registry=EvaluationRegistry(folder), cores=UsableCores(count=4, affinity=4, quota=None))
    try:
        with sizer:
            assert torch.get_num_threads() == 4
            other = _hold(folder)
            try:
                assert sizer.resize() == 2 and torch.get_num_threads() == 2
            finally:
                other.kill()
                other.wait()
            assert sizer.resize() == 4
        record = sizer.as_record()
        assert record["intra_op"] == [4, 2, 4] and record["most_evaluations_seen"] == 2
        assert record["requested"] == "auto" and record["usable_cores"]["count"] == 4
        with ThreadSizer(concurrent=3, registry=EvaluationRegistry(folder), cores=UsableCores(6, 6, None)) as pinned:
            assert pinned.resize() == 2
        with ThreadSizer(requested=1, registry=EvaluationRegistry(folder)) as fixed:
            assert torch.get_num_threads() == 1 and not list(folder.glob("*.lock"))
        assert fixed.as_record()["intra_op"] == [1]
    finally:
        torch.set_num_threads(before)


def test_a_run_records_its_threads(tmp_path: Path) -> None:
    """Through the CLI in a fresh process, as an operator's task runs it."""
    env = {**os.environ, RUNTIME_DIR_ENV: str(tmp_path / "evaluations")}
    result = subprocess.run(
        [sys.executable, "-m", "invarlock_provider.cli", "run", "--profile", "dev", "--json", "--no-progress",
         "--concurrent", "2", "--out", str(tmp_path / "runs" / "baseline")],
        capture_output=True, text=True, env=env, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(Path(json.loads(result.stdout.splitlines()[-1])["report"]).read_text())
    threads = report["meta"]["host"]["threads"]
    cores = threads["usable_cores"]["count"]
    assert threads["requested"] == "auto" and threads["concurrent"] == 2
    assert threads["intra_op"] == [max(1, cores // 2)] and threads["inter_op"] == 1
    assert report["meta"]["host"]["cpu_threads"] == max(1, cores // 2)
    assert not list((tmp_path / "evaluations").glob("*.lock")), "the run unregisters when it ends"
