"""Dataset providers and tokenized evaluation windows.

A provider turns a preset's dataset section into one text (rows joined by a blank line) plus a
digest of exactly that text; windows are then cut from its token stream. Keeping the join and the
digest here means the Hugging Face and local-file paths produce comparable evidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from invarlock_provider.config import DatasetConfig
from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.network import network_allowed
from invarlock_provider.evaluation.windows import (
    WindowPlan,
    plan_windows,
    token_digest,
    window_tokens,
    windows_digest,
)
from invarlock_provider.fileio import sha256_bytes
from invarlock_provider.resources import is_embedded, resolve_embedded

ROW_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class CorpusText:
    text: str
    source: dict[str, Any]

    @property
    def digest(self) -> str:
        return sha256_bytes(self.text.encode("utf-8"))


@dataclass(frozen=True)
class EvaluationWindows:
    """Token windows ready for scoring, with everything the report records about them."""

    plan: WindowPlan
    preview: np.ndarray
    final: np.ndarray
    corpus_tokens: int
    bos_prepended: bool

    def digests(self, split: str) -> list[str]:
        return [token_digest(window) for window in getattr(self, split)]

    @property
    def windows_digest(self) -> str:
        return windows_digest([*self.preview, *self.final])


def load_corpus(dataset: DatasetConfig, fetched: Path | None = None) -> CorpusText:
    """``fetched``: the local copy of an ``s3://`` ``dataset.path`` (the source records the URI)."""
    if dataset.provider == "hf":
        return _load_hf(dataset)
    path = fetched or _local_path(dataset)
    if dataset.provider == "text":
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise BadInputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        return CorpusText(text=text, source={"provider": "text", "path": str(dataset.path)})
    return CorpusText(
        text=ROW_SEPARATOR.join(_jsonl_rows(path, dataset.text_field)),
        source={"provider": "jsonl", "path": str(dataset.path), "text_field": dataset.text_field},
    )


def _local_path(dataset: DatasetConfig) -> Path:
    if not dataset.path:
        raise BadInputError(f"dataset.path: required for provider '{dataset.provider}'")
    path = resolve_embedded(dataset.path) if is_embedded(dataset.path) else Path(dataset.path)
    if not path.is_file():
        raise BadInputError(f"dataset.path: file not found: {dataset.path}")
    return path


def _jsonl_rows(path: Path, field: str) -> list[str]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInputError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
            value = record.get(field) if isinstance(record, dict) else None
            if not isinstance(value, str):
                raise BadInputError(f"{path}:{number}: expected a string field '{field}'")
            rows.append(value)
    return rows


def _load_hf(dataset: DatasetConfig) -> CorpusText:
    if not dataset.id:
        raise BadInputError("dataset.id: required for provider 'hf'")
    import datasets

    try:
        loaded = datasets.load_dataset(dataset.id, dataset.config, split=dataset.split, revision=dataset.revision)
    except Exception as exc:  # datasets raises many unrelated types for "not available"
        hint = "" if network_allowed() else " (network is off: pre-cache it or set INVARLOCK_ALLOW_NETWORK=1)"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(
            f"dataset {dataset.id}/{dataset.config or '-'} split {dataset.split}: cannot load{hint}: {reason}"
        ) from None
    if dataset.text_field not in loaded.column_names:
        raise BadInputError(
            f"dataset {dataset.id}: no column '{dataset.text_field}' (columns: {', '.join(loaded.column_names)})"
        )
    return CorpusText(
        text=ROW_SEPARATOR.join(loaded[dataset.text_field]),
        source={
            "provider": "hf",
            "dataset_id": dataset.id,
            "dataset_config": dataset.config,
            "split": dataset.split,
            "revision": dataset.revision,
            "fingerprint": getattr(loaded, "_fingerprint", None),
        },
    )


def tokenizer_prepends_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def build_windows(corpus: CorpusText, tokenizer: Any, dataset: DatasetConfig, seed: int) -> EvaluationWindows:
    """Tokenize the corpus once and cut the preview/final windows the seed selects."""
    stream = np.asarray(tokenizer(corpus.text, add_special_tokens=False, verbose=False)["input_ids"], dtype=np.int64)
    bos = tokenizer_prepends_bos(tokenizer)
    body_len = dataset.seq_len - 1 if bos else dataset.seq_len
    plan = plan_windows(len(stream), body_len, dataset.stride, dataset.preview_n, dataset.final_n, seed)

    def gather(ids: tuple[int, ...]) -> np.ndarray:
        if not ids:  # a tasks-only run: no windows to cut
            return np.empty((0, dataset.seq_len), dtype=np.int64)
        windows = np.stack([window_tokens(stream, i, body_len, dataset.stride) for i in ids])
        if bos:
            prefix = np.full((len(ids), 1), tokenizer.bos_token_id, dtype=np.int64)
            windows = np.concatenate([prefix, windows], axis=1)
        return windows

    return EvaluationWindows(
        plan=plan,
        preview=gather(plan.preview_ids),
        final=gather(plan.final_ids),
        corpus_tokens=len(stream),
        bos_prepended=bos,
    )
