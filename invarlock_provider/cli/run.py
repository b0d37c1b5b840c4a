"""``invarlock run``: evaluate one model on a preset's windows and write report.json."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.cli.store_options import ENV_HELP, s3_settings, store_options
from invarlock_provider.config import DEVICES, DTYPES, PROFILES, RunOverrides, check_revision, load_preset
from invarlock_provider.device_map_spec import check_device_map, parse_max_memory_options
from invarlock_provider.edit_spec import parse_edit
from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.termination import RunKilledError

if TYPE_CHECKING:
    from invarlock_provider.config import ResolvedPreset
    from invarlock_provider.storage.workstore import RemoteFolder

EXAMPLE = (
    """
\b
Examples:
  invarlock run --out runs/baseline
  invarlock run --edit quant8 --out runs/quant8
  invarlock run -c configs/presets/causal_lm/wikitext2_512.yaml --model gpt2 --out runs/baseline
  invarlock run --edit quant:bits=4,group=32 --out runs/quant4_g32
  invarlock run --edit prune:sparsity=0.5 --out runs/pruned50
  invarlock run --edit quant8 --out s3://work-bucket/work/runs/quant8
  invarlock run --model /models/llama-70b --device-map auto --max-memory cuda:0=70GiB --max-memory cuda:1=70GiB
  invarlock run --model /models/qwen3-int8-torchao --batch-size auto --out runs/qwen3_int8
