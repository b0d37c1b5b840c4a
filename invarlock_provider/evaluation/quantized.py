"""Checkpoints saved with a transformers quantization config, evaluated as subjects (bring your own edit).

transformers loads them itself; what this module adds is the refusal, before any loading, of a
method whose package or device is missing, in one line that names both, and the record of what
was loaded. Methods that need a GPU kernel (bitsandbytes, GPTQ, AWQ, FP8) are accepted where their
package and a CUDA device are present; torchao's int8/int4 weight-only and quanto also run on CPU.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.weights.tensors import is_packed


@dataclass(frozen=True)
class MethodNeeds:
    packages: tuple[tuple[str, str], ...]  # (import name, pip name)
    needs_cuda: bool


METHODS: dict[str, MethodNeeds] = {
    "torchao": MethodNeeds((("torchao", "torchao"),), needs_cuda=False),
    "quanto": MethodNeeds((("optimum.quanto", "optimum-quanto"),), needs_cuda=False),
    "bitsandbytes": MethodNeeds((("bitsandbytes", "bitsandbytes"),), needs_cuda=True),
    "gptq": MethodNeeds((("gptqmodel", "gptqmodel"),), needs_cuda=True),
    "awq": MethodNeeds((("awq", "autoawq"),), needs_cuda=True),
    "fbgemm_fp8": MethodNeeds((("fbgemm_gpu", "fbgemm-gpu"),), needs_cuda=True),
    "fp8": MethodNeeds((), needs_cuda=True),
}


def quantization_method(model_config: Any) -> str | None:
    """The method a checkpoint's config.json declares (``quantization_config.quant_method``)."""
    settings = getattr(model_config, "quantization_config", None)
    if settings is None:
        return None
    method = settings.get("quant_method") if isinstance(settings, dict) else getattr(settings, "quant_method", None)
    return str(getattr(method, "value", method)) if method is not None else "unknown"


def check_method_available(method: str, source: str, *, cuda_devices: int) -> None:
    """One line naming what is missing: the method's package, or a CUDA device for its kernels."""
    needs = METHODS.get(method)
    if needs is None:
        return  # transformers knows more methods than this table; its own error stands for those
    missing = [pip for module, pip in needs.packages if not _importable(module)]
    if missing:
        raise BadInputError(
            f"{source} is quantized with {method}, which needs the package {' and '.join(missing)} "
            f"(pip install {' '.join(missing)}); it is not installed"
        )
    if needs.needs_cuda and cuda_devices == 0:
        raise BadInputError(
            f"{source} is quantized with {method}, whose kernels need a CUDA device; this machine has none"
        )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def describe_quantization(model: Any, method: str | None) -> dict[str, Any] | None:
    """For meta: the method, its settings and how many tensors are stored quantized."""
    if method is None:
        return None
    settings = getattr(model.config, "quantization_config", None)
    as_dict = settings.to_dict() if hasattr(settings, "to_dict") else settings
    tensors = [t for t in model.state_dict(keep_vars=True).values() if is_packed(t)]
    return {
        "method": method,
        "config": as_dict,
        "quantized_tensors": len(tensors),
        "tensor_types": sorted({type(t).__name__ for t in tensors}),
    }
