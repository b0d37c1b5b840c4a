"""Scoring throughput on a shared machine: modes interleaved, repeated, judged only where the spread allows.

Model: GPT-2 small shape (124M parameters, random init: speed does not depend on the weights),
built once and saved, so every mode scores the same weights on the same 512-token windows of the
embedded corpus. Each mode lives in its own resident process (its warm-up done once, its peak RSS
its own) and scores one pass when told to; a repeat tells every mode once, in an order rotated
from repeat to repeat (A B C, B C A, ...), so a change of load lands on all modes alike. A mode's
figure is the median of its repeats with the spread beside it; a comparison is made per repeat
(two passes minutes apart are not compared) and gets a verdict only when every repeat agrees.

Modes, each in fp32 and bf16 (bf16 only where this CPU's bf16 GEMM beats its fp32 one):
  engine   invarlock's WindowScorer, the batch scored together
  naive    ``model(window, labels=window)`` one window at a time
  lmeval   lm-evaluation-harness's HF backend, ``loglikelihood_rolling`` over the same windows
           (decoded to text; the table says how many re-tokenise to the same ids), run in the
           interpreter given by ``--lm-eval-python`` (a venv with lm-eval, torch, transformers)
  gemm     the model's own GEMM shape (batch 8 x 512 tokens through the MLP, 4096x768x3072)
           for two seconds: the FLOP limit of the same repeat is 2 x parameters per token at it

Threads: every pass sizes its threads the way ``invarlock run`` does by default (the usable cores
divided among the evaluations running on the host, again between batches); ``--threads default``
leaves torch's own default instead. ``--background N`` keeps N other evaluations (engine fp32,
default sizing, like ``invarlock run``) scoring for the whole benchmark.

``--concurrency 1,2,4`` measures instead N engine evaluations started at once: total tokens/s of
all N against one alone, torch's default threads beside invarlock's sizing, interleaved likewise.

    python benchmarks/eval_throughput.py [--windows 16] [--repeats 5] [--lm-eval-python PYTHON]
    python benchmarks/eval_throughput.py --background 2
    python benchmarks/eval_throughput.py --concurrency 1,2,4 [--windows 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEQ_LEN = 512
WARMUP = 2
KINDS = ("engine", "naive", "lmeval", "gemm")
MODEL_SHAPED = (4096, 768, 3072)
GEMM_SECONDS = 2.0


def build_inputs(windows: int) -> tuple[Any, Any]:
    """The benchmark's model and ``windows`` token windows (seeded: the same in every process)."""
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


def prepare(folder: Path, windows: int) -> dict[str, Any]:
    """Save the model, tokenizer and windows where every mode's process (any venv) can load them."""
    from transformers import AutoTokenizer

    from invarlock_provider.resources import resolve_embedded

    model, ids = build_inputs(windows + WARMUP)
    model.save_pretrained(folder / "model")
    tokenizer = AutoTokenizer.from_pretrained(resolve_embedded("embedded:tiny-pydocs-gpt2"))
    tokenizer.save_pretrained(folder / "tokenizer")
    rows = ids.tolist()
    (folder / "windows.json").write_text(json.dumps(rows))
    return {"params": sum(p.numel() for p in model.parameters())}


class Worker:
    """One mode's resident process: warm at start, one timed pass per ``go``."""

    def __init__(self, mode: str, python: str, args: list[str]) -> None:
        self.mode = mode
        self.process = subprocess.Popen(
            [python, __file__, "--worker", mode, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.ready = self._read()

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"{self.mode}: worker exited with {self.process.wait()} (its stderr is above)")
        return json.loads(line)

    def run(self, policy: str) -> dict[str, Any]:
        self.send(f"go {policy}")
        return self._read()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.send("quit")
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def worker_main(mode: str, folder: Path, batch_size: int) -> None:
    """Serve timed passes of one mode over stdin/stdout (the protocol ``Worker`` speaks)."""
    sys.path.insert(0, str(REPO))
    import torch

    from invarlock_provider.evaluation.runtime import PeakMemory
    from invarlock_provider.evaluation.threads import ThreadSizer

    default_threads = torch.get_num_threads()
    kind, _, dtype_name = mode.partition("-")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "": torch.float32}[dtype_name]
    torch.set_float32_matmul_precision("highest")
    rows = json.loads((folder / "windows.json").read_text())
    warmup, windows = torch.tensor(rows[:WARMUP]), torch.tensor(rows[WARMUP:])
    score = _scorer(kind, dtype, folder, batch_size)
    params = getattr(score, "params", 0)
    score(warmup, lambda: None)
    print(json.dumps({"mode": mode, "default_threads": default_threads, "params": params}), flush=True)
    for line in sys.stdin:
        command, _, policy = line.strip().partition(" ")
        if command != "go":
            return
        torch.set_num_threads(default_threads)
        sizer = ThreadSizer() if policy == "auto" else contextlib.nullcontext()
        with sizer, PeakMemory("cpu") as peak:
            resize = sizer.resize if isinstance(sizer, ThreadSizer) else (lambda: default_threads)
            begin = time.monotonic()
            result = score(windows, resize)
            end = time.monotonic()
        threads = sizer.used if isinstance(sizer, ThreadSizer) else [default_threads]
        record = {"begin": begin, "end": end, "threads": threads, "peak_rss": peak.peak_bytes, **result}
        if kind != "gemm":
            record["tokens_per_s"] = windows.numel() / (end - begin)
        print(json.dumps(record), flush=True)


