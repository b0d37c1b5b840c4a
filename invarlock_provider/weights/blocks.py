"""Attention and MLP weight matrices found by module name: what edits rewrite, what the spectral
guard measures, and what a model must have to be evaluated at all. One discovery, so an edit and
the guard that watches it can never disagree about which matrices count."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from invarlock_provider.errors import BadInputError

ATTENTION = "attention"
MLP = "mlp"
FAMILIES = (ATTENTION, MLP)

_FAMILY_PATTERNS = (
    (ATTENTION, re.compile(r"(^|\.)(attn|attention|self_attn|self_attention|cross_attn|crossattention)(\.|$)")),
    (MLP, re.compile(r"(^|\.)(mlp|feed_forward|feedforward|ffn|ff|block_sparse_moe|experts|fc1|fc2)(\.|$)")),
)
_LAYER = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


@dataclass(frozen=True)
class BlockWeight:
    """One weight matrix: a 2-D parameter, or one expert's slice of a stacked (experts, out, in) one."""

    name: str
    family: str
    layer: int | None
    weight: Any
    tensor_name: str
    expert: int | None = None


def family_of(module_name: str) -> str | None:
    for family, pattern in _FAMILY_PATTERNS:
        if pattern.search(module_name):
            return family
    return None


def block_weights(model: Any) -> list[BlockWeight]:
    """Weight matrices inside attention and MLP blocks (embeddings and the LM head excluded).

    A 2-D ``weight`` keeps its module's name (``...attn.c_attn``); mixture-of-experts layers that
    stack every expert in one 3-D parameter (``...mlp.experts.gate_up_proj``) give one matrix
    per expert (``...gate_up_proj[3]``), laid out (out_features, in_features) as they are applied.
    """
    import torch

    head = getattr(model, "get_output_embeddings", lambda: None)()
    found = []
    for module_name, module in model.named_modules():
        if module is head or isinstance(module, torch.nn.Embedding):
            continue
        for param_name, param in module.named_parameters(recurse=False):
            if param.ndim not in (2, 3):
                continue
            tensor_name = f"{module_name}.{param_name}" if module_name else param_name
            family = family_of(tensor_name)
            if family is None:
                continue
            match = _LAYER.search(tensor_name)
            layer = int(match.group(1)) if match else None
            if param.ndim == 2:
                name = module_name if param_name == "weight" else tensor_name
                found.append(BlockWeight(name, family, layer, param, tensor_name))
                continue
            for expert in range(param.shape[0]):
                found.append(BlockWeight(f"{tensor_name}[{expert}]", family, layer, param[expert], tensor_name, expert))
    return found


def missing_families(blocks: Sequence[BlockWeight]) -> list[str]:
    present = {block.family for block in blocks}
    return [family for family in FAMILIES if family not in present]


def require_block_weights(model: Any, blocks: Sequence[BlockWeight], what: str) -> None:
    """A model whose attention or MLP matrices are not found by name is refused, never passed."""
    missing = missing_families(blocks)
    if missing:
        raise BadInputError(
            f"{what}: no {' or '.join(missing)} weight matrices found by module name in "
            f"{type(model).__name__}; this family is not supported yet (see docs/models.md)"
        )
