"""Assemble evaluation.report.json from two run reports and a tier policy, and write it.

Assembly is one function over already-validated inputs; writing happens only after it succeeded,
subject copy first and the evaluation report last, each atomically, so a folder that holds an
evaluation.report.json always holds what it references.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from invarlock_provider import __version__
from invarlock_provider.edit_spec import edit_label
from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import canonical_json, sha256_bytes, write_bytes_atomic, write_json_atomic
from invarlock_provider.layout import EVENTS_FILE, REPORT_FILE, RUN_DIR_PATTERN
from invarlock_provider.reporting.guards import compare_guards
from invarlock_provider.reporting.lm_eval_reports import both_from_lm_eval
from invarlock_provider.reporting.pairing import explain, pairing_checks
from invarlock_provider.reporting.policy import TierPolicy, gate, judges_insufficient, verdict_of
from invarlock_provider.reporting.run_report import SPLITS, RunReport
from invarlock_provider.reporting.stats import bca_interval, ppl_ratio, quantile
from invarlock_provider.reporting.task_pairing import compare_tasks

EVALUATION_SCHEMA = "invarlock.evaluation/1"
EVALUATION_FILE = "evaluation.report.json"
HTML_FILE = "evaluation.html"
JUNIT_FILE = "gates.junit.xml"
DIGEST_FIELD = "evaluation_digest"
MAX_GATE_DETAILS = 3


def split_arrays(subject: RunReport, baseline: RunReport, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-window delta NLL (subject - baseline) and token weights for one split."""
    ours = np.asarray(subject.windows(split)["logloss"], dtype=np.float64)
    theirs = np.asarray(baseline.windows(split)["logloss"], dtype=np.float64)
    weights = np.asarray(baseline.windows(split)["token_counts"], dtype=np.float64)
    return ours - theirs, weights


def primary_metric(subject: RunReport, baseline: RunReport, policy: TierPolicy) -> dict[str, Any]:
    final_delta, final_weights = split_arrays(subject, baseline, "final")
    preview_delta, preview_weights = split_arrays(subject, baseline, "preview")
    bootstrap = policy["bootstrap"]
    interval = bca_interval(
        final_delta,
        final_weights,
        replicates=bootstrap["replicates"],
        confidence=float(bootstrap["confidence"]),
        seed=bootstrap["seed"],
    )
    preview_ratio = ppl_ratio(preview_delta, preview_weights)
    return {
        "kind": "ppl_ratio",
        "ratio": interval.ratio,
        "ci": [interval.low, interval.high],
        "ci_method": "paired bootstrap over windows, BCa",
        "ci_confidence": interval.confidence,
        "bootstrap_replicates": interval.replicates,
        "bootstrap_seed": interval.seed,
        "bca_z0": interval.z0,
        "bca_acceleration": interval.acceleration,
        "preview_ratio": preview_ratio,
        "drift": interval.ratio / preview_ratio,
        "final_tokens": int(final_weights.sum()),
        "delta_logloss": {
            "mean": float(final_delta.mean()),
            "median": quantile(final_delta, 0.5),
            "q95": quantile(final_delta, 0.95),
            "min": float(final_delta.min()),
            "max": float(final_delta.max()),
        },
        "subject_ppl": {s: subject.data["metrics"]["primary_metric"].get(s) for s in SPLITS},
        "baseline_ppl": {s: baseline.data["metrics"]["primary_metric"].get(s) for s in SPLITS},
    }


def _metric_gates(metric: dict[str, Any], policy: TierPolicy) -> list[dict[str, Any]]:
    limit = policy["ratio_limit"] + policy["hysteresis"]
    low, high = policy["drift_band"]
    enough = metric["final_tokens"] >= policy["min_tokens"]
    return [
        gate("ratio", metric["ratio"], limit, "<=", metric["ratio"] <= limit),
        gate("ratio_ci_upper", metric["ci"][1], limit, "<=", metric["ci"][1] <= limit),
        gate(
            "min_tokens",
            metric["final_tokens"],
            policy["min_tokens"],
            ">=",
            enough,
            "" if enough or not judges_insufficient(policy.snapshot) else "too few tokens to judge",
            insufficient=judges_insufficient(policy.snapshot),
        ),
        gate("drift", metric["drift"], [low, high], "within", low <= metric["drift"] <= high),
        gate(
            "tail_q95",
            metric["delta_logloss"]["q95"],
            policy["tail_q95_limit"],
            "<=",
            metric["delta_logloss"]["q95"] <= policy["tail_q95_limit"],
        ),
    ]


