"""``batch_size: auto``: the largest batch that fits, chosen on the machine that scores.

Windows all have the same length and no padding, so a window's NLL never depends on which other
windows share its forward pass; the batch size changes speed and memory only (tested). On CUDA
the choice is probed: real windows at the largest candidate, halving on out-of-memory. On CPU,
where running out of memory means the OOM killer rather than an exception, the growth of the
process's peak RSS over one window is measured and the batch is what a memory budget holds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock_provider.device_map_spec import parse_size
from invarlock_provider.evaluation.runtime import PeakMemory, read_kib_field, read_vm_rss

MAX_AUTO_BATCH = 64
CPU_BUDGET_SHARE = 0.5
CPU_BUDGET_ENV = "INVARLOCK_CPU_MEMORY_BUDGET"
_MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class BatchChoice:
    batch_size: int
    requested: int | str
    method: str
    probe_s: float = 0.0
    per_window_bytes: int | None = None
    budget_bytes: int | None = None
    tried: tuple[int, ...] = ()

    def as_record(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "chosen": self.batch_size,
            "method": self.method,
            "probe_s": round(self.probe_s, 4),
            "per_window_bytes": self.per_window_bytes,
            "budget_bytes": self.budget_bytes,
            "tried": list(self.tried),
        }


def choose_batch_size(requested: int | str, scorer: Any, windows: Any, device: str) -> BatchChoice:
    if requested != "auto":
        return BatchChoice(int(requested), requested, "fixed")
    ceiling = max(1, min(MAX_AUTO_BATCH, len(windows)))
    begin = time.perf_counter()
    if device.startswith("cuda"):
        size, tried = _probe_cuda(scorer, windows, ceiling)
        return BatchChoice(
            size, requested, "cuda probe, halving on out-of-memory", time.perf_counter() - begin, tried=tried
        )
    per_window = _measure_cpu_window(scorer, windows)
    budget = cpu_memory_budget()
    size = max(1, min(ceiling, budget // max(1, per_window)))
    return BatchChoice(
        size, requested, "cpu peak-RSS growth of one window within a memory budget",
        time.perf_counter() - begin, per_window_bytes=per_window, budget_bytes=budget,
    )  # fmt: skip


def cpu_memory_budget() -> int:
    """INVARLOCK_CPU_MEMORY_BUDGET (e.g. 8GiB), else half of the memory available now."""
    configured = os.environ.get(CPU_BUDGET_ENV)
    if configured:
        return parse_size(configured, CPU_BUDGET_ENV)
    available = read_kib_field(_MEMINFO, "MemAvailable:")
    return int((available or 4 * 2**30) * CPU_BUDGET_SHARE)


def _measure_cpu_window(scorer: Any, windows: Any) -> int:
    """Peak RSS above the resident set while one window is scored, never below the activation estimate."""
    estimate = scorer.activation_estimate(len(windows[0]))
    rss_before = read_vm_rss() or 0
    with PeakMemory("cpu") as peak:
        scorer.probe(windows[:1])
    measured = (peak.peak_bytes - rss_before) if peak.peak_bytes is not None else 0
    # Memory freed earlier and reused by the allocator hides growth; the estimate is the floor.
    return max(measured, estimate)


def _probe_cuda(scorer: Any, windows: Any, ceiling: int) -> tuple[int, tuple[int, ...]]:
    import torch

    tried: list[int] = []
    size = ceiling
    while True:
        tried.append(size)
        batch = [windows[i % len(windows)] for i in range(size)]
        try:
            scorer.probe(batch)
            torch.cuda.synchronize()
            return size, tuple(tried)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if size == 1:
                raise
            size = max(1, size // 2)