\b
With an s3:// --out the run is scored in a private temporary folder, uploaded (report.json
create-only, then events.jsonl), and only then named the newest run by runs/NAME/latest.json.
"""
    + ENV_HELP
)


@click.command("run", epilog=EXAMPLE)
@click.option(
    "-c",
    "--config",
    "preset",
    default=None,
    metavar="PRESET",
    help="Preset YAML file or bundled preset name [default: the embedded tiny model].",
)
@click.option(
    "--model",
    default=None,
    metavar="ID_OR_PATH",
    help="Model directory, s3://BUCKET/PREFIX/ or hub id (overrides the preset).",
)
@click.option(
    "--revision",
    default=None,
    metavar="SHA",
    help="Hub revision of --model (or of the preset's model): a commit sha pins it.",
)
@click.option(
    "--edit",
    default=None,
    metavar="SPEC",
    help="In-memory edit before scoring: noop, quant8, quant:bits=4[,group=32], prune:sparsity=0.5.",
)
@click.option(
    "--out",
    default=None,
    metavar="PATH|URI",
    help="Run folder runs/NAME (or s3://BUCKET/PREFIX/runs/NAME); each run goes to runs/NAME/<YYYYmmdd_HHMMSS>/ "
    "[default: runs/<preset>].",
)
@click.option("--profile", type=click.Choice(PROFILES), default=None, help="Window-count profile.")
@click.option("--device", type=click.Choice(DEVICES), default=None)
@click.option("--dtype", type=click.Choice(DTYPES), default=None)
@click.option(
    "--batch-size",
    default=None,
    metavar="N|auto",
    help="Windows per forward pass; auto: the largest that fits (CUDA: probed, backing off on out-of-memory; "
    "CPU: within a memory budget). Scores do not depend on it.",
)
@click.option(
    "--device-map",
    default=None,
    metavar="auto|balanced|sequential|DEVICE",
    help="Load the model straight onto its devices, split across GPUs (and CPU/disk with --max-memory) "
    "through accelerate; overrides model.device_map.",
)
@click.option(
    "--max-memory",
    "max_memory",
    multiple=True,
    metavar="DEVICE=SIZE",
    help="Per-device budget for --device-map, e.g. cuda:0=70GiB, cpu=200GiB, disk=1TiB (repeatable).",
)
@click.option("--seed", type=click.IntRange(min=0), default=None)
@click.option(
    "--task-limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Score at most N examples of each of the preset's tasks (the first N its seed selects).",
)
@click.option(
    "--threads",
    default=None,
    metavar="N|auto",
    help="CPU threads for scoring; auto: the cores this process may use (affinity, cgroup quota) divided "
    "among the evaluations running on this host, shared out again between batches [env INVARLOCK_THREADS; "
    "default: auto]. Recorded in meta.host.threads.",
)
@click.option(
    "--concurrent",
    default=None,
    metavar="N",
    help="Evaluations this worker runs at once (its pool slots or worker concurrency): auto threads divide "
    "the cores by at least N [env INVARLOCK_CONCURRENT_EVALUATIONS; default: those running now].",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar [default: on a terminal outside CI].")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option(
    "--run-dir-name",
    default=None,
    metavar="YYYYmmdd_HHMMSS[_NN]",
    help="Exact run folder name (orchestrators use it so a retry finds its own run).",
)
@click.option(
    "--reuse/--no-reuse",
    default=True,
    envvar="INVARLOCK_REUSE",
    help="Take the numbers of a complete earlier run of the same name whose reuse key (weights, tokenizer, "
    "windows, preset, dtype, device class, versions) equals this run's, instead of scoring again "
    "[env INVARLOCK_REUSE=0 turns it off; default: reuse]; recorded in meta.reused_from.",
)
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Recorded in meta.labels (repeatable).")
@store_options
@reports_errors
def run_command(
    preset: str | None,
    model: str | None,
    revision: str | None,
    edit: str | None,
    out: Path | None,
    profile: str | None,
    device: str | None,
    dtype: str | None,
    batch_size: str | None,
    device_map: str | None,
    max_memory: tuple[str, ...],
    seed: int | None,
    task_limit: int | None,
    threads: str | None,
    concurrent: str | None,
    progress: bool | None,
    as_json: bool,
    run_dir_name: str | None,
    reuse: bool,
    labels: tuple[str, ...],
    endpoint_url: str | None,
    region: str | None,
    path_style: bool,
) -> None:
    """Evaluate a model on fixed token windows; write report.json and events.jsonl.

    runs/NAME/report.json always points at the newest completed run of NAME.
    """
    from invarlock_provider.evaluation.progress import ProgressLines
    from invarlock_provider.evaluation.run import execute_run
    from invarlock_provider.evaluation.termination import die_with_parent
    from invarlock_provider.evaluation.threads import thread_request
    from invarlock_provider.layout import check_run_dir_name, summarize_run
    from invarlock_provider.reporting.run_reuse import find_reusable
    from invarlock_provider.run_inputs import fetch_store_inputs
    from invarlock_provider.run_sites import LocalTrySite, PlainSite
    from invarlock_provider.storage.workstore import RemoteFolder, work_location

    die_with_parent()  # started by an operator: never outlive it
    request = thread_request(threads, concurrent)
    if run_dir_name is not None:
        check_run_dir_name(run_dir_name)

    location = work_location(out, s3_settings(endpoint_url, region, path_style)) if out else None
    if edit is not None:
        edit = parse_edit(edit).spec  # a bad parameter fails here, naming --edit, before anything loads
    if device_map is not None:
        check_device_map(device_map, "--device-map")
    if revision is not None:
        check_revision(revision, "--revision")
    overrides = RunOverrides(
        model=model,
        revision=revision,
        edit=edit,
        device=device,
        dtype=dtype,
        batch_size=_batch_size(batch_size),
        seed=seed,
        device_map=device_map,
        max_memory=parse_max_memory_options(max_memory) if max_memory else None,
        task_limit=task_limit,
    )
    resolved = load_preset(preset, profile=profile, overrides=overrides)
    location = location or Path("runs") / resolved.preset.name
    if progress is None:
        progress = sys.stderr.isatty() and not os.environ.get("CI")
    parsed_labels = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep or not key:
            raise BadInputError(f"--label {label!r}: expected KEY=VALUE")
        parsed_labels[key] = value
    lines = ProgressLines(scoring_lines=not progress)
    options = {
        "show_progress": progress,
        "labels": parsed_labels,
        "threads": request,
        "progress_lines": lines,
        "find_reusable": find_reusable if reuse else None,
        "fetch_inputs": functools.partial(fetch_store_inputs, settings=s3_settings(endpoint_url, region, path_style)),
    }
    try:
        if isinstance(location, RemoteFolder):
            summary = _run_into_store(resolved, location, run_dir_name, options)
        else:
            site = LocalTrySite(location, run_dir_name) if run_dir_name else PlainSite(location)
            result = execute_run(resolved, site, **options)
            committed = result.committed
            summary = summarize_run(result.report, committed.run_dir, committed.report, committed.report_sha256)
    except RunKilledError as exc:
        click.echo(f"error: {exc}; no report written", err=True)
        sys.exit(exc.exit_code)
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"report: {summary['report']}")
    if summary["ppl_final"] is None:
        click.echo("no perplexity windows (tasks only)")
        return
    ppl = f"ppl final {summary['ppl_final']:.3f} (preview {summary['ppl_preview']:.3f})"
    if summary["reused_from"]:
        click.echo(f"{ppl}, {summary['tokens']} tokens reused from {summary['reused_from']} (same reuse key)")
    elif summary["tokens_per_s"] is None:
        click.echo(f"{ppl}, {summary['tokens']} tokens, every window from a checkpoint of an earlier try")
    else:
        click.echo(f"{ppl}, {summary['tokens']} tokens at {summary['tokens_per_s']:.0f} tokens/s")


def _batch_size(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise BadInputError(f"--batch-size: expected auto or an integer >= 1, got {value!r}")


def _run_into_store(
    resolved: ResolvedPreset, folder: RemoteFolder, run_dir_name: str | None, options: dict[str, Any]
) -> dict[str, Any]:
    """Score in a private temporary folder, mirrored and checkpointed to the store's staging, then
    commit the run to the store; the scratch goes either way."""
    from datetime import UTC, datetime

    from invarlock_provider.evaluation.run import execute_run
    from invarlock_provider.layout import summarize_run
    from invarlock_provider.scratch import owned_temporary_directory, remove_dead_scratch
    from invarlock_provider.storage.store_tries import StoreTrySite
    from invarlock_provider.storage.stores import check_store
    from invarlock_provider.storage.workstore import new_run_dir_name

    check_store(folder.store)  # credentials and bucket are checked before any scoring
    name = new_run_dir_name(folder, datetime.now(UTC), run_dir_name)
    remove_dead_scratch(("invarlock-run-",))  # a run killed with SIGKILL never removed its own
    with owned_temporary_directory("invarlock-run-") as scratch:
        result = execute_run(resolved, StoreTrySite(folder, name, scratch), **options)
    committed = result.committed
    summary = summarize_run(result.report, committed.run_dir, committed.report, committed.report_sha256)
    return {**summary, "handoff_s": round(committed.upload_s, 4)}
