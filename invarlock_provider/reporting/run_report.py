"""Reading one run's report.json as evidence: parse, check the schema, keep the exact bytes.

The bytes are kept because everything downstream (copies, sha256 references, archive manifests)
must refer to exactly the file that was read, not to a re-serialisation of it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import sha256_bytes
from invarlock_provider.guards.record import SPECTRAL
from invarlock_provider.strict_json import MalformedJSONError, expect, loads_object

REPORT_SCHEMA = "invarlock.report/1"
SPLITS = ("preview", "final")
WINDOW_FIELDS = ("window_ids", "token_digests", "logloss", "token_counts")
# Bounds on what a run can have produced; beyond them a number is not a measurement and would
# overflow the statistics recomputed from it (exp of a ratio, a sigma ratio).
MAX_WINDOWS = 100_000
MIN_LOGLOSS, MAX_LOGLOSS = -1.0, 100.0
MIN_SIGMA, MAX_SIGMA = 1e-30, 1e12


@dataclass(frozen=True)
class RunReport:
    path: Path
    raw: bytes
    data: dict[str, Any]

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.raw)

    @property
    def run_id(self) -> str:
        return str(self.data["run_id"])

    def windows(self, split: str) -> dict[str, list[Any]]:
        return self.data["evaluation_windows"][split]


def load_run_report(path: Path, role: str) -> RunReport:
    """Load and validate; every failure is one line naming the role, the file and the problem."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"{role} report not found: {path}") from None
    except OSError as exc:
        raise BadInputError(f"{role} report {path}: cannot read ({exc.strerror})") from None
    return parse_run_report(raw, path, role)


def parse_run_report(raw: bytes, path: Path, role: str) -> RunReport:
    """Everything an evaluation or ``verify`` reads from a run report, checked before it is used:
    a report is evidence read years later, possibly after a bucket writer changed it."""
    where = f"{role} report {path}"
    try:
        data = loads_object(raw, where)
    except MalformedJSONError as exc:
        raise BadInputError(f"{exc} (truncated or corrupt?)") from None
    schema = data.get("schema_version")
    if schema != REPORT_SCHEMA:
        raise BadInputError(f"{where}: unknown schema_version {schema!r} (this tool reads {REPORT_SCHEMA!r})")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("primary_metric"), dict):
        raise BadInputError(f"{where}: no metrics.primary_metric (the run aborted before scoring finished?)")
    for section in ("run_id", "meta", "data", "evaluation_windows"):
        if section not in data:
            raise BadInputError(f"{where}: missing '{section}'")
    try:
        _check_sections(data, where)
        _check_guards(data.get("guards", []), where)
        check_tasks(data.get("tasks", []), where)
        for split in SPLITS:
            _check_windows(data, split, where)
    except MalformedJSONError as exc:
        raise BadInputError(str(exc)) from None
    return RunReport(path=path, raw=raw, data=data)


def _check_sections(data: dict[str, Any], where: str) -> None:
    expect(data["run_id"], str, f"{where}: run_id")
    meta = expect(data["meta"], dict, f"{where}: meta")
    for key in ("model_id", "weights_digest", "tokenizer_hash"):
        expect(meta.get(key), (str, type(None)), f"{where}: meta.{key}")
    expect(data.get("edit"), (dict, type(None)), f"{where}: edit")
    block = expect(data["data"], dict, f"{where}: data")
    for key in ("seq_len", "stride"):
        if expect(block.get(key), int, f"{where}: data.{key}") < 1:
            raise MalformedJSONError(f"{where}: data.{key} must be at least 1")
    for key in ("preview_n", "final_n"):
        count = expect(block.get(key), int, f"{where}: data.{key}")
        if not 0 <= count <= MAX_WINDOWS:
            raise MalformedJSONError(f"{where}: data.{key} {count} is out of range (0-{MAX_WINDOWS})")
    for key in ("candidate_windows", "seed"):
        expect(block.get(key, 0), int, f"{where}: data.{key}")
    for key in ("dataset_digest", "windows_digest"):
        expect(block.get(key), (str, type(None)), f"{where}: data.{key}")
    primary = data["metrics"]["primary_metric"]
    for split in SPLITS:
        expect(primary.get(split), (int, float, type(None)), f"{where}: metrics.primary_metric.{split}")
    expect(data["evaluation_windows"], dict, f"{where}: evaluation_windows")


def _check_guards(guards: Any, where: str) -> None:
    guards = expect(guards, list, f"{where}: guards")
    for number, entry in enumerate(guards):
        label = f"{where}: guards[{number}]"
        guard = expect(entry, dict, label)
        if not isinstance(guard.get("name"), str) or not isinstance(guard.get("passed"), bool):
            raise MalformedJSONError(f"{label}: guards must be a list of objects with name and passed")
        metrics = expect(guard.get("metrics", {}), dict, f"{label}.metrics")
        violations = expect(guard.get("violations", []), list, f"{label}.violations")
        if not all(isinstance(v, str) for v in violations):
            raise MalformedJSONError(f"{label}.violations: expected a list of strings")
        if guard["name"] == SPECTRAL:
            _check_spectral_modules(metrics.get("modules", []), f"{label}.metrics.modules")


