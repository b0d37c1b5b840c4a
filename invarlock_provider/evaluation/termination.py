"""How a run ends when it is told to stop, or when whoever started it is gone.

An orchestrator's task runner can die without a word (the OOM killer, a lost node, ``kill -9``);
its ``invarlock run`` child must not keep a GPU busy under PID 1 and then write into a run folder a
retry already owns. So a child started by an operator asks Linux to send it SIGTERM when its parent
dies (``PR_SET_PDEATHSIG``), and every run treats SIGTERM the same way: scoring stops at the next
batch, the run's timeline ends with an ``error`` event ``killed``, no report is written, and the
process exits 143. Python runs a signal handler only between bytecodes, and a GPU batch can be a
long C call, so the signal also wakes a watcher thread (``signal.set_wakeup_fd``): if the run has
not ended ``grace_s`` later, the watcher writes the ``killed`` event itself and exits the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

from invarlock_provider.env_settings import positive_from_env

PARENT_PID_ENV = "INVARLOCK_PARENT_PID"
GRACE_ENV = "INVARLOCK_KILL_GRACE_S"
DEFAULT_GRACE_S = 3.0
KILLED_EXIT = 128 + signal.SIGTERM
_PR_SET_PDEATHSIG = 1


class RunKilledError(BaseException):
    """SIGTERM arrived during a run. A BaseException, like KeyboardInterrupt: no ``except Exception``
    on the way up may swallow it and carry on scoring."""

    exit_code = KILLED_EXIT


def die_with_parent() -> None:
    """SIGTERM when the parent that set ``INVARLOCK_PARENT_PID`` dies; exit now if it already has.

    The variable is the parent's PID as the parent saw it, so a child whose parent died between
    spawning it and this call (it was re-parented before it could ask) finds out and exits.
    """
    expected = os.environ.pop(PARENT_PID_ENV, "")
    if not expected.isdigit() or not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(expected):
        print(f"error: the process that started this run ({expected}) is gone; not starting", file=sys.stderr)
        sys.exit(KILLED_EXIT)


def grace_seconds() -> float:
    return positive_from_env(GRACE_ENV, DEFAULT_GRACE_S)


class TerminationWatch:
    """While active: SIGTERM raises :class:`RunKilledError` in the main thread at the next bytecode
    (only while ``interruptible``; the commit of a finished run is allowed to complete), and a
    watcher thread ends the process ``grace_s`` after the signal if the run has not ended by then,
    calling ``on_deadline`` first (the run's ``killed`` event). Must be entered in the main thread."""

    def __init__(self, on_deadline: Callable[[], None], grace_s: float | None = None) -> None:
        self.on_deadline = on_deadline
        self.grace_s = grace_seconds() if grace_s is None else grace_s
        self.interruptible = True
        self.requested = False
        self._ended = threading.Event()
        self._pipe: tuple[int, int] | None = None
        self._previous_fd = -1
        self._previous_handler: object = None
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> TerminationWatch:
        if threading.current_thread() is not threading.main_thread():
            return self  # an in-process caller on a worker thread: signals are its host's business
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        self._pipe = (read_end, write_end)
        self._previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self._previous_handler = signal.signal(signal.SIGTERM, self._on_signal)
        self._watcher = threading.Thread(target=self._watch, name="invarlock-termination", daemon=True)
        self._watcher.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._ended.set()
        if self._pipe is None:
            return
        signal.signal(signal.SIGTERM, self._previous_handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._previous_fd)
        read_end, write_end = self._pipe
        os.close(write_end)  # the watcher's read returns end-of-file and it exits
        if self._watcher is not None:
            self._watcher.join(timeout=1)
        os.close(read_end)
        self._pipe = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            return
        self.requested = True
        if self.interruptible:
            raise RunKilledError(f"killed by {signal.Signals(signum).name}")

    def check(self) -> None:
        """Between batches: a signal that arrived while not interruptible stops the run here."""
        if self.requested and self.interruptible:
            raise RunKilledError("killed by SIGTERM")

    def _watch(self) -> None:
        assert self._pipe is not None
        read_end = self._pipe[0]
        while True:
            try:
                data = os.read(read_end, 64)
            except OSError:
                return
            if not data:
                return
            if signal.SIGTERM in data:
                break
        if self._ended.wait(self.grace_s):
            return
        with contextlib.suppress(BaseException):
            self.on_deadline()
        os._exit(KILLED_EXIT)
