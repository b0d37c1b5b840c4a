"""One evaluation run: load, edit, window, score, and write report.json + events.jsonl.

The report is written last and atomically, and the run is committed by its site (see
``run_sites.py``) only after that; only then does ``runs/<name>/report.json`` move to it.
A run that fails at any step, or is killed by SIGTERM, leaves its events (ending in an ``error``
event: ``run_failed``, ``run_crashed`` or ``killed``) but no report, so nothing half-done can be
mistaken for evidence. Scored windows are checkpointed to the site, and a later try of the same
run folder resumes from a checkpoint made under the same inputs (``evaluation/checkpoint.py``).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from invarlock_provider import __version__
from invarlock_provider.config import ResolvedPreset, preset_snapshot
from invarlock_provider.errors import EvaluationAbortedError, InvarlockError, require
from invarlock_provider.evaluation.checkpoint import checkpoint_interval
from invarlock_provider.evaluation.events import EventLog
from invarlock_provider.evaluation.inputs import RunInputs
from invarlock_provider.evaluation.network import apply_network_policy
from invarlock_provider.evaluation.progress import ProgressLines
from invarlock_provider.evaluation.termination import RunKilledError, TerminationWatch
from invarlock_provider.evaluation.threads import ThreadRequest, ThreadSizer
from invarlock_provider.fileio import write_json_atomic
from invarlock_provider.layout import EVENTS_FILE, REPORT_FILE, AlreadyCommittedError
from invarlock_provider.run_sites import Committed, PlainSite, RunSite

SCHEMA_VERSION = "invarlock.report/1"
TASK_BATCH = 8  # task examples per forward pass when the windows' batch size is auto
ADAPTER = "hf_causal"


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    report_path: Path
    report: dict[str, Any]
    committed: Committed


def execute_run(
    resolved: ResolvedPreset,
    out: Path | RunSite,
    *,
    show_progress: bool = False,
    now: datetime | None = None,
    labels: dict[str, str] | None = None,
    threads: ThreadRequest | None = None,
    progress_lines: ProgressLines | None = None,
    fetch_inputs: Callable[[Any], RunInputs] | None = None,
    find_reusable: Callable[..., Any] | None = None,
) -> RunResult:
    """``out`` is a runs/<name> folder (a new timestamped run in it) or a :class:`RunSite`.
    ``fetch_inputs`` makes the preset's ``s3://`` inputs local (``run_inputs.fetch_store_inputs``);
    it runs as the first phase, timed and logged as the run's own. ``find_reusable``
    (``reporting.run_reuse.find_reusable``) takes the numbers of a complete earlier run of this name
    made under the same reuse key (``evaluation/reuse.py``); without it every run scores."""
    for module in ("torch", "transformers"):
        require(module, "hf")
    site: RunSite = PlainSite(out) if isinstance(out, Path) else out
    checkpoint_s = checkpoint_interval()  # a bad setting is refused before anything is written
    watch = TerminationWatch(lambda: _emit_end(events, "killed", "did not stop within the grace period after SIGTERM"))
    started_at = now or datetime.now(UTC)
    run_dir, run_id = site.prepare(started_at)
    lines = progress_lines or ProgressLines(enabled=True)
    mirror_s = [0.0]

    def mirror(phase: str, event: str, data: dict[str, Any]) -> None:
        begin = time.perf_counter()
        site.mirror_events(run_dir / EVENTS_FILE)
        mirror_s[0] += time.perf_counter() - begin

    events = EventLog(run_dir / EVENTS_FILE, run_id, [lines.phase, mirror])
    preset = resolved.preset
    events.emit(
        "start",
        "run_started",
        preset=str(resolved.source),
        profile=resolved.profile,
        config=preset_snapshot(preset),
        pid=os.getpid(),
        run_dir=site.final_location(),
    )
    try:
        with watch:
            request = threads or ThreadRequest()
            with ThreadSizer(request.threads, request.concurrent) as sizer:
                scoring = Scoring(show_progress, sizer, lines, site, watch, events, checkpoint_s, find_reusable)
                report = _evaluate(resolved, run_id, started_at, events, scoring, fetch_inputs)
            report["meta"]["labels"] = dict(labels or {})
            report["meta"]["timings"]["events_mirror_s"] = round(mirror_s[0], 4)
            watch.interruptible = False  # committing: a SIGTERM from here on lets the commit finish
            report_path = run_dir / REPORT_FILE
            write_json_atomic(report_path, report)
            events.emit("finalize", "report_written", run_dir=site.final_location())
            committed = site.commit(run_dir)
    except RunKilledError as exc:
        _emit_end(events, "killed", f"{exc}; no report written")
        raise
    except AlreadyCommittedError:
        raise  # this try's staging is gone with its events; the committed run has its own
    except InvarlockError as exc:
        _emit_end(events, "run_failed", str(exc), type(exc).__name__)
        raise
    except OSError as exc:  # a full or read-only run folder or scratch: one line, not a traceback
        failure = InvarlockError(f"{exc.filename or run_dir}: {exc.strerror or exc}; no report written")
        _emit_end(events, "run_failed", str(failure), type(exc).__name__)
        raise failure from None
    except BaseException as exc:
        _emit_end(events, "run_crashed", str(exc), type(exc).__name__)
        raise
    final = Path(committed.run_dir) if "://" not in committed.run_dir else run_dir
    return RunResult(run_dir=final, report_path=final / REPORT_FILE, report=report, committed=committed)


def _emit_end(events: EventLog, event: str, message: str, error: str | None = None) -> None:
    """The timeline's last event; a folder removed under the run (its staging) has no timeline left."""
    with contextlib.suppress(OSError):
        events.emit("error", event, level="error", error=error or event, message=message)


