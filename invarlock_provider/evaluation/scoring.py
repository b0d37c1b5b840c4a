"""Batched per-window negative log-likelihood.

Why it is not ``model(ids, labels=ids)``: that materialises batch x seq x vocab logits (2.4 GB for
8 windows of 512 tokens with a 50k vocabulary) and a log-softmax of the same size, which made
batching slower than one window at a time. Here the transformer body runs on the whole batch,
and the output layer runs over the batch's predicting positions in chunks of bounded memory
(``output_layer.py``): memory for the head is bounded by the chunk whatever the batch size or
vocabulary, and no log-softmax tensor is ever written. On a
GPT-2-small shape this is GEMM-bound (matmuls are ~75% of CPU time); see
benchmarks/eval_throughput.py.

Models whose output layer is not a plain linear map of the body's last hidden state (logit
soft-capping, logit scaling) are scored with their own forward. The split path is also checked
against the model's own forward on the first window of the first batch before it is trusted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from invarlock_provider.errors import EvaluationAbortedError
from invarlock_provider.evaluation.output_layer import OutputLayerNLL, chunk_elements_for
from invarlock_provider.weights.tensors import is_meta, is_packed

SELF_CHECK_TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2, "float16": 1e-2}
_UNSPLITTABLE_CONFIG_KEYS = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")


@dataclass(frozen=True)
class WindowScores:
    logloss: list[float]
    token_counts: list[int]


@dataclass(frozen=True)
class ScoringPlan:
    """How a model is scored; recorded in the report so a reviewer can see the path taken."""

    strategy: str
    batch_size: int
    head_chunk_tokens: int | None
    fused_activations: int


def keep_freed_memory_mapped() -> bool:
    """Ask glibc to keep large freed blocks instead of unmapping them.

    Every batch allocates and frees the same large activations; with glibc's defaults each
    one is a fresh mmap whose pages fault in again, which costs a visible share of CPU time.
    Returns whether the setting was applied (only on glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    one_gib = 1 << 30
    return bool(mallopt(m_mmap_threshold, 512 << 20)) and bool(mallopt(m_trim_threshold, one_gib))


def fuse_activations(model: Any) -> int:
    """Swap GELU written as a Python expression for torch's fused kernel of the same function.

    GPT-2's ``gelu_new`` is the tanh approximation computed as six elementwise ops, each with a
    batch x seq x 4d temporary: about a seventh of fp32 CPU time and several hundred MB at batch 8.
    ``nn.GELU(approximate="tanh")`` is the same formula in one pass; each swap is checked on a
    probe tensor first and skipped if the two disagree beyond float rounding.
    """
    import torch

    try:
        from transformers.activations import FastGELUActivation, NewGELUActivation
    except ImportError:  # pragma: no cover - transformers without these classes
        return 0
    fused = torch.nn.GELU(approximate="tanh")
    probe = torch.linspace(-10, 10, 8193)
    swapped = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) in (NewGELUActivation, FastGELUActivation) and torch.allclose(
                child(probe), fused(probe), rtol=1e-5, atol=1e-6
            ):
                setattr(parent, name, fused)
                swapped += 1
    return swapped


