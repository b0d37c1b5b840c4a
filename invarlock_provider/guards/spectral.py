"""Spectral guard, measuring side: the largest singular value of every attention and MLP weight.

An edit that multiplies one matrix by 3 moves that matrix's spectral norm by exactly 3x while
perplexity may barely move, so the norms are recorded per module in report.json and compared
against the baseline's in the report.

The estimate is block subspace iteration on W^T W with a Rayleigh-Ritz step: ``RANK`` vectors
converge on the top singular value at the rate (sigma_{k+1}/sigma_1)^2 per step, so a handful of
matrix-times-skinny-matrix products (memory-bound, one read of W each) replace a full SVD (cubic).
Matrices of one shape are stacked and iterated together in chunks of bounded size, on the device
the model lives on. The start block is drawn from a fixed seed on the CPU, so the same weights give
the same estimate on every machine, and identical weights give identical numbers (noop ratio 1).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.guards.record import SPECTRAL, guard_record
from invarlock_provider.weights.blocks import FAMILIES, BlockWeight, block_weights, require_block_weights
from invarlock_provider.weights.tensors import is_meta, is_packed, offloaded_value

RANK = 8
MAX_ITERATIONS = 100
GRAM_SQUARINGS = 2
RELATIVE_TOLERANCE = 1e-5
CHUNK_BYTES = 512 * 2**20
START_SEED = 20240101


def dense_matrix(model: Any, block: BlockWeight) -> Any:
    """The matrix the forward pass computes with: offloaded values read back, quantized ones dequantized."""
    weight = block.weight
    if is_meta(weight):
        weight = offloaded_value(model, block.tensor_name)
        if block.expert is not None:
            weight = weight[block.expert]
    if is_packed(weight):
        dequantize = getattr(weight, "dequantize", None)
        if dequantize is None:
            raise BadInputError(
                f"spectral guard: {block.name} is a {type(weight).__name__} with no dequantize(); "
                "this quantization format is not supported"
            )
        weight = dequantize()
    return weight


@dataclass(frozen=True)
class SpectralEstimate:
    sigmas: list[float]
    iterations: int
    max_relative_change: float


def largest_singular_values(
    weights: Sequence[Any], *, rank: int = RANK, load: Callable[[int], Any] | None = None
) -> SpectralEstimate:
    """Top singular value of each matrix, batched over matrices of one shape on one device.

    ``load(i)`` gives matrix i's values when ``weights[i]`` is only its placeholder (offloaded or
    quantized); matrices are loaded chunk by chunk, so at most one chunk is dense at a time.
    """
    import torch

    load = load or weights.__getitem__
    sigmas: list[float] = [0.0] * len(weights)
    groups: dict[tuple[int, int, str], list[int]] = defaultdict(list)
    for index, weight in enumerate(weights):
        rows, cols = weight.shape
        device = "cpu" if is_meta(weight) else str(weight.device)
        groups[(max(rows, cols), min(rows, cols), device)].append(index)
    iterations, worst_change = 0, 0.0
    with torch.no_grad():
        for (large, small, device), indices in groups.items():
            per_chunk = max(1, CHUNK_BYTES // ((large + 3 * small) * small * 4))
            for start in range(0, len(indices), per_chunk):
                chunk = indices[start : start + per_chunk]
                stacked = torch.stack([_oriented(load(i), small).float().to(device) for i in chunk])
                values, steps, change = _top_eigenvalue_of_gram(stacked, min(rank, small))
                for index, value in zip(chunk, values.tolist(), strict=True):
                    sigmas[index] = value
                iterations, worst_change = max(iterations, steps), max(worst_change, change)
    return SpectralEstimate(sigmas, iterations, worst_change)


def _oriented(weight: Any, small: int) -> Any:
    """(large, small), so the Gram matrix is the smaller of W^T W and W W^T."""
    return weight if weight.shape[1] == small else weight.T


def _top_eigenvalue_of_gram(stacked: Any, rank: int) -> tuple[Any, int, float]:
    """sigma_max of each stacked W: Gram, trace-normalised, squared twice, then subspace iteration."""
    import torch

    gram = stacked.mT @ stacked
    scale = gram.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(1e-30)
    powered = gram / scale[:, None, None]
    for _ in range(GRAM_SQUARINGS):
        powered = powered @ powered
    size = powered.shape[-1]
    generator = torch.Generator().manual_seed(START_SEED)
    start = torch.randn(size, rank, generator=generator, dtype=torch.float32).to(stacked.device)
    basis = torch.linalg.qr(start.expand(stacked.shape[0], size, rank)).Q
    previous, change, steps = None, float("inf"), 0
    while steps < MAX_ITERATIONS and change > RELATIVE_TOLERANCE:
        image = powered @ basis
        estimate = torch.linalg.eigvalsh(basis.mT @ image)[:, -1].clamp_min(0)
        if previous is not None:
            change = float(((estimate - previous).abs() / previous.clamp_min(1e-30)).max())
        previous = estimate
        basis = torch.linalg.qr(image).Q
        steps += 1
    eigenvalue = previous.pow(1.0 / 2**GRAM_SQUARINGS) * scale
    return eigenvalue.sqrt().cpu(), steps, change


def measure_spectral(model: Any) -> dict[str, Any]:
    """The spectral guard record for report.json; seconds are included so overhead is visible."""
    begin = time.perf_counter()
    found = block_weights(model)
    require_block_weights(model, found, "spectral guard")
    estimate = largest_singular_values([b.weight for b in found], load=lambda i: dense_matrix(model, found[i]))
    quantized = sum(1 for b in found if is_packed(b.weight))
    modules = [
        {
            "name": b.name,
            "family": b.family,
            "layer": b.layer,
            "shape": list(b.weight.shape),
            "sigma_max": sigma,
        }
        for b, sigma in zip(found, estimate.sigmas, strict=True)
    ]
    violations: list[str] = []
    metrics = {
        "method": f"block subspace iteration on W^T W, rank {RANK}, Rayleigh-Ritz, fp32",
        "iterations": estimate.iterations,
        "max_relative_change": estimate.max_relative_change,
        "families": {family: sum(1 for m in modules if m["family"] == family) for family in FAMILIES},
        "quantized_matrices": quantized,
        "quantized_handling": "measured dequantized (the values the forward pass multiplies by)",
        "modules": modules,
        "seconds": round(time.perf_counter() - begin, 4),
    }
    return guard_record(SPECTRAL, metrics, violations)