def _emit_warning(events: EventLog, event: str, reason: str) -> None:
    with contextlib.suppress(OSError):
        events.emit("score", event, level="warning", reason=reason)


@dataclass
class Scoring:
    """What scoring needs beyond the model and windows: the cores, the progress lines, where
    checkpoints go, and the SIGTERM watch it checks between batches."""

    show_progress: bool
    sizer: ThreadSizer
    lines: ProgressLines
    site: RunSite
    watch: TerminationWatch
    events: EventLog
    checkpoint_interval_s: float
    find_reusable: Callable[..., Any] | None = None


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    begin = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = round(time.perf_counter() - begin, 4)


def _evaluate(
    resolved: ResolvedPreset,
    run_id: str,
    started_at: datetime,
    events: EventLog,
    scoring: Scoring,
    fetch_inputs: Callable[[Any], RunInputs] | None = None,
) -> dict[str, Any]:
    """Timed phase by phase (meta.timings); the corpus is tokenized and windowed on a second thread
    while the model loads, so the first window is scored as soon as the guards have run."""
    preset = resolved.preset
    timings: dict[str, float] = {}
    wall_begin = time.perf_counter()
    network = apply_network_policy()
    with _timed(timings, "imports_s"):
        import torch  # noqa: F401  (the import is the cost being timed)
        import transformers  # noqa: F401

        from invarlock_provider.evaluation import runtime
        from invarlock_provider.evaluation.batching import choose_batch_size
        from invarlock_provider.evaluation.edits import apply_edit
        from invarlock_provider.evaluation.model import (
            check_compatible,
            check_model_weights,
            hub_commit,
            import_model_class,
            load_model,
            load_tokenizer,
            tokenizer_hash,
            unpinned_hub_inputs,
        )
        from invarlock_provider.evaluation.placement import (
            describe_device_map,
            input_device_of,
            plan_placement,
            requested_device,
        )
        from invarlock_provider.evaluation.quantized import describe_quantization
        from invarlock_provider.evaluation.scoring import WindowScorer, keep_freed_memory_mapped
        from invarlock_provider.weights.tensors import DIGEST_METHOD, weights_digest

    with _timed(timings, "setup_s"):
        seeds = runtime.seed_everything(preset.seed)
        device = runtime.resolve_device(requested_device(preset.model.device_map, preset.eval.device))
        dtype_name = runtime.resolve_dtype(preset.eval.dtype, device)
        determinism = runtime.configure_determinism(device)
        cpu = runtime.cpu_profile()
        _quiet_transformers()
        placement = plan_placement(preset.model.device_map, preset.model.max_memory, device)
    matmul_rates = _warn_on_slow_bf16(runtime, cpu, dtype_name, placement.input_device, events)

    with _timed(timings, "inputs_s"):
        inputs = fetch_inputs(preset) if fetch_inputs is not None else RunInputs(model=preset.model)
    for role, stored in inputs.held.items():
        events.emit("load", "input_fetched", role=role, uri=stored.uri, digest=stored.digest,
                    objects=len(stored.objects), downloaded=stored.downloaded, path=str(stored.path))  # fmt: skip
    with _timed(timings, "tokenizer_s"):
        check_model_weights(inputs.model)
        tokenizer = load_tokenizer(inputs.model)
        # Taken before the windows thread starts: from then on only that thread uses the tokenizer.
        tokenizer_size = len(tokenizer)
        tok_hash = tokenizer_hash(tokenizer)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="invarlock-windows") as windowing:
        pending_windows = windowing.submit(_select_windows, preset, tokenizer, inputs.dataset_file)
        with _timed(timings, "model_import_s"):
            model_config, model_class = import_model_class(inputs.model)
        with _timed(timings, "model_load_s"):
            loaded = load_model(
                inputs.model, tokenizer, tokenizer_size, model_config, model_class,
                dtype=runtime.torch_dtype(dtype_name), placement=placement,
            )  # fmt: skip
            check_compatible(loaded, preset.dataset.seq_len)
            model_params = sum(p.numel() for p in loaded.model.parameters())
        timings["load_s"] = round(sum(timings[k] for k in ("tokenizer_s", "model_import_s", "model_load_s")), 4)
        commit = hub_commit(inputs.model, loaded)
        input_device = input_device_of(loaded.model, placement.input_device)
        device_map = describe_device_map(loaded.model, placement) if placement.split else None
        events.emit(
            "load",
            "model_loaded",
            model=preset.model.id,
            source=loaded.source,
            device=device,
            device_map=preset.model.device_map,
            dtype=dtype_name,
            quantization=loaded.quantization,
            parameters=model_params,
            network_allowed=network,
            revision=preset.model.revision,
            commit=commit,
            seconds=timings["load_s"],
        )
        for warning in unpinned_hub_inputs(preset, loaded, commit, network):
            _emit_warning(events, "unpinned_hub_input", warning)

        with _timed(timings, "digest_s"):
            loaded_digest = weights_digest(loaded.model) if preset.edit.name != "noop" else None
        with _timed(timings, "edit_s"):
            edit_record = apply_edit(loaded.model, preset.edit.name)
        digest_begin = time.perf_counter()
        evaluated_digest = weights_digest(loaded.model)
        timings["digest_s"] = round(timings["digest_s"] + time.perf_counter() - digest_begin, 4)
        events.emit(
            "edit",
            "edit_applied",
            edit=preset.edit.name,
            modules_changed=len(edit_record["modules_changed"]),
            seconds=timings["edit_s"],
        )

        guards = _measure_guards(loaded, timings, events)

        with _timed(timings, "windows_wait_s"):
            corpus, windows, timings["windows_s"] = pending_windows.result()
    events.emit(
        "windows",
        "windows_selected",
        corpus_tokens=windows.corpus_tokens,
        candidates=windows.plan.candidates,
        preview=len(windows.preview),
        final=len(windows.final),
        windows_digest=windows.windows_digest,
        seconds=timings["windows_s"],
    )

    from invarlock_provider.evaluation.tasks import load_tasks, score_tasks

    tasks = load_tasks(preset.tasks, inputs.task_files, preset.seed)
    scorer = WindowScorer(loaded.model, batch_size=1, device=input_device, dtype_name=dtype_name)
    total_windows = len(windows.preview) + len(windows.final)
    key = _checkpoint_key(
        runtime, evaluated_digest, tok_hash, windows, preset, dtype_name, input_device, scorer.plan
    )  # fmt: skip
    reuse_key = _reuse_key(key, resolved, [task.key() for task in tasks])
    with _timed(timings, "reuse_lookup_s"):
        reused = _find_reused(scoring, scoring.find_reusable, reuse_key, windows) if scoring.find_reusable else None
    allocator_tuned = False
    if reused is None:
        allocator_tuned = keep_freed_memory_mapped() if input_device == "cpu" else False
        batch = choose_batch_size(preset.eval.batch_size, scorer, windows.preview, input_device)
        scorer.batch_size = batch.batch_size
        batch_record = batch.as_record()
        timings["batch_probe_s"] = round(batch.probe_s, 4)
        fixed = batch.method == "fixed"
        resume = _find_resume(scoring, key, windows, scorer.batch_size, fixed) if scoring.site.resumable else None
        if resume is not None:
            scorer.batch_size = resume.batch_size  # the same batches as the try it resumes
        with runtime.PeakMemory(device) as peak, _timed(timings, "score_s"):
            preview, final, checkpointer = _score_splits(
                scorer, windows, preset.dataset.seq_len, scoring, key, resume
            )  # fmt: skip
        checkpoints = checkpointer.count
        timings["checkpoint_s"] = round(checkpointer.spent_s, 4)
        reused_windows = resume.windows if resume else 0
    else:
        resume = None
        batch_record = {"requested": preset.eval.batch_size, "chosen": None, "method": "none: scores reused"}
        with runtime.PeakMemory(device) as peak, _timed(timings, "score_s"):
            preview, final = (_reused_scores(reused, split, preset.dataset.seq_len) for split in ("preview", "final"))
        checkpoints = 0
        reused_windows = total_windows
    timings["progress_s"] = round(scoring.lines.spent_s, 4)
    processed_tokens = total_windows * preset.dataset.seq_len
    scored_tokens = (total_windows - reused_windows) * preset.dataset.seq_len
    tokens_per_s = scored_tokens / timings["score_s"] if timings["score_s"] > 0 and scored_tokens else None
    events.emit(
        "score",
        "windows_scored",
        windows=total_windows,
        tokens=processed_tokens,
        tokens_per_s=tokens_per_s,
        windows_reused=reused_windows,
        strategy=scorer.plan.strategy,
        batch_size=batch_record["chosen"],
        checkpoints=checkpoints,
        seconds=timings["score_s"],
    )
    if reused is not None:
        task_blocks = reused.tasks
    else:
        with _timed(timings, "tasks_s"):
            task_blocks = score_tasks(
                tasks,
                loaded.model,
                loaded.tokenizer,
                device=input_device,
                batch_size=preset.eval.batch_size if isinstance(preset.eval.batch_size, int) else TASK_BATCH,
                max_length=loaded.context_length,
                seed=preset.seed,
                scored=lambda name, summary: events.emit("score", "task_scored", task=name, **summary),
            )
    timings["imports_total_s"] = round(timings["imports_s"] + timings["model_import_s"], 4)
    timings["total_s"] = round(time.perf_counter() - wall_begin, 4)
    timings["process_s"] = _process_age()
    guard_overhead = timings["guards_s"] / timings["score_s"] if timings["score_s"] > 0 and scored_tokens else None

    def split_block(ids: tuple[int, ...], split: str, scores: Any) -> dict[str, Any]:
        return {
            "window_ids": list(ids),
            "token_digests": windows.digests(split),
            "logloss": scores.logloss,
            "token_counts": scores.token_counts,
        }

    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "created_at": started_at.isoformat(timespec="seconds"),
        "preset": {
            "source": str(resolved.source),
            "profile": resolved.profile,
            "resolved": preset_snapshot(preset),
        },
        "meta": {
            "model_id": preset.model.id,
            "model_source": loaded.source,
            "model_class": type(loaded.model).__name__,
            "model_revision": preset.model.revision,
            "model_commit": commit,
            "trust_remote_code": preset.model.trust_remote_code,
            "parameters": model_params,
            "context_length": loaded.context_length,
            "weights_digest": evaluated_digest,
            "weights_digest_before_edit": loaded_digest or evaluated_digest,
            "weights_digest_method": DIGEST_METHOD,
            "device_map": device_map,
            "quantization": _plain(describe_quantization(loaded.model, loaded.quantization)),
            "adapter": ADAPTER,
            "device": device,
            "dtype": dtype_name,
            "tokenizer_hash": tok_hash,
            "tokenizer_vocab_size": loaded.tokenizer_size,
            "seeds": seeds,
            "determinism": determinism,
            "network_allowed": network,
            "versions": _versions(),
            "host": {
                "platform": platform.platform(),
                "cpu_threads": _torch_threads(),
                "threads": scoring.sizer.as_record(),
                "cpu": cpu.as_record(),
                "matmul_gflops": matmul_rates,
            },
            "scoring": {
                **scorer.plan.__dict__,
                "input_device": input_device,
                "batch": batch_record,
                "cpu_allocator_tuned": allocator_tuned,
                "checkpoints": checkpoints,
            },
            "timings": timings,
            "inputs": inputs.records,
            "resumed_from": _resume_record(resume),
            "reuse_key": reuse_key,
            "reused_from": reused.as_record(reuse_key) if reused else None,
        },
        "data": {
            **corpus.source,
            "seq_len": preset.dataset.seq_len,
            "stride": preset.dataset.stride,
            "preview_n": len(windows.preview),
            "final_n": len(windows.final),
            "bos_prepended": windows.bos_prepended,
            "corpus_tokens": windows.corpus_tokens,
            "candidate_windows": windows.plan.candidates,
            "selection": "sha256(seed:index) rank",
            "seed": preset.seed,
            "dataset_digest": corpus.digest,
            "windows_digest": windows.windows_digest,
        },
        "evaluation_windows": {
            "preview": split_block(windows.plan.preview_ids, "preview", preview),
            "final": split_block(windows.plan.final_ids, "final", final),
        },
        "metrics": {
            "primary_metric": {
                "kind": "ppl",
                "preview": _perplexity(preview.logloss, preview.token_counts),
                "final": _perplexity(final.logloss, final.token_counts),
            },
            "tokens_processed": processed_tokens,
            "tokens_scored": sum(preview.token_counts) + sum(final.token_counts),
            "throughput_tokens_per_s": tokens_per_s,
            "peak_memory_bytes": peak.peak_bytes,
            "peak_memory_source": peak.source,
            "peak_memory_per_device": peak.per_device,
            "guard_overhead_of_scoring": guard_overhead,
        },
        "tasks": task_blocks,
        "edit": edit_record,
        "guards": guards,
    }


