"""Multiple-choice task scoring throughput: InvarLock's scorer against lm-evaluation-harness.

Same machine, same process, same torch threads, same model (the embedded tiny-pydocs-gpt2, fp32,
CPU), same examples (the first ``--examples`` of the embedded next-sentence task), same batch size
and maximum length. Each repeat runs every mode once, in an order rotated from repeat to repeat; a
warm-up pass of each mode runs first, untimed. A mode's figure is the median of its repeats, with
the spread and the best repeat beside it (on a shared machine the best is the least disturbed; the
load average at start and end is printed). Modes:

  invarlock        ``evaluation.task_scoring.score_examples``: tokenising every (context, choice)
                   pair, batching longest first, the forward passes and the log-softmax sums
  lmeval-ll        lm-eval's HF backend (``HFLM``, built once on the same model and tokenizer
                   objects) ``loglikelihood`` over the same (context, " " + choice) requests: its
                   own tokenising, sorting, batching and scoring: the like-for-like comparison
  lmeval-evaluate  ``lm_eval.simple_evaluate`` of the same examples as a local task on that
                   ``HFLM``: also its task building (a JSON dataset, cached after the warm-up),
                   prompts and metrics (``bootstrap_iters=0``); what a user of lm-eval waits for,
                   less loading the model and indexing lm-eval's task registry (done once)

Model loading and Python imports are in no figure. Tokens are the same workload for every mode:
"scored" are the choices' tokens, "read" every token fed to the model (context + choice - 1 per
request), both as InvarLock tokenises them. The last columns check that the modes agree: the
largest |log-likelihood difference| from InvarLock's, and the accuracy each got.

    python benchmarks/task_scoring.py [--examples 200] [--batch-size 8] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODEL = "embedded:tiny-pydocs-gpt2"
TASK_FILE = "embedded:pydocs-next-sentence.jsonl"
TASK = "next_sentence_bench"
MODES = ("invarlock", "lmeval-ll", "lmeval-evaluate")


def build_modes(args: argparse.Namespace, scratch: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every mode as a function of no arguments returning (log-likelihoods per example, accuracy)."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from invarlock_provider.evaluation.task_scoring import TARGET_DELIMITER, encode_requests, score_examples
    from invarlock_provider.resources import resolve_embedded
    from invarlock_provider.task_file import first_max, lm_eval_task_yaml, parse_task_file

    torch.set_float32_matmul_precision("highest")
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = resolve_embedded(MODEL)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    max_length = model.config.n_positions
    path = resolve_embedded(TASK_FILE)
    examples = parse_task_file(path.read_bytes(), str(path))[: args.examples]
    requests = encode_requests(tokenizer, examples, max_length)
    workload = {
        "examples": len(examples),
        "requests": len(requests),
        "scored": sum(len(r.continuation) for r in requests),
        "read": sum(len(r.context) + len(r.continuation) - 1 for r in requests),
        "params": sum(p.numel() for p in model.parameters()),
        "max_length": max_length,
    }
    golds = [e.gold for e in examples]

    def accuracy(scores: list[list[float]]) -> float:
        return sum(first_max(s) == g for s, g in zip(scores, golds, strict=True)) / len(golds)

    def invarlock() -> tuple[list[list[float]], float]:
        results, _ = score_examples(
            model, tokenizer, examples, device="cpu", batch_size=args.batch_size, max_length=max_length
        )
        scores = [list(r.logprobs) for r in results]
        return scores, accuracy(scores)

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size, device="cpu", max_length=max_length)
    pairs = [(e.context, TARGET_DELIMITER + c) for e in examples for c in e.choices]

    def lmeval_ll() -> tuple[list[list[float]], float]:
        instances = [
            Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)
        ]
        flat = [ll for ll, _ in lm.loglikelihood(instances, disable_tqdm=True)]
        scores, cursor = [], 0
        for example in examples:
            scores.append(flat[cursor : cursor + len(example.choices)])
            cursor += len(example.choices)
        return scores, accuracy(scores)

    data = scratch / "task.jsonl"
    data.write_text("".join(json.dumps(e.as_record()) + "\n" for e in examples), encoding="utf-8")
    (scratch / f"{TASK}.yaml").write_text(lm_eval_task_yaml(TASK, str(data)), encoding="utf-8")

    manager = TaskManager(include_path=str(scratch))  # its index of lm-eval's own tasks, built once

    def lmeval_evaluate() -> tuple[list[list[float]], float]:
        out = simple_evaluate(
            model=lm,
            tasks=[TASK],
            task_manager=manager,
            batch_size=args.batch_size,
            device="cpu",
            log_samples=True,
            bootstrap_iters=0,
            verbosity="ERROR",
        )
        samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
        scores = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
        return scores, out["results"][TASK]["acc,none"]

    return {"invarlock": invarlock, "lmeval-ll": lmeval_ll, "lmeval-evaluate": lmeval_evaluate}, workload


def machine_line() -> str:
    import torch

    from invarlock_provider.evaluation.runtime import cpu_profile

    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{cpu_profile().model}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads, load {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's own]")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="task-scoring-") as scratch:
        # Nothing from the network; the dataset cache of the local task in the scratch folder.
        for switch in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(switch, "1")
        os.environ["HF_DATASETS_CACHE"] = str(Path(scratch) / "datasets")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ["TQDM_DISABLE"] = "1"  # lm-eval's progress bars
        import logging

        logging.disable(logging.WARNING)
        modes, workload = build_modes(args, Path(scratch))
        first = {mode: modes[mode]() for mode in MODES}  # warm-up, untimed
        seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
        outputs = dict(first)
        start_line = f"start: {machine_line()}"
        print(start_line, file=sys.stderr, flush=True)
        for repeat in range(args.repeats):
            order = MODES[repeat % len(MODES) :] + MODES[: repeat % len(MODES)]
            for mode in order:
                begin = time.perf_counter()
                outputs[mode] = modes[mode]()
                seconds[mode].append(time.perf_counter() - begin)
            print(f"repeat {repeat + 1}/{args.repeats} done ({' '.join(order)})", file=sys.stderr, flush=True)
        end_line = f"end: {machine_line()}"
    print_table(args, workload, seconds, outputs, f"{start_line}\n{end_line}")


def print_table(
    args: argparse.Namespace,
    workload: dict[str, Any],
    seconds: dict[str, list[float]],
    outputs: dict[str, tuple[list[list[float]], float]],
    machine: str,
) -> None:
    import lm_eval

    version = getattr(lm_eval, "__version__", "?")
    print(
        f"{MODEL} ({workload['params'] / 1e6:.1f}M parameters, fp32, CPU), {workload['examples']} examples of "
        f"{TASK_FILE} ({workload['requests']} requests, {workload['scored']} scored / {workload['read']} read "
        f"tokens), batch {args.batch_size}, max length {workload['max_length']}, {args.repeats} repeats, "
        f"lm-eval {version}\n{machine}\n"
    )
    print(
        "| mode | seconds (median) | min-max | examples/s | scored tokens/s | read tokens/s | examples/s (best) "
        "| speed vs invarlock | max abs dLL | accuracy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    reference = statistics.median(seconds["invarlock"])
    base_scores = outputs["invarlock"][0]
    for mode in MODES:
        median = statistics.median(seconds[mode])
        scores, acc = outputs[mode]
        worst = max(
            abs(a - b) for row, ref in zip(scores, base_scores, strict=True) for a, b in zip(row, ref, strict=True)
        )
        print(
            f"| {mode} | {median:.3f} | {min(seconds[mode]):.3f}-{max(seconds[mode]):.3f} "
            f"| {workload['examples'] / median:,.0f} | {workload['scored'] / median:,.0f} "
            f"| {workload['read'] / median:,.0f} | {workload['examples'] / min(seconds[mode]):,.0f} "
            f"| {reference / median:.2f}x | {worst:.1e} | {acc:.3f} |"
        )


if __name__ == "__main__":
    main()
