from __future__ import annotations

from pathlib import Path

import pytest

from invarlock_provider.config import RunOverrides, load_preset
from invarlock_provider.errors import BadInputError


def test_bundled_presets_load_by_path_and_by_name() -> None:
    by_path = load_preset("configs/presets/causal_lm/wikitext2_512.yaml")
    by_name = load_preset("causal_lm/wikitext2_512")
    assert by_path.preset == by_name.preset
    dataset = by_path.preset.dataset
    assert (dataset.provider, dataset.id, dataset.config) == ("hf", "wikitext", "wikitext-2-raw-v1")
    assert (dataset.seq_len, dataset.stride) == (512, 512)


def test_default_preset_is_the_embedded_tiny_model() -> None:
    preset = load_preset(None).preset
    assert preset.model.id == "embedded:tiny-pydocs-gpt2"
    assert preset.dataset.provider == "text"


@pytest.mark.parametrize(("profile", "counts"), [("dev", (32, 32)), ("ci", (200, 200)), ("release", (400, 400))])
def test_profiles_override_window_counts(profile: str, counts: tuple[int, int]) -> None:
    dataset = load_preset(None, profile=profile).preset.dataset
    assert (dataset.preview_n, dataset.final_n) == counts


def test_preset_can_cap_a_profile_for_its_corpus() -> None:
    dataset = load_preset("causal_lm/wikitext2_512", profile="release").preset.dataset
    assert (dataset.preview_n, dataset.final_n) == (270, 270)


def test_command_line_overrides_win() -> None:
    overrides = RunOverrides(model="m", edit="quant8", device="cpu", dtype="bfloat16", batch_size=3, seed=9)
    preset = load_preset(None, profile="dev", overrides=overrides).preset
    assert (preset.model.id, preset.edit.name, preset.seed) == ("m", "quant8", 9)
    assert (preset.eval.device, preset.eval.dtype, preset.eval.batch_size) == ("cpu", "bfloat16", 3)


def test_missing_preset_file() -> None:
    with pytest.raises(BadInputError, match=r"^preset file not found: configs/nope\.yaml$"):
        load_preset("configs/nope.yaml")


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  id: [unclosed\n")
    with pytest.raises(BadInputError, match=rf"^{path}: malformed YAML at line \d+"):
        load_preset(str(path))


def test_unknown_key_names_key_and_file(write_preset) -> None:
    path = write_preset({"dataset": {"seqlen": 64}})
    with pytest.raises(BadInputError, match=rf"^{path}: unknown key 'dataset\.seqlen' \(expected one of: .*seq_len"):
        load_preset(str(path))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"dataset": {"seq_len": "128"}}, r"dataset\.seq_len: expected an integer, got str \('128'\)"),
        ({"dataset": {"seq_len": True}}, r"dataset\.seq_len: expected an integer, got bool"),
        ({"dataset": {"seq_len": 1}}, r"dataset\.seq_len: expected a value >= 2, got 1"),
        ({"model": {"trust_remote_code": "yes"}}, r"model\.trust_remote_code: expected true or false"),
        ({"eval": {"dtype": "int4"}}, r"eval\.dtype: expected one of auto, float32, bfloat16, float16, got 'int4'"),
        ({"dataset": ["not", "a", "mapping"]}, r"dataset: expected a mapping, got list"),
        ({"seed": None}, r"seed: expected an integer, got null"),
    ],
)
def test_wrong_types_are_one_line_errors(write_preset, override: dict, message: str) -> None:
    path = write_preset(override)
    with pytest.raises(BadInputError, match=rf"^{path}: {message}") as info:
        load_preset(str(path))
    assert "\n" not in str(info.value)


def test_profile_override_in_preset_is_validated(write_preset) -> None:
    path = write_preset({"profiles": {"dev": {"dataset": {"final": 3}}}})
    with pytest.raises(BadInputError, match=r"unknown key 'profiles\.dev\.dataset\.final'"):
        load_preset(str(path), profile="dev")


def test_missing_required_section(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("dataset:\n  provider: text\n")
    with pytest.raises(BadInputError, match=r"missing required key 'model'"):
        load_preset(str(path))
