"""Scoring throughput: the engine vs the naive one-window loop, against this machine's FLOP limit.

Model: GPT-2 small shape (124M parameters, random init: speed does not depend on the weights).
Windows: 512-token windows of the embedded corpus (the same windows for every mode). Each mode
runs in its own process so peak memory is measured in isolation (VmHWM reset before scoring).
The FLOP limit is 2 x parameters x tokens at the fp32 matmul rate measured in this same run.

    python benchmarks/eval_throughput.py [--windows 32] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

MODES = ("naive-fp32", "engine-fp32", "naive-bf16", "engine-bf16")
SEQ_LEN = 512
WARMUP = 4
PASSES = 2  # best of two timed passes: this machine's speed drifts by tens of percent
SQUARE = (2048, 2048, 2048)
MODEL_SHAPED = (4096, 768, 3072)  # batch 8 x 512 tokens through GPT-2 small's MLP


def measure_matmul_gflops(dtype_name: str, shape: tuple[int, int, int], seconds: float = 3.0) -> float:
    """Best sustained rate of an (m x k) @ (k x n) matmul over a few seconds."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    m, k, n = shape
    a = torch.randn(m, k, dtype=dtype)
    b = torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        begin = time.perf_counter()
        for _ in range(4):
            a @ b
        elapsed = time.perf_counter() - begin
        best = max(best, 4 * 2 * m * k * n / elapsed / 1e9)
    return best


def build_inputs(windows: int) -> tuple[object, object]:
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from invarlock_provider.resources import resolve_embedded

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_embedded("embedded:tiny-pydocs-gpt2"))
    text = resolve_embedded("embedded:pydocs-eval.txt").read_text(encoding="utf-8")
    stream = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    ids = torch.tensor(stream[: windows * SEQ_LEN]).view(windows, SEQ_LEN)
    model = GPT2LMHeadModel(GPT2Config(n_positions=1024)).eval()
    return model, ids