def _select_windows(preset: Any, tokenizer: Any, dataset_file: Path | None) -> tuple[Any, Any, float]:
    from invarlock_provider.evaluation.data import build_windows, load_corpus

    begin = time.perf_counter()
    corpus = load_corpus(preset.dataset, dataset_file)
    windows = build_windows(corpus, tokenizer, preset.dataset, preset.seed)
    return corpus, windows, round(time.perf_counter() - begin, 4)


def _warn_on_slow_bf16(
    runtime: Any, cpu: Any, dtype_name: str, device: str, events: EventLog
) -> dict[str, float] | None:
    """bf16 on a CPU without native bf16 can be many times slower than fp32: measure, warn once."""
    if dtype_name != "bfloat16" or device != "cpu":
        return None
    rates = runtime.matmul_rates()
    warning = runtime.slow_bf16_warning(rates, cpu)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
        events.emit("load", "slow_bf16", level="warning", message=warning, gflops=rates, cpu=cpu.model)
    return rates


def _process_age() -> float | None:
    """Seconds since this process started (interpreter start-up and CLI imports included)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 2)


def _plain(value: Any) -> Any:
    """JSON-safe copy (quantization configs may hold enums and config objects)."""
    import json

    return json.loads(json.dumps(value, default=str)) if value is not None else None


def _measure_guards(loaded: Any, timings: dict[str, float], events: EventLog) -> list[dict[str, Any]]:
    """Invariants, then spectral, on the model as it will be scored; broken weights stop the run here."""
    from invarlock_provider.guards.invariants import measure_invariants
    from invarlock_provider.guards.spectral import measure_spectral

    with _timed(timings, "guards_s"):
        invariants = measure_invariants(loaded.model, loaded.tokenizer_size)
        _emit_guard(events, invariants)
        if not invariants["passed"]:
            raise EvaluationAbortedError(
                f"invariants guard failed before scoring: {'; '.join(invariants['violations'])}; "
                "aborting without a report"
            )
        spectral = measure_spectral(loaded.model)
        _emit_guard(events, spectral)
    return [invariants, spectral]


def _emit_guard(events: EventLog, record: dict[str, Any]) -> None:
    events.emit(
        "guards",
        "guard_measured",
        level="info" if record["passed"] else "error",
        guard=record["name"],
        passed=record["passed"],
        violations=record["violations"],
        seconds=record["metrics"]["seconds"],
    )


def _perplexity(logloss: list[float], counts: list[int]) -> float | None:
    """exp of the token-weighted mean NLL; None for no windows (a tasks-only run)."""
    if not counts:
        return None
    total = sum(loss * count for loss, count in zip(logloss, counts, strict=True))
    return math.exp(total / sum(counts))


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(), "invarlock_provider": __version__}
    for package in ("torch", "transformers", "tokenizers", "datasets", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _quiet_transformers() -> None:
    """Errors only from the libraries under the engine, so stderr's last line is the run's own.

    torchao, imported by transformers' quantizers whenever it is installed, logs at import that
    its CUDA kernels do not load on a CPU build, and torch warns about its enums' pytree
    registration; neither concerns a run."""
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for name in ("torchao", "torch.utils._pytree", "accelerate.big_modeling"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _checkpoint_key(
    runtime: Any,
    weights: str,
    tokenizer: str,
    windows: Any,
    preset: Any,
    dtype_name: str,
    input_device: Any,
    plan: Any,
) -> dict[str, Any]:
    """Everything that decides a window's NLL; a checkpoint is resumed only under an equal key."""
    return {
        "weights_digest": weights,
        "tokenizer_hash": tokenizer,
        "windows_digest": windows.windows_digest,
        "windows": [len(windows.preview), len(windows.final)],
        "seq_len": preset.dataset.seq_len,
        "dtype": dtype_name,
        "device_class": runtime.device_class(input_device),
        "strategy": plan.strategy,
        "head_chunk_tokens": plan.head_chunk_tokens,
        "versions": _versions(),
    }


