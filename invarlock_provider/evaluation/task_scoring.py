"""Multiple-choice examples scored by log-likelihood, the way lm-evaluation-harness scores them.

Each choice is a continuation of the example's context (after one space, lm-eval's default target
delimiter; an empty context is continued from the end-of-text token). Its score is the sum of the
log-probabilities of its tokens given the context; the prediction is the highest-scoring choice
(``acc``), and the highest score per character of the choice (``acc_norm``), first on ties as
numpy's argmax. The continuation's tokens are those of context + continuation after the context's
own, so a word split differently at the boundary is scored as the model would read it.
Continuations are scored in batches, longest first, right-padded: with causal attention a
position never sees the padding after it, so a score does not depend on its batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from invarlock_provider.task_file import TaskExample, first_max

TARGET_DELIMITER = " "


@dataclass(frozen=True)
class ExampleResult:
    id: str
    gold: int
    logprobs: tuple[float, ...]
    tokens: tuple[int, ...]

    @property
    def pred(self) -> int:
        return first_max(self.logprobs)

    def pred_norm(self, choices: Sequence[str]) -> int:
        return first_max([score / len(choice) for score, choice in zip(self.logprobs, choices, strict=True)])

    def as_record(self, choices: Sequence[str]) -> dict[str, Any]:
        pred, pred_norm = self.pred, self.pred_norm(choices)
        return {
            "id": self.id,
            "gold": self.gold,
            "logprobs": list(self.logprobs),
            "tokens": list(self.tokens),
            "pred": pred,
            "pred_norm": pred_norm,
            "correct": pred == self.gold,
            "correct_norm": pred_norm == self.gold,
        }


@dataclass(frozen=True)
class Request:
    example: int
    choice: int
    context: list[int]
    continuation: list[int]


def encode_requests(tokenizer: Any, examples: Sequence[TaskExample], max_length: int | None) -> list[Request]:
    """Token ids of every (context, continuation) pair, context cut from the left to fit."""
    requests = []
    empty_prefix = [tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0]
    for number, example in enumerate(examples):
        context_ids = tokenizer.encode(example.context, add_special_tokens=False) if example.context else []
        for index, choice in enumerate(example.choices):
            if example.context:
                whole = tokenizer.encode(example.context + TARGET_DELIMITER + choice, add_special_tokens=False)
                shared = _common_prefix(context_ids, whole)
                context, continuation = whole[:shared], whole[shared:]
            else:
                context, continuation = list(empty_prefix), tokenizer.encode(choice, add_special_tokens=False)
            if not context:
                context = list(empty_prefix)
            if max_length is not None and len(context) + len(continuation) > max_length + 1:
                keep = max(1, max_length + 1 - len(continuation))
                context = context[-keep:]
            requests.append(Request(number, index, context, continuation))
    return requests


def _common_prefix(context: list[int], whole: list[int]) -> int:
    """Where the continuation starts: after the tokens ``whole`` shares with the context alone."""
    shared = 0
    for a, b in zip(context, whole, strict=False):
        if a != b:
            break
        shared += 1
    return min(shared, len(whole) - 1)


def score_examples(
    model: Any,
    tokenizer: Any,
    examples: Sequence[TaskExample],
    *,
    device: Any,
    batch_size: int,
    max_length: int | None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[ExampleResult], dict[str, Any]]:
    """Every choice of every example scored; the results in example order and what it cost."""
    import torch

    begin = time.perf_counter()
    requests = encode_requests(tokenizer, examples, max_length)
    order = sorted(range(len(requests)), key=lambda i: -(len(requests[i].context) + len(requests[i].continuation)))
    scores: list[float] = [math.nan] * len(requests)
    tokens_scored = 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [requests[i] for i in order[start : start + batch_size]]
            inputs = [(r.context + r.continuation)[:-1] for r in batch]
            width = max(len(ids) for ids in inputs)
            padded = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ids in enumerate(inputs):
                padded[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            logits = model(input_ids=padded.to(device)).logits
            for row, request in enumerate(batch):
                end = len(inputs[row])
                predicting = logits[row, end - len(request.continuation) : end].float()  # only these rows
                targets = torch.tensor(request.continuation, dtype=torch.long, device=predicting.device)
                chosen = torch.log_softmax(predicting, dim=-1).gather(1, targets[:, None])
                scores[order[start + row]] = float(chosen.sum())
                tokens_scored += len(request.continuation)
            if progress is not None:
                progress(len(batch))
    results = []
    cursor = 0
    for example in examples:
        count = len(example.choices)
        chosen = requests[cursor : cursor + count]
        results.append(
            ExampleResult(
                id=example.id,
                gold=example.gold,
                logprobs=tuple(scores[cursor : cursor + count]),
                tokens=tuple(len(r.continuation) for r in chosen),
            )
        )
        cursor += count
    cost = {
        "requests": len(requests),
        "tokens_scored": tokens_scored,
        "tokens_read": sum(len(r.context) + len(r.continuation) - 1 for r in requests),
        "seconds": round(time.perf_counter() - begin, 4),
    }
    return results, cost
