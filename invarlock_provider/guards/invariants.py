"""Invariants guard, measuring side: finite weights and the structural facts a report compares.

Non-finite parameters make every number after them meaningless, so a run stops here, before any
window is scored. The structure hash, parameter count, tie state and normalisation count are
recorded so the report can require them to equal the baseline's: an edit that swaps in another
architecture is a different model, whatever its perplexity.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from invarlock_provider.fileio import canonical_json
from invarlock_provider.guards.record import INVARIANTS, guard_record

MAX_NAMED = 5


def structure_hash(model: Any) -> str:
    """sha256 over (name, shape, dtype) of every parameter and buffer, in registration order."""
    entries = [[name, list(t.shape), str(t.dtype)] for name, t in model.named_parameters()]
    entries += [[f"buffer:{name}", list(t.shape), str(t.dtype)] for name, t in model.named_buffers()]
    return hashlib.sha256(canonical_json(entries)).hexdigest()


def non_finite_tensors(model: Any) -> list[dict[str, Any]]:
    """Offloaded tensors are read back; a quantized tensor is checked part by part (its scales)."""
    import torch

    from invarlock_provider.weights.tensors import named_state, packed_parts

    found = []
    with torch.no_grad():
        for name, value in named_state(model):
            for suffix, tensor in packed_parts(value):
                if not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()):
                    continue
                nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
                found.append({"name": name + suffix, "nan": nan, "inf": inf})
    return found


def tie_state(model: Any) -> dict[str, Any]:
    inputs = model.get_input_embeddings()
    outputs = model.get_output_embeddings()
    # Offloaded weights are meta placeholders with no storage: only identity shows a tie there.
    tied = outputs is not None and (
        outputs.weight is inputs.weight or 0 != outputs.weight.data_ptr() == inputs.weight.data_ptr()
    )
    configured = getattr(getattr(model, "config", None), "tie_word_embeddings", None)
    return {"configured": configured, "tied": tied}


def norm_layer_count(model: Any) -> int:
    """Modules whose class is a normalisation layer (LayerNorm, RMSNorm and model-specific kin)."""
    return sum(1 for module in model.modules() if "Norm" in type(module).__name__)


def measure_invariants(model: Any, tokenizer_size: int) -> dict[str, Any]:
    begin = time.perf_counter()
    bad = non_finite_tensors(model)
    ties = tie_state(model)
    rows = int(model.get_input_embeddings().weight.shape[0])
    norms = norm_layer_count(model)
    violations = [
        f"non-finite values in {entry['name']} ({entry['nan']} nan, {entry['inf']} inf)" for entry in bad[:MAX_NAMED]
    ]
    if len(bad) > MAX_NAMED:
        violations.append(f"non-finite values in {len(bad) - MAX_NAMED} more tensors")
    if ties["configured"] and not ties["tied"]:
        violations.append("config.tie_word_embeddings is true but the input and output embeddings are not tied")
    if rows < tokenizer_size:
        violations.append(f"embedding has {rows} rows but the tokenizer has {tokenizer_size} tokens")
    if norms == 0:
        violations.append("no normalisation layers (class name containing 'Norm') in the model")
    metrics = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "structure_hash": structure_hash(model),
        "non_finite": bad,
        "tied_embeddings": ties,
        "embedding_rows": rows,
        "tokenizer_vocab_size": tokenizer_size,
        "norm_layers": norms,
        "seconds": round(time.perf_counter() - begin, 4),
    }
    return guard_record(INVARIANTS, metrics, violations)
