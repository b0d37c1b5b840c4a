"""Presets and profiles: load YAML, merge, validate into frozen dataclasses.

A preset names the model, the dataset and its windowing, the seed and the evaluation settings.
A profile (dev / ci / release) overrides window counts; a preset may carry its own per-profile
overrides under ``profiles:`` when the generic counts do not fit its corpus. Validation happens
once, here, with messages that name the file and the dotted key, so a typo never reaches a GPU.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invarlock_provider.device_map_spec import check_batch_size, check_device_map, check_max_memory
from invarlock_provider.edit_spec import parse_edit
from invarlock_provider.errors import BadInputError
from invarlock_provider.resources import configs_dir

PROFILES = ("dev", "ci", "release")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def check_edit(value: str, where: str) -> None:
    parse_edit(value, where)


def check_revision(value: str, where: str) -> None:
    """A hub revision: a commit sha pins it; a branch or tag is accepted and the run warns."""
    if not value or len(value) > 128 or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise BadInputError(f"{where}: expected a hub revision (a commit sha), got {value!r}")


def is_commit(revision: str | None) -> bool:
    """A 40-hex commit sha: the only revision that names fixed content."""
    return isinstance(revision, str) and len(revision) == 40 and all(ch in "0123456789abcdef" for ch in revision)


PROVIDERS = ("hf", "text", "jsonl")
DEFAULT_PRESET = "causal_lm/tiny_pydocs_128"
PRESET_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ModelConfig:
    id: str
    tokenizer: str | None = None
    revision: str | None = field(default=None, metadata={"check": check_revision})
    trust_remote_code: bool = False
    device_map: str | None = field(default=None, metadata={"check": check_device_map})
    max_memory: dict[str, Any] | None = field(default=None, metadata={"check": check_max_memory})


@dataclass(frozen=True)
class DatasetConfig:
    provider: str = field(metadata={"choices": PROVIDERS})
    id: str | None = None
    config: str | None = None
    revision: str | None = field(default=None, metadata={"check": check_revision})
    split: str = "test"
    path: str | None = None
    text_field: str = "text"
    seq_len: int = field(default=512, metadata={"min": 2})
    stride: int = field(default=512, metadata={"min": 1})
    preview_n: int = field(default=64, metadata={"min": 0})
    final_n: int = field(default=64, metadata={"min": 0})


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int | str = field(default=8, metadata={"check": check_batch_size})
    device: str = field(default="auto", metadata={"choices": DEVICES})
    dtype: str = field(default="auto", metadata={"choices": DTYPES})


@dataclass(frozen=True)
class EditConfig:
    """``name`` is an edit spec: ``quant8``, ``quant:bits=4,group=32``, ``prune:sparsity=0.5`` ..."""

    name: str = field(default="noop", metadata={"check": check_edit})


def check_task_name(value: str, where: str) -> None:
    from invarlock_provider.storage.uri import check_segment

    check_segment(value, f"{where}:")


def check_task_path(value: str, where: str) -> None:
    if not value.strip():
        raise BadInputError(f"{where}: expected a task file path, embedded:NAME or s3://BUCKET/KEY")


@dataclass(frozen=True)
class TaskConfig:
    """A multiple-choice task scored beside the perplexity windows (``task_file.py`` has the format):
    ``path`` is a JSONL file, ``embedded:NAME`` or ``s3://BUCKET/KEY``; ``limit`` examples at most,
    chosen by the preset's seed."""

    name: str = field(metadata={"check": check_task_name})
    path: str = field(metadata={"check": check_task_path})
    limit: int | None = field(default=None, metadata={"min": 1})