def _reuse_key(scoring_key: dict[str, Any], resolved: ResolvedPreset, tasks: list[dict[str, str]]) -> dict[str, Any]:
    from invarlock_provider.evaluation.reuse import reuse_key

    return reuse_key(scoring_key, preset_snapshot(resolved.preset), resolved.profile, tasks)


def _find_reused(scoring: Scoring, find_reusable: Callable[..., Any], key: dict[str, Any], windows: Any) -> Any:
    """A complete earlier run of this name that this run would reproduce; a store that cannot be
    read now only means scoring again."""

    def passed_over(where: str, reason: str) -> None:
        scoring.events.emit("score", "run_not_reused", earlier_run=where, reason=reason)

    try:
        reused = find_reusable(scoring.site.earlier_runs(), key, windows, passed_over)
    except (OSError, InvarlockError) as exc:
        _emit_warning(scoring.events, "reuse_lookup_failed", f"{exc}; scoring instead")
        return None
    if reused is not None:
        scoring.events.emit(
            "score", "run_reused", reused_from=reused.where, run=reused.run_id, scored_run_id=reused.scored_run_id
        )
    return reused


def _reused_scores(reused: Any, split: str, seq_len: int) -> Any:
    from invarlock_provider.evaluation.scoring import WindowScores

    losses = reused.logloss[split]
    return WindowScores(logloss=list(losses), token_counts=[seq_len - 1] * len(losses))