def _guard_gate(comparison: dict[str, Any]) -> dict[str, Any]:
    violations = comparison["violations"]
    shown = "; ".join(violations[:MAX_GATE_DETAILS])
    more = f"; +{len(violations) - MAX_GATE_DETAILS} more" if len(violations) > MAX_GATE_DETAILS else ""
    return gate(comparison["name"], len(violations), 0, "==", comparison["passed"], shown + more)


def build_evaluation(
    subject: RunReport,
    baseline: RunReport,
    policy: TierPolicy,
    *,
    output_dir: Path,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    checks = pairing_checks(subject, baseline)
    mismatches = [check for check in checks if not check.ok]
    windowless = not subject.windows("final")["logloss"] and not baseline.windows("final")["logloss"]
    metric = primary_metric(subject, baseline, policy) if not mismatches and not windowless else None
    if metric is not None:
        gates = _metric_gates(metric, policy)
    elif windowless and not mismatches:
        gates = []  # a tasks-only pair: no perplexity to judge
    else:
        gates = [
            gate(name, None, None, "not evaluated", False, "pairing failed: windows are not comparable")
            for name in ("ratio", "ratio_ci_upper", "min_tokens", "drift", "tail_q95")
        ]
    gates.append(gate("pairing", len(mismatches), 0, "==", not mismatches, explain(mismatches)))
    guards = [] if both_from_lm_eval(subject, baseline) else compare_guards(subject, baseline, policy)
    gates += [_guard_gate(comparison) for comparison in guards]
    tasks, task_gates = compare_tasks(subject, baseline, policy)
    gates += task_gates
    if windowless and not tasks:
        gates.append(gate("evidence", 0, 1, ">=", False, "neither perplexity windows nor tasks to judge"))
    verdict = verdict_of(gates)
    evaluation = {
        "schema_version": EVALUATION_SCHEMA,
        "created_at": (created_at or datetime.now(UTC)).isoformat(timespec="seconds"),
        "tool_version": __version__,
        "subject": _reference(subject, output_dir / REPORT_FILE, output_dir),
        "baseline": _reference(baseline, baseline.path, output_dir),
        "pairing": {"ok": not mismatches, "checks": [c.as_dict() for c in checks]},
        "primary_metric": metric,
        "guards": guards,
        **({"tasks": tasks} if tasks else {}),
        "tier": policy.tier,
        "policy": policy.snapshot,
        "policy_digest": policy.digest,
        "gates": gates,
        "verdict": verdict,
        "reasons": [gate_reason(g) for g in gates if not g["passed"]],
    }
    return {**evaluation, DIGEST_FIELD: content_digest(evaluation)}


def content_digest(evaluation: dict[str, Any]) -> str:
    """sha256 of the evaluation's canonical JSON without its own digest: any edit shows."""
    body = {key: value for key, value in evaluation.items() if key != DIGEST_FIELD}
    return sha256_bytes(canonical_json(body))


def _reference(report: RunReport, location: Path, output_dir: Path) -> dict[str, Any]:
    return {
        "path": Path(os.path.relpath(location.resolve(), output_dir.resolve())).as_posix(),
        "sha256": report.sha256,
        **reference_fields(report),
    }


def reference_fields(report: RunReport) -> dict[str, Any]:
    """What an evaluation says about a run besides where it is and its sha256; verify recomputes these."""
    meta = report.data["meta"]
    return {
        "run_id": report.run_id,
        "model_id": meta.get("model_id"),
        "weights_digest": meta.get("weights_digest"),
        "edit": edit_label(report.data.get("edit")),
    }


def gate_reason(entry: dict[str, Any]) -> str:
    """One line per failed gate; a detail of several lines (one per mismatched pairing field) follows
    its gate's line, as those lines, rather than being folded into one sentence."""
    if entry["comparison"] == "not evaluated":
        return f"{entry['name']}: {entry['detail']}"
    judged = f"{entry['name']}: {entry['value']} not {entry['comparison']} {entry['limit']}"
    if "\n" in entry["detail"]:
        return f"{judged}:\n{entry['detail']}"
    return judged + (f" ({entry['detail']})" if entry["detail"] else "")


PINNED_DIR = "by-sha256"


def run_name(report_path: Path) -> str:
    """runs/<name>/<timestamp>/report.json -> <name>; reports/<name>/report.json -> <name>;
    reports/<name>/by-sha256/<sha256>/report.json -> <name>."""
    parent = report_path.resolve().parent
    if parent.parent.name == PINNED_DIR:
        return parent.parent.parent.name
    return parent.parent.name if RUN_DIR_PATTERN.match(parent.name) else parent.name


def write_evaluation(
    output_dir: Path,
    subject: RunReport,
    baseline: RunReport,
    policy: TierPolicy,
    *,
    copy_baseline: bool = False,
    created_at: datetime | None = None,
) -> tuple[Path, dict[str, Any], list[Path]]:
    """Write report.json (subject copy), optionally the baseline copies, then the evaluation.

    The baseline is copied twice beside ``output_dir``: ``<name>/report.json``, the newest baseline of
    that name, which the next copy replaces, and ``<name>/by-sha256/<sha256>/report.json``, which is
    never replaced and is what the evaluation references, so an evaluation not yet archived still
    verifies after a newer baseline of the same name was copied. Returns the evaluation's path, the
    evaluation, and the files written beside ``output_dir`` (a store publish has to upload them too).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    beside: list[Path] = []
    if copy_baseline:
        folder = output_dir.parent / run_name(baseline.path)
        if folder.resolve() == output_dir.resolve():
            raise BadInputError(
                f"--copy-baseline would write the baseline over the subject in {output_dir}; "
                "choose an --output name different from the baseline's run name"
            )
        pinned = folder / PINNED_DIR / baseline.sha256 / REPORT_FILE
        if not pinned.is_file():
            write_bytes_atomic(pinned, baseline.raw)  # identical bytes from any writer: a race replaces nothing
            beside.append(pinned)
        elif sha256_bytes(pinned.read_bytes()) != baseline.sha256:
            raise BadInputError(f"{pinned}: content differs from the sha256 its folder names; remove the damaged copy")
        newest = folder / REPORT_FILE
        if newest.resolve() != baseline.path.resolve():
            write_bytes_atomic(newest, baseline.raw)
            beside.append(newest)
        baseline = RunReport(path=pinned, raw=baseline.raw, data=baseline.data)
    evaluation = build_evaluation(subject, baseline, policy, output_dir=output_dir, created_at=created_at)
    if (output_dir / REPORT_FILE).resolve() != subject.path.resolve():
        write_bytes_atomic(output_dir / REPORT_FILE, subject.raw)
    for derived in (HTML_FILE, JUNIT_FILE):  # rendered from an older evaluation
        (output_dir / derived).unlink(missing_ok=True)
    target = output_dir / EVALUATION_FILE
    write_json_atomic(target, evaluation)
    return target, evaluation, beside


def copy_run_events(run_dir: Path, output_dir: Path) -> bool:
    """Copy a run's events.jsonl beside its report copy; False when the run has none."""
    source = run_dir / EVENTS_FILE
    if not source.is_file():
        return False
    if source.resolve() != (output_dir / EVENTS_FILE).resolve():
        write_bytes_atomic(output_dir / EVENTS_FILE, source.read_bytes())
    return True


def promote_baseline(output_dir: Path, report: RunReport) -> Path:
    target = output_dir / REPORT_FILE
    if target.resolve() != report.path.resolve():
        write_bytes_atomic(target, report.raw)
    return target
