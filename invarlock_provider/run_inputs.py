"""A run's model, tokenizer and corpus named by ``s3://`` URIs, fetched into the worker's input cache
before anything loads. Each fetched input's URI, objects (size, sha256, ETag, version) and content
digest go to ``meta.inputs``, so a report says exactly which upload it evaluated.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.inputs import RunInputs
from invarlock_provider.evaluation.model import PICKLE_WEIGHTS, SAFE_WEIGHTS, SAFE_WEIGHTS_INDEX

STORE_SCHEMES = ("s3://",)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def is_store_input(reference: str | None) -> bool:
    return isinstance(reference, str) and reference.startswith(STORE_SCHEMES)


def fetch_store_inputs(preset: Any, settings: Any = None) -> RunInputs:
    """Fetch every ``s3://`` input of the preset (model folder, tokenizer folder, text/jsonl corpus);
    the rest is left as it is. Credentials: the standard boto3 chain, with ``settings`` (endpoint,
    region, path style) as for the work store."""
    model = preset.model
    fetched = RunInputs(model=model)
    task_paths = [task.path for task in preset.tasks]
    if not any(is_store_input(ref) for ref in (model.id, model.tokenizer, preset.dataset.path, *task_paths)):
        return fetched
    from invarlock_provider.storage.input_cache import InputCache

    cache = InputCache()
    if is_store_input(model.id):
        stored = _fetch(cache, model.id, settings, check_names=checkpoint_names(model.id))
        fetched.held["model"] = stored
        model = dataclasses.replace(model, id=str(stored.path))
    if is_store_input(model.tokenizer):
        stored = _fetch(cache, str(model.tokenizer), settings, check_names=tokenizer_names(str(model.tokenizer)))
        fetched.held["tokenizer"] = stored
        model = dataclasses.replace(model, tokenizer=str(stored.path))
    if is_store_input(preset.dataset.path):
        if preset.dataset.provider not in ("text", "jsonl"):
            raise BadInputError(
                f"dataset.path {preset.dataset.path}: a store URI serves the text and jsonl providers, "
                f"not {preset.dataset.provider!r}"
            )
        stored = _fetch(cache, str(preset.dataset.path), settings, single_file=True)
        fetched.held["dataset"] = stored
        fetched.dataset_file = stored.path
    for task in preset.tasks:
        if is_store_input(task.path):
            stored = _fetch(cache, task.path, settings, single_file=True)
            fetched.held[f"task:{task.name}"] = stored
            fetched.task_files[task.name] = stored.path
    fetched.model = model
    return fetched


def _fetch(cache: Any, uri: str, settings: Any, **options: Any) -> Any:
    from invarlock_provider.storage.stores import open_store
    from invarlock_provider.storage.uri import bundle_location

    root, key = bundle_location(uri.rstrip("/") if not options.get("single_file") else uri)
    if not key:
        raise BadInputError(f"{uri}: name a prefix (a checkpoint folder) or an object, not a whole bucket")
    return cache.fetch(open_store(root, settings), key, **options)


def checkpoint_names(uri: str) -> Any:
    """A checkpoint prefix must hold a config and safetensors weights; pickle weights are refused
    here, before a byte is downloaded."""

    def check(names: list[str]) -> None:
        top = {name for name in names if "/" not in name}
        if "config.json" not in top:
            raise BadInputError(f"{uri}: no config.json under this prefix; expected a save_pretrained folder")
        if SAFE_WEIGHTS in top or SAFE_WEIGHTS_INDEX in top:
            return
        pickled = sorted(name for name in top if Path(name).match(PICKLE_WEIGHTS))
        if pickled:
            raise BadInputError(
                f"{uri}/{pickled[0]}: pickle weights are refused (loading pickle can run code); "
                "convert it to safetensors: model.save_pretrained(folder, safe_serialization=True)"
            )
        raise BadInputError(f"{uri}: no weights under this prefix (expected {SAFE_WEIGHTS} or {SAFE_WEIGHTS_INDEX})")

    return check


def tokenizer_names(uri: str) -> Any:
    def check(names: list[str]) -> None:
        if not any(name in names for name in TOKENIZER_FILES):
            raise BadInputError(
                f"{uri}: no tokenizer files under this prefix (expected one of {', '.join(TOKENIZER_FILES)})"
            )

    return check
