"""Built-in edits applied in memory between loading and scoring.

``quant8`` simulates int8 weight-only deployment: round-to-nearest, symmetric, one scale per
output channel, then dequantized back to the working dtype (fake quant). Per-channel scales keep
the perplexity shift small on real models, and because activations are untouched, a window's
score never depends on which other windows share its batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

QUANT8_BITS = 8


def apply_edit(model: Any, name: str) -> dict[str, Any]:
    """Apply the named edit and return its record for report.json."""
    try:
        edit = _EDITS[name]
    except KeyError:
        raise ValueError(f"unknown edit {name!r}; expected one of {', '.join(_EDITS)}") from None
    return {"name": name, **edit(model)}


def _noop(model: Any) -> dict[str, Any]:
    return {"params": {}, "modules_changed": []}


def _quant8(model: Any) -> dict[str, Any]:
    import torch
    from transformers.pytorch_utils import Conv1D

    output_embeddings = model.get_output_embeddings()
    changed: list[str] = []
    max_abs_error = 0.0
    with torch.no_grad():
        for module_name, module in model.named_modules():
            if module is output_embeddings:
                continue
            if isinstance(module, torch.nn.Linear):
                channel_dim = 0  # weight is (out_features, in_features)
            elif isinstance(module, Conv1D):
                channel_dim = 1  # GPT-2 style: weight is (in_features, out_features)
            else:
                continue
            weight = module.weight
            quantized = fake_quantize_per_channel(weight, channel_dim, QUANT8_BITS)
            max_abs_error = max(max_abs_error, (quantized - weight).abs().max().item())
            weight.copy_(quantized)
            changed.append(module_name)
    return {
        "params": {
            "bits": QUANT8_BITS,
            "scheme": "symmetric",
            "granularity": "per_output_channel",
            "rounding": "nearest",
            "skipped": "output embeddings (lm head) and input embeddings",
        },
        "modules_changed": changed,
        "max_abs_weight_error": max_abs_error,
    }


def fake_quantize_per_channel(weight: Any, channel_dim: int, bits: int) -> Any:
    """Quantize to signed ``bits`` integers with one scale per output channel, then dequantize."""
    import torch

    qmax = 2 ** (bits - 1) - 1
    work = weight.float()
    reduce_dims = [d for d in range(work.dim()) if d != channel_dim]
    scale = work.abs().amax(dim=reduce_dims, keepdim=True) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    levels = torch.clamp(torch.round(work / scale), -qmax, qmax)
    return (levels * scale).to(weight.dtype)


_EDITS: dict[str, Callable[[Any], dict[str, Any]]] = {"noop": _noop, "quant8": _quant8}
