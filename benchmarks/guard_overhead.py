"""Guard overhead: invariants + spectral time against the scoring time of the same run.

Three measurements, printed as one table:
- the embedded preset, real ``invarlock run`` executions per profile (the report's own timings);
- a GPT-2-small-shaped model (124M parameters, random init: its flat top spectrum is the slow case
  for the spectral iteration), guards timed directly and scoring measured on ``--windows`` windows
  of 512 tokens, then projected to the wikitext2_512 preset's profiles (200+200 ci, 270+270 release);
- one Llama-7B-shaped layer (4 x 4096^2 attention, 3 x 4096x11008 MLP) through the spectral
  estimate on the device at hand, times 32 layers: the 7B cost on this device, projected.

    python benchmarks/guard_overhead.py [--windows 16] [--skip-7b]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

SEQ_LEN = 512
WIKITEXT_PROFILES = {"dev": 64, "ci": 400, "release": 540}
LLAMA_7B = {"hidden": 4096, "intermediate": 11008, "layers": 32}


def embedded_rows() -> list[tuple[str, str, int, float, float]]:
    from invarlock_provider.config import load_preset
    from invarlock_provider.evaluation.run import execute_run

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for profile in ("dev", "ci", "release"):
            resolved = load_preset(None, profile)
            report = execute_run(resolved, Path(scratch) / profile).report
            timings = report["meta"]["timings"]
            windows = report["data"]["preview_n"] + report["data"]["final_n"]
            row = ("embedded tiny-pydocs-gpt2", f"{profile} (run)", windows, timings["score_s"], timings["guards_s"])
            rows.append(row)
    return rows


def gpt2_rows(windows: int) -> list[tuple[str, str, int, float, float]]:
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from invarlock_provider.evaluation.scoring import WindowScorer
    from invarlock_provider.guards.invariants import measure_invariants
    from invarlock_provider.guards.spectral import measure_spectral
    from invarlock_provider.resources import resolve_embedded

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_positions=1024)).eval()
    begin = time.perf_counter()
    measure_invariants(model, model.config.vocab_size)
    measure_spectral(model)
    guards_s = time.perf_counter() - begin

    tokenizer = AutoTokenizer.from_pretrained(resolve_embedded("embedded:tiny-pydocs-gpt2"))
    text = resolve_embedded("embedded:pydocs-eval.txt").read_text(encoding="utf-8")
    stream = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    ids = torch.tensor(stream[: (windows + 2) * SEQ_LEN]).view(windows + 2, SEQ_LEN)
    scorer = WindowScorer(model, batch_size=8, device="cpu", dtype_name="float32")
    scorer.score(ids[:2], ["w0", "w1"])
    begin = time.perf_counter()
    scorer.score(ids[2:], [str(i) for i in range(windows)])
    per_window = (time.perf_counter() - begin) / windows
    rows = [("gpt2-124M shape", f"{windows} windows (measured)", windows, per_window * windows, guards_s)]
    for profile, count in WIKITEXT_PROFILES.items():
        rows.append(("gpt2-124M shape", f"wikitext2_512 {profile} (projected)", count, per_window * count, guards_s))
    return rows


def llama_7b_spectral_seconds() -> tuple[str, float, float]:
    import torch

    from invarlock_provider.guards.spectral import largest_singular_values

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    hidden, intermediate = LLAMA_7B["hidden"], LLAMA_7B["intermediate"]
    shapes = [(hidden, hidden)] * 4 + [(intermediate, hidden)] * 2 + [(hidden, intermediate)]
    layer = [torch.randn(*shape, dtype=dtype, device=device) * 0.02 for shape in shapes]
    largest_singular_values(layer[:1])
    if device == "cuda":
        torch.cuda.synchronize()
    begin = time.perf_counter()
    largest_singular_values(layer)
    if device == "cuda":
        torch.cuda.synchronize()
    one_layer = time.perf_counter() - begin
    return device, one_layer, one_layer * LLAMA_7B["layers"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=16, help="512-token windows scored for the 124M rate")
    parser.add_argument("--skip-7b", action="store_true", help="skip the Llama-7B layer measurement")
    args = parser.parse_args()

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    rows = embedded_rows() + gpt2_rows(args.windows)
    print(f"{'model':<27}{'run':<38}{'windows':>8}{'score s':>10}{'guards s':>10}{'overhead':>10}")
    for model, run, windows, score_s, guards_s in rows:
        print(f"{model:<27}{run:<38}{windows:>8}{score_s:>10.2f}{guards_s:>10.3f}{guards_s / score_s:>10.1%}")
    if not args.skip_7b:
        device, one_layer, projected = llama_7b_spectral_seconds()
        print(
            f"Llama-7B shape spectral on {device}: {one_layer:.2f} s per layer (7 matrices), "
            f"{projected:.1f} s for 32 layers"
        )


if __name__ == "__main__":
    main()