def run_mode(mode: str, windows: int, batch_size: int) -> dict[str, object]:
    import torch

    from invarlock_provider.evaluation.runtime import PeakMemory, read_vm_rss
    from invarlock_provider.evaluation.scoring import WindowScorer, keep_freed_memory_mapped

    kind, dtype_name = mode.split("-")
    model, ids = build_inputs(windows + WARMUP)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    model.to(dtype)
    torch.set_float32_matmul_precision("highest")
    warmup, ids = ids[:WARMUP], ids[WARMUP:]
    labels = [str(i) for i in range(windows)]
    if kind == "engine":
        keep_freed_memory_mapped()
        scorer = WindowScorer(model, batch_size=batch_size, device="cpu", dtype_name=dtype_name)
        scorer.score(warmup, labels[:WARMUP])
        rss_before = read_vm_rss() or 0
        with PeakMemory("cpu") as peak:
            elapsed = float("inf")
            for _ in range(PASSES):
                begin = time.perf_counter()
                scores = scorer.score(ids, labels).logloss
                elapsed = min(elapsed, time.perf_counter() - begin)
    else:
        with torch.inference_mode():
            for window in warmup:
                model(window[None], labels=window[None])
        rss_before = read_vm_rss() or 0
        with PeakMemory("cpu") as peak, torch.inference_mode():
            elapsed = float("inf")
            for _ in range(PASSES):
                begin = time.perf_counter()
                scores = [model(window[None], labels=window[None]).loss.item() for window in ids]
                elapsed = min(elapsed, time.perf_counter() - begin)
    params = sum(p.numel() for p in model.parameters())
    return {
        "mode": mode,
        "tokens": windows * SEQ_LEN,
        "seconds": elapsed,
        "tokens_per_s": windows * SEQ_LEN / elapsed,
        "params": params,
        "peak_rss": peak.peak_bytes,
        "rss_before": rss_before,
        "logloss": scores,
        "square_gflops": measure_matmul_gflops(dtype_name, SQUARE),
        "shaped_gflops": measure_matmul_gflops(dtype_name, MODEL_SHAPED),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.windows, args.batch_size)))
        return

    from invarlock_provider.evaluation.runtime import cpu_profile

    fp32_rate = measure_matmul_gflops("fp32", SQUARE, seconds=1.0)
    bf16_rate = measure_matmul_gflops("bf16", SQUARE, seconds=1.0)
    modes = MODES
    if bf16_rate < fp32_rate:
        modes = tuple(m for m in MODES if not m.endswith("bf16"))
        cpu = cpu_profile()
        print(
            f"note: bf16 modes skipped: bf16 matmul {bf16_rate:.1f} GFLOP/s < fp32 {fp32_rate:.1f} GFLOP/s on this CPU "
            f"({cpu.model}; vector extensions {', '.join(cpu.vector_extensions) or 'none'})\n"
        )
    results = {}
    for mode in modes:
        output = subprocess.run(
            [
                sys.executable,
                __file__,
                "--mode",
                mode,
                "--windows",
                str(args.windows),
                "--batch-size",
                str(args.batch_size),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[mode] = json.loads(output.strip().splitlines()[-1])

    fp32 = [results[m] for m in ("naive-fp32", "engine-fp32")]
    square = max(r["square_gflops"] for r in fp32)
    shaped = max(r["shaped_gflops"] for r in fp32)
    params = results["engine-fp32"]["params"]
    square_limit = square * 1e9 / (2 * params)
    shaped_limit = shaped * 1e9 / (2 * params)
    naive = results["naive-fp32"]
    print(
        f"GPT-2 small shape, {params / 1e6:.1f}M parameters, {args.windows} windows x {SEQ_LEN} tokens "
        f"(after {WARMUP} warm-up windows, best of {PASSES} passes), engine batch {args.batch_size}"
    )
    print(f"fp32 matmul {square:.0f} GFLOP/s at 2048^3 -> FLOP limit {square_limit:.0f} tokens/s")
    print(f"fp32 matmul {shaped:.0f} GFLOP/s at 4096x768x3072 (the model's GEMMs) -> {shaped_limit:.0f} tokens/s")
    print(f"bf16 matmul {bf16_rate:.0f} GFLOP/s at 2048^3 (measured before the modes)")
    print()
    header = (
        f"{'mode':<12} {'tokens/s':>9} {'% limit':>8} {'% shaped':>9} {'vs naive fp32':>14} "
        f"{'peak RSS MiB':>13} {'+RSS MiB':>9} {'max |dNLL| vs fp32':>19}"
    )
    print(header)
    print("-" * len(header))
    for mode in modes:
        row = results[mode]
        reference = results[f"{mode.split('-')[0]}-fp32"]["logloss"]
        drift = max(abs(a - b) for a, b in zip(row["logloss"], reference, strict=True))
        print(
            f"{mode:<12} {row['tokens_per_s']:9.0f} {100 * row['tokens_per_s'] / square_limit:7.0f}% "
            f"{100 * row['tokens_per_s'] / shaped_limit:8.0f}% "
            f"{row['tokens_per_s'] / naive['tokens_per_s']:13.2f}x {row['peak_rss'] / 2**20:13.0f} "
            f"{(row['peak_rss'] - row['rss_before']) / 2**20:9.0f} {drift:19.2e}"
        )
    ratios = ", ".join(
        f"{dtype} {results[f'engine-{dtype}']['peak_rss'] / naive['peak_rss']:.2f}x"
        for dtype in ("fp32", "bf16")
        if f"engine-{dtype}" in results
    )
    print(f"engine/naive peak RSS while scoring: {ratios}")
    engine_vs_naive = [abs(a - b) for a, b in zip(results["engine-fp32"]["logloss"], naive["logloss"], strict=True)]
    print(f"\nengine vs naive fp32 per-window NLL: max |diff| {max(engine_vs_naive):.2e}")


if __name__ == "__main__":
    main()
