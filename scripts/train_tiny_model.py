"""Train the embedded tiny causal LM and its tokenizer on the embedded English corpus.

Why it exists: the embedded default needs a REAL model (one that learned English, so that
quantization and damage move its perplexity in meaningful ways) that is small enough to commit and
to evaluate on two CPU cores in seconds. Everything here is seeded; the committed weights are the
output of this script on the corpus built by ``scripts/build_corpus.py``.

    python scripts/build_corpus.py --out build/corpus
    python scripts/train_tiny_model.py --corpus build/corpus \
        --out invarlock_provider/embedded/tiny-pydocs-gpt2
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

VOCAB_SIZE = 4096
CONTEXT = 256
EOS = "<|endoftext|>"


def train_tokenizer(train_text: Path) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train([str(train_text)], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        model_max_length=CONTEXT,
    )


def token_stream(tokenizer: PreTrainedTokenizerFast, path: Path) -> torch.Tensor:
    ids = tokenizer(path.read_text(encoding="utf-8"), add_special_tokens=False, verbose=False)
    return torch.tensor(ids["input_ids"], dtype=torch.long)


@torch.no_grad()
def held_out_perplexity(model: GPT2LMHeadModel, stream: torch.Tensor, seq_len: int) -> float:
    model.eval()
    windows = stream[: len(stream) // seq_len * seq_len].view(-1, seq_len)
    total, count = 0.0, 0
    for batch in windows.split(32):
        out = model(batch, labels=batch)
        tokens = batch.numel() - batch.shape[0]
        total += out.loss.item() * tokens
        count += tokens
    model.train()
    return math.exp(total / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("build/corpus"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    tokenizer = train_tokenizer(args.corpus / "pydocs-train.txt")
    train = token_stream(tokenizer, args.corpus / "pydocs-train.txt")
    held_out = token_stream(tokenizer, args.corpus / "pydocs-eval.txt")
    print(f"train tokens {len(train):,}  held-out tokens {len(held_out):,}")

    config = GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_positions=CONTEXT,
        n_embd=192,
        n_layer=4,
        n_head=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    params = sum(p.numel() for p in model.parameters())
    print(f"parameters {params:,}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    model.train()
    for step in range(args.steps):
        starts = torch.randint(0, len(train) - args.seq_len - 1, (args.batch_size,), generator=generator)
        batch = torch.stack([train[s : s + args.seq_len] for s in starts.tolist()])
        loss = model(batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == args.steps - 1:
            elapsed = time.perf_counter() - started
            print(f"step {step:5d}  loss {loss.item():.3f}  {elapsed:7.1f}s", flush=True)

    ppl = held_out_perplexity(model, held_out, args.seq_len)
    print(f"held-out perplexity {ppl:.2f} (vocabulary {VOCAB_SIZE})")
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    card = {
        "architecture": "GPT2LMHeadModel",
        "parameters": params,
        "vocab_size": VOCAB_SIZE,
        "context": CONTEXT,
        "training": {
            "corpus": "Python 3.11 documentation prose (PSF License), train split",
            "steps": args.steps,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "lr": args.lr,
            "seed": args.seed,
            "seconds": round(time.perf_counter() - started, 1),
        },
        "held_out_perplexity": round(ppl, 3),
    }
    (args.out / "training.json").write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
