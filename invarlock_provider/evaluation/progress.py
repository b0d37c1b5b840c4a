"""The run's own progress lines on stderr, for a terminal without a TTY and for an Airflow task log.

A long evaluation must show that it is alive and how far it is, but a task log is read by people
and kept for years: one line per phase, then scoring lines at every 5% of the windows or after
``interval_s`` without one, whichever comes first, never closer than ``min_gap_s`` apart. A
10,000-window run writes about twenty scoring lines plus one per interval, not 10,000.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from invarlock_provider.env_settings import positive_from_env

PREFIX = "invarlock run:"
STEPS = 20  # a line at every 5% of the windows
DEFAULT_INTERVAL_S = 30.0
MIN_GAP_S = 2.0


def progress_interval() -> float:
    """Seconds between scoring lines when no 5% step is crossed (``INVARLOCK_PROGRESS_INTERVAL_S``)."""
    return positive_from_env("INVARLOCK_PROGRESS_INTERVAL_S", DEFAULT_INTERVAL_S)


def _short(value: str | int | float) -> str:
    """A value as a person reads it in a log line: digests abbreviated, floats rounded."""
    if isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return f"{value[:12]}..." if len(value) == 64 and not value.strip("0123456789abcdef") else value


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressLines:
    """Phase lines and bounded scoring lines; ``clock`` is injectable so the bound can be tested."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        scoring_lines: bool = True,
        stream: TextIO | None = None,
        interval_s: float | None = None,
        min_gap_s: float = MIN_GAP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self.scoring_lines = scoring_lines  # off where a terminal shows a progress bar instead
        self.stream = stream
        self.interval_s = progress_interval() if interval_s is None else interval_s
        self.min_gap_s = min_gap_s
        self.clock = clock
        self.total = 0
        self.done = 0
        self.reused = 0
        self.tokens_per_window = 0
        self.preview_ppl: float | None = None
        self.spent_s = 0.0  # time spent writing lines while scoring, recorded beside scoring time
        self._pending_start = ""
        self._started = 0.0
        self._last_line = 0.0
        self._last_step = -1

    def line(self, text: str) -> None:
        if self.enabled:
            stream = self.stream or sys.stderr
            stream.write(f"{PREFIX} {text}\n")
            stream.flush()

    def phase(self, phase: str, event: str, data: dict[str, Any]) -> None:
        """One line per event of the run's timeline (an EventLog listener).

        The start line waits for the next event, so input refused before the model loads is one
        ``error:`` line, as every command reports bad input; ``error`` events are not echoed, since
        the command's own ``error:`` line says the same."""
        if phase == "error":
            return
        details = ", ".join(
            f"{key} {_short(value)}"
            for key, value in data.items()
            if isinstance(value, (str, int, float)) and key != "config"
        )
        text = f"[{phase}] {event}" + (f": {details}" if details else "")
        if phase == "start":
            self._pending_start = text
            return
        if self._pending_start:
            self.line(self._pending_start)
            self._pending_start = ""
        self.line(text)

    def start_scoring(self, total: int, tokens_per_window: int, reused: int = 0) -> None:
        self.total, self.done, self.reused = total, reused, reused
        self.tokens_per_window = tokens_per_window
        self._started = self._last_line = self.clock()
        self._last_step = reused * STEPS // total if total else STEPS
        if reused:
            self.line(f"[score] resuming at {reused}/{total} windows from the checkpoint")

    def advance(self, windows: int) -> None:
        begin = time.perf_counter()
        self.done += windows
        now = self.clock()
        step = self.done * STEPS // self.total if self.total else STEPS
        finished = self.done >= self.total
        since = now - self._last_line
        first = self.done - self.reused == windows  # the first batch: the run is alive and scoring
        if not self.scoring_lines:
            pass
        elif finished or first or (step > self._last_step and since >= self.min_gap_s) or since >= self.interval_s:
            self._last_step = step
            self._last_line = now
            self.line(self._scoring_line(now))
        self.spent_s += time.perf_counter() - begin

    def _scoring_line(self, now: float) -> str:
        elapsed = now - self._started
        scored = self.done - self.reused
        parts = [f"[score] {self.done}/{self.total} windows ({100 * self.done / self.total:.0f}%)"]
        if elapsed > 0 and scored > 0:
            rate = scored / elapsed
            parts.append(f"{rate * self.tokens_per_window:,.0f} tokens/s")
            parts.append(f"ETA {_clock((self.total - self.done) / rate)}")
        if self.preview_ppl is not None:
            parts.append(f"preview ppl {self.preview_ppl:.4g}")
        return ", ".join(parts)
