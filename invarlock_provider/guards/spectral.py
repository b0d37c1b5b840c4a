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

import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from invarlock_provider.guards.record import SPECTRAL, guard_record

ATTENTION = "attention"
MLP = "mlp"
FAMILIES = (ATTENTION, MLP)
RANK = 8
MAX_ITERATIONS = 100
GRAM_SQUARINGS = 2
RELATIVE_TOLERANCE = 1e-5
CHUNK_BYTES = 512 * 2**20
START_SEED = 20240101

_FAMILY_PATTERNS = (
    (ATTENTION, re.compile(r"(^|\.)(attn|attention|self_attn|self_attention|cross_attn|crossattention)(\.|$)")),
    (MLP, re.compile(r"(^|\.)(mlp|feed_forward|feedforward|ffn|ff|block_sparse_moe|experts)(\.|$)")),
)
_LAYER = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


@dataclass(frozen=True)
class BlockWeight:
    name: str
    family: str
    layer: int | None
    weight: Any


def family_of(module_name: str) -> str | None:
    for family, pattern in _FAMILY_PATTERNS:
        if pattern.search(module_name):
            return family
    return None


def block_weights(model: Any) -> list[BlockWeight]:
    """2-D weights of modules inside attention and MLP blocks (embeddings and the LM head excluded)."""
    import torch

    found = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or isinstance(module, torch.nn.Embedding):
            continue
        family = family_of(name)
        if family is None:
            continue
        layer = _LAYER.search(name)
        found.append(BlockWeight(name, family, int(layer.group(1)) if layer else None, weight))
    return found


@dataclass(frozen=True)
class SpectralEstimate:
    sigmas: list[float]
    iterations: int
    max_relative_change: float


def largest_singular_values(weights: Sequence[Any], *, rank: int = RANK) -> SpectralEstimate:
    """Top singular value of each matrix, batched over matrices of the same shape."""
    import torch

    sigmas: list[float] = [0.0] * len(weights)
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, weight in enumerate(weights):
        rows, cols = weight.shape
        by_shape[(max(rows, cols), min(rows, cols))].append(index)
    iterations, worst_change = 0, 0.0
    with torch.no_grad():
        for (large, small), indices in by_shape.items():
            per_chunk = max(1, CHUNK_BYTES // ((large + 3 * small) * small * 4))
            for start in range(0, len(indices), per_chunk):
                chunk = indices[start : start + per_chunk]
                stacked = torch.stack([_oriented(weights[i], small).float() for i in chunk])
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
    estimate = largest_singular_values([b.weight for b in found])
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
    violations = []
    if not modules:
        violations.append("no attention or MLP weight matrices found by module name; spectral guard cannot run")
    metrics = {
        "method": f"block subspace iteration on W^T W, rank {RANK}, Rayleigh-Ritz, fp32",
        "iterations": estimate.iterations,
        "max_relative_change": estimate.max_relative_change,
        "families": {family: sum(1 for m in modules if m["family"] == family) for family in FAMILIES},
        "modules": modules,
        "seconds": round(time.perf_counter() - begin, 4),
    }
    return guard_record(SPECTRAL, metrics, violations)
