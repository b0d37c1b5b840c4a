"""Multiple-choice and cloze task files: one JSON object per line, read strictly.

    {"id": "pydocs-00003-01", "context": "The #! must be ...", "choices": ["...", "...", "...", "..."], "gold": 3}

``id`` is unique in the file, ``context`` is the text every choice continues (empty for a cloze
task scored on the choices alone), ``choices`` are 2 to 26 non-empty continuations and ``gold`` is
the index of the right one. Every line has exactly these four keys: a file that mixes schemas
(another task's fields, a ``label`` instead of ``gold``) is refused by line, not half-read. Examples
are selected by a seeded rank of their ids, so a run and its pair score the same examples whatever
the file's order, and the digests of the file and of the selection go into the report.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import canonical_json, sha256_bytes

TASK_KEYS = frozenset({"id", "context", "choices", "gold"})
MAX_TASK_BYTES = 256 << 20
MAX_CHOICES = 26
MAX_ID_CHARS = 256


@dataclass(frozen=True)
class TaskExample:
    id: str
    context: str
    choices: tuple[str, ...]
    gold: int

    def as_record(self) -> dict[str, object]:
        return {"id": self.id, "context": self.context, "choices": list(self.choices), "gold": self.gold}


def parse_task_file(raw: bytes, where: str) -> list[TaskExample]:
    """Every line an example; any bad line fails the whole file with ``where:LINE: what``."""
    if len(raw) > MAX_TASK_BYTES:
        raise BadInputError(f"{where}: larger than {MAX_TASK_BYTES >> 20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    examples: list[TaskExample] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        example = _example(line, f"{where}:{number}")
        if example.id in seen:
            raise BadInputError(f"{where}:{number}: duplicate id {example.id!r} (first at line {seen[example.id]})")
        seen[example.id] = number
        examples.append(example)
    if not examples:
        raise BadInputError(f"{where}: no examples (expected one JSON object per line)")
    return examples


def _example(line: str, where: str) -> TaskExample:
    try:
        data = json.loads(line, parse_constant=_no_constant)
    except ValueError as exc:
        raise BadInputError(f"{where}: not a JSON object ({exc})") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if set(data) != TASK_KEYS:
        extra, missing = sorted(set(data) - TASK_KEYS), sorted(TASK_KEYS - set(data))
        found = "; ".join(
            part
            for part in (
                f"unknown {', '.join(extra)}" if extra else "",
                f"missing {', '.join(missing)}" if missing else "",
            )
            if part
        )
        raise BadInputError(f"{where}: expected exactly the keys choices, context, gold, id ({found}): mixed schemas?")
    identity, context, choices, gold = data["id"], data["context"], data["choices"], data["gold"]
    if not isinstance(identity, str) or not identity or len(identity) > MAX_ID_CHARS:
        raise BadInputError(f"{where}: id: expected a non-empty string of at most {MAX_ID_CHARS} characters")
    if not isinstance(context, str):
        raise BadInputError(f"{where}: context: expected a string")
    if not isinstance(choices, list) or not 2 <= len(choices) <= MAX_CHOICES:
        raise BadInputError(f"{where}: choices: expected a list of 2 to {MAX_CHOICES} strings")
    if not all(isinstance(choice, str) and choice.strip() for choice in choices):
        raise BadInputError(f"{where}: choices: every choice must be a non-empty string")
    if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
        raise BadInputError(f"{where}: gold {gold!r} is out of range (expected an index 0-{len(choices) - 1})")
    return TaskExample(identity, context, tuple(choices), gold)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def select_examples(examples: Sequence[TaskExample], limit: int | None, seed: int) -> list[TaskExample]:
    """At most ``limit`` examples, the lowest sha256(seed:id) ranks, in file order."""
    if limit is None or limit >= len(examples):
        return list(examples)
    ranked = sorted(examples, key=lambda e: selection_rank(seed, e.id))
    chosen = {e.id for e in ranked[:limit]}
    return [e for e in examples if e.id in chosen]


def selection_rank(seed: int, example_id: str) -> bytes:
    """An example's place in the seeded selection: a smaller limit picks a prefix of a larger one's."""
    return hashlib.sha256(f"{seed}:{example_id}".encode()).digest()


def first_max(values: Sequence[float]) -> int:
    """The index of the highest value, the first on ties (numpy's argmax, as lm-eval picks)."""
    best = 0
    for index, value in enumerate(values):
        if value > values[best]:
            best = index
    return best


def examples_digest(examples: Sequence[TaskExample]) -> str:
    """sha256 of the selected examples as the report lists them (canonical JSON)."""
    return sha256_bytes(canonical_json([e.as_record() for e in examples]))


def lm_eval_task_yaml(name: str, data_file: str) -> str:
    """An lm-evaluation-harness task over a task file: ``lm_eval --include_path`` on its folder
    scores the same examples as multiple choice, as InvarLock scores them (acc and acc_norm), so
    two ``--log_samples`` runs of it pair with ``invarlock report --lm-eval``."""
    return (
        f"task: {name}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(data_file)}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{context}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{gold}}"\n'
        "metric_list:\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n"
    )