def _scorer(kind: str, dtype: Any, folder: Path, batch_size: int) -> Any:
    """A function scoring the windows one way, returning what the pass measured."""
    import torch

    if kind == "gemm":
        m, k, n = MODEL_SHAPED
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)

        def gemm(windows: Any, resize: Any) -> dict[str, Any]:
            resize()
            a @ b
            count, begin = 0, time.monotonic()
            while time.monotonic() - begin < GEMM_SECONDS:
                a @ b
                count += 1
            return {"gflops": count * 2 * m * k * n / (time.monotonic() - begin) / 1e9}

        return gemm

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder / "model", dtype=dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    if kind == "engine":
        from invarlock_provider.evaluation.scoring import WindowScorer, keep_freed_memory_mapped

        keep_freed_memory_mapped()
        dtype_name = {torch.float32: "float32", torch.bfloat16: "bfloat16"}[dtype]
        scorer = WindowScorer(model, batch_size=batch_size, device="cpu", dtype_name=dtype_name)

        def engine(windows: Any, resize: Any) -> dict[str, Any]:
            labels = [str(i) for i in range(len(windows))]
            resize()
            return {"logloss": scorer.score(windows, labels, on_batch=lambda _: resize()).logloss}

        engine.params = params  # type: ignore[attr-defined]
        return engine
    if kind == "naive":

        def naive(windows: Any, resize: Any) -> dict[str, Any]:
            losses = []
            with torch.inference_mode():
                for window in windows:
                    resize()
                    losses.append(model(window[None], labels=window[None]).loss.item())
            return {"logloss": losses}

        naive.params = params  # type: ignore[attr-defined]
        return naive
    return _lm_eval_scorer(model, folder, batch_size, params)


