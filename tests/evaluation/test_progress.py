"""The run's progress lines: what they say, and that their number stays bounded however many windows."""

from __future__ import annotations

import io
import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_provider.evaluation.progress import ProgressLines


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def score(total: int, per_window_s: float, batch: int = 1, interval_s: float = 30.0) -> list[str]:
    stream, clock = io.StringIO(), Clock()
    lines = ProgressLines(stream=stream, interval_s=interval_s, clock=clock)
    lines.start_scoring(total, tokens_per_window=127)
    done = 0
    while done < total:
        step = min(batch, total - done)
        clock.now += per_window_s * step
        lines.advance(step)
        done += step
        if done == total // 2:
            lines.preview_ppl = 55.57
    return stream.getvalue().splitlines()


def test_ten_thousand_windows_write_a_few_dozen_lines_not_ten_thousand() -> None:
    written = score(10_000, per_window_s=0.05)  # 500 s of scoring
    assert 20 <= len(written) <= 20 + 500 / 30 + 2, len(written)
    assert written[0].startswith("invarlock run: [score] 1/10000 windows (0%)")
    assert written[-1].startswith("invarlock run: [score] 10000/10000 windows (100%)")
    middle = next(line for line in written if "5000/10000" in line or "(50%)" in line)
    assert re.search(r"\d[\d,]* tokens/s, ETA 0:0\d:\d\d", middle), middle
    assert "preview ppl 55.57" in written[-1] and "preview ppl" not in written[1]


def test_a_slow_run_still_says_it_is_alive_every_interval() -> None:
    written = score(100, per_window_s=20.0, interval_s=30.0)  # 2000 s, a 5% step every 100 s
    done = [int(m.group(1)) for line in written if (m := re.search(r"\] (\d+)/100", line))]
    # A line at the first window past 30 s without one (every second 20-s window), and at 5% steps.
    assert done[0] == 1 and done[-1] == 100 and all(0 < b - a <= 2 for a, b in itertools.pairwise(done)), done


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(1, 5000),
    batch=st.integers(1, 64),
    per_window_s=st.floats(0.0001, 5.0),
)
def test_lines_are_bounded_by_steps_plus_elapsed_intervals(total: int, batch: int, per_window_s: float) -> None:
    written = score(total, per_window_s, batch)
    elapsed = total * per_window_s
    assert len(written) <= 20 + elapsed / 30 + 2
    assert written[-1].startswith(f"invarlock run: [score] {total}/{total} windows (100%)")


def test_a_progress_bar_terminal_gets_phase_lines_only() -> None:
    stream = io.StringIO()
    lines = ProgressLines(stream=stream, scoring_lines=False)
    lines.phase("load", "model_loaded", {"model": "m", "seconds": 3.14159, "config": {"x": 1}, "digest": "a" * 64})
    lines.start_scoring(10, 127)
    lines.advance(10)
    assert stream.getvalue() == "invarlock run: [load] model_loaded: model m, seconds 3.142, digest aaaaaaaaaaaa...\n"


def test_a_resumed_run_says_where_it_starts() -> None:
    stream = io.StringIO()
    lines = ProgressLines(stream=stream)
    lines.start_scoring(800, 127, reused=304)
    lines.advance(16)
    first, second = stream.getvalue().splitlines()
    assert first == "invarlock run: [score] resuming at 304/800 windows from the checkpoint"
    assert second.startswith("invarlock run: [score] 320/800 windows (40%)")