@dataclass(frozen=True)
class Preset:
    model: ModelConfig
    dataset: DatasetConfig
    name: str = ""
    seed: int = field(default=42, metadata={"min": 0})
    eval: EvalConfig = field(default_factory=EvalConfig)
    edit: EditConfig = field(default_factory=EditConfig)
    tasks: tuple[TaskConfig, ...] = ()
    profiles: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOverrides:
    """Command-line values that win over preset and profile."""

    model: str | None = None
    revision: str | None = None
    edit: str | None = None
    device: str | None = None
    dtype: str | None = None
    batch_size: int | str | None = None
    seed: int | None = None
    device_map: str | None = None
    max_memory: dict[str, str] | None = None
    task_limit: int | None = None

    def as_mapping(self) -> dict[str, Any]:
        mapping: dict[str, Any] = {}
        pairs = {
            ("model", "id"): self.model,
            ("edit", "name"): self.edit,
            ("eval", "device"): self.device,
            ("eval", "dtype"): self.dtype,
            ("eval", "batch_size"): self.batch_size,
            ("model", "device_map"): self.device_map,
            ("model", "max_memory"): self.max_memory,
        }
        for (section, key), value in pairs.items():
            if value is not None:
                mapping.setdefault(section, {})[key] = value
        if self.model is not None:  # a preset's pin belongs to its own model, never to another one
            mapping["model"]["revision"] = self.revision
        elif self.revision is not None:
            mapping.setdefault("model", {})["revision"] = self.revision
        if self.seed is not None:
            mapping["seed"] = self.seed
        return mapping


@dataclass(frozen=True)
class ResolvedPreset:
    """A validated preset plus where it came from, for the report's provenance."""

    preset: Preset
    source: Path
    profile: str | None


def resolve_preset_path(reference: str | None) -> Path:
    """Accept a file path, or the name of a preset shipped under configs/presets."""
    if reference is None:
        reference = DEFAULT_PRESET
    candidate = Path(reference)
    if candidate.is_file():
        return candidate
    bundled = configs_dir() / "presets" / reference
    for path in (bundled, bundled.with_name(bundled.name + ".yaml")):
        if path.is_file():
            return path
    if candidate.suffix in PRESET_SUFFIXES:  # meant as a file: its name says so
        raise BadInputError(f"preset file not found: {reference}")
    raise BadInputError(
        f"preset {reference!r} not found: neither a file nor a bundled preset (bundled: {', '.join(bundled_presets())})"
    )


def bundled_presets() -> list[str]:
    """The preset names shipped under configs/presets (``causal_lm/wikitext2_512``), so an unknown
    name is answered with the ones that exist rather than a bare "not found"."""
    root = configs_dir() / "presets"
    return sorted(path.relative_to(root).with_suffix("").as_posix() for path in root.rglob("*.yaml"))


def load_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_yaml_mapping(text, str(path))


