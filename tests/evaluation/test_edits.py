"""The quant8 edit: exact quantization arithmetic, and its effect on the real embedded model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.pytorch_utils import Conv1D

from invarlock_provider.evaluation.edits import apply_edit, fake_quantize_per_channel


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
    with pytest.raises(ValueError, match="unknown edit 'prune50'"):
        apply_edit(torch.nn.Linear(2, 2), "prune50")


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
