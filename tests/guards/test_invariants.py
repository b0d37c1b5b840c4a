"""The invariants guard on real models: what it records and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from invarlock_provider.guards.invariants import measure_invariants, structure_hash


@pytest.fixture
def tiny_model(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


def test_the_embedded_model_passes(tiny_model) -> None:
    record = measure_invariants(tiny_model, 4096)
    assert record["passed"], record["violations"]
    metrics = record["metrics"]
    assert metrics["parameters"] == sum(p.numel() for p in tiny_model.parameters())
    assert metrics["tied_embeddings"] == {"configured": True, "tied": True}
    assert metrics["norm_layers"] == 2 * tiny_model.config.n_layer + 1
    assert metrics["embedding_rows"] == metrics["tokenizer_vocab_size"] == 4096
    assert len(metrics["structure_hash"]) == 64


def test_non_finite_values_are_named_with_counts(tiny_model) -> None:
    with torch.no_grad():
        tiny_model.transformer.h[0].attn.c_proj.weight[0, :2] = float("nan")
        tiny_model.transformer.ln_f.bias[1] = float("-inf")
    record = measure_invariants(tiny_model, 4096)
    assert not record["passed"]
    assert "non-finite values in transformer.h.0.attn.c_proj.weight (2 nan, 0 inf)" in record["violations"]
    assert "non-finite values in transformer.ln_f.bias (0 nan, 1 inf)" in record["violations"]


def test_broken_tie_and_short_embedding_are_violations(tiny_model) -> None:
    tiny_model.lm_head.weight = torch.nn.Parameter(tiny_model.lm_head.weight.detach().clone())
    record = measure_invariants(tiny_model, 5000)
    assert record["metrics"]["tied_embeddings"] == {"configured": True, "tied": False}
    assert any("not tied" in v for v in record["violations"])
    assert any("embedding has 4096 rows but the tokenizer has 5000 tokens" in v for v in record["violations"])


def test_structure_hash_follows_architecture_not_values(tiny_model, tiny_model_dir: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    before = structure_hash(tiny_model)
    with torch.no_grad():
        tiny_model.transformer.h[0].mlp.c_fc.weight.mul_(3)
    assert structure_hash(tiny_model) == before
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.n_layer -= 1
    assert structure_hash(AutoModelForCausalLM.from_config(config)) != before
    assert structure_hash(tiny_model.to(torch.bfloat16)) != before
