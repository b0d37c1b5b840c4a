"""The built-in edits: exact quantization arithmetic (per channel and per group), magnitude pruning,
their specs' validation, and their effect on the real embedded model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.pytorch_utils import Conv1D

from invarlock_provider.edit_spec import parse_edit
from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.edits import apply_edit, fake_quantize, fake_quantize_per_channel


def test_per_channel_rounding_is_exact() -> None:
    weight = torch.tensor([[1.0, -0.5, 0.25], [0.01, 0.02, -0.04]])
    quantized = fake_quantize_per_channel(weight, channel_dim=0, bits=8)
    scales = torch.tensor([[1.0 / 127], [0.04 / 127]])
    assert torch.equal(quantized, torch.round(weight / scales) * scales)
    assert torch.all((quantized - weight).abs() <= scales / 2 + 1e-9)
    assert quantized[0, 0] == 1.0 and quantized[1, 2] == pytest.approx(-0.04)


def test_conv1d_channels_are_columns() -> None:
    weight = torch.tensor([[1.0, 0.001], [-1.0, 0.002]])  # (in, out): column 1 is small
    quantized = fake_quantize_per_channel(weight, channel_dim=1, bits=8)
    assert quantized[1, 1] == pytest.approx(0.002)  # its own scale keeps it exact
    assert (quantized[0, 1] - 0.001).abs() < 0.002 / 254


def test_zero_rows_stay_zero() -> None:
    weight = torch.zeros(2, 3)
    assert torch.equal(fake_quantize_per_channel(weight, 0, 8), weight)


def test_unknown_edit_is_refused() -> None:
    with pytest.raises(BadInputError, match="unknown edit 'prune50'"):
        apply_edit(torch.nn.Linear(2, 2), "prune50")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("quant", "quant needs bits"),
        ("quant:bits=3.5", "bits must be an integer, got '3.5'"),
        ("quant:bits=16", "bits must be 2-8, got 16"),
        ("quant:bits=4,group=0", "group must be a positive number of input columns, got 0"),
        ("quant:bits=4,groups=32", "unknown parameter 'groups'; expected bits, group"),
        ("quant:bits=4,bits=8", "parameter 'bits' given twice"),
        ("prune:sparsity=1", r"sparsity must be in \[0, 1\), got 1.0"),
        ("prune:sparsity=half", "sparsity must be a number"),
        ("prune", "prune needs sparsity"),
        ("quant8:bits=4", "this edit takes no parameters, got bits"),
        ("quant:bits", "'bits' in 'quant:bits': expected KEY=VALUE"),
    ],
)
def test_edit_specs_are_validated_naming_the_parameter(spec: str, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        parse_edit(spec)


def test_specs_have_one_canonical_form() -> None:
    assert parse_edit("quant:group=32,bits=4").spec == "quant:bits=4,group=32"
    assert parse_edit("prune:sparsity=.5").spec == "prune:sparsity=0.5"
    assert parse_edit("quant8").spec == "quant8"


def test_groups_have_their_own_scales_and_the_last_may_be_short() -> None:
    weight = torch.tensor([[1.0, 0.01, 0.02, -0.5, 0.003]])  # groups of 2: [1, .01] [.02, -.5] [.003]
    quantized = fake_quantize(weight, channel_dim=0, bits=4, group=2)
    scales = torch.tensor([[1.0, 1.0, 0.5, 0.5, 0.003]]) / 7
    assert torch.allclose(quantized, torch.round(weight / scales) * scales)
    assert quantized[0, 4] == pytest.approx(0.003)  # a short group of one keeps its value
    conv = fake_quantize(weight.t(), channel_dim=1, bits=4, group=2)  # Conv1D layout: the same numbers
    assert torch.equal(conv, quantized.t())
    # A group as wide as the row is the per-channel scale.
    assert torch.equal(fake_quantize(weight, 0, 4, 5), fake_quantize_per_channel(weight, 0, 4))


def test_prune_zeroes_the_smallest_attention_and_mlp_weights_only(tiny_model_dir) -> None:
    from invarlock_provider.weights.tensors import weights_digest

    digests = []
    for _ in range(2):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
        embeddings = model.transformer.wte.weight.clone()
        before = model.transformer.h[0].mlp.c_fc.weight.clone()
        record = apply_edit(model, "prune:sparsity=0.5")
        after = model.transformer.h[0].mlp.c_fc.weight
        assert (after == 0).float().mean().item() == pytest.approx(0.5, abs=1e-6)
        kept = after != 0
        assert torch.equal(after[kept], before[kept])  # survivors untouched
        assert before[~kept].abs().max() <= before[kept].abs().min()  # the smallest magnitudes went
        assert torch.equal(model.transformer.wte.weight, embeddings)
        assert record["spec"] == "prune:sparsity=0.5" and record["params"]["sparsity"] == 0.5
        assert record["achieved_sparsity"] == pytest.approx(0.5, abs=1e-3)
        assert "transformer.h.3.attn.c_attn" in record["modules_changed"]
        digests.append(weights_digest(model))
    assert digests[0] == digests[1], "the same spec gives the same weights"


def test_quant_with_groups_is_deterministic_and_recorded(tiny_model_dir) -> None:
    from invarlock_provider.weights.tensors import weights_digest

    records, digests = [], []
    for _ in range(2):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
        records.append(apply_edit(model, "quant:bits=4,group=32"))
        digests.append(weights_digest(model))
    assert digests[0] == digests[1]
    assert records[0]["params"]["bits"] == 4 and records[0]["params"]["group"] == 32
    assert records[0]["spec"] == "quant:bits=4,group=32" and records[0]["name"] == "quant"


def window_nll(model, windows: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        logits = model(windows).logits[:, :-1].float()
        losses = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1), reduction="none"
        )
    return losses.view(windows.shape[0], -1).mean(1).numpy()


def test_nll_rises_as_weight_precision_drops(tiny_model_dir, corpus_path) -> None:
    """The machinery behind quant8 on the real model: fewer bits, more damage, monotonically."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tokenizer(corpus_path.read_text(encoding="utf-8")[:200_000], add_special_tokens=False)["input_ids"]
    windows = torch.tensor(ids[: 96 * 128]).view(96, 128)
    baseline = window_nll(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), windows)
    mean_delta = {}
    for bits in (8, 6, 4):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, Conv1D):
                    module.weight.copy_(fake_quantize_per_channel(module.weight, 1, bits))
        mean_delta[bits] = float((window_nll(model, windows) - baseline).mean())
    assert abs(mean_delta[8]) < 2e-4
    assert mean_delta[4] > mean_delta[6] > 0
    assert mean_delta[4] > 10 * abs(mean_delta[8])
