"""The spectral estimate against exact SVD, and which modules it covers, on real torch models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from invarlock_provider.errors import BadInputError
from invarlock_provider.guards.spectral import CHUNK_BYTES, largest_singular_values, measure_spectral
from invarlock_provider.weights.blocks import block_weights, family_of


def exact(weight: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(weight.float(), ord=2).item()


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


def test_matches_exact_svd_on_the_trained_model(tiny_model) -> None:
    found = block_weights(tiny_model)
    estimate = largest_singular_values([b.weight for b in found])
    for block, sigma in zip(found, estimate.sigmas, strict=True):
        assert sigma == pytest.approx(exact(block.weight), rel=1e-5), block.name


@pytest.mark.parametrize("shape", [(300, 120), (120, 300), (64, 64), (5, 3)])
def test_matches_exact_svd_on_random_matrices_of_any_orientation(shape: tuple[int, int]) -> None:
    """Gaussian matrices have a crowded top spectrum: the slow case for iteration."""
    generator = torch.Generator().manual_seed(7)
    weights = [torch.randn(*shape, generator=generator) * (i + 1) for i in range(5)]
    estimate = largest_singular_values(weights)
    assert estimate.sigmas == pytest.approx([exact(w) for w in weights], rel=1e-4)


def test_chunks_larger_than_the_memory_budget_give_the_same_values() -> None:
    rows = CHUNK_BYTES // (4 * 256) // 2  # two of these exceed one chunk
    generator = torch.Generator().manual_seed(3)
    weights = [torch.randn(rows, 256, generator=generator) for _ in range(3)]
    together = largest_singular_values(weights).sigmas
    alone = [largest_singular_values([w]).sigmas[0] for w in weights]
    assert together == pytest.approx(alone, rel=1e-6)
    assert together == pytest.approx([exact(w) for w in weights], rel=1e-4)


def test_scaling_a_matrix_scales_its_estimate_exactly(tiny_model) -> None:
    weight = block_weights(tiny_model)[2].weight
    base, tripled = largest_singular_values([weight, weight * 3]).sigmas
    assert tripled / base == pytest.approx(3.0, rel=1e-6)


def test_identical_weights_give_identical_numbers(tiny_model) -> None:
    first = measure_spectral(tiny_model)["metrics"]["modules"]
    second = measure_spectral(tiny_model)["metrics"]["modules"]
    assert [m["sigma_max"] for m in first] == [m["sigma_max"] for m in second]


def test_gpt2_blocks_are_classified(tiny_model) -> None:
    record = measure_spectral(tiny_model)
    assert record["passed"] and record["violations"] == []
    modules = record["metrics"]["modules"]
    layers = tiny_model.config.n_layer
    assert record["metrics"]["families"] == {"attention": 2 * layers, "mlp": 2 * layers}
    assert {m["name"] for m in modules if m["layer"] == 0} == {
        "transformer.h.0.attn.c_attn",
        "transformer.h.0.attn.c_proj",
        "transformer.h.0.mlp.c_fc",
        "transformer.h.0.mlp.c_proj",
    }
    assert not any("wte" in m["name"] or "lm_head" in m["name"] for m in modules)


def test_llama_style_names_are_classified() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4
    )
    names = {(b.name, b.family, b.layer) for b in block_weights(LlamaForCausalLM(config))}
    assert ("model.layers.1.self_attn.q_proj", "attention", 1) in names
    assert ("model.layers.0.mlp.gate_proj", "mlp", 0) in names
    assert len(names) == 2 * (4 + 3)


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("gpt_neox.layers.3.attention.query_key_value", "attention"),
        ("model.decoder.layers.0.self_attn.out_proj", "attention"),
        ("transformer.blocks.2.ffn.up_proj", "mlp"),
        ("model.layers.5.block_sparse_moe.experts.1.w1", "mlp"),
        ("lm_head", None),
        ("transformer.wte", None),
    ],
)
def test_family_by_module_name(name: str, family: str | None) -> None:
    assert family_of(name) == family


def test_a_model_without_recognisable_blocks_is_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(BadInputError, match=r"no attention or mlp weight matrices found by module name in Sequential"):
        measure_spectral(model)