def _find_resume(scoring: Scoring, key: dict[str, Any], windows: Any, batch_size: int, fixed: bool) -> Any:
    from invarlock_provider.evaluation.checkpoint import choose_resume

    def discarded(where: str, reason: str) -> None:
        scoring.events.emit("score", "checkpoint_discarded", level="warning", checkpoint=where, reason=reason)

    counts = {"preview": len(windows.preview), "final": len(windows.final)}
    resume = choose_resume(scoring.site.checkpoints(), key, counts, batch_size, fixed, discarded)
    if resume is not None:
        scoring.events.emit(
            "score", "resumed", checkpoint=resume.where, resumed_from=resume.run_id, windows_reused=resume.windows
        )
    return resume


def _resume_record(resume: Any) -> dict[str, Any] | None:
    if resume is None:
        return None
    return {
        "run_id": resume.run_id,
        "checkpoint": resume.where,
        "windows_reused": {split: len(values) for split, values in resume.logloss.items()},
    }


def _score_splits(
    scorer: Any, windows: Any, seq_len: int, scoring: Scoring, key: dict[str, Any], resume: Any
) -> tuple[Any, Any, Any]:
    """Preview, then final, each batched from its first window; windows a checkpoint already holds
    are taken from it, and the rest is checkpointed as it is scored."""
    from invarlock_provider.evaluation.checkpoint import Checkpointer
    from invarlock_provider.evaluation.scoring import WindowScores

    plan = windows.plan
    splits = (("preview", windows.preview, plan.preview_ids), ("final", windows.final, plan.final_ids))
    logloss: dict[str, list[float]] = {split: list(resume.logloss[split]) if resume else [] for split, _, _ in splits}
    total = len(windows.preview) + len(windows.final)
    checkpointer = Checkpointer(
        scoring.site.save_checkpoint,
        scoring.events.run_id,
        key,
        scorer.batch_size,
        scoring.checkpoint_interval_s,
        lambda done: scoring.events.emit("score", "checkpoint_saved", windows=done, of=total),
        lambda reason: _emit_warning(scoring.events, "checkpoint_failed", reason),
    )
    scoring.lines.start_scoring(total, seq_len - 1, resume.windows if resume else 0)
    results = []
    with _progress_bar(total, scoring.show_progress, resume.windows if resume else 0) as bar:
        for split, data, ids in splits:
            done = logloss[split]

            def on_batch(losses: list[float], done: list[float] = done) -> None:
                done.extend(losses)
                bar(len(losses))
                scoring.lines.advance(len(losses))
                scoring.sizer.resize()
                scoring.watch.check()
                if scoring.site.resumable:
                    checkpointer.maybe_save(logloss)

            if len(done) < len(data):
                labels = [f"{split}/{i}" for i in ids]
                scorer.score(data[len(done) :], labels[len(done) :], on_batch)
                if scoring.site.resumable:
                    checkpointer.maybe_save(logloss, force=True)
            scores = WindowScores(logloss=list(done), token_counts=[seq_len - 1] * len(data))
            if split == "preview":
                scoring.lines.preview_ppl = _perplexity(scores.logloss, scores.token_counts)
            results.append(scores)
    return results[0], results[1], checkpointer


@contextmanager
def _progress_bar(total: int, enabled: bool, initial: int) -> Iterator[Any]:
    """The bar a terminal shows; without one, the progress lines say the same."""
    from tqdm import tqdm

    with tqdm(total=total, initial=initial, unit="win", desc="scoring", disable=not enabled, file=sys.stderr) as bar:
        yield bar.update