class WindowScorer:
    def __init__(self, model: Any, *, batch_size: int, device: Any, dtype_name: str) -> None:
        """``device`` is where token ids go in: the input embedding's device when the model is split."""
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.dtype_name = dtype_name
        self.head = model.get_output_embeddings()
        self.body = getattr(model, "base_model", None)
        self.split = self._can_split()
        self.output = None
        if self.split:
            self.output = OutputLayerNLL(self.head, chunk_elements_for(self.head.weight.device.type))
        self._checked = False
        self.fused_activations = fuse_activations(model)

    @property
    def plan(self) -> ScoringPlan:
        strategy = "body-batched+head-chunked" if self.split else "model-forward"
        return ScoringPlan(
            strategy=strategy,
            batch_size=self.batch_size,
            head_chunk_tokens=self.output.rows if self.output else None,
            fused_activations=self.fused_activations,
        )

    def _can_split(self) -> bool:
        import torch

        if self.body is None or self.body is self.model or not isinstance(self.head, torch.nn.Linear):
            return False
        if is_meta(self.head.weight) or is_packed(self.head.weight):
            return False  # an offloaded or quantized head is applied by its own module, in the forward
        config = self.model.config
        text_config = getattr(config, "get_text_config", lambda: config)()
        return not any(getattr(text_config, key, None) for key in _UNSPLITTABLE_CONFIG_KEYS)

    def score(
        self,
        windows: Any,
        labels: Sequence[str],
        on_batch: Callable[[list[float]], None] | None = None,
    ) -> WindowScores:
        """Mean NLL per window (over its seq_len - 1 predicted tokens) and the token counts;
        ``on_batch`` sees each batch's values as soon as they are known (progress, checkpoints)."""
        import torch

        ids = torch.as_tensor(windows, dtype=torch.long)
        losses: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(ids), self.batch_size):
                batch = ids[start : start + self.batch_size].to(self.device)
                nll_sums = self._batch_nll_sums(batch) if self.split else self._forward_nll_sums(batch)
                if self.split and not self._checked:
                    nll_sums = self._check_split_path(batch, nll_sums)
                means = (nll_sums / (batch.shape[1] - 1)).tolist()
                for offset, value in enumerate(means):
                    if not math.isfinite(value):
                        raise EvaluationAbortedError(
                            f"non-finite loss ({value}) in window {labels[start + offset]}; "
                            "the model produced NaN/inf logits, aborting without a report"
                        )
                losses.extend(means)
                if on_batch is not None:
                    on_batch(means)
        return WindowScores(logloss=losses, token_counts=[ids.shape[1] - 1] * len(ids))

    def probe(self, windows: Any) -> None:
        """Score ``windows`` as one batch and discard the result: auto batch sizing measures this."""
        import torch

        batch = torch.as_tensor(windows, dtype=torch.long).to(self.device)
        with torch.inference_mode():
            self._batch_nll_sums(batch) if self.split else self._forward_nll_sums(batch)

    def activation_estimate(self, seq_len: int) -> int:
        """Bytes one window's activations take at the widest point of one decoder layer."""
        config = self.model.config
        text_config = getattr(config, "get_text_config", lambda: config)()
        hidden = getattr(text_config, "hidden_size", None) or getattr(text_config, "n_embd", 1024)
        inner = getattr(text_config, "intermediate_size", None) or getattr(text_config, "n_inner", None) or 4 * hidden
        heads = getattr(text_config, "num_attention_heads", None) or getattr(text_config, "n_head", 16)
        element = 2 if self.dtype_name in ("bfloat16", "float16") else 4
        return seq_len * (8 * hidden + 3 * inner) * element + heads * seq_len * seq_len * 4

    def _batch_nll_sums(self, batch: Any) -> Any:
        import torch

        weight = self.head.weight
        # A split model's body ends wherever its last layer lives; the head may live elsewhere.
        hidden = self.body(input_ids=batch).last_hidden_state
        rows, positions = batch.shape[0], batch.shape[1] - 1
        # Every predicting position of every window, in one (rows x positions, hidden) matrix, so
        # each chunk is one GEMM of full height however short the windows or small the batch.
        states = hidden[:, :-1].to(weight.device).reshape(rows * positions, hidden.shape[-1])
        targets = batch[:, 1:].to(weight.device).reshape(-1)
        nll = self.output(states, targets)
        accumulate = torch.float32 if weight.device.type == "mps" else torch.float64
        return nll.view(rows, positions).sum(dim=1, dtype=accumulate)

    def _forward_nll_sums(self, batch: Any) -> Any:
        import torch

        sums = []
        for row in batch:
            logits = self.model(input_ids=row[None]).logits[0, :-1].float()
            sums.append(torch.nn.functional.cross_entropy(logits, row[1:].to(logits.device), reduction="sum"))
        return torch.stack(sums).to(batch.device)

    def _check_split_path(self, batch: Any, nll_sums: Any) -> Any:
        """Compare the split path with the model's own forward on one window, once per scorer."""
        self._checked = True
        split_value = float(nll_sums[0])
        reference = float(self._forward_nll_sums(batch[:1])[0])
        tolerance = SELF_CHECK_TOLERANCE.get(self.dtype_name, 1e-2)
        if math.isfinite(split_value) and abs(split_value - reference) <= tolerance * max(1.0, abs(reference)):
            return nll_sums
        self.split = False
        self.output = None
        return self._forward_nll_sums(batch)
