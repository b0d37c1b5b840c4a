"""Device maps on this CPU machine: a model split between CPU and disk offload scores exactly as it
does in memory, and the guards and the weights digest read the offloaded weights; plus auto batch
sizing and the refusals (a device that does not exist, budgets too small, edits on offloaded weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from invarlock_provider.cli import main
from invarlock_provider.config import RunOverrides, load_preset
from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.run import execute_run
from tests.evaluation.checkpoints import save_random_model, tiny_llama_config

DEV = ["--profile", "dev"]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    config = tiny_llama_config(hidden_size=128, intermediate_size=512, num_hidden_layers=4, tie_word_embeddings=False)
    return save_random_model(config, tmp_path_factory.mktemp("llama") / "model", tiny_model_dir, seed=7)


def checkpoint_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))


def run(model_dir: Path, out: Path, **overrides) -> dict:
    preset = load_preset(None, profile="dev", overrides=RunOverrides(model=str(model_dir), **overrides))
    return execute_run(preset, out).report


@pytest.fixture(scope="module")
def in_memory(llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run(llama_dir, tmp_path_factory.mktemp("mem") / "mem")


def test_disk_offload_scores_equal_in_memory_scores(llama_dir: Path, in_memory: dict, tmp_path: Path) -> None:
    # 70% of the bytes as the CPU budget: accelerate keeps the embedding and the first layer in
    # memory and offloads the other layers and the LM head to disk.
    budget = int(checkpoint_bytes(llama_dir) * 0.7)
    offloaded = run(llama_dir, tmp_path / "off", device_map="auto", max_memory={"cpu": budget, "disk": "1GiB"})
    device_map = offloaded["meta"]["device_map"]
    assert device_map["requested"] == "auto"
    assert device_map["bytes_per_device"]["disk"] > 0 and device_map["bytes_per_device"]["cpu"] > 0
    assert device_map["modules"]["model.layers.0"] == "cpu" and device_map["modules"]["lm_head"] == "disk"
    assert offloaded["meta"]["scoring"]["strategy"] == "model-forward"  # the head's weights are on disk
    for split in ("preview", "final"):
        pairs = zip(
            offloaded["evaluation_windows"][split]["logloss"],
            in_memory["evaluation_windows"][split]["logloss"],
            strict=True,
        )
        assert max(abs(a - b) for a, b in pairs) < 1e-5
    assert offloaded["meta"]["weights_digest"] == in_memory["meta"]["weights_digest"]
    sigmas = {
        report_id: {
            m["name"]: m["sigma_max"]
            for m in next(g for g in r["guards"] if g["name"] == "spectral")["metrics"]["modules"]
        }
        for report_id, r in (("off", offloaded), ("mem", in_memory))
    }
    assert sigmas["off"].keys() == sigmas["mem"].keys() and len(sigmas["off"]) == 4 * 7
    assert all(abs(sigmas["off"][k] - sigmas["mem"][k]) <= 1e-6 * sigmas["mem"][k] for k in sigmas["mem"])
    assert in_memory["meta"]["device_map"] is None


def test_a_single_device_map_loads_there(llama_dir: Path, in_memory: dict, tmp_path: Path) -> None:
    report = run(llama_dir, tmp_path / "cpu", device_map="cpu")
    assert report["meta"]["scoring"]["input_device"] == "cpu"
    assert report["evaluation_windows"]["final"]["logloss"] == in_memory["evaluation_windows"]["final"]["logloss"]


def test_auto_batch_size_is_recorded_and_scores_equal_batch_one(llama_dir: Path, tmp_path: Path) -> None:
    auto = run(llama_dir, tmp_path / "auto", batch_size="auto")
    single = run(llama_dir, tmp_path / "one", batch_size=1)
    batch = auto["meta"]["scoring"]["batch"]
    assert batch["requested"] == "auto" and batch["chosen"] == auto["meta"]["scoring"]["batch_size"] > 1
    assert batch["per_window_bytes"] > 0 and batch["budget_bytes"] > 0
    assert batch["chosen"] == min(32, batch["budget_bytes"] // batch["per_window_bytes"])  # 32 windows per split
    assert single["meta"]["scoring"]["batch"] == {
        "requested": 1,
        "chosen": 1,
        "method": "fixed",
        "probe_s": 0.0,
        "per_window_bytes": None,
        "budget_bytes": None,
        "tried": [],
    }
    for split in ("preview", "final"):
        pairs = zip(
            auto["evaluation_windows"][split]["logloss"], single["evaluation_windows"][split]["logloss"], strict=True
        )
        assert max(abs(a - b) for a, b in pairs) < 1e-6


def test_a_small_cpu_budget_bounds_the_auto_batch(
    llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INVARLOCK_CPU_MEMORY_BUDGET", "1B")
    report = run(llama_dir, tmp_path / "tight", batch_size="auto")
    assert report["meta"]["scoring"]["batch"]["chosen"] == 1
    assert report["meta"]["scoring"]["batch"]["budget_bytes"] == 1


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *DEV, *args], catch_exceptions=False)
    return result.exit_code, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--device-map", "cuda:3"],
            r"^error: device map: cuda:3 does not exist on this machine \(CUDA devices: none\)$",
        ),
        (
            ["--device-map", "gpu"],
            r"^error: --device-map: expected auto, balanced, balanced_low_0, sequential or one device",
        ),
        (["--max-memory", "cpu=2GiB"], r"max_memory is set but model.device_map is not: add --device-map auto"),
        (
            ["--device-map", "auto", "--max-memory", "cpu=lots"],
            r"--max-memory.cpu: expected a size such as 2GiB or 500MB, got 'lots'",
        ),
        (
            ["--device-map", "auto", "--max-memory", "cuda:1=1GiB"],
            r"max_memory.cuda:1: cuda:1 does not exist on this machine",
        ),
        (["--device-map", "auto", "--max-memory", "2GiB"], r"--max-memory '2GiB': expected DEVICE=SIZE"),
        (["--batch-size", "0"], r"--batch-size: expected auto or an integer >= 1, got '0'"),
        (["--device", "cpu", "--device-map", "mps"], r"^error: device map: mps is not available on this machine$"),
    ],
)
def test_bad_device_maps_are_refused_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    import re

    code, stderr = invoke(*args, "--out", str(tmp_path / "x"))
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and re.search(message, stderr.strip()), stderr


def test_max_memory_too_small_says_what_fits_and_what_was_asked(llama_dir: Path, tmp_path: Path) -> None:
    code, stderr = invoke(
        "--model", str(llama_dir), "--device-map", "auto", "--max-memory", "cpu=200KiB", "--out", str(tmp_path / "x")
    )
    assert code == 2
    line = stderr.strip()
    assert len(line.splitlines()) == 1
    assert line.startswith("error: max_memory too small: the model's weights need ")
    assert "cpu=200.0 KiB held" in line and "add disk=SIZE" in line
    assert not (tmp_path / "x" / "report.json").exists()


def test_edits_on_offloaded_weights_are_refused(llama_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"edit quant8: .* is offloaded \(device map\)"):
        run(llama_dir, tmp_path / "q", edit="quant8", device_map="auto", max_memory={"cpu": "1KiB", "disk": "1GiB"})


def test_a_preset_device_map_is_checked_naming_the_file(write_preset, tmp_path: Path) -> None:
    path = write_preset({"model": {"device_map": "everywhere"}})
    code, stderr = invoke("-c", str(path), "--out", str(tmp_path / "x"))
    assert code == 2 and f"{path}: model.device_map: expected auto" in stderr
    path = write_preset({"model": {"device_map": "auto", "max_memory": {"tpu": "1GiB"}}}, name="mm.yaml")
    code, stderr = invoke("-c", str(path), "--out", str(tmp_path / "y"))
    assert code == 2 and "model.max_memory.tpu: unknown device 'tpu'" in stderr


def test_a_preset_device_map_reaches_the_report(write_preset, tmp_path: Path) -> None:
    path = write_preset({"model": {"device_map": "sequential", "max_memory": {"cpu": "8GiB"}}})
    code, _ = invoke("-c", str(path), "--out", str(tmp_path / "seq"))
    assert code == 0
    report = json.loads((tmp_path / "seq" / "report.json").read_text())
    assert report["meta"]["device_map"]["requested"] == "sequential"
    assert report["meta"]["device_map"]["max_memory"] == {"cpu": 8 * 2**30}
    assert set(report["meta"]["device_map"]["modules"].values()) == {"cpu"}
