"""Dataset providers on local files, including the real Hugging Face `datasets` code path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from invarlock_provider.config import DatasetConfig
from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.data import ROW_SEPARATOR, load_corpus

ROWS = ["First paragraph of the corpus.", "Second one, with more words.", "Third and last."]


def test_hf_provider_loads_a_local_dataset_folder(tmp_path: Path) -> None:
    folder = tmp_path / "my_corpus"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps({"text": row}) + "\n" for row in ROWS))
    (folder / "train.jsonl").write_text(json.dumps({"text": "not this split"}) + "\n")
    corpus = load_corpus(DatasetConfig(provider="hf", id=str(folder), split="test"))
    assert corpus.text == ROW_SEPARATOR.join(ROWS)
    assert corpus.source["provider"] == "hf" and corpus.source["split"] == "test"
    assert corpus.source["fingerprint"]


def test_hf_provider_names_missing_columns(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "test.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(BadInputError, match=r"no column 'text' \(columns: body\)"):
        load_corpus(DatasetConfig(provider="hf", id=str(folder), split="test"))


def test_uncached_hub_dataset_offline_is_a_clear_error() -> None:
    config = DatasetConfig(provider="hf", id="wikitext", config="wikitext-2-raw-v1", split="test")
    with pytest.raises(
        BadInputError,
        match=r"^dataset wikitext/wikitext-2-raw-v1 split test: cannot load "
        r"\(network is off: .*INVARLOCK_ALLOW_NETWORK=1\)",
    ) as info:
        load_corpus(config)
    assert "\n" not in str(info.value)


def test_jsonl_provider_joins_rows_like_hf(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"content": row}) + "\n" for row in ROWS))
    corpus = load_corpus(DatasetConfig(provider="jsonl", path=str(path), text_field="content"))
    assert corpus.text == ROW_SEPARATOR.join(ROWS)


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n{broken\n")
    with pytest.raises(BadInputError, match=rf"^{path}:2: invalid JSON"):
        load_corpus(DatasetConfig(provider="jsonl", path=str(path)))


def test_text_provider_digest_is_over_the_exact_text(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("hello\n")
    first = load_corpus(DatasetConfig(provider="text", path=str(path)))
    path.write_text("hello!\n")
    second = load_corpus(DatasetConfig(provider="text", path=str(path)))
    assert first.digest != second.digest
    assert len(first.digest) == 64


def test_missing_local_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"^dataset\.path: file not found: .*nope\.txt$"):
        load_corpus(DatasetConfig(provider="text", path=str(tmp_path / "nope.txt")))


def test_embedded_corpus_resolves() -> None:
    corpus = load_corpus(DatasetConfig(provider="text", path="embedded:pydocs-eval.txt"))
    assert len(corpus.text) > 400_000
