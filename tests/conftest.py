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


@pytest.fixture(scope="session")
def damaged_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A subject checkpoint with the first block's MLP zeroed: a heavily damaged model."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    target = tmp_path_factory.mktemp("damaged") / "model"
    shutil.copytree(tiny_model_dir, target)
    model = AutoModelForCausalLM.from_pretrained(target)
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight.zero_()
        model.transformer.h[0].mlp.c_proj.weight.zero_()
    model.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def real_runs(tmp_path_factory: pytest.TempPathFactory, damaged_model_dir: Path) -> dict[str, Path]:
    """Real runs of the embedded model (default 200/200 windows), keyed by name -> report.json."""
    from invarlock_provider.config import RunOverrides, load_preset
    from invarlock_provider.evaluation.run import execute_run

    root = tmp_path_factory.mktemp("runs")
    specs = {
        "baseline": RunOverrides(),
        "noop": RunOverrides(),
        "quant8": RunOverrides(edit="quant8"),
        "damaged": RunOverrides(model=str(damaged_model_dir)),
        "reseeded": RunOverrides(seed=43),
    }
    return {
        name: execute_run(load_preset(None, overrides=overrides), root / name).report_path
        for name, overrides in specs.items()
    }


def system_tool(*names: str) -> str:
    """A system program the tests run for real; missing, the test fails (never skips): the README's
    test command installs it (scripts/system_packages.sh)."""
    import shutil

    found = next((path for path in map(shutil.which, names) if path), None)
    if found is None:
        pytest.fail(
            f"{names[0]} is not installed: scripts/system_packages.sh, run by bash scripts/test.sh, installs it"
        )
    return found


@pytest.fixture(scope="session")
def chromium() -> str:
    return system_tool("chromium", "chromium-browser")


@pytest.fixture(scope="session")
def docker_compose() -> str:
    return system_tool("docker-compose")
