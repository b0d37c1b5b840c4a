"""lm-evaluation-harness sample logs read as InvarLock task results, so two runs can be paired.

``lm_eval --model hf ... --tasks T --output_path DIR --log_samples`` writes, under
``DIR/<model_name_sanitized>/`` (or under DIR itself when given that folder),
``results_<date_id>.json`` and per task ``samples_<task>_<date_id>.jsonl``: one line per document,

    {"doc_id": 0, "doc": {...}, "target": "0",
     "arguments": {"gen_args_0": {"arg_0": CONTEXT, "arg_1": " CHOICE 0"}, ...},
     "resps": [[["-45.84", "False"]], ...], "filtered_resps": [["-45.84", "False"], ...],
     "filter": "none", "metrics": ["acc", "acc_norm"],
     "doc_hash": ..., "prompt_hash": ..., "target_hash": ..., "acc": 1.0, "acc_norm": 1.0}

Each ``multiple_choice`` document becomes one record of the shape InvarLock's own task scoring
writes to report.json (``id``, ``context``, ``choices``, ``gold``, ``logprobs``, ``pred``,
``pred_norm``, ``correct``, ``correct_norm``; not ``tokens``: lm-eval does not log the number of
tokens of a continuation). What lm-eval logs is not taken on trust:

- the log-likelihoods are lm-eval's strings (it writes every response with ``str()``), parsed as
  finite numbers <= 0; the prediction is recomputed from them as ``check_tasks`` recomputes it
  (the first highest, and the first highest per character of the choice without its delimiter, as
  lm-eval's ``acc_norm`` divides), and every document's ``acc``/``acc_norm`` must equal it;
- ``doc_hash``, ``prompt_hash`` and ``target_hash`` must be the sha256 of the logged doc (as
  lm-eval dumps it), context and target, and the results file's ``task_hashes`` the sha256 of
  them all, so a samples file belongs to the results file beside it;
- a continuation must start with the task's target delimiter (``" "`` unless the config says
  otherwise, ``""`` under a chat template without a generation prefix): the choice is the rest;
- every field's type, every document id once, each file at most ``MAX_FILE_BYTES``; JSON parsed
  strictly (no NaN, no duplicate keys). Anything else is one ``BadInputError`` line naming the file,
  the line, the document and the field.

Only what InvarLock scores is read: one context continued by each choice, one response per choice,
filter ``none``. Generation tasks, ``acc_mutual_info`` (its extra unconditional requests),
multiple-input tasks (winogrande: one context per choice), several gold answers and repeats are
refused by name. Two runs pair when their tasks, versions, configs (less what only names the
model: see :func:`comparable_config`) and documents are the same: :func:`pairing_mismatches`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError, redact_url_credentials
from invarlock_provider.fileio import canonical_json, sha256_bytes
from invarlock_provider.strict_json import MalformedJSONError, expect, loads_object
from invarlock_provider.task_file import MAX_CHOICES, first_max

MAX_FILE_BYTES = 256 << 20
MAX_MODEL_CHARS = 300
SUPPORTED_OUTPUT = "multiple_choice"
DEFAULT_TARGET_DELIMITER = " "
# The keys of one record, in InvarLock's order (TaskExample.as_record + ExampleResult.as_record,
# less ``tokens``, which lm-eval does not log).
RECORD_KEYS = ("id", "context", "choices", "gold", "logprobs", "pred", "pred_norm", "correct", "correct_norm")
SAMPLE_KEYS = frozenset(
    {
        "doc_id",
        "doc",
        "target",
        "arguments",
        "resps",
        "filtered_resps",
        "filter",
        "metrics",
        "doc_hash",
        "prompt_hash",
        "target_hash",
    }
)
# Written by lm-eval into every task config's metadata, not by the task: where its YAML was read
# from. The model's own arguments are merged into the same metadata (see comparable_config).
BOOKKEEPING_METADATA = frozenset({"config_source"})
_DATE_ID = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?"
_RESULTS_NAME = re.compile(rf"results_(?P<date>{_DATE_ID})\.json")
_FLOAT = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")
_SECRET_ARG = re.compile(r"token|key|secret|password|auth", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SAMPLES_SHOWN = 3


@dataclass(frozen=True)
class LmEvalTask:
    """One task of an lm-eval run, its documents as InvarLock task records (file order)."""

    name: str
    version: str | int | float | None
    config_sha256: str
    n_samples: int
    examples: list[dict[str, Any]]
    doc_hashes: dict[str, str]  # record id -> lm-eval's doc_hash, for pairing (not part of a record)
    target_delimiter: str
    samples_file: Path
    config: dict[str, Any] = field(repr=False)  # what config_sha256 is the digest of

    @property
    def accuracy(self) -> float:
        return sum(r["correct"] for r in self.examples) / len(self.examples)

    @property
    def accuracy_norm(self) -> float:
        return sum(r["correct_norm"] for r in self.examples) / len(self.examples)


@dataclass(frozen=True)
class LmEvalRun:
    folder: Path
    results_file: Path
    model: str
    lm_eval_version: str | None
    tasks: dict[str, LmEvalTask]
    results_sha256: str
    samples_sha256: dict[str, str]  # task name -> sha256 of its samples file


def read_lm_eval_run(folder: Path) -> LmEvalRun:
    """The newest run in ``folder`` (lm-eval's ``--output_path`` or the model folder under it)."""
    results_file, date_id = _newest_results(Path(folder))
    raw = _read_bounded(results_file)
    where = str(results_file)
    try:
        data = loads_object(raw, where, max_bytes=MAX_FILE_BYTES)
        configs = expect(data.get("configs"), dict, f"{where}: configs")
        for key in ("versions", "n-samples", "task_hashes"):
            expect(data.get(key), dict, f"{where}: {key}")
        expect(data.get("results", {}), dict, f"{where}: results")
        run_config = expect(data.get("config", {}), dict, f"{where}: config")
        model_args = _model_args(run_config.get("model_args"), f"{where}: config.model_args")
        version = expect(data.get("lm_eval_version"), (str, type(None)), f"{where}: lm_eval_version")
        model = _model_name(data, where)
    except MalformedJSONError as exc:
        raise BadInputError(str(exc)) from None
    if not configs:
        raise BadInputError(f"{where}: configs: no tasks (was the run interrupted?)")
    expected = {name: results_file.parent / f"samples_{name}_{date_id}.jsonl" for name in configs}
    strays = sorted(
        p.name for p in results_file.parent.glob(f"samples_*_{date_id}.jsonl") if p not in expected.values()
    )
    if strays:
        raise BadInputError(f"{where}: configs: no task for {', '.join(strays)} of the same run (a task left out?)")
    tasks, digests = {}, {}
    for name, path in expected.items():
        tasks[name], digests[name] = _read_task(name, path, data, model_args, where)
    return LmEvalRun(
        folder=Path(folder),
        results_file=results_file,
        model=model,
        lm_eval_version=version,
        tasks=tasks,
        results_sha256=sha256_bytes(raw),
        samples_sha256=digests,
    )


def _read_task(
    name: str, path: Path, data: dict[str, Any], model_args: set[str], results: str
) -> tuple[LmEvalTask, str]:
    """One task of the results file and its samples file; and the samples file's sha256."""
    where = f"{results}: task {name!r}"
    try:
        config = expect(data["configs"][name], dict, f"{where}: configs")
        if name not in data["versions"]:
            raise MalformedJSONError(f"{where}: versions: missing")
        version = expect(data["versions"][name], (str, int, float, type(None)), f"{where}: versions")
        count = expect(data["n-samples"].get(name), dict, f"{where}: n-samples")
        effective = expect(count.get("effective"), int, f"{where}: n-samples.effective")
        task_hash = expect(data["task_hashes"].get(name), str, f"{where}: task_hashes")
        summary = expect(data.get("results", {}).get(name, {}), dict, f"{where}: results")
    except MalformedJSONError as exc:
        raise BadInputError(str(exc)) from None
    delimiter = _target_delimiter(config, data.get("chat_template") is not None, where)
    if not path.is_file():
        raise BadInputError(f"{where}: its samples file {path.name} is missing (run without --log_samples?)")
    raw = _read_bounded(path)
    examples, doc_hashes = _read_samples(raw, path, delimiter, effective, task_hash)
    _check_summary(summary, examples, where)
    comparable = comparable_config(config, model_args)
    task = LmEvalTask(
        name=name,
        version=version,
        config_sha256=sha256_bytes(canonical_json(comparable)),
        n_samples=effective,
        examples=examples,
        doc_hashes=doc_hashes,
        target_delimiter=delimiter,
        samples_file=path,
        config=comparable,
    )
    return task, sha256_bytes(raw)


def comparable_config(config: dict[str, Any], model_args: set[str]) -> dict[str, Any]:
    """The task's config less what differs between two models' runs of the same task: lm-eval
    merges the model's arguments (``pretrained``, ``dtype``, ...) into every task's ``metadata``
    and adds ``config_source`` (the YAML's path); a function it could not print the source of is
    written with its address, which is that process's."""
    metadata = config.get("metadata")
    comparable = dict(config)
    if isinstance(metadata, dict):
        comparable["metadata"] = {
            k: v for k, v in metadata.items() if k not in model_args and k not in BOOKKEEPING_METADATA
        }
    return _without_addresses(comparable)


def pairing_mismatches(baseline: LmEvalRun, subject: LmEvalRun) -> list[str]:
    """One line per reason the two runs' documents cannot be paired; empty when they can."""
    problems = []
    for name in sorted(set(baseline.tasks) | set(subject.tasks)):
        if name not in subject.tasks:
            problems.append(f"task {name}: only in the baseline ({baseline.results_file})")
            continue
        if name not in baseline.tasks:
            problems.append(f"task {name}: only in the subject ({subject.results_file})")
            continue
        problems.extend(_task_mismatches(baseline.tasks[name], subject.tasks[name]))
    return problems


def _task_mismatches(base: LmEvalTask, subj: LmEvalTask) -> list[str]:
    name = base.name
    problems = []
    if base.version != subj.version:
        problems.append(f"task {name}: version {base.version!r} in the baseline, {subj.version!r} in the subject")
    if base.config_sha256 != subj.config_sha256:
        keys = sorted(k for k in set(base.config) | set(subj.config) if base.config.get(k) != subj.config.get(k))
        problems.append(
            f"task {name}: configs differ in {', '.join(keys)} "
            f"(sha256 {base.config_sha256[:12]} in the baseline, {subj.config_sha256[:12]} in the subject)"
        )
    base_records = {r["id"]: r for r in base.examples}
    subj_records = {r["id"]: r for r in subj.examples}
    only_base = sorted(set(base_records) - set(subj_records), key=_id_order)
    only_subj = sorted(set(subj_records) - set(base_records), key=_id_order)
    if only_base or only_subj:
        parts = [
            f"{len(ids)} only in the {side} ({_some(ids)})"
            for side, ids in (("baseline", only_base), ("subject", only_subj))
            if ids
        ]
        problems.append(f"task {name}: different documents: {'; '.join(parts)}")
    shared = sorted(set(base_records) & set(subj_records), key=_id_order)
    differing = [i for i in shared if base.doc_hashes[i] != subj.doc_hashes[i]]
    if differing:
        problems.append(f"task {name}: {len(differing)} documents differ (doc_hash): {_some(differing)}")
    for key in ("context", "choices", "gold"):
        differing = [i for i in shared if base_records[i][key] != subj_records[i][key]]
        if differing:
            problems.append(f"task {name}: {len(differing)} documents have a different {key}: {_some(differing)}")
    return problems


def _some(ids: list[str]) -> str:
    shown = ", ".join(ids[:_SAMPLES_SHOWN])
    return f"ids {shown}" + (f" and {len(ids) - _SAMPLES_SHOWN} more" if len(ids) > _SAMPLES_SHOWN else "")


def _id_order(identity: str) -> tuple[int, str]:
    return (int(identity), "") if identity.isdigit() else (-1, identity)


def _newest_results(folder: Path) -> tuple[Path, str]:
    """The newest ``results_<date_id>.json`` in ``folder``, or in its one model folder."""
    if not folder.is_dir():
        raise BadInputError(f"{folder}: not a folder (expected lm-eval's --output_path)")
    holders = [folder] if _results_in(folder) else sorted(p for p in folder.iterdir() if p.is_dir() and _results_in(p))
    if not holders:
        others = sorted(p.name for p in folder.glob("results_*.json"))
        hint = f" ({', '.join(others)} not named results_<date>.json)" if others else ""
        raise BadInputError(
            f"{folder}: no results_*.json here or in a model folder below it{hint} (lm-eval --output_path)"
        )
    if len(holders) > 1:
        names = ", ".join(p.name for p in holders)
        raise BadInputError(f"{folder}: results of several models ({names}): name one of these folders")
    return max(_results_in(holders[0]), key=lambda item: item[1])


def _results_in(folder: Path) -> list[tuple[Path, str]]:
    found = []
    for path in folder.glob("results_*.json"):
        match = _RESULTS_NAME.fullmatch(path.name)
        if match and path.is_file():
            found.append((path, match["date"]))
    return found


def _read_bounded(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BadInputError(f"{path}: {size} bytes, larger than {MAX_FILE_BYTES >> 20} MiB")
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise BadInputError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB")
    return raw


def _model_args(value: Any, where: str) -> set[str]:
    """The names of the model's arguments (a dict, or lm-eval's ``k=v,k=v`` string)."""
    if value is None:
        return set()
    if isinstance(value, dict):
        return set(value)
    if isinstance(value, str):
        return {part.split("=", 1)[0].strip() for part in value.split(",") if "=" in part}
    raise MalformedJSONError(f"{where}: expected an object or a k=v,... string, found {type(value).__name__}")


def _model_name(data: dict[str, Any], where: str) -> str:
    """The model as lm-eval names it; a URL's credentials, control characters and length cut."""
    name = data.get("model_name")
    if not isinstance(name, str) or not name:
        args = data.get("config", {}).get("model_args")
        if isinstance(args, dict):
            name = str(args.get("pretrained", "")) or ",".join(
                f"{k}={'***' if _SECRET_ARG.search(k) else v}" for k, v in args.items()
            )
        elif isinstance(args, str):
            name = ",".join(
                f"{k}=***" if _SECRET_ARG.search(k := part.split("=", 1)[0]) else part for part in args.split(",")
            )
    if not isinstance(name, str) or not name:
        raise BadInputError(f"{where}: model_name: missing (and no config.model_args to name the model by)")
    name = _CONTROL.sub("?", redact_url_credentials(name))
    return name if len(name) <= MAX_MODEL_CHARS else name[: MAX_MODEL_CHARS - 3] + "..."


def _target_delimiter(config: dict[str, Any], chat: bool, where: str) -> str:
    """The text lm-eval put between context and choice (its construct_requests)."""
    output_type = config.get("output_type")
    if output_type != SUPPORTED_OUTPUT:
        raise BadInputError(
            f"{where}: output_type {output_type!r}: only {SUPPORTED_OUTPUT} (loglikelihood) tasks can be paired"
        )
    repeats = config.get("repeats", 1)
    if repeats != 1:
        raise BadInputError(f"{where}: repeats {repeats!r}: only tasks scored once per document can be paired")
    delimiter = config.get("target_delimiter", DEFAULT_TARGET_DELIMITER)
    if not isinstance(delimiter, str):
        raise BadInputError(f"{where}: target_delimiter: expected a string, found {type(delimiter).__name__}")
    if chat:
        prefix = config.get("gen_prefix")
        return delimiter if isinstance(prefix, str) and prefix and not prefix[-1].isspace() else ""
    return delimiter


def _without_addresses(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_addresses(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_addresses(v) for v in value]
    if isinstance(value, str):
        return _ADDRESS.sub(" at 0x?>", value)
    return value


def _read_samples(
    raw: bytes, path: Path, delimiter: str, effective: int, task_hash: str
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    records, doc_hashes, seen, chained = [], {}, {}, []
    for number, line in enumerate(lines, start=1):
        where = f"{path}:{number}"
        if not line.strip():
            raise BadInputError(f"{where}: empty line (expected one JSON object per line)")
        try:
            sample = loads_object(line, where, max_bytes=MAX_FILE_BYTES)
            record, hashes = _sample_record(sample, where, delimiter)
        except MalformedJSONError as exc:
            raise BadInputError(str(exc)) from None
        if record["id"] in seen:
            raise BadInputError(
                f"{where}: doc_id {record['id']}: duplicate document (first at line {seen[record['id']]})"
            )
        seen[record["id"]] = number
        records.append(record)
        doc_hashes[record["id"]] = hashes[0]
        chained.append("".join(hashes))
    if not records:
        raise BadInputError(f"{path}: no samples")
    if len(records) != effective:
        raise BadInputError(
            f"{path}: {len(records)} samples, but the results file's n-samples.effective is {effective}"
        )
    if _sha256_text("".join(chained)) != task_hash:
        raise BadInputError(
            f"{path}: task_hashes: the results file's hash is not that of these samples (a file of another run?)"
        )
    return records, doc_hashes


def _sample_record(sample: dict[str, Any], where: str, delimiter: str) -> tuple[dict[str, Any], tuple[str, str, str]]:
    """One logged document as an InvarLock record, every field checked; and its three hashes."""
    doc_id = sample.get("doc_id")
    if not isinstance(doc_id, int) or isinstance(doc_id, bool) or doc_id < 0:
        raise MalformedJSONError(f"{where}: doc_id: expected an integer >= 0, found {_shown(doc_id)}")
    where = f"{where}: doc_id {doc_id}"
    metrics = expect(sample.get("metrics"), list, f"{where}: metrics")
    if not all(isinstance(m, str) for m in metrics) or len(set(metrics)) != len(metrics):
        raise MalformedJSONError(f"{where}: metrics: expected a list of distinct names")
    missing = sorted(SAMPLE_KEYS - set(sample))
    unknown = sorted(set(sample) - SAMPLE_KEYS - set(metrics))
    if missing or unknown:
        what = "; ".join(
            p
            for p in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(unknown)}" if unknown else "",
            )
            if p
        )
        raise MalformedJSONError(f"{where}: not an lm-eval sample ({what})")
    if "acc" not in metrics:
        raise MalformedJSONError(f"{where}: acc: not logged (metrics {metrics}): a multiple-choice task logs acc")
    if "acc_mutual_info" in metrics:
        raise MalformedJSONError(f"{where}: acc_mutual_info: its unconditional requests are not supported")
    filter_name = expect(sample.get("filter"), str, f"{where}: filter")
    if filter_name != "none":
        raise MalformedJSONError(f"{where}: filter {filter_name!r}: only unfiltered (none) responses are supported")
    doc = expect(sample.get("doc"), dict, f"{where}: doc")
    target = expect(sample.get("target"), str, f"{where}: target")
    hashes = tuple(_digest(sample.get(k), f"{where}: {k}") for k in ("doc_hash", "prompt_hash", "target_hash"))

    arguments = expect(sample.get("arguments"), dict, f"{where}: arguments")
    if not 2 <= len(arguments) <= MAX_CHOICES:
        raise MalformedJSONError(f"{where}: arguments: expected 2 to {MAX_CHOICES} choices, found {len(arguments)}")
    if list(arguments) != [f"gen_args_{i}" for i in range(len(arguments))]:
        raise MalformedJSONError(f"{where}: arguments: expected gen_args_0 to gen_args_{len(arguments) - 1} in order")
    contexts, choices = [], []
    for index, value in enumerate(arguments.values()):
        at = f"{where}: arguments.gen_args_{index}"
        pair = expect(value, dict, at)
        if set(pair) != {"arg_0", "arg_1"}:
            raise MalformedJSONError(f"{at}: expected exactly arg_0 (context) and arg_1 (continuation)")
        contexts.append(expect(pair["arg_0"], str, f"{at}.arg_0"))
        continuation = expect(pair["arg_1"], str, f"{at}.arg_1")
        if not continuation.startswith(delimiter) or len(continuation) == len(delimiter):
            raise MalformedJSONError(
                f"{at}.arg_1: {_shown(continuation)} is not the target delimiter {delimiter!r} and a choice"
            )
        choices.append(continuation[len(delimiter) :])
    if len(set(contexts)) != 1:
        raise MalformedJSONError(f"{where}: arguments: choices continue different contexts (a multiple-input task?)")
    context = contexts[0]

    count = len(choices)
    filtered = expect(sample.get("filtered_resps"), list, f"{where}: filtered_resps")
    resps = expect(sample.get("resps"), list, f"{where}: resps")
    if len(filtered) != count or len(resps) != count:
        raise MalformedJSONError(f"{where}: resps, filtered_resps: expected one response per choice ({count})")
    logprobs = []
    for index, (response, raw) in enumerate(zip(filtered, resps, strict=True)):
        at = f"{where}: filtered_resps[{index}]"
        logprobs.append(_response(response, at))
        if not isinstance(raw, list) or len(raw) != 1 or raw[0] != response:
            raise MalformedJSONError(
                f"{where}: resps[{index}]: expected [filtered_resps[{index}]] (one repeat, no filter)"
            )

    gold = _gold(target, choices, f"{where}: target")
    if _sha256_text(json.dumps(doc, indent=2, ensure_ascii=False)) != hashes[0]:
        raise MalformedJSONError(f"{where}: doc_hash: not the sha256 of the logged doc")
    if _sha256_text(context) != hashes[1]:
        raise MalformedJSONError(f"{where}: prompt_hash: not the sha256 of the logged context")
    if _sha256_text(target) != hashes[2]:
        raise MalformedJSONError(f"{where}: target_hash: not the sha256 of the logged target")

    pred = first_max(logprobs)
    pred_norm = first_max([value / len(choice) for value, choice in zip(logprobs, choices, strict=True)])
    record = {
        "id": str(doc_id),
        "context": context,
        "choices": choices,
        "gold": gold,
        "logprobs": logprobs,
        "pred": pred,
        "pred_norm": pred_norm,
        "correct": pred == gold,
        "correct_norm": pred_norm == gold,
    }
    for metric, mine in (("acc", record["correct"]), ("acc_norm", record["correct_norm"])):
        if metric not in metrics:
            continue
        logged = sample.get(metric)
        if not isinstance(logged, (int, float)) or isinstance(logged, bool) or logged not in (0, 1):
            raise MalformedJSONError(f"{where}: {metric}: expected 0.0 or 1.0, found {_shown(logged)}")
        if bool(logged) != mine:
            raise MalformedJSONError(
                f"{where}: {metric}: lm-eval logged {logged!r}, but the logged log-likelihoods give "
                f"{float(mine)!r} (prediction {pred if metric == 'acc' else pred_norm}, gold {gold})"
            )
    return record, hashes  # type: ignore[return-value]


def _response(value: Any, where: str) -> float:
    """``[log-likelihood, is_greedy]`` as lm-eval logs it (strings, from ``str()``), or as numbers."""
    if not isinstance(value, list) or len(value) != 2:
        raise MalformedJSONError(f"{where}: expected [log-likelihood, is_greedy], found {_shown(value)}")
    number, greedy = value
    if isinstance(number, str) and _FLOAT.fullmatch(number):
        number = float(number)
    if not isinstance(number, (int, float)) or isinstance(number, bool) or not -1e9 <= number <= 0:
        raise MalformedJSONError(f"{where}: log-likelihood {_shown(value[0])} is not a finite number <= 0")
    if greedy not in ("True", "False", True, False):
        raise MalformedJSONError(f"{where}: is_greedy {_shown(greedy)} is not True or False")
    return float(number)


def _gold(target: str, choices: list[str], where: str) -> int:
    """The gold index as lm-eval reads it: a number is an index (its template targets), a text is
    the choice it equals; a list (several golds) is not supported."""
    if target.isascii() and target.isdigit():
        gold = int(target)
        if gold >= len(choices):
            raise MalformedJSONError(f"{where}: gold {gold} is out of range (expected an index 0-{len(choices) - 1})")
        return gold
    if target.startswith("[") and target.endswith("]"):
        raise MalformedJSONError(f"{where}: {_shown(target)}: several gold answers are not supported")
    if target in choices:
        return choices.index(target)
    raise MalformedJSONError(f"{where}: {_shown(target)} is neither a choice's index nor one of the choices")


def _check_summary(summary: dict[str, Any], examples: list[dict[str, Any]], where: str) -> None:
    """The results file's accuracies, where it has them, are those of the samples."""
    for metric, key in (("acc,none", "correct"), ("acc_norm,none", "correct_norm")):
        if metric not in summary:
            continue
        value = summary[metric]
        mean = sum(r[key] for r in examples) / len(examples)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or abs(value - mean) > 1e-9:
            raise BadInputError(f"{where}: results.{metric}: {_shown(value)} is not {mean!r} from its samples")


def _digest(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
        raise MalformedJSONError(f"{what}: expected a sha256 (64 lowercase hex digits), found {_shown(value)}")
    return value


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _shown(value: Any) -> str:
    if value is None or isinstance(value, (str, int, float, bool)):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 40 else text[:37] + "..."
    return type(value).__name__


__all__ = ["LmEvalRun", "LmEvalTask", "comparable_config", "pairing_mismatches", "read_lm_eval_run"]
