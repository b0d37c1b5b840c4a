"""The values behind a model's tensors, wherever they live, and the weights digest over them.

A model loaded with a device map may hold some weights on several GPUs and some only on disk
(accelerate leaves a ``meta`` placeholder in the module and keeps the values in its offload map);
a quantized checkpoint holds tensor subclasses whose bytes are their packed parts (int8 data,
scales, zero points). The digest and the guards read through here so they see the same values
the forward pass computes with, one tensor at a time, never a full copy of the model.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from invarlock_provider.errors import EvaluationAbortedError

DIGEST_METHOD = "sha256 over name|dtype|shape|sha256(bytes) per tensor, name order; packed parts of quantized tensors"
DIGEST_THREADS = max(1, min(8, os.cpu_count() or 1))


def is_meta(tensor: Any) -> bool:
    """An offloaded tensor: accelerate leaves a storage-less placeholder in the module."""
    return tensor.device.type == "meta"


def is_packed(tensor: Any) -> bool:
    """A quantized tensor subclass (torchao, quanto): its values live in packed parts."""
    import torch

    return type(tensor) not in (torch.Tensor, torch.nn.Parameter)


def offloaded_value(model: Any, name: str) -> Any:
    """Read the values of an offloaded parameter or buffer from the offload map of its hooked module.

    A tied weight (an LM head sharing the input embedding) is kept in the map under one of its
    names only, so the other names of the same tensor are tried too."""
    for candidate in _names_of_same_tensor(model, name):
        value = _from_offload_map(model, candidate)
        if value is not None:
            return value
    raise EvaluationAbortedError(f"{name} has no values in memory and no offload map holds it; cannot read it")


def _from_offload_map(model: Any, name: str) -> Any:
    parts = name.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        module = model.get_submodule(".".join(parts[:cut])) if cut else model
        weights_map = getattr(getattr(module, "_hf_hook", None), "weights_map", None)
        if weights_map is None:
            continue
        try:
            return weights_map[".".join(parts[cut:])]
        except KeyError:
            continue
    return None


def _names_of_same_tensor(model: Any, name: str) -> list[str]:
    named = dict(model.named_parameters(remove_duplicate=False)) | dict(model.named_buffers(remove_duplicate=False))
    target = named.get(name)
    return [name] + [other for other, tensor in named.items() if tensor is target and other != name]


def materialized(model: Any, name: str, tensor: Any) -> Any:
    return offloaded_value(model, name) if is_meta(tensor) else tensor


def named_state(model: Any) -> Iterator[tuple[str, Any]]:
    """Every parameter and buffer by its state-dict name, offloaded ones read from their map."""
    for name, tensor in model.state_dict(keep_vars=True).items():
        yield name, materialized(model, name, tensor.detach())


def packed_parts(tensor: Any) -> list[tuple[str, Any]]:
    """A plain tensor is its own single part; a quantized subclass is the plain tensors it wraps."""
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is None:
        return [("", tensor)]
    names, _context = tensor.__tensor_flatten__()
    parts: list[tuple[str, Any]] = []
    for attribute in names:
        for suffix, inner in packed_parts(getattr(tensor, attribute)):
            parts.append((f".{attribute}{suffix}", inner))
    return parts


def tensor_sha256(tensor: Any) -> str:
    """sha256 of the raw bytes, hashed from the tensor's own buffer (no bytes copy)."""
    import torch

    flat = tensor.detach().contiguous().cpu().reshape(-1)
    digest = hashlib.sha256()
    if flat.numel():
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def _entry(model: Any, name: str, tensor: Any) -> bytes:
    value = materialized(model, name, tensor.detach())
    lines = []
    for suffix, part in packed_parts(value):
        lines.append(f"{name}{suffix}|{part.dtype}|{tuple(part.shape)}|{tensor_sha256(part)}\n")
    return "".join(lines).encode()


def weights_digest(model: Any, *, threads: int = DIGEST_THREADS) -> str:
    """Hash tensors in parallel (hashlib and the device-to-host copies release the GIL), then
    combine their digests in name order, so the result never depends on the thread count."""
    state = model.state_dict(keep_vars=True)
    names = sorted(state)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        entries = list(pool.map(lambda name: _entry(model, name, state[name]), names))
    combined = hashlib.sha256()
    for entry in entries:
        combined.update(entry)
    return combined.hexdigest()
