"""GPU check, one script for a lent device: throughput, MFU, CUDA-vs-CPU agreement, memory, fixed costs.

Evaluates the embedded model (preset ci profile) and a random ~1.1B-parameter Llama-shaped
checkpoint (TinyLlama's shape, fp32 safetensors, built here: no hub) with real `invarlock run`
processes on CUDA in bf16 and fp32 (TF32 off, as the engine sets it) and on the CPU in fp32, then prints:

- tokens/s and MFU (2 x parameters x tokens/s against the device's dense peak for that dtype:
  the spec sheet's figure for known GPUs, else the matmul rate measured here);
- the per-window NLL difference against the CPU run (InvarLock's CUDA-vs-CPU drift band is 1%);
- peak GPU memory (the allocator's peak while scoring) and the meta.timings breakdown;
- the output layer alone (``evaluation/output_layer.py``) at vocabularies of 32k, 128k and 256k
  (hidden 4096, 8 x 1024 positions, bf16 weights; ``--smoke``: CPU, hidden 256, 512 positions, fp32):
  time, its GEMM's TFLOP/s, peak memory beyond its inputs (buffers included), and the same beside
  full logits + cross-entropy, with the NLL difference to an fp64 reference.

Budget: under 8 minutes on one H100/H200-class GPU with 16 CPU cores.

    python benchmarks/gpu_check.py [--windows 16] [--seq-len 512] [--out DIR]
    python benchmarks/gpu_check.py --smoke      # CPU only, a 30M model: checks the script itself
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.checkpoints import write_random_llama

TINYLLAMA_SHAPE = {
    "vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
    "num_attention_heads": 32, "num_key_value_heads": 4, "max_position_embeddings": 2048,
    "tie_word_embeddings": False, "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0,
}  # fmt: skip
SMOKE_SHAPE = {**TINYLLAMA_SHAPE, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
               "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
# Dense (no sparsity) peak TFLOP/s by device name fragment: (bf16, fp32 without TF32).
PEAK_TFLOPS = {
    "H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5), "L40S": (362.0, 91.6),
    "A10G": (70.0, 31.2), "L4": (121.0, 30.3),
}  # fmt: skip
DRIFT_BAND = 0.01
OUTPUT_LAYER_VOCABS = (32_000, 128_256, 256_000)


def device_facts() -> dict[str, object]:
    import torch

    facts: dict[str, object] = {"cuda": torch.cuda.is_available()}
    if not torch.cuda.is_available():
        return facts
    props = torch.cuda.get_device_properties(0)
    facts |= {"name": props.name, "memory_gib": props.total_memory / 2**30}
    torch.backends.cuda.matmul.allow_tf32 = False
    measured = {}
    for label, dtype, size in (("bfloat16", torch.bfloat16, 8192), ("float32", torch.float32, 4096)):
        a = torch.randn(size, size, device="cuda", dtype=dtype)
        b = torch.randn(size, size, device="cuda", dtype=dtype)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        begin, repeats = time.perf_counter(), 20
        for _ in range(repeats):
            a @ b
        torch.cuda.synchronize()
        measured[label] = repeats * 2 * size**3 / (time.perf_counter() - begin) / 1e12
    facts["measured_tflops"] = measured
    spec = next((peak for fragment, peak in PEAK_TFLOPS.items() if fragment in props.name), None)
    facts["peak_tflops"] = {"bfloat16": spec[0], "float32": spec[1]} if spec else measured
    facts["peak_source"] = "spec sheet" if spec else "measured matmul"
    return facts


def write_preset(root: Path, windows: int, seq_len: int) -> Path:
    import yaml

    from invarlock_provider.config import deep_merge, load_yaml_mapping, resolve_preset_path

    base = load_yaml_mapping(resolve_preset_path(None))
    dataset = {"seq_len": seq_len, "stride": seq_len, "preview_n": windows, "final_n": windows}
    path = root / "gpu_check.yaml"
    path.write_text(yaml.safe_dump(deep_merge(base, {"name": "gpu_check", "dataset": dataset})))
    return path


def invarlock_run(args: list[str], out: Path) -> dict[str, object]:
    command = [
        str(Path(sys.executable).with_name("invarlock")),
        "run",
        *args,
        "--out",
        str(out),
        "--json",
        "--no-progress",
    ]
    begin = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=out.parent, check=False)
    wall = time.perf_counter() - begin
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["exit " + str(result.returncode)])[-1], "wall": wall}
    report = json.loads(Path(json.loads(result.stdout)["report"]).read_text())
    return {"report": report, "wall": wall}


def nll_difference(run: dict, reference: dict) -> tuple[float, float]:
    """(max |dNLL| per window, |relative difference of mean NLL|) against the reference run."""
    ours = run["report"]["evaluation_windows"]["final"]["logloss"]
    theirs = reference["report"]["evaluation_windows"]["final"]["logloss"]
    worst = max(abs(a - b) for a, b in zip(ours, theirs, strict=True))
    mean_ours, mean_theirs = sum(ours) / len(ours), sum(theirs) / len(theirs)
    return worst, abs(mean_ours - mean_theirs) / mean_theirs


def output_layer_table(device: str, hidden: int, positions: int, dtype_name: str) -> None:
    """Time the chunked output layer against full logits at each vocabulary, on one device."""
    import torch

    dtype = getattr(torch, dtype_name)

    def timed(function: Callable[[], Any]) -> tuple[Any, float, int]:
        """Result, seconds of the second call, and peak memory over both beyond what was there before
        (the chunk's buffers are allocated by the first call)."""
        from invarlock_provider.evaluation.runtime import PeakMemory, read_vm_rss

        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() if device == "cuda" else read_vm_rss() or 0
        with PeakMemory(device) as peak:
            function()  # warm-up: buffers allocated, kernels chosen
            begin = time.perf_counter()
            result = function()
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - begin
        return result, seconds, (peak.peak_bytes or 0) - base

    print(f"\noutput layer alone on {device}, {dtype_name} weights, hidden {hidden}, {positions} positions")
    header = (
        f"{'vocab':>8} {'chunk rows':>10} {'chunked ms':>10} {'TFLOP/s':>8} {'peak MiB':>9} "
        f"{'full ms':>8} {'peak MiB':>9} {'max|dNLL| chunked':>18} {'full':>9}"
    )
    print(header)
    print("-" * len(header))
    for vocab in OUTPUT_LAYER_VOCABS:
        print(output_layer_row(vocab, device, hidden, positions, dtype, timed))
        if device == "cuda":
            torch.cuda.empty_cache()


def output_layer_row(
    vocab: int, device: str, hidden: int, positions: int, dtype: Any, timed: Callable[[Callable[[], Any]], Any]
) -> str:
    import torch

    from invarlock_provider.evaluation.output_layer import OutputLayerNLL, chunk_elements_for

    torch.manual_seed(0)
    head = torch.nn.Linear(hidden, vocab, bias=False).to(device=device, dtype=dtype)
    states = torch.randn(positions, hidden, device=device, dtype=dtype)
    targets = torch.randint(0, vocab, (positions,), device=device)
    layer = OutputLayerNLL(head, chunk_elements_for(device))
    with torch.inference_mode():
        reference = torch.nn.functional.cross_entropy(
            states.double() @ head.weight.double().t(), targets, reduction="none"
        )
        chunked, chunked_s, chunked_peak = timed(lambda: layer(states, targets))
        full, full_s, full_peak = timed(
            lambda: torch.nn.functional.cross_entropy((states @ head.weight.t()).float(), targets, reduction="none")
        )
    tflops = 2 * positions * hidden * vocab / chunked_s / 1e12

    def mib(peak: int) -> str:  # the CUDA allocator's peak, or on CPU the peak resident set size
        return f"{peak / 2**20:9.0f}"

    return (
        f"{vocab:>8} {layer.rows:>10} {1e3 * chunked_s:10.1f} {tflops:8.1f} {mib(chunked_peak)} "
        f"{1e3 * full_s:8.1f} {mib(full_peak)} {(chunked - reference).abs().max().item():18.2e} "
        f"{(full - reference).abs().max().item():9.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=16, help="preview and final windows for the 1.1B model")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs and the checkpoint here")
    parser.add_argument("--smoke", action="store_true", help="CPU only, a small model: test the script")
    args = parser.parse_args()
    began = time.perf_counter()
    facts = device_facts()
    cuda = bool(facts["cuda"]) and not args.smoke
    print(json.dumps({k: v for k, v in facts.items()}, default=str))
    with tempfile.TemporaryDirectory(prefix="invarlock-gpu-check-") as scratch:
        root = args.out or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        shape = SMOKE_SHAPE if args.smoke else TINYLLAMA_SHAPE
        params = write_random_llama(root / "llama", shape)
        preset = write_preset(root, 4 if args.smoke else args.windows, 128 if args.smoke else args.seq_len)
        built = time.perf_counter() - began
        models = {
            "embedded 2.6M": ["--profile", "ci"],
            f"llama {params / 1e9:.2f}B": ["-c", str(preset), "--model", str(root / "llama")],
        }
        targets = [("cpu", "float32")] + ([("cuda", "bfloat16"), ("cuda", "float32")] if cuda else [])
        results: dict[tuple[str, str, str], dict] = {}
        for model, model_args in models.items():
            for device, dtype in targets:
                name = f"{model.split()[0]}_{device}_{dtype}"
                results[(model, device, dtype)] = invarlock_run(
                    [*model_args, "--device", device, "--dtype", dtype, "--batch-size", "auto"], root / name
                )
        print(f"\ncheckpoint built in {built:.0f} s; runs finished at {time.perf_counter() - began:.0f} s\n")
        header = (
            f"{'model':<14} {'device':<6} {'dtype':<9} {'tokens/s':>10} {'MFU':>6} {'batch':>5} {'peak mem':>9} "
            f"{'max|dNLL| vs cpu':>16} {'rel mean':>9} {'band':>5} {'imports':>8} {'load':>6} {'digest':>7} "
            f"{'guards':>7} {'score':>7} {'wall':>7}"
        )
        print(header)
        print("-" * len(header))
        for (model, device, dtype), run in results.items():
            if "error" in run:
                print(f"{model:<14} {device:<6} {dtype:<9} failed: {run['error']}")
                continue
            meta, metrics = run["report"]["meta"], run["report"]["metrics"]
            timings = meta["timings"]
            tokens_per_s = metrics["throughput_tokens_per_s"]
            mfu = "-"
            if device == "cuda":
                peak = facts["peak_tflops"][dtype] * 1e12
                mfu = f"{100 * 2 * meta['parameters'] * tokens_per_s / peak:5.1f}%"
            reference = results.get((model, "cpu", "float32"))
            drift, relative, band = "-", "-", "-"
            if device != "cpu" and reference and "report" in reference:
                worst, rel = nll_difference(run, reference)
                drift, relative, band = f"{worst:.2e}", f"{rel:.2e}", "ok" if rel <= DRIFT_BAND else "OUT"
            peak_mem = metrics["peak_memory_bytes"]
            print(
                f"{model:<14} {device:<6} {dtype:<9} {tokens_per_s:10.0f} {mfu:>6} {meta['scoring']['batch_size']:5d} "
                f"{(peak_mem or 0) / 2**30:8.2f}G {drift:>16} {relative:>9} {band:>5} "
                f"{timings['imports_total_s']:8.2f} {timings['model_load_s']:6.2f} {timings['digest_s']:7.2f} "
                f"{timings['guards_s']:7.2f} {timings['score_s']:7.2f} {run['wall']:7.2f}"
            )
        if cuda:
            output_layer_table("cuda", 4096, 8 * 1024, "bfloat16")
        else:
            output_layer_table("cpu", 256, 512, "float32")
        print(f"\ntotal {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
