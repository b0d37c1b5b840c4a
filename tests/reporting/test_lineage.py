"""Lineage names: where a model, a dataset and an artifact live, as OpenLineage names them."""

from __future__ import annotations

from pathlib import Path

import pytest

from invarlock_provider.errors import BadInputError
from invarlock_provider.reporting.lineage import (
    LineageDataset,
    corpus_dataset,
    location_dataset,
    model_dataset,
)


def test_a_store_object_is_its_bucket_and_key_and_a_local_one_its_path(tmp_path: Path) -> None:
    assert location_dataset("s3://evidence/prod/quant8_balanced/ev-1") == LineageDataset(
        "s3://evidence", "prod/quant8_balanced/ev-1"
    )
    assert location_dataset((tmp_path / "a b").as_uri()) == LineageDataset("file", str(tmp_path / "a b"))
    assert location_dataset("reports/q8") == LineageDataset("file", str(Path("reports/q8").resolve()))


def test_an_unknown_scheme_is_refused_naming_the_location() -> None:
    with pytest.raises(BadInputError, match=r"gs://b/k: expected a local path, file:///PATH or s3://BUCKET/KEY"):
        location_dataset("gs://b/k")


def test_a_model_is_named_by_where_it_was_loaded_from_and_versioned_by_its_weights(tmp_path: Path) -> None:
    hub = model_dataset({"id": "gpt2", "source": "gpt2", "weights_digest": "w1"})
    assert hub == LineageDataset("huggingface", "gpt2", "w1", "MODEL")
    checkpoint = str(tmp_path / "ckpt" / "step-100")
    folder = model_dataset({"id": "ckpt/step-100", "source": checkpoint, "weights_digest": "w2"})
    assert folder == LineageDataset("file", checkpoint, "w2", "MODEL")
    embedded = model_dataset({"id": "embedded:tiny-pydocs-gpt2", "source": "/site/x", "weights_digest": "w3"})
    assert embedded == LineageDataset("invarlock", "embedded:tiny-pydocs-gpt2", "w3", "MODEL")


def test_a_dataset_is_named_by_its_hub_id_config_and_split_or_its_file() -> None:
    hub = corpus_dataset(
        {
            "provider": "hf",
            "dataset_id": "Salesforce/wikitext",
            "dataset_config": "wikitext-2-raw-v1",
            "split": "test",
            "dataset_digest": "d1",
        }
    )
    assert hub == LineageDataset("huggingface", "Salesforce/wikitext/wikitext-2-raw-v1/test", "d1")
    local = corpus_dataset({"provider": "jsonl", "path": "/data/eval.jsonl", "dataset_digest": "d2"})
    assert local == LineageDataset("file", "/data/eval.jsonl", "d2")
