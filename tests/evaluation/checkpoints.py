"""Tiny random-weight checkpoints on disk, with the embedded tokenizer, and pairing two runs:
what the family matrix, the device-map and the quantized-checkpoint tests all start from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from invarlock_provider.cli import main

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def tiny_llama_config(**overrides: Any) -> Any:
    from transformers import LlamaConfig

    settings = {
        "vocab_size": 4096, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
        "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0,
    }  # fmt: skip
    return LlamaConfig(**{**settings, **overrides})


def save_checkpoint(model: Any, target: Path, tokenizer_dir: Path) -> Path:
    model.save_pretrained(target)
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer_dir / name, target / name)
    return target


def save_random_model(config: Any, target: Path, tokenizer_dir: Path, seed: int) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return save_checkpoint(AutoModelForCausalLM.from_config(config), target, tokenizer_dir)


def pair(subject: Path, baseline: Path, output: Path) -> dict:
    """``invarlock report`` of two runs' report.json; the evaluation it wrote."""
    args = ["report", "--run", str(subject), "--baseline", str(baseline), "--format", "report", "--output", str(output)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((output / "evaluation.report.json").read_text())
