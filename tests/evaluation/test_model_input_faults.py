"""`invarlock run` on checkpoints that can never load: pickle weights and damaged safetensors files.

Each is refused with one line that names the file, exit 2, before any weights are read; pickle is
never unpickled, whether the folder is local or a hub model in the Hugging Face cache.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from invarlock_provider.cli import main

DEV = ["--profile", "dev"]
PICKLE_HINT = "pickle weights are refused (loading pickle can run code); convert it to safetensors: "
PICKLE_HINT += "model.save_pretrained(folder, safe_serialization=True)"


def refused(model: str, out: Path) -> str:
    """The one line a refused run prints; nothing is written under ``out``."""
    result = CliRunner().invoke(main, ["run", *DEV, "--model", model, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert not out.exists() or not list(out.rglob("report.json"))
    return lines[0]


def checkpoint_copy(tiny_model_dir: Path, target: Path) -> Path:
    shutil.copytree(tiny_model_dir, target)
    return target


def pickled_checkpoint(tiny_model_dir: Path, target: Path) -> Path:
    """The embedded model saved the pre-safetensors way: a torch.save'd state dict, no safetensors."""
    import torch
    from safetensors.torch import load_file

    checkpoint_copy(tiny_model_dir, target)
    state = load_file(target / "model.safetensors")
    (target / "model.safetensors").unlink()
    torch.save(state, target / "pytorch_model.bin")
    return target


class _Payload:
    """Unpickling this creates a file: the test's stand-in for code a pickle runs when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_pickle_weights_are_refused_naming_the_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    model_dir = pickled_checkpoint(tiny_model_dir, tmp_path / "pickled")
    line = refused(str(model_dir), tmp_path / "runs" / "x")
    assert line == f"error: {model_dir / 'pytorch_model.bin'}: {PICKLE_HINT}"


def test_pickle_is_never_unpickled(tmp_path: Path, tiny_model_dir: Path) -> None:
    model_dir = checkpoint_copy(tiny_model_dir, tmp_path / "payload")
    (model_dir / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps({"transformer.wte.weight": _Payload(marker)}))
    line = refused(str(model_dir), tmp_path / "runs" / "x")
    assert "pytorch_model.bin: pickle weights are refused" in line
    assert not marker.exists()


def test_pickle_only_hub_model_in_the_cache_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Offline, a hub id loads from the cache's snapshot folder: the same check applies there."""
    from huggingface_hub.constants import HF_HUB_CACHE

    repo = f"invarlock-tests/pickled-{tmp_path.name}"
    commit = "0" * 40
    cached = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    (cached / "refs").mkdir(parents=True)
    (cached / "refs" / "main").write_text(commit)
    snapshot = pickled_checkpoint(tiny_model_dir, cached / "snapshots" / commit)
    try:
        line = refused(repo, tmp_path / "runs" / "x")
    finally:
        shutil.rmtree(cached)
    assert line == f"error: {snapshot / 'pytorch_model.bin'}: {PICKLE_HINT}"


def test_truncated_safetensors_is_refused_naming_the_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    model_dir = checkpoint_copy(tiny_model_dir, tmp_path / "truncated")
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    line = refused(str(model_dir), tmp_path / "runs" / "x")
    assert line.startswith(f"error: {weights}: not a readable safetensors file (")
    assert "file not fully covered" in line and "truncated or damaged" in line


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: data[:8] + b"garbage!{{" + data[18:], "invalid json in header"),
        (lambda data: (2**40).to_bytes(8, "little") + data[8:], "header too large"),
        (lambda data: b"", "header too small"),
    ],
    ids=["garbled", "huge-length", "empty"],
)
def test_corrupt_safetensors_header_is_refused(tmp_path: Path, tiny_model_dir: Path, damage, reason: str) -> None:
    model_dir = checkpoint_copy(tiny_model_dir, tmp_path / "corrupt")
    weights = model_dir / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    line = refused(str(model_dir), tmp_path / "runs" / "x")
    assert line.startswith(f"error: {weights}: not a readable safetensors file (")
    assert reason in line.lower()


@pytest.fixture(scope="module")
def sharded_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from transformers import AutoModelForCausalLM

    target = checkpoint_copy(tiny_model_dir, tmp_path_factory.mktemp("sharded") / "model")
    (target / "model.safetensors").unlink()
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).save_pretrained(target, max_shard_size="4MB")
    assert (target / "model.safetensors.index.json").is_file()
    return target


def test_damaged_or_missing_shard_is_refused_naming_it(tmp_path: Path, sharded_dir: Path) -> None:
    model_dir = checkpoint_copy(sharded_dir, tmp_path / "sharded")
    shards = sorted(set(json.loads((model_dir / "model.safetensors.index.json").read_text())["weight_map"].values()))
    assert len(shards) > 1
    damaged = model_dir / shards[-1]
    damaged.write_bytes(damaged.read_bytes()[:-100])
    line = refused(str(model_dir), tmp_path / "runs" / "damaged")
    assert line.startswith(f"error: {damaged}: not a readable safetensors file (")
    damaged.unlink()
    line = refused(str(model_dir), tmp_path / "runs" / "missing")
    assert line == f"error: {damaged}: listed in model.safetensors.index.json but missing; copy the checkpoint again"


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ('{"weight_map": {"lm_head.weight": "model-00001', "not a readable safetensors index (JSONDecodeError: "),
        ('{"metadata": {}}', "not a readable safetensors index (KeyError: "),
        ('{"weight_map": {"lm_head.weight": "../elsewhere.safetensors"}}', "is not a file name in the checkpoint"),
    ],
    ids=["truncated", "no-weight-map", "outside-the-folder"],
)
def test_unreadable_shard_index_is_refused_naming_it(tmp_path: Path, sharded_dir: Path, index: str, message: str):
    model_dir = checkpoint_copy(sharded_dir, tmp_path / "sharded")
    (model_dir / "model.safetensors.index.json").write_text(index)
    line = refused(str(model_dir), tmp_path / "runs" / "x")
    assert line.startswith(f"error: {model_dir / 'model.safetensors.index.json'}: ") and message in line


def test_console_prints_one_line_without_a_traceback(tmp_path: Path, tiny_model_dir: Path) -> None:
    model_dir = checkpoint_copy(tiny_model_dir, tmp_path / "truncated")
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    command = ["run", *DEV, "--model", str(model_dir), "--out", str(tmp_path / "runs")]
    result = subprocess.run(
        [sys.executable, "-m", "invarlock_provider.cli", *command],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {weights}: not a readable safetensors file (")
    assert result.stderr.count("\n") == 1
