"""Hub revisions reach the loaders and the report: pinning, overriding, and the warning when unpinned.

There is no hub here: the hub path is exercised through the Hugging Face cache layout that an
offline load reads (a snapshot folder under a commit), which is exactly what a pinned revision
selects on a worker with the model pre-cached.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from invarlock_provider.config import RunOverrides, is_commit, load_preset
from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.model import unpinned_hub_inputs
from invarlock_provider.resources import resolve_embedded

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(root: Path, repo: str, commit: str) -> Path:
    """A model in the Hugging Face hub cache at ``commit``, with ``main`` pointing at it."""
    folder = root / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    shutil.copytree(resolve_embedded("embedded:tiny-pydocs-gpt2"), snapshot)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    return snapshot


def test_a_pinned_revision_loads_that_commit_and_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from invarlock_provider.evaluation.run import execute_run

    hub_cache(tmp_path / "hf", "team/tiny", COMMIT)
    from huggingface_hub import constants

    # read at call time by huggingface_hub and transformers (the variables only when first imported)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv("INVARLOCK_ALLOW_NETWORK", raising=False)
    resolved = load_preset(None, profile="dev", overrides=RunOverrides(model="team/tiny", revision=COMMIT))
    assert resolved.preset.model.revision == COMMIT
    report = execute_run(resolved, tmp_path / "runs").report
    assert report["meta"]["model_id"] == "team/tiny"
    assert report["meta"]["model_revision"] == COMMIT and report["meta"]["model_commit"] == COMMIT

    other = "f" * 40  # a commit the cache does not have: the offline load names the way out
    with pytest.raises(BadInputError, match=r"'team/tiny' is not a local directory or in the Hugging Face cache"):
        execute_run(
            load_preset(None, profile="dev", overrides=RunOverrides(model="team/tiny", revision=other)),
            tmp_path / "other",
        )


def test_overriding_the_model_drops_the_presets_pin(tmp_path: Path) -> None:
    preset = tmp_path / "pinned.yaml"
    preset.write_text(
        f"name: pinned\nmodel:\n  id: team/base\n  revision: {COMMIT}\ndataset:\n  provider: text\n  path: x.txt\n"
    )
    assert load_preset(str(preset)).preset.model.revision == COMMIT
    assert load_preset(str(preset), overrides=RunOverrides(model="team/other")).preset.model.revision is None
    assert load_preset(str(preset), overrides=RunOverrides(revision="a" * 40)).preset.model.revision == "a" * 40
    preset.write_text(preset.read_text().replace(COMMIT, "'two words'"))
    with pytest.raises(BadInputError, match=r"model\.revision.*expected a hub revision"):
        load_preset(str(preset))


def test_unpinned_hub_inputs_warn_only_with_the_network_allowed(tmp_path: Path) -> None:
    def preset(model_revision: str | None, dataset_revision: str | None) -> SimpleNamespace:
        return SimpleNamespace(
            model=SimpleNamespace(id="team/tiny", revision=model_revision),
            dataset=SimpleNamespace(provider="hf", id="team/corpus", revision=dataset_revision),
        )

    loaded = SimpleNamespace(source="team/tiny")
    assert unpinned_hub_inputs(preset(None, None), loaded, COMMIT, network=False) == []
    warnings = unpinned_hub_inputs(preset(None, "main"), loaded, COMMIT, network=True)
    assert warnings[0].startswith(f"model team/tiny: no revision; read at commit {COMMIT}")
    assert warnings[1].startswith("dataset team/corpus: revision 'main' is not a commit")
    assert unpinned_hub_inputs(preset(COMMIT, COMMIT), loaded, COMMIT, network=True) == []
    local = SimpleNamespace(source=str(tmp_path))  # a local folder has nothing to pin
    text = SimpleNamespace(model=preset(None, None).model, dataset=SimpleNamespace(provider="text"))
    assert unpinned_hub_inputs(text, local, None, network=True) == []
    assert is_commit(COMMIT) and not is_commit("main") and not is_commit(COMMIT.upper())
