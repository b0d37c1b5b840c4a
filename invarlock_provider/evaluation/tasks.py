"""A run's multiple-choice tasks: read and selected before scoring (their digests join the reuse
key), scored after the perplexity windows, and recorded per example in report.json."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock_provider.config import TaskConfig
from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import sha256_bytes
from invarlock_provider.resources import is_embedded, resolve_embedded
from invarlock_provider.task_file import TaskExample, examples_digest, parse_task_file, select_examples

SCORING = {
    "method": "loglikelihood, multiple choice",
    "target_delimiter": " ",
    "accuracy_norm": "log-likelihood per character of the choice",
}


@dataclass(frozen=True)
class LoadedTask:
    config: TaskConfig
    file_sha256: str
    available: int
    examples: list[TaskExample]

    @property
    def examples_sha256(self) -> str:
        return examples_digest(self.examples)

    def key(self) -> dict[str, str]:
        return {"name": self.config.name, "file_sha256": self.file_sha256, "examples_sha256": self.examples_sha256}


def load_tasks(tasks: tuple[TaskConfig, ...], fetched: dict[str, Path], seed: int) -> list[LoadedTask]:
    """Each task's file (a fetched copy for an s3:// path), parsed strictly and its examples selected."""
    loaded = []
    for task in tasks:
        path = fetched.get(task.name) or (resolve_embedded(task.path) if is_embedded(task.path) else Path(task.path))
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise BadInputError(f"tasks.{task.name}: {task.path}: cannot read ({exc.strerror or exc})") from None
        examples = parse_task_file(raw, task.path)
        selected = select_examples(examples, task.limit, seed)
        loaded.append(LoadedTask(task, sha256_bytes(raw), len(examples), selected))
    return loaded


def score_tasks(
    tasks: list[LoadedTask],
    model: Any,
    tokenizer: Any,
    *,
    device: Any,
    batch_size: int,
    max_length: int | None,
    seed: int,
    scored: Callable[[str, dict[str, Any]], None],
) -> list[dict[str, Any]]:
    """Every task's block for report.json; ``scored`` hears each task's name and summary."""
    from invarlock_provider.evaluation.task_scoring import score_examples

    blocks = []
    for task in tasks:
        results, cost = score_examples(
            model, tokenizer, task.examples, device=device, batch_size=batch_size, max_length=max_length
        )
        records = [
            {**example.as_record(), **result.as_record(example.choices)}
            for example, result in zip(task.examples, results, strict=True)
        ]
        n = len(records)
        block = {
            "name": task.config.name,
            "source": task.config.path,
            "file_sha256": task.file_sha256,
            "examples_available": task.available,
            "limit": task.config.limit,
            "selection": "sha256(seed:id) rank",
            "seed": seed,
            "examples_sha256": task.examples_sha256,
            "scoring": dict(SCORING),
            "n": n,
            "accuracy": sum(r["correct"] for r in records) / n,
            "accuracy_norm": sum(r["correct_norm"] for r in records) / n,
            "cost": cost,
            "examples": records,
        }
        scored(task.config.name, {k: block[k] for k in ("n", "accuracy", "accuracy_norm")} | cost)
        blocks.append(block)
    return blocks
