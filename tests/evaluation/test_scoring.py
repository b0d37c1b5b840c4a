"""The output layer over the flattened batch: on every family of the matrix, scores do not depend
on the batch size or on where chunks cut between windows, fp32 matches the model's own forward,
bf16 stays within its tolerance of fp32, and the head's memory is bounded by the chunk."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_provider.evaluation.output_layer import HEAD_CHUNK_ELEMENTS, OutputLayerNLL
from invarlock_provider.evaluation.runtime import PeakMemory, read_vm_rss
from invarlock_provider.evaluation.scoring import WindowScorer
from tests.evaluation.families import FAMILIES, VOCAB, Family

WINDOWS, SEQ_LEN = 6, 48
FP32_TOLERANCE = 1e-5  # per-window mean NLL, nats: what the run tests hold the engine to
BF16_TOLERANCE = 5e-2  # bf16 against fp32 on the same weights, as test_run's bf16 test


@pytest.fixture(scope="module")
def windows() -> Any:
    import torch

    generator = torch.Generator().manual_seed(7)
    return torch.randint(1, VOCAB, (WINDOWS, SEQ_LEN), generator=generator)


def random_model(family: Family) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1234)
    return AutoModelForCausalLM.from_config(family.build_config()).eval()


def engine_scores(
    model: Any, windows: Any, *, batch_size: int, dtype_name: str, chunk: int | None = None
) -> list[float]:
    scorer = WindowScorer(model, batch_size=batch_size, device="cpu", dtype_name=dtype_name)
    if chunk is not None and scorer.output is not None:
        scorer.output.rows = chunk
    return scorer.score(windows, [str(i) for i in range(len(windows))]).logloss


def forward_scores(model: Any, windows: Any) -> list[float]:
    import torch

    with torch.inference_mode():
        return [model(window[None], labels=window[None]).loss.item() for window in windows]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_scores_do_not_depend_on_batch_size_or_chunk_edges(family: Family, windows: Any) -> None:
    import torch

    model = random_model(family)
    reference = forward_scores(model, windows)
    # 47 predicting positions per window; chunks of 13 and 100 rows cut inside and across windows.
    for batch_size, chunk in ((1, None), (4, 13), (WINDOWS, 100), (WINDOWS, 1)):
        scores = engine_scores(model, windows, batch_size=batch_size, dtype_name="float32", chunk=chunk)
        drift = max(abs(a - b) for a, b in zip(scores, reference, strict=True))
        assert drift < FP32_TOLERANCE, (batch_size, chunk, drift)
    bf16 = model.to(torch.bfloat16)
    single = engine_scores(bf16, windows, batch_size=1, dtype_name="bfloat16")
    batched = engine_scores(bf16, windows, batch_size=WINDOWS, dtype_name="bfloat16", chunk=13)
    assert max(abs(a - b) for a, b in zip(single, reference, strict=True)) < BF16_TOLERANCE
    assert max(abs(a - b) for a, b in zip(batched, reference, strict=True)) < BF16_TOLERANCE
    # Windows never share a forward pass's arithmetic with each other beyond GEMM blocking.
    assert max(abs(a - b) for a, b in zip(single, batched, strict=True)) < BF16_TOLERANCE / 5


def test_the_output_layer_at_a_128k_vocabulary_stays_within_its_chunk() -> None:
    """8 windows x 512 tokens at a 128k vocabulary: full logits would be 2 GiB of fp32; the head
    may take the chunk's buffers (128 MiB fp32) and the flattened hidden states, nothing vocab x batch."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab, hidden, batch, seq_len = 131_072, 64, 8, 512
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=seq_len, pad_token_id=0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    scorer = WindowScorer(model, batch_size=batch, device="cpu", dtype_name="float32")
    assert scorer.output is not None and scorer.output.rows == HEAD_CHUNK_ELEMENTS // vocab
    ids = torch.randint(1, vocab, (batch, seq_len), generator=torch.Generator().manual_seed(3))
    scorer.probe(ids[:1])  # buffers allocated and first-touch costs paid before measuring
    resident = read_vm_rss()
    with PeakMemory("cpu") as peak:
        scorer.probe(ids)
    assert resident is not None and peak.peak_bytes is not None
    growth = peak.peak_bytes - resident
    full_logits = batch * seq_len * vocab * 4
    chunk_bytes = HEAD_CHUNK_ELEMENTS * 4
    body_bytes = batch * seq_len * scorer.activation_estimate(seq_len) // seq_len
    assert growth < 2 * chunk_bytes + body_bytes, (growth, chunk_bytes, body_bytes)
    assert growth < full_logits / 8


@settings(max_examples=60, deadline=None)
@given(
    positions=st.integers(1, 40),
    vocab=st.integers(2, 300),
    rows=st.integers(1, 50),
    bias=st.booleans(),
    dtype_name=st.sampled_from(["float32", "bfloat16"]),
)
def test_the_output_layer_equals_cross_entropy_over_full_logits(
    positions: int, vocab: int, rows: int, bias: bool, dtype_name: str
) -> None:
    """Any chunking of any positions gives each position the NLL of its full row of logits (the
    GEMM in the weights' dtype, widened to fp32, as the reference computes it)."""
    import torch

    torch.manual_seed(positions * 1000 + vocab)
    dtype = getattr(torch, dtype_name)
    head = torch.nn.Linear(16, vocab, bias=bias).to(dtype)
    states = (4 * torch.randn(positions, 16)).to(dtype)
    targets = torch.randint(0, vocab, (positions,))
    layer = OutputLayerNLL(head, chunk_elements=rows * vocab)
    assert layer.rows == rows
    with torch.inference_mode():
        nll = layer(states, targets)
        logits = (states @ head.weight.t()).float() + (head.bias.float() if bias else 0)
        reference = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    assert nll.dtype == torch.float32
    assert torch.allclose(nll, reference, rtol=1e-5, atol=1e-5), (nll - reference).abs().max()
