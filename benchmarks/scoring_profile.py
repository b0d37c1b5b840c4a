"""Where the engine's scoring time goes: torch's profiler over GPT-2-small-shaped scoring, by op.

    python benchmarks/scoring_profile.py [--windows 16] [--batch-size 8] [--dtype fp32] [--rev GIT_REV]
                                         [--chunk-elements N]

``--rev`` profiles ``invarlock_provider/evaluation/scoring.py`` as it was at that revision (loaded
from git into a scratch module), so a change to the output layer can be profiled before and after
on the same machine in the same minute. Prints the CPU model, threads and load average, the
tokens/s of the profiled pass, and the ops that take most of the self CPU time, grouped into the
transformer body's GEMMs, the output layer's GEMM, the log-normaliser and everything else.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEQ_LEN = 512
NORMALISER_OPS = ("aten::amax", "aten::sub_", "aten::exp_", "aten::sum", "aten::log", "aten::gather", "aten::sub")


def scorer_class(rev: str | None) -> Any:
    if rev is None:
        from invarlock_provider.evaluation.scoring import WindowScorer

        return WindowScorer
    source = subprocess.run(
        ["git", "show", f"{rev}:invarlock_provider/evaluation/scoring.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    source = source.replace("invarlock_provider.weights.tensors", "invarlock_provider.evaluation.tensors")
    if importlib.util.find_spec("invarlock_provider.evaluation.tensors") is None:
        source = source.replace("invarlock_provider.evaluation.tensors", "invarlock_provider.weights.tensors")
    scratch = Path(tempfile.mkdtemp(prefix="scoring-rev-")) / "scoring_at_rev.py"
    scratch.write_text(source)
    spec = importlib.util.spec_from_file_location("scoring_at_rev", scratch)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scoring_at_rev"] = module
    spec.loader.exec_module(module)
    return module.WindowScorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--rev", default=None, help="git revision of scoring.py to profile [default: this tree]")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--chunk-elements", type=int, help="logits per output-layer chunk [scoring.py's own]")
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.eval_throughput import build_inputs
    from invarlock_provider.evaluation.runtime import cpu_profile
    from invarlock_provider.evaluation.scoring import keep_freed_memory_mapped

    model, ids = build_inputs(args.windows + args.batch_size)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    model.to(dtype)
    keep_freed_memory_mapped()
    scorer = scorer_class(args.rev)(model, batch_size=args.batch_size, device="cpu", dtype_name=str(dtype)[6:])
    if args.chunk_elements:
        rows = max(1, args.chunk_elements // model.get_output_embeddings().weight.shape[0])
        if hasattr(scorer, "output"):
            scorer.output.rows = rows
        else:
            scorer.head_chunk = rows  # scoring.py before output_layer.py
    warmup, ids = ids[: args.batch_size], ids[args.batch_size :]
    labels = [str(i) for i in range(len(ids))]
    scorer.score(warmup, labels[: len(warmup)])
    begin = time.perf_counter()
    scorer.score(ids, labels)
    seconds = time.perf_counter() - begin
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        scorer.score(ids, labels)

    vocab, hidden = model.get_output_embeddings().weight.shape
    # The output layer's GEMM may be split at the last multiple of 64 columns (output_layer.py).
    head_columns = {vocab, vocab // 64 * 64}
    groups = {"body GEMMs": 0.0, "output-layer GEMM": 0.0, "log-normaliser": 0.0, "other": 0.0}
    rows = []
    for event in prof.key_averages(group_by_input_shape=True):
        self_us = event.self_cpu_time_total
        dims = {dim for shape in event.input_shapes for dim in (shape if isinstance(shape, list) else [])}
        head_tail = event.key == "aten::mm" and [hidden, vocab % 64] in event.input_shapes
        if event.key in ("aten::mm", "aten::addmm", "aten::matmul", "aten::bmm", "aten::linear"):
            group = "output-layer GEMM" if dims & head_columns or head_tail else "body GEMMs"
        elif event.key in NORMALISER_OPS and vocab in dims:
            group = "log-normaliser"
        else:
            group = "other"
        groups[group] += self_us
        rows.append((self_us, event.key, str(event.input_shapes)[:70], event.count))
    total = sum(groups.values())
    print(
        f"{cpu_profile().model}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads, load {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(
        f"scoring.py at {args.rev or 'this tree'}, {args.dtype}, {len(ids)} windows x {SEQ_LEN} tokens, "
        f"batch {args.batch_size}, output-layer chunk {scorer.plan.head_chunk_tokens} positions: "
        f"{len(ids) * SEQ_LEN / seconds:.0f} tokens/s (unprofiled pass)\n"
    )
    print(f"{'group':<20} {'self CPU s':>10} {'share':>7}")
    for group, us in groups.items():
        print(f"{group:<20} {us / 1e6:10.2f} {100 * us / total:6.1f}%")
    print(f"\n{'op':<22} {'self CPU s':>10} {'share':>7} {'calls':>6}  input shapes")
    for self_us, key, shapes, count in sorted(rows, reverse=True)[: args.top]:
        print(f"{key:<22} {self_us / 1e6:10.2f} {100 * self_us / total:6.1f}% {count:6d}  {shapes}")


if __name__ == "__main__":
    main()
