"""Random Llama-shaped checkpoints for the benchmarks: weights written tensor by tensor as fp32
safetensors (no model is initialised, so a 1B checkpoint takes seconds), plus the embedded tokenizer."""

from __future__ import annotations

import math
import shutil
from pathlib import Path


def write_random_llama(target: Path, shape: dict[str, int]) -> int:
    """Write the checkpoint under ``target`` (reused if present) and return its parameter count."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from invarlock_provider.resources import resolve_embedded

    config = LlamaConfig(**shape)
    with torch.device("meta"):
        shapes = {name: p.shape for name, p in LlamaForCausalLM(config).state_dict().items()}
    if not (target / "model.safetensors").exists():
        target.mkdir(parents=True, exist_ok=True)
        generator = torch.Generator().manual_seed(0)
        state = {
            n: torch.randn(s, generator=generator) * 0.02 if len(s) > 1 else torch.ones(s) for n, s in shapes.items()
        }
        save_file(state, target / "model.safetensors", metadata={"format": "pt"})
        config.save_pretrained(target)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(resolve_embedded("embedded:tiny-pydocs-gpt2") / name, target / name)
    return sum(math.prod(s) for s in shapes.values())
