"""A checkpoint saved with a transformers quantization config (torchao int8 weight-only, which runs
on CPU) evaluated as a subject against its unquantized baseline; and the refusals for methods
whose package or device is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from invarlock_provider.cli import main
from invarlock_provider.config import RunOverrides, load_preset
from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.quantized import check_method_available
from invarlock_provider.evaluation.run import execute_run
from tests.evaluation.checkpoints import pair, save_checkpoint, save_random_model, tiny_llama_config

LAYERS = 2
LINEAR_PER_LAYER = 7  # q, k, v, o, gate, up, down


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    import torch
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import AutoModelForCausalLM, TorchAoConfig

    root = tmp_path_factory.mktemp("quantized")
    save_random_model(tiny_llama_config(num_hidden_layers=LAYERS), root / "base", tiny_model_dir, seed=11)
    quantized = AutoModelForCausalLM.from_pretrained(
        root / "base", dtype=torch.float32, quantization_config=TorchAoConfig(quant_type=Int8WeightOnlyConfig())
    )
    save_checkpoint(quantized, root / "int8", tiny_model_dir)
    return {"base": root / "base", "int8": root / "int8", "root": root}


def evaluate(model: Path, out: Path, edit: str = "noop") -> dict:
    return execute_run(load_preset(None, overrides=RunOverrides(model=str(model), edit=edit)), out).report


@pytest.fixture(scope="module")
def runs(checkpoints: dict[str, Path]) -> dict[str, dict]:
    root = checkpoints["root"]
    return {
        "baseline": evaluate(checkpoints["base"], root / "runs" / "baseline"),
        "int8": evaluate(checkpoints["int8"], root / "runs" / "int8"),
        "int8_again": evaluate(checkpoints["int8"], root / "runs" / "int8_again"),
    }


def test_the_quantized_checkpoint_is_loaded_quantized_and_recorded(runs: dict[str, dict]) -> None:
    meta = runs["int8"]["meta"]
    assert meta["quantization"]["method"] == "torchao"
    assert meta["quantization"]["quantized_tensors"] == LAYERS * LINEAR_PER_LAYER
    assert meta["quantization"]["tensor_types"] == ["Int8Tensor"]
    assert runs["baseline"]["meta"]["quantization"] is None
    # The digest covers the packed parts (int8 data, scales): stable, and not the baseline's.
    assert meta["weights_digest"] == runs["int8_again"]["meta"]["weights_digest"]
    assert meta["weights_digest"] != runs["baseline"]["meta"]["weights_digest"]


def test_the_spectral_guard_measures_the_dequantized_matrices(runs: dict[str, dict]) -> None:
    def sigmas(report: dict) -> dict[str, float]:
        spectral = next(g for g in report["guards"] if g["name"] == "spectral")
        return {m["name"]: m["sigma_max"] for m in spectral["metrics"]["modules"]}

    quantized, baseline = sigmas(runs["int8"]), sigmas(runs["baseline"])
    assert quantized.keys() == baseline.keys() and len(quantized) == LAYERS * LINEAR_PER_LAYER
    assert all(quantized[k] != baseline[k] and abs(quantized[k] / baseline[k] - 1) < 0.01 for k in baseline)
    spectral = next(g for g in runs["int8"]["guards"] if g["name"] == "spectral")
    assert spectral["metrics"]["quantized_matrices"] == LAYERS * LINEAR_PER_LAYER


def test_the_quantized_subject_is_evaluated_against_its_baseline(runs: dict, checkpoints: dict[str, Path]) -> None:
    root = checkpoints["root"]
    deltas = [
        abs(a - b)
        for a, b in zip(
            runs["int8"]["evaluation_windows"]["final"]["logloss"],
            runs["baseline"]["evaluation_windows"]["final"]["logloss"],
            strict=True,
        )
    ]
    assert 0 < max(deltas) < 1e-2
    runs_dir = root / "runs"
    evaluation = pair(
        runs_dir / "int8" / "report.json", runs_dir / "baseline" / "report.json", root / "reports" / "int8"
    )
    assert evaluation["pairing"]["ok"]
    assert evaluation["verdict"] == "PASS", evaluation["reasons"]
    assert abs(evaluation["primary_metric"]["ratio"] - 1) < 1e-2


def test_an_edit_on_a_quantized_checkpoint_is_refused(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"edit quant8: .* is already quantized \(Int8Tensor\)"):
        evaluate(checkpoints["int8"], tmp_path / "q", edit="quant8")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"quant_method": "bitsandbytes", "load_in_8bit": True},
            r"is quantized with bitsandbytes, which needs the package bitsandbytes \(pip install bitsandbytes\); "
            r"it is not installed$",
        ),
        (
            {"quant_method": "gptq", "bits": 4},
            r"is quantized with gptq, which needs the package gptqmodel \(pip install gptqmodel\); "
            r"it is not installed$",
        ),
        ({"quant_method": "awq", "bits": 4}, r"is quantized with awq, which needs the package autoawq"),
    ],
)
def test_a_method_whose_package_is_missing_is_refused_in_one_line(
    checkpoints: dict[str, Path], tmp_path: Path, settings: dict, message: str
) -> None:
    import re

    target = tmp_path / "model"
    shutil.copytree(checkpoints["base"], target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "quantization_config": settings}))
    result = CliRunner().invoke(main, ["run", "--model", str(target), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and re.search(message, line), line


def test_a_gpu_method_without_cuda_is_refused() -> None:
    with pytest.raises(
        BadInputError, match=r"^m is quantized with fp8, whose kernels need a CUDA device; this machine has none$"
    ):
        check_method_available("fp8", "m", cuda_devices=0)
    check_method_available("fp8", "m", cuda_devices=1)
    check_method_available("torchao", "m", cuda_devices=0)
