"""One CLI command as the task's child process: its lines in the task log as they happen, and no
way for it to outlive the task.

- The child's stderr (the run's progress lines) is logged line by line while it runs; its stdout
  is the command's JSON summary. Its stdin is /dev/null, never the supervisor's socket.
- The child asks Linux to SIGTERM it when this process dies (``INVARLOCK_PARENT_PID``; see
  ``evaluation/termination.py``): a runner killed with SIGKILL leaves no child behind.
- It runs in a process group of its own, so that ``on_kill`` (Airflow's SIGTERM to the task) and
  any exception here (the supervisor's SIGINT included) stop it and whatever it started: SIGTERM to
  the group, then SIGKILL after ``grace_s``. The run itself ends within a few seconds of SIGTERM,
  with a ``killed`` event and no report.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from invarlock_provider.evaluation.termination import PARENT_PID_ENV

KILL_GRACE_S = 15.0
MAX_LOGGED_LINES = 5000
TAIL_LINES = 20


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    tail: list[str]


class CliProcess:
    def __init__(self, args: list[str], env: dict[str, str], log: Any, grace_s: float = KILL_GRACE_S) -> None:
        self.command = [sys.executable, "-m", "invarlock_provider.cli", *args]
        self.env = {**env, PARENT_PID_ENV: str(os.getpid())}
        self.log = log
        self.grace_s = grace_s
        self.process: subprocess.Popen[str] | None = None

    def run(self) -> Finished:
        self.log.info("Running %s", " ".join(self.command))
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            process_group=0,
            text=True,
            errors="replace",
        )
        stdout: list[str] = []
        reader = threading.Thread(target=lambda: stdout.append(self.process.stdout.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        logged = 0
        try:
            for raw in self.process.stderr:  # type: ignore[union-attr]
                line = raw.rstrip("\n")
                tail.append(line)
                logged += 1
                if logged <= MAX_LOGGED_LINES:
                    self.log.info("%s", line)
            returncode = self.process.wait()
        finally:
            self.terminate()  # a no-op once it has exited; otherwise this task is being stopped
        reader.join(timeout=5)
        if logged > MAX_LOGGED_LINES:
            self.log.info("(%d more lines not shown; the last %d follow)", logged - MAX_LOGGED_LINES, len(tail))
            for line in tail:
                self.log.info("%s", line)
        return Finished(returncode, "".join(stdout), list(tail))

    def terminate(self) -> None:
        """SIGTERM the child's process group, SIGKILL what is left after the grace period."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        self.log.warning(
            "Stopping the evaluation (process group %d): SIGTERM, SIGKILL after %.0f s", process.pid, self.grace_s
        )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the child's own children too, if it left any
        process.wait()
