"""The model families the engine is tested on: tiny random-weight models built from transformers
configs (no hub). docs/models.md's table is generated from this list (scripts/models_table.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VOCAB = 4096  # the embedded tokenizer's vocabulary
_TOKENS = {"pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0}
_DECODER = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 256,
    **_TOKENS,
}


@dataclass(frozen=True)
class Family:
    name: str
    config_class: str
    settings: dict[str, Any]
    strategy: str = "body-batched+head-chunked"
    notes: str = ""
    example: str = ""
    expert_matrices: bool = False

    def build_config(self) -> Any:
        import transformers

        return getattr(transformers, self.config_class)(**self.settings)


FAMILIES = (
    Family(
        "GPT-2", "GPT2Config",
        {"vocab_size": VOCAB, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 256, "bos_token_id": 0,
         "eos_token_id": 0},
        notes="Conv1D weights (in, out); the embedded model", example="gpt2, distilgpt2",
    ),
    Family("Llama", "LlamaConfig", {**_DECODER, "num_key_value_heads": 2}, notes="grouped-query attention",
           example="meta-llama/Llama-3.1-8B"),
    Family("Mistral", "MistralConfig", {**_DECODER, "num_key_value_heads": 2}, example="mistralai/Mistral-7B-v0.3"),
    Family("Qwen2", "Qwen2Config", {**_DECODER, "num_key_value_heads": 2}, example="Qwen/Qwen2.5-7B"),
    Family("Qwen3", "Qwen3Config", {**_DECODER, "num_key_value_heads": 2, "head_dim": 8}, notes="q/k norms",
           example="Qwen/Qwen3-8B"),
    Family(
        "Gemma 2", "Gemma2Config", {**_DECODER, "num_key_value_heads": 2, "head_dim": 8},
        strategy="model-forward",
        notes="final logit soft-capping: scored with the model's own forward", example="google/gemma-2-9b",
    ),
    Family("Phi-3", "Phi3Config", {**_DECODER, "num_key_value_heads": 2}, notes="fused qkv_proj and gate_up_proj",
           example="microsoft/Phi-3-mini-4k-instruct"),
    Family("GPT-NeoX", "GPTNeoXConfig", dict(_DECODER), notes="fused query_key_value; parallel residual",
           example="EleutherAI/pythia-1b"),
    Family(
        "OPT", "OPTConfig",
        {"vocab_size": VOCAB, "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "word_embed_proj_dim": 32, "max_position_embeddings": 256, **_TOKENS},
        notes="MLP as fc1/fc2 directly in the decoder layer", example="facebook/opt-1.3b",
    ),
    Family(
        "Falcon", "FalconConfig",
        {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "bos_token_id": 0,
         "eos_token_id": 0},
        notes="multi-query attention, FalconLinear", example="tiiuae/falcon-7b",
    ),
    Family(
        "Mixtral", "MixtralConfig",
        {**_DECODER, "num_key_value_heads": 2, "num_local_experts": 4, "num_experts_per_tok": 2},
        notes="mixture of experts: experts stacked in 3-D tensors, one matrix per expert",
        example="mistralai/Mixtral-8x7B-v0.1", expert_matrices=True,
    ),
    Family(
        "Qwen2-MoE", "Qwen2MoeConfig",
        {**_DECODER, "num_key_value_heads": 2, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
         "shared_expert_intermediate_size": 64},
        notes="mixture of experts with a shared expert", example="Qwen/Qwen1.5-MoE-A2.7B", expert_matrices=True,
    ),
)  # fmt: skip