def parse_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """A YAML document whose top level is a mapping; ``where`` (a path or URI) names it in errors."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise BadInputError(f"{where}: malformed YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInputError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_preset(
    reference: str | None,
    profile: str | None = None,
    overrides: RunOverrides | None = None,
) -> ResolvedPreset:
    path = resolve_preset_path(reference)
    raw = load_yaml_mapping(path)
    # Validate the preset on its own first so errors name the file the key is in.
    build_dataclass(Preset, raw, source=path)
    merged = raw
    if profile is not None:
        if profile not in PROFILES:
            raise BadInputError(f"--profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
        profile_path = configs_dir() / "profiles" / f"{profile}.yaml"
        profile_raw = load_yaml_mapping(profile_path)
        build_partial(Preset, profile_raw, source=profile_path)
        merged = deep_merge(merged, profile_raw)
        own = raw.get("profiles", {}).get(profile)
        if own is not None:
            if not isinstance(own, dict):
                raise BadInputError(f"{path}: profiles.{profile}: expected a mapping")
            build_partial(Preset, own, source=path, prefix=f"profiles.{profile}.")
            merged = deep_merge(merged, own)
    if overrides is not None:
        merged = deep_merge(merged, overrides.as_mapping())
    preset = build_dataclass(Preset, merged, source=path)
    if overrides is not None and overrides.task_limit is not None:
        if not preset.tasks:
            raise BadInputError(f"--task-limit: {path} lists no tasks")
        if overrides.task_limit < 1:
            raise BadInputError(f"--task-limit: expected an integer >= 1, got {overrides.task_limit}")
        limited = tuple(dataclasses.replace(task, limit=overrides.task_limit) for task in preset.tasks)
        preset = dataclasses.replace(preset, tasks=limited)
    if not preset.name:
        preset = dataclasses.replace(preset, name=path.name.removesuffix(".yaml"))
    return ResolvedPreset(preset=preset, source=path, profile=profile)


def build_partial(cls: type, data: dict[str, Any], *, source: Path, prefix: str = "") -> None:
    """Check keys and types of an override without requiring the fields it leaves out."""
    _check_mapping(cls, data, source=source, prefix=prefix, require=False)


def build_dataclass(cls: type, data: Any, *, source: Path, prefix: str = "") -> Any:
    return _check_mapping(cls, data, source=source, prefix=prefix, require=True)


def _check_mapping(cls: type, data: Any, *, source: Path, prefix: str, require: bool) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(data, dict):
        raise BadInputError(f"{source}: {where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise BadInputError(f"{source}: unknown key '{prefix}{key}' (expected one of: {', '.join(fields)})")
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        dotted = f"{prefix}{name}"
        if name not in data:
            no_default = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
            if require and no_default:
                raise BadInputError(f"{source}: missing required key '{dotted}'")
            continue
        values[name] = _check_value(hints[name], spec, data[name], source=source, dotted=dotted, require=require)
    return cls(**values) if require else None


def _check_value(hint: Any, spec: dataclasses.Field, value: Any, *, source: Path, dotted: str, require: bool) -> Any:
    optional = False
    members: list[Any] = [hint]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        hint = members[0]
        origin = typing.get_origin(hint)
    if value is None:
        if optional:
            return None
        raise BadInputError(f"{source}: {dotted}: expected {_describe(hint)}, got null")
    check = spec.metadata.get("check")
    if len(members) > 1:
        check(value, f"{source}: {dotted}")  # a field of several types is described by its check
        return value
    if dataclasses.is_dataclass(hint):
        return _check_mapping(hint, value, source=source, prefix=f"{dotted}.", require=require)
    if origin is tuple and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        return _check_records(typing.get_args(hint)[0], value, source=source, dotted=dotted, require=require)
    if origin is dict:
        if not isinstance(value, dict):
            raise BadInputError(f"{source}: {dotted}: expected a mapping, got {type(value).__name__}")
        if check is not None:
            check(value, f"{source}: {dotted}")
        return value
    if not _is_instance(value, hint):
        raise BadInputError(f"{source}: {dotted}: expected {_describe(hint)}, got {type(value).__name__} ({value!r})")
    if check is not None:
        check(value, f"{source}: {dotted}")
    choices = spec.metadata.get("choices")
    if choices is not None and value not in choices:
        raise BadInputError(f"{source}: {dotted}: expected one of {', '.join(choices)}, got {value!r}")
    minimum = spec.metadata.get("min")
    if minimum is not None and value < minimum:
        raise BadInputError(f"{source}: {dotted}: expected a value >= {minimum}, got {value!r}")
    return float(value) if hint is float else value


def _check_records(cls: type, value: Any, *, source: Path, dotted: str, require: bool) -> tuple[Any, ...]:
    """A list of mappings, each checked as ``cls``; names (a ``name`` field) unique."""
    if not isinstance(value, list):
        raise BadInputError(f"{source}: {dotted}: expected a list, got {type(value).__name__}")
    records = [
        _check_mapping(cls, item, source=source, prefix=f"{dotted}[{number}].", require=require)
        for number, item in enumerate(value)
    ]
    names = [item.get("name") for item in value if isinstance(item, dict)]
    duplicates = sorted({str(name) for name in names if names.count(name) > 1})
    if duplicates:
        raise BadInputError(f"{source}: {dotted}: duplicate name {duplicates[0]!r}")
    return tuple(records) if require else ()


def _is_instance(value: Any, hint: Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def preset_snapshot(preset: Preset) -> dict[str, Any]:
    """The resolved preset as plain data, recorded in report.json."""
    snapshot = dataclasses.asdict(preset)
    snapshot.pop("profiles", None)
    return snapshot