def _lm_eval_scorer(model: Any, folder: Path, batch_size: int, params: int) -> Any:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    rows = json.loads((folder / "windows.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    texts = {tuple(row): tokenizer.decode(row) for row in rows}
    ids_of = {text: list(key) for key, text in texts.items()}

    class SameWindows(HFLM):  # type: ignore[misc]
        """lm-eval's HF backend on exactly our ids: a decoded window need not re-tokenise to them, and a
        window that grew past 512 tokens would cost lm-eval a second forward. Its own tokenising is
        skipped, which only flatters it."""

        def tok_encode(self, string: str, *args: Any, **kwargs: Any) -> list[int]:
            return ids_of[string] if string in ids_of else super().tok_encode(string, *args, **kwargs)

        def _loglikelihood_tokens(self, requests: Any, disable_tqdm: bool = False, **kwargs: Any) -> Any:
            return super()._loglikelihood_tokens(requests, disable_tqdm=True, **kwargs)  # no progress bars

    lm = SameWindows(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=SEQ_LEN, device="cpu")
    same = {key: HFLM.tok_encode(lm, text) == list(key) for key, text in texts.items()}

    def lmeval(windows: Any, resize: Any) -> dict[str, Any]:
        keys = [tuple(window.tolist()) for window in windows]
        requests = [
            Instance(request_type="loglikelihood_rolling", doc={}, arguments=(texts[key],), idx=index)
            for index, key in enumerate(keys)
        ]
        resize()
        sums = lm.loglikelihood_rolling(requests, disable_tqdm=True)
        return {"loglikelihood": sums, "retokenised": sum(same[key] for key in keys)}

    lmeval.params = params  # type: ignore[attr-defined]
    return lmeval


def background_main(folder: Path, batch_size: int) -> None:
    """Another evaluation on the machine: engine fp32 with invarlock's sizing, until told to stop."""
    sys.path.insert(0, str(REPO))
    import torch

    from invarlock_provider.evaluation.threads import ThreadSizer

    score = _scorer("engine", torch.float32, folder, batch_size)
    windows = torch.tensor(json.loads((folder / "windows.json").read_text()))
    with ThreadSizer() as sizer:
        while True:
            score(windows, sizer.resize)


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}"


def verdict(ratios: list[float], threshold: float) -> str:
    """A claim only when every repeat's paired ratio lies on the same side of the threshold."""
    if min(ratios) >= threshold:
        return f"holds in {len(ratios)}/{len(ratios)} repeats"
    if max(ratios) < threshold:
        return f"fails in {len(ratios)}/{len(ratios)} repeats"
    return "no verdict, the repeats disagree"


def machine_line(label: str) -> str:
    sys.path.insert(0, str(REPO))
    from invarlock_provider.evaluation.runtime import cpu_profile
    from invarlock_provider.evaluation.threads import usable_cores

    cores = usable_cores()
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{label}: {cpu_profile().model}, {os.cpu_count()} cores ({cores.count} usable), load average {load}"


def run_modes(args: argparse.Namespace, folder: Path, params: int) -> None:
    modes = [f"{kind}-fp32" for kind in KINDS if kind != "lmeval" or args.lm_eval_python]
    gemm = {"fp32": Worker("gemm-fp32", sys.executable, _worker_args(folder, args))}
    gemm["bf16"] = Worker("gemm-bf16", sys.executable, _worker_args(folder, args))
    probe = {dtype: gemm[dtype].run(args.threads)["gflops"] for dtype in gemm}
    if probe["bf16"] >= probe["fp32"]:
        modes += [mode.replace("fp32", "bf16") for mode in modes]
    else:
        gemm.pop("bf16").stop()
        print(f"bf16 modes left out: bf16 GEMM {probe['bf16']:.0f} < fp32 {probe['fp32']:.0f} GFLOP/s on this CPU\n")
    workers = {f"gemm-{dtype}": worker for dtype, worker in gemm.items()}
    try:
        for mode in modes:
            if mode not in workers:
                python = args.lm_eval_python if mode.startswith("lmeval") else sys.executable
                workers[mode] = Worker(mode, python, _worker_args(folder, args))
        print(machine_line("start"), flush=True)
        results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        for repeat in range(args.repeats):
            order = modes[repeat % len(modes) :] + modes[: repeat % len(modes)]
            for mode in order:
                results[mode].append(workers[mode].run(args.threads))
            print(f"repeat {repeat + 1}/{args.repeats} done ({' '.join(order)})", file=sys.stderr, flush=True)
        print(machine_line("end"))
    finally:
        for worker in workers.values():
            worker.stop()
    print_modes(args, modes, results, params)


def print_modes(
    args: argparse.Namespace, modes: list[str], results: dict[str, list[dict[str, Any]]], params: int
) -> None:
    threads = sorted({t for runs in results.values() for run in runs for t in run["threads"]})
    print(
        f"GPT-2 small shape, {params / 1e6:.1f}M parameters, {args.windows} windows x {SEQ_LEN} tokens per pass, "
        f"batch {args.batch_size}, {args.repeats} repeats, threads {args.threads} (used {threads}), "
        f"{args.background} background evaluations\n"
    )
    header = (
        f"{'mode':<12} {'tokens/s':>9} {'min-max':>13} {'% of GEMM':>10} {'vs naive':>9} {'vs lm-eval':>11} "
        f"{'peak RSS MiB':>13} {'max |dNLL|':>11}"
    )
    print(header)
    print("-" * len(header))
    claims = []
    reference = results["naive-fp32"][0]["logloss"]
    for mode in modes:
        kind, dtype = mode.split("-")
        runs = results[mode]
        if kind == "gemm":
            rates = [run["gflops"] * 1e9 / (2 * params) for run in runs]
            print(f"{mode:<12} {statistics.median(rates):9,.0f} {spread(rates):>13}   (the FLOP limit, tokens/s)")
            continue
        rates = [run["tokens_per_s"] for run in runs]
        limit = [r / (g["gflops"] * 1e9 / (2 * params)) for r, g in zip(rates, results[f"gemm-{dtype}"], strict=True)]
        naive = [r / n["tokens_per_s"] for r, n in zip(rates, results[f"naive-{dtype}"], strict=True)]
        lmeval = results.get(f"lmeval-{dtype}")
        vs_lmeval = [r / n["tokens_per_s"] for r, n in zip(rates, lmeval, strict=True)] if lmeval else None
        drift = (
            f"{max(abs(a - b) for a, b in zip(runs[0]['logloss'], reference, strict=True)):11.1e}"
            if "logloss" in runs[0]
            else "-".rjust(11)
        )
        print(
            f"{mode:<12} {statistics.median(rates):9,.0f} {spread(rates):>13} {100 * statistics.median(limit):9.0f}% "
            f"{statistics.median(naive):8.2f}x {(f'{statistics.median(vs_lmeval):.2f}x' if vs_lmeval else '-'):>11} "
            f"{max(run['peak_rss'] for run in runs) / 2**20:13,.0f} {drift}"
        )
        if kind == "engine":
            claims.append(claim(f"engine {dtype} >= naive {dtype}", naive, 1.0))
            claims.append(claim(f"engine {dtype} >= 75% of the GEMM limit", limit, 0.75))
            if vs_lmeval:
                claims.append(claim(f"engine {dtype} >= 1.5x lm-eval", vs_lmeval, 1.5))
    print("\nPaired per repeat (each ratio from passes of the same repeat):")
    for line in claims:
        print(f"  {line}")
    print("\nmax |dNLL|: per-window mean NLL against naive fp32 (lm-eval sums log-likelihoods from an EOT prefix).")
    if any(mode.startswith("lmeval") for mode in modes):
        lmeval = next(results[mode][0] for mode in modes if mode.startswith("lmeval"))
        print(
            f"lm-eval scored our ids: {lmeval['retokenised']}/{args.windows} windows decode and re-tokenise to them, "
            "the others are mapped back (lm-eval's own tokenising skipped for all)."
        )


def claim(label: str, ratios: list[float], threshold: float) -> str:
    return f"{label}: {verdict(ratios, threshold)} (ratios {min(ratios):.2f}-{max(ratios):.2f})"


def run_concurrency(args: argparse.Namespace, folder: Path) -> None:
    counts = [int(value) for value in args.concurrency.split(",")]
    workers = [Worker(f"engine-fp32#{i}", sys.executable, _worker_args(folder, args)) for i in range(max(counts))]
    default_threads = workers[0].ready["default_threads"]
    cells = [(count, policy) for count in counts for policy in ("default", "auto")]
    totals: dict[tuple[int, str], list[float]] = {cell: [] for cell in cells}
    threads: dict[tuple[int, str], set[int]] = {cell: set() for cell in cells}
    try:
        print(machine_line("start"), flush=True)
        for repeat in range(args.repeats):
            order = cells[repeat % len(cells) :] + cells[: repeat % len(cells)]
            for count, policy in order:
                for worker in workers[:count]:
                    worker.send(f"go {policy}")
                runs = [worker._read() for worker in workers[:count]]
                seconds = max(run["end"] for run in runs) - min(run["begin"] for run in runs)
                totals[(count, policy)].append(count * args.windows * SEQ_LEN / seconds)
                threads[(count, policy)].update(t for run in runs for t in run["threads"])
            print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
        print(machine_line("end"))
    finally:
        for worker in workers:
            worker.stop()
    print(
        f"\nengine fp32, {args.windows} windows x {SEQ_LEN} tokens per evaluation, batch {args.batch_size}, "
        f"{args.repeats} repeats; torch's default: {default_threads} threads per process\n"
    )
    header = (
        f"{'evaluations':>11} {'threads':<9} {'used':<8} {'total tokens/s':>15} {'min-max':>13} "
        f"{'vs one alone':>13}  verdict (>= 0.9x)"
    )
    print(header)
    print("-" * len(header))
    for count, policy in cells:
        rates = totals[(count, policy)]
        alone = totals[(counts[0], policy)]
        ratios = [rate / base for rate, base in zip(rates, alone, strict=True)]
        label = "torch" if policy == "default" else "invarlock"
        used = ",".join(str(t) for t in sorted(threads[(count, policy)]))
        print(
            f"{count:>11} {label:<9} {used:<8} {statistics.median(rates):15,.0f} {spread(rates):>13} "
            f"{statistics.median(ratios):12.2f}x  {verdict(ratios, 0.9) if count != counts[0] else '-'}"
        )


def _worker_args(folder: Path, args: argparse.Namespace) -> list[str]:
    return ["--folder", str(folder), "--batch-size", str(args.batch_size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=16, help="windows per pass [16]")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", choices=("auto", "default"), default="auto")
    parser.add_argument("--background", type=int, default=0, help="other evaluations scoring meanwhile [0]")
    parser.add_argument("--lm-eval-python", help="a Python with lm-eval installed: adds the lm-eval modes")
    parser.add_argument("--concurrency", help="e.g. 1,2,4: N evaluations at once instead of the modes")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "background":
        return background_main(args.folder, args.batch_size)
    if args.worker:
        return worker_main(args.worker.split("#")[0], args.folder, args.batch_size)

    folder = Path(tempfile.mkdtemp(prefix="eval-throughput-"))
    background: list[subprocess.Popen[bytes]] = []
    try:
        params = prepare(folder, args.windows)["params"]
        background = [
            subprocess.Popen([sys.executable, __file__, "--worker", "background", *_worker_args(folder, args)])
            for _ in range(args.background)
        ]
        if args.concurrency:
            run_concurrency(args, folder)
        else:
            run_modes(args, folder, params)
    finally:
        for process in background:
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