def _check_spectral_modules(modules: Any, where: str) -> None:
    for number, entry in enumerate(expect(modules, list, where)):
        module = expect(entry, dict, f"{where}[{number}]")
        expect(module.get("name"), str, f"{where}[{number}].name")
        expect(module.get("family"), str, f"{where}[{number}].family")
        expect(module.get("layer"), (int, type(None)), f"{where}[{number}].layer")
        sigma = expect(module.get("sigma_max"), (int, float), f"{where}[{number}].sigma_max")
        if not (sigma == 0 or MIN_SIGMA <= sigma <= MAX_SIGMA):
            raise MalformedJSONError(
                f"{where}[{number}].sigma_max {sigma} is out of range (0 or {MIN_SIGMA}-{MAX_SIGMA:g})"
            )


def _check_windows(data: dict[str, Any], split: str, where: str) -> None:
    block = data["evaluation_windows"].get(split)
    if not isinstance(block, dict):
        raise MalformedJSONError(f"{where}: missing evaluation_windows.{split}")
    lengths = set()
    for name in WINDOW_FIELDS:
        values = block.get(name)
        if not isinstance(values, list):
            raise MalformedJSONError(f"{where}: evaluation_windows.{split}.{name} must be a list")
        lengths.add(len(values))
    if len(lengths) != 1:
        raise MalformedJSONError(f"{where}: evaluation_windows.{split} lists have different lengths")
    ids = block["window_ids"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ids):
        raise MalformedJSONError(f"{where}: evaluation_windows.{split}.window_ids must be integers >= 0")
    if any(later <= earlier for earlier, later in itertools.pairwise(ids)):
        raise MalformedJSONError(f"{where}: evaluation_windows.{split}.window_ids must be increasing (corpus order)")
    if not all(isinstance(v, str) and len(v) == 64 for v in block["token_digests"]):
        raise MalformedJSONError(f"{where}: evaluation_windows.{split}.token_digests must be sha256 hex strings")
    if not all(_number(v) and MIN_LOGLOSS <= v <= MAX_LOGLOSS for v in block["logloss"]):
        raise MalformedJSONError(
            f"{where}: evaluation_windows.{split}.logloss holds values that are not finite nats per token "
            f"({MIN_LOGLOSS} to {MAX_LOGLOSS})"
        )
    seq_len = data["data"]["seq_len"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= seq_len for v in block["token_counts"]):
        raise MalformedJSONError(
            f"{where}: evaluation_windows.{split}.token_counts must be positive integers up to seq_len {seq_len}"
        )


def check_tasks(tasks: Any, where: str) -> None:
    """Every task's per-example results, and everything derived from them, recomputed: a changed
    log-probability, prediction, correctness or accuracy is named, not trusted."""
    from invarlock_provider.errors import BadInputError
    from invarlock_provider.task_file import TaskExample, examples_digest, first_max

    names = set()
    for number, entry in enumerate(expect(tasks, list, f"{where}: tasks")):
        label = f"{where}: tasks[{number}]"
        block = expect(entry, dict, label)
        name = expect(block.get("name"), str, f"{label}.name")
        if name in names:
            raise MalformedJSONError(f"{label}.name: duplicate task {name!r}")
        names.add(name)
        label = f"{where}: tasks.{name}"
        records = expect(block.get("examples"), list, f"{label}.examples")
        if not records or len(records) != block.get("n"):
            raise MalformedJSONError(f"{label}: n is not the number of examples listed")
        examples, correct, correct_norm = [], 0, 0
        for position, raw in enumerate(records):
            at = f"{label}.examples[{position}]"
            record = expect(raw, dict, at)
            choices = expect(record.get("choices"), list, f"{at}.choices")
            if not choices or not all(isinstance(c, str) and c for c in choices):
                raise MalformedJSONError(f"{at}.choices: expected non-empty strings")
            gold = expect(record.get("gold"), int, f"{at}.gold")
            expect(record.get("doc_hash", ""), str, f"{at}.doc_hash")  # an lm-eval import's document hash
            scores = expect(record.get("logprobs"), list, f"{at}.logprobs")
            if len(scores) != len(choices) or not all(_number(v) and -1e9 <= v <= 0 for v in scores):
                raise MalformedJSONError(f"{at}.logprobs: expected one log-probability (<= 0) per choice")
            pred = first_max(scores)
            pred_norm = first_max([v / len(c) for v, c in zip(scores, choices, strict=True)])
            expected = {
                "pred": pred,
                "pred_norm": pred_norm,
                "correct": pred == gold,
                "correct_norm": pred_norm == gold,
            }
            for field_name, value in expected.items():
                if record.get(field_name) != value or type(record.get(field_name)) is not type(value):
                    raise MalformedJSONError(
                        f"{at}.{field_name}: {record.get(field_name)!r} is not what its logprobs give ({value!r})"
                    )
            correct += pred == gold
            correct_norm += pred_norm == gold
            try:
                examples.append(
                    TaskExample(
                        expect(record.get("id"), str, f"{at}.id"),
                        expect(record.get("context"), str, f"{at}.context"),
                        tuple(choices),
                        gold,
                    )
                )
            except BadInputError as exc:
                raise MalformedJSONError(str(exc)) from None
        if block.get("examples_sha256") != examples_digest(examples):
            raise MalformedJSONError(f"{label}.examples_sha256: not the digest of the examples listed")
        for field_name, value in (("accuracy", correct / len(records)), ("accuracy_norm", correct_norm / len(records))):
            if not _number(block.get(field_name)) or abs(block[field_name] - value) > 1e-12:
                raise MalformedJSONError(
                    f"{label}.{field_name}: {block.get(field_name)!r} is not {value!r} from its examples"
                )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
