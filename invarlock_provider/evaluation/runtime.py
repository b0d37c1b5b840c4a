"""Device, dtype, seeds, determinism and peak-memory measurement for one run.

Collected in one place because every one of them changes the numbers a run produces, so each is
both applied and recorded in report.json.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise BadInputError("--device cuda: no CUDA device is available on this machine")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise BadInputError("--device mps: MPS is not available on this machine")
    return requested


def resolve_dtype(requested: str, device: str) -> str:
    """fp32 on CPU unless asked; on accelerators ``auto`` picks bf16 where supported."""
    import torch

    if requested != "auto":
        if requested == "bfloat16" and device == "cuda" and not torch.cuda.is_bf16_supported():
            raise BadInputError("--dtype bfloat16: this CUDA device does not support bfloat16")
        return requested
    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "mps":
        return "float16"
    return "float32"


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def seed_everything(seed: int) -> dict[str, int]:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return {"python": seed, "numpy": seed % 2**32, "torch": seed}


def configure_determinism(device: str) -> dict[str, Any]:
    """Prefer deterministic kernels; scoring uses no op that needs non-determinism."""
    import torch

    if device == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_float32_matmul_precision("highest")
    return {
        "torch_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


@dataclass
class PeakMemory:
    """Peak memory while a block runs: device allocator on CUDA, resident set size on CPU."""

    device: str
    peak_bytes: int | None = None
    source: str = "unavailable"

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        elif _CLEAR_REFS.exists():
            with contextlib.suppress(OSError):
                _CLEAR_REFS.write_text("5")  # resets VmHWM, the kernel's peak-RSS counter
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            self.peak_bytes = int(torch.cuda.max_memory_allocated())
            self.source = "cuda_max_memory_allocated"
            return
        peak = read_vm_hwm()
        if peak is not None:
            self.peak_bytes = peak
            self.source = "process_peak_rss"


def read_vm_hwm() -> int | None:
    """The process's peak resident set size since start or the last reset."""
    return _read_status_bytes("VmHWM:")


def read_vm_rss() -> int | None:
    return _read_status_bytes("VmRSS:")


def _read_status_bytes(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
