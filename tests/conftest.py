"""Shared fixtures. Hub access is switched off for the whole session before any HF import, and
the Hugging Face cache points at a throw-away folder, so tests never read or pollute a real cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HF_HOME = tempfile.mkdtemp(prefix="invarlock-test-hf-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_DATASETS_CACHE"] = str(Path(_HF_HOME) / "datasets")
for _switch in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_switch] = "1"
os.environ.pop("INVARLOCK_ALLOW_NETWORK", None)

import pytest  # noqa: E402

from invarlock_provider.resources import resolve_embedded  # noqa: E402

TINY_MODEL = "embedded:tiny-pydocs-gpt2"
EMBEDDED_CORPUS = "embedded:pydocs-eval.txt"


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    return resolve_embedded(TINY_MODEL)


@pytest.fixture(scope="session")
def corpus_path() -> Path:
    return resolve_embedded(EMBEDDED_CORPUS)


@pytest.fixture
def write_preset(tmp_path: Path):
    """Write a preset YAML built from the embedded one with the given overrides."""
    import yaml

    from invarlock_provider.config import deep_merge, load_yaml_mapping, resolve_preset_path

    base = load_yaml_mapping(resolve_preset_path(None))

    def _write(overrides: dict, name: str = "preset.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(deep_merge(base, overrides)))
        return path

    return _write
