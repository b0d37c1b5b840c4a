"""Built-in edits applied in memory between loading and scoring (specs: invarlock_provider.edit_spec).

``quant`` simulates weight-only deployment at ``bits``: round-to-nearest, symmetric, one scale per
output channel or per ``group`` input columns of each output channel, then dequantized back to
the working dtype (fake quant); ``quant8`` is ``quant:bits=8``. Activations are untouched, so a
window's score never depends on which other windows share its batch. ``prune`` zeroes the
smallest-magnitude fraction ``sparsity`` of every attention and MLP weight matrix (unstructured,
per matrix), the matrices the spectral guard measures. Both are deterministic: the same weights
and spec give the same weights digest.
"""

from __future__ import annotations

from typing import Any

from invarlock_provider.edit_spec import parse_edit
from invarlock_provider.errors import BadInputError
from invarlock_provider.weights.tensors import is_meta, is_packed

QUANT8_BITS = 8


def apply_edit(model: Any, spec: str) -> dict[str, Any]:
    """Apply the edit ``spec`` names and return its record for report.json."""
    edit = parse_edit(spec, "edit")
    if edit.name == "noop":
        record: dict[str, Any] = {"params": {}, "modules_changed": []}
        return {"name": edit.name, "spec": edit.spec, **record}
    _require_editable(model, edit.spec)
    if edit.name == "quant8":
        record = _quantize(model, QUANT8_BITS, None)
    elif edit.name == "quant":
        record = _quantize(model, edit.params["bits"], edit.params.get("group"))
    else:
        record = _prune(model, edit.params["sparsity"])
    return {"name": edit.name, "spec": edit.spec, **record}


def _require_editable(model: Any, spec: str) -> None:
    """Edits rewrite weights in place: offloaded placeholders and packed quantized tensors have
    no dense values to rewrite, so such a model is refused rather than edited partially."""
    for name, tensor in model.state_dict(keep_vars=True).items():
        if is_meta(tensor):
            raise BadInputError(
                f"edit {spec}: {name} is offloaded (device map); edits need every weight in device memory, "
                "so give the model enough max_memory or evaluate it with edit noop"
            )
        if is_packed(tensor):
            raise BadInputError(
                f"edit {spec}: {name} is already quantized ({type(tensor).__name__}); evaluate a quantized "
                "checkpoint as it is, with edit noop"
            )


def _quantize(model: Any, bits: int, group: int | None) -> dict[str, Any]:
    import torch
    from transformers.pytorch_utils import Conv1D

    from invarlock_provider.weights.blocks import block_weights

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
            quantized = fake_quantize(weight, channel_dim, bits, group)
            max_abs_error = max(max_abs_error, (quantized - weight).abs().max().item())
            weight.copy_(quantized)
            changed.append(module_name)
        for block in block_weights(model):
            if block.expert is None:
                continue
            quantized = fake_quantize(block.weight, 0, bits, group)  # one expert: (out_features, in_features)
            max_abs_error = max(max_abs_error, (quantized - block.weight).abs().max().item())
            block.weight.copy_(quantized)
            changed.append(block.name)
    if not changed:
        raise BadInputError(f"quant: no linear weight matrices found in {type(model).__name__}; nothing to quantize")
    return {
        "params": {
            "bits": bits,
            "scheme": "symmetric",
            "granularity": "per_output_channel" if group is None else f"groups of {group} input columns",
            "group": group,
            "rounding": "nearest",
            "skipped": "output embeddings (lm head), input embeddings and mixture-of-experts routers",
            "experts": "stacked expert tensors quantized per expert and output channel",
        },
        "modules_changed": changed,
        "max_abs_weight_error": max_abs_error,
    }


def _prune(model: Any, sparsity: float) -> dict[str, Any]:
    import torch

    from invarlock_provider.weights.blocks import block_weights, require_block_weights

    blocks = block_weights(model)
    require_block_weights(model, blocks, "prune")
    pruned = total = 0
    with torch.no_grad():
        for block in blocks:
            flat = block.weight.view(-1)
            count = round(sparsity * flat.numel())
            if count:
                # A stable sort makes ties (equal magnitudes) go the same way on every run.
                smallest = torch.argsort(flat.abs().float(), stable=True)[:count]
                flat[smallest] = 0
            pruned += int((flat == 0).sum())
            total += flat.numel()
    return {
        "params": {
            "sparsity": sparsity,
            "scope": "attention and MLP weight matrices",
            "granularity": "unstructured, per matrix, smallest magnitudes",
        },
        "modules_changed": [block.name for block in blocks],
        "achieved_sparsity": pruned / total,
    }


def fake_quantize(weight: Any, channel_dim: int, bits: int, group: int | None) -> Any:
    """Quantize to signed ``bits`` integers, one scale per output channel or per group of ``group``
    input columns within it (the last group of a row may be shorter), then dequantize."""
    if group is None:
        return fake_quantize_per_channel(weight, channel_dim, bits)
    import torch

    qmax = 2 ** (bits - 1) - 1
    rows = weight.float() if channel_dim == 0 else weight.float().t()  # (out, in)
    columns = rows.shape[1]
    padded = torch.nn.functional.pad(rows, (0, (-columns) % group))  # zeros never raise a group's scale
    grouped = padded.view(rows.shape[0], -1, group)
    scale = grouped.abs().amax(dim=-1, keepdim=True) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    levels = torch.clamp(torch.round(grouped / scale), -qmax, qmax)
    restored = (levels * scale).view(rows.shape[0], -1)[:, :columns]
    return (restored if channel_dim == 0 else restored.t()).to(weight.dtype)


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
