"""The output layer's per-position NLL with memory bounded by one chunk of logits.

Full logits are positions x vocab: 2.4 GB of fp32 for 8 windows of 512 tokens at a 50k vocabulary,
8 GB at 256k. Here the positions (every window's, flattened, so each chunk is one GEMM of full
height however short the windows or small the batch) go through the output layer a chunk of rows at
a time into one reused fp32 buffer, and the NLL is an in-place logsumexp minus the target logit: no
log-softmax tensor is ever written. The GEMM runs in the weights' dtype (the device's fast one); on
CUDA a bf16/fp16 GEMM writes fp32 straight into the buffer, elsewhere its own dtype into a second
buffer of the chunk's size that is then widened. The log-normaliser is always taken in fp32.

Why the buffer's rows are padded to a multiple of 64 columns: a vocabulary such as GPT-2's 50,257
gives the GEMM an odd output leading dimension, which cost a quarter of its rate on this project's
AMD EPYC (fp32 121 vs 155 GFLOP/s at 333 x 768 x 50,257; bf16 348 vs 386). The columns up to the
last multiple of 64 are one GEMM into the padded buffer and the few left over a second, so no padded
copy of the weights is ever made.

Chunk sizes: 128 MiB of fp32 logits on CPU (667 positions at 50k, 261 at 128k, 131 at 256k). Fewer
rows make the GEMM stream the whole weight matrix for too little work: at 128k x 2048 in fp32 it ran
at 129 GFLOP/s with 130 rows, 157 with 256 and 171 with 512 (benchmarks/gpu_check.py times the
output layer alone). 512 MiB on CUDA, where a chunk of fewer rows than a GEMM tile (128)
would leave most of each tile idle (512 rows at 256k).
"""

from __future__ import annotations

from typing import Any

HEAD_CHUNK_ELEMENTS = 1 << 25
CUDA_HEAD_CHUNK_ELEMENTS = 1 << 27
COLUMN_ALIGNMENT = 64


def chunk_elements_for(device_type: str) -> int:
    return CUDA_HEAD_CHUNK_ELEMENTS if device_type == "cuda" else HEAD_CHUNK_ELEMENTS


class OutputLayerNLL:
    """Callable on (positions, hidden) states and (positions,) targets; fp32 NLL per position."""

    def __init__(self, head: Any, chunk_elements: int = HEAD_CHUNK_ELEMENTS) -> None:
        self.head = head
        self.vocab = head.weight.shape[0]
        self.rows = max(1, chunk_elements // self.vocab)
        self.aligned = self.vocab // COLUMN_ALIGNMENT * COLUMN_ALIGNMENT
        self.padded = -(-self.vocab // COLUMN_ALIGNMENT) * COLUMN_ALIGNMENT
        self._buffers: dict[str, Any] = {}
        self._widening: bool | None = None

    def __call__(self, states: Any, targets: Any) -> Any:
        import torch

        count = states.shape[0]
        nll = torch.empty(count, dtype=torch.float32, device=states.device)
        for begin in range(0, count, self.rows):
            end = min(begin + self.rows, count)
            logits = self._logits(states[begin:end])
            target_logits = logits.gather(1, targets[begin:end, None]).squeeze(1)
            peak = logits.amax(dim=1, keepdim=True)
            torch.sub(peak.squeeze(1) + logits.sub_(peak).exp_().sum(dim=1).log(), target_logits, out=nll[begin:end])
        return nll

    def _logits(self, states: Any) -> Any:
        import torch

        weight, bias = self.head.weight, self.head.bias
        if weight.dtype != torch.float32 and self._widening_mm(states.device):
            logits = self._buffer("logits32", states.shape[0], torch.float32, states.device, self.vocab)
            torch.mm(states, weight.t(), out_dtype=torch.float32, out=logits)
        else:
            logits = self._buffer("logits32", states.shape[0], torch.float32, states.device, self.padded)
            if weight.dtype == torch.float32:
                self._mm(states, logits)
            else:
                narrow = self._buffer("logits", states.shape[0], weight.dtype, states.device, self.padded)
                self._mm(states, narrow)
                logits.copy_(narrow)
        if bias is not None:
            logits += bias
        return logits

    def _mm(self, states: Any, out: Any) -> None:
        """``out = states @ weight.T`` into a view whose rows are ``self.padded`` apart."""
        import torch

        weight = self.head.weight
        if self.aligned in (0, self.vocab):
            torch.mm(states, weight.t(), out=out)
            return
        torch.mm(states, weight[: self.aligned].t(), out=out[:, : self.aligned])
        torch.mm(states, weight[self.aligned :].t(), out=out[:, self.aligned :])

    def _widening_mm(self, device: Any) -> bool:
        """Whether this torch has a low-precision GEMM with fp32 output on ``device`` (CUDA, torch >= 2.8)."""
        if self._widening is None:
            import torch

            self._widening = False
            if device.type == "cuda":
                probe = torch.ones(2, 2, dtype=self.head.weight.dtype, device=device)
                out = torch.empty(2, 2, dtype=torch.float32, device=device)
                try:
                    torch.mm(probe, probe, out_dtype=torch.float32, out=out)
                    self._widening = bool(out[0, 0] == 2)
                except (RuntimeError, TypeError, NotImplementedError):
                    self._widening = False
        return self._widening

    def _buffer(self, key: str, rows: int, dtype: Any, device: Any, stride: int) -> Any:
        """The first ``rows`` rows and ``vocab`` columns of a reused (chunk rows, ``stride``) buffer."""
        import torch

        buffer = self._buffers.get(key)
        if buffer is None or buffer.shape[0] < rows or buffer.shape[1] != stride or buffer.dtype != dtype:
            buffer = torch.empty((max(rows, self.rows), stride), dtype=dtype, device=device)
            self._buffers[key] = buffer
        return buffer[:rows, : self.vocab]
