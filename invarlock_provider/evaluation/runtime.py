"""Device, dtype, seeds, determinism and peak-memory measurement for one run.

Collected in one place because every one of them changes the numbers a run produces, so each is
both applied and recorded in report.json.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
_CPUINFO = Path("/proc/cpuinfo")
VECTOR_EXTENSIONS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "avx_vnni", "asimd", "sve", "bf16",
)  # fmt: skip
NATIVE_BF16 = ("avx512_bf16", "amx_bf16", "bf16")
RATE_PROBE_SHAPE = 256
RATE_PROBE_SECONDS = 0.05


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
    # torch.use_deterministic_algorithms also imports torch._inductor (2.5 s in torch 2.13) only to
    # set its flag; the engine never compiles, so the flag is set where it is already loaded.
    torch._C._set_deterministic_algorithms(True, warn_only=True)
    inductor_config = sys.modules.get("torch._inductor.config")
    if inductor_config is not None:
        inductor_config.deterministic = True
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
    """Peak memory while a block runs: the device allocators on CUDA (summed over the devices a
    split model uses, each one's peak in ``per_device``), resident set size on CPU."""

    device: str
    peak_bytes: int | None = None
    source: str = "unavailable"
    per_device: list[int] | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            for index in range(torch.cuda.device_count()):
                torch.cuda.synchronize(index)
                torch.cuda.reset_peak_memory_stats(index)
        elif _CLEAR_REFS.exists():
            with contextlib.suppress(OSError):
                _CLEAR_REFS.write_text("5")  # resets VmHWM, the kernel's peak-RSS counter
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.device.startswith("cuda"):
            import torch

            peaks = []
            for index in range(torch.cuda.device_count()):
                torch.cuda.synchronize(index)
                peaks.append(int(torch.cuda.max_memory_allocated(index)))
            self.per_device = peaks
            self.peak_bytes = sum(peaks)
            self.source = "cuda_max_memory_allocated"
            return
        peak = read_vm_hwm()
        if peak is not None:
            self.peak_bytes = peak
            self.source = "process_peak_rss"


def read_vm_hwm() -> int | None:
    """The process's peak resident set size since start or the last reset."""
    return read_kib_field(_STATUS, "VmHWM:")


def read_vm_rss() -> int | None:
    return read_kib_field(_STATUS, "VmRSS:")


def read_kib_field(path: Path, field: str) -> int | None:
    """Bytes of a ``Field:  N kB`` line in a /proc file (status, meminfo), or None."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class CpuProfile:
    model: str
    vector_extensions: tuple[str, ...]

    @property
    def native_bf16(self) -> bool:
        return any(flag in self.vector_extensions for flag in NATIVE_BF16)

    def as_record(self) -> dict[str, Any]:
        return {"model": self.model, "vector_extensions": list(self.vector_extensions), "native_bf16": self.native_bf16}


def cpu_profile() -> CpuProfile:
    """The CPU model and the vector extensions that decide matmul speed (from /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = _CPUINFO.read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "CPU part") and model in ("", platform.machine(), platform.processor()):
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return CpuProfile(model=model, vector_extensions=tuple(f for f in VECTOR_EXTENSIONS if f in flags))


def matmul_rates(size: int = RATE_PROBE_SHAPE, seconds: float = RATE_PROBE_SECONDS) -> dict[str, float]:
    """GFLOP/s of a square fp32 and bf16 CPU matmul, best of repeats within ``seconds`` each."""
    import torch

    rates = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        a @ b
        best, deadline = 0.0, time.perf_counter() + seconds
        while True:
            begin = time.perf_counter()
            a @ b
            best = max(best, 2 * size**3 / (time.perf_counter() - begin) / 1e9)
            if time.perf_counter() >= deadline:
                break
        rates[name] = round(best, 2)
    return rates


def slow_bf16_warning(rates: dict[str, float], cpu: CpuProfile) -> str | None:
    """A one-line warning when bf16 matmuls are slower than fp32 on this CPU, else None."""
    if rates["bfloat16"] >= rates["float32"]:
        return None
    return (
        f"--dtype bfloat16 on this CPU ({cpu.model}; no native bf16: "
        f"{'yes' if cpu.native_bf16 else 'none of ' + ', '.join(NATIVE_BF16)}) runs matmuls at "
        f"{rates['bfloat16']:.1f} GFLOP/s against {rates['float32']:.1f} for float32; "
        "expect a much slower run, or use --dtype float32"
    )


def device_class(device: Any) -> str:
    """The kind of processor that computes a run's numbers (CPU model and vector extensions, GPU
    name): kernels differ between kinds in rounding, so a checkpoint made on another is not resumed."""
    import torch

    kind = torch.device(device)
    if kind.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(kind)}"
    if kind.type == "cpu":
        cpu = cpu_profile()
        return f"cpu:{cpu.model} [{' '.join(cpu.vector_extensions)}]"
    return kind.type
