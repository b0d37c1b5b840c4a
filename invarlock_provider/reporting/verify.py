"""Offline verification of evidence: recompute everything a verdict rests on.

An auditor runs this years later with only this package: it checks the evaluation's own content
digest, the sha256 of both referenced run reports and what the evaluation says about each (run id,
model, weights digest, edit), the policy digest of the stored snapshot, and then recomputes
pairing, the ratio, its interval, every gate and the verdict from the stored per-window values.
Anything that does not match is a named failed check.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import sha256_bytes
from invarlock_provider.layout import REPORT_FILE
from invarlock_provider.reporting.evaluation import (
    DIGEST_FIELD,
    EVALUATION_FILE,
    EVALUATION_SCHEMA,
    build_evaluation,
    content_digest,
    reference_fields,
)
from invarlock_provider.reporting.policy import TierPolicy, policy_digest
from invarlock_provider.reporting.run_report import RunReport, parse_run_report

BASELINE_DIR = "baseline"
RATIO_TOLERANCE = 1e-9
CI_TOLERANCE = 1e-6
_REQUIRED_KEYS = ("subject", "baseline", "policy", "policy_digest", "gates", "verdict", "tier", DIGEST_FIELD)


class MalformedEvidenceError(BadInputError):
    """The evidence cannot even be read as evidence (exit 2)."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Verification:
    path: Path | str
    kind: str
    checks: list[Check] = field(default_factory=list)
    verdict: str | None = None
    signer: str | None = None  # the fingerprint of a valid signature's key (a signed bundle)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "ok": self.ok,
            "verdict": self.verdict,
            "signer": self.signer,
            "checks": [check.__dict__ for check in self.checks],
        }


def verify_path(path: Path) -> Verification:
    folder = path.parent if path.is_file() else path
    if (folder / EVALUATION_FILE).is_file():
        return verify_evaluation(folder)
    if (folder / REPORT_FILE).is_file():
        result = Verification(path=folder, kind="run_report")
        raw = (folder / REPORT_FILE).read_bytes()
        report = parse_run_report(raw, folder / REPORT_FILE, "run")
        result.add("report.schema", True, f"{report.run_id}, sha256 {report.sha256}")
        return result
    raise MalformedEvidenceError(f"{path}: no {EVALUATION_FILE} or {REPORT_FILE} to verify")


def verify_evaluation(folder: Path) -> Verification:
    evaluation = load_evaluation(folder / EVALUATION_FILE)
    result = Verification(path=folder, kind="evaluation", verdict=evaluation["verdict"])
    stored_digest = evaluation[DIGEST_FIELD]
    actual_digest = content_digest(evaluation)
    result.add(
        "evaluation.content_digest",
        stored_digest == actual_digest,
        f"{EVALUATION_FILE} content changed: stored {stored_digest}, recomputed {actual_digest}"
        if stored_digest != actual_digest
        else actual_digest,
    )
    reports = {role: _check_reference(folder, role, evaluation[role], result) for role in ("subject", "baseline")}
    stored_policy_digest = policy_digest(evaluation["policy"])
    result.add(
        "policy_digest",
        stored_policy_digest == evaluation["policy_digest"],
        f"stored {evaluation['policy_digest']}, recomputed {stored_policy_digest}",
    )
    subject, baseline = reports["subject"], reports["baseline"]
    if subject is not None and baseline is not None:
        _check_recomputation(folder, evaluation, subject, baseline, result)
    return result


def load_evaluation(path: Path) -> dict[str, Any]:
    try:
        evaluation = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise MalformedEvidenceError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError:
        raise MalformedEvidenceError(f"{path}: not UTF-8 JSON") from None
    if not isinstance(evaluation, dict):
        raise MalformedEvidenceError(f"{path}: expected a JSON object")
    if evaluation.get("schema_version") != EVALUATION_SCHEMA:
        raise MalformedEvidenceError(
            f"{path}: unknown schema_version {evaluation.get('schema_version')!r} (expected {EVALUATION_SCHEMA!r})"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in evaluation]
    if missing:
        raise MalformedEvidenceError(f"{path}: missing {', '.join(missing)}")
    for role in ("subject", "baseline"):
        reference = evaluation[role]
        if not isinstance(reference, dict) or not {"path", "sha256"} <= set(reference):
            raise MalformedEvidenceError(f"{path}: {role} must hold path and sha256")
    return evaluation


def reference_candidates(folder: Path, role: str, reference: dict[str, Any]) -> list[Path]:
    """Where a referenced report may be: its recorded relative path, or baseline/ inside a bundle."""
    candidates = [folder / reference["path"]]
    if role == "baseline":
        candidates.append(folder / BASELINE_DIR / REPORT_FILE)
    return candidates


def load_referenced_report(folder: Path, role: str, reference: dict[str, Any]) -> RunReport:
    """The referenced report, only if its bytes still match the recorded sha256."""
    candidates = reference_candidates(folder, role, reference)
    for path in candidates:
        if path.is_file():
            raw = path.read_bytes()
            if sha256_bytes(raw) != reference["sha256"]:
                raise BadInputError(f"{path}: sha256 does not match the evaluation's record; run invarlock verify")
            return parse_run_report(raw, path, role)
    raise BadInputError(f"{role} report missing: looked for {', '.join(str(p) for p in candidates)}")


def _check_reference(folder: Path, role: str, reference: dict[str, Any], result: Verification) -> RunReport | None:
    """Find the referenced report and check its sha256, recording the outcome."""
    candidates = reference_candidates(folder, role, reference)
    found = next((path for path in candidates if path.is_file()), None)
    name = f"{role}.sha256"
    if found is None:
        result.add(name, False, f"{role} report missing: looked for {', '.join(str(p) for p in candidates)}")
        return None
    raw = found.read_bytes()
    actual = sha256_bytes(raw)
    if actual != reference["sha256"]:
        result.add(name, False, f"{found} changed: sha256 {actual}, evaluation records {reference['sha256']}")
        return None
    result.add(name, True, f"{found.relative_to(folder) if found.is_relative_to(folder) else found}")
    try:
        report = parse_run_report(raw, found, role)
    except BadInputError as exc:
        result.add(f"{role}.schema", False, str(exc))
        return None
    _check_reference_fields(role, reference, report, result)
    return report


def _check_reference_fields(role: str, reference: dict[str, Any], report: RunReport, result: Verification) -> None:
    """The evaluation's description of a run (run id, model, weights, edit) must be the report's own:
    the content digest alone does not catch a re-digested evaluation that names another model."""
    for key, actual in reference_fields(report).items():
        stored = reference.get(key)
        result.add(
            f"{role}.{key}",
            stored == actual,
            f"{actual}" if stored == actual else f"evaluation records {stored!r}, the {role} report has {actual!r}",
        )


def _check_recomputation(
    folder: Path, evaluation: dict[str, Any], subject: RunReport, baseline: RunReport, result: Verification
) -> None:
    policy = TierPolicy(tier=evaluation["tier"], snapshot=evaluation["policy"])
    try:
        again = build_evaluation(subject, baseline, policy, output_dir=folder)
    except BadInputError as exc:
        result.add("pairing", False, str(exc))
        return
    stored_pairing = (evaluation.get("pairing") or {}).get("ok")
    result.add(
        "pairing",
        again["pairing"]["ok"] == stored_pairing,
        f"recomputed ok={again['pairing']['ok']}, stored ok={stored_pairing}",
    )
    stored_metric, metric = evaluation.get("primary_metric"), again["primary_metric"]
    if (stored_metric is None) != (metric is None):
        result.add("primary_metric", False, "stored and recomputed disagree on whether a metric exists")
        return
    if metric is not None:
        for key in ("ratio", "preview_ratio", "drift"):
            _compare(result, f"primary_metric.{key}", stored_metric.get(key), metric[key], RATIO_TOLERANCE)
        _compare(result, "primary_metric.final_tokens", stored_metric.get("final_tokens"), metric["final_tokens"], 0)
        _compare(
            result,
            "primary_metric.delta_logloss.q95",
            (stored_metric.get("delta_logloss") or {}).get("q95"),
            metric["delta_logloss"]["q95"],
            RATIO_TOLERANCE,
        )
        for bound, index in (("ci_low", 0), ("ci_high", 1)):
            stored_ci = (stored_metric.get("ci") or [None, None])[index]
            _compare(result, f"primary_metric.{bound}", stored_ci, metric["ci"][index], CI_TOLERANCE)
    stored_gates = {g.get("name"): g.get("passed") for g in evaluation["gates"] if isinstance(g, dict)}
    for entry in again["gates"]:
        name = entry["name"]
        result.add(
            f"gate.{name}",
            stored_gates.get(name) == entry["passed"],
            f"recomputed passed={entry['passed']}, stored passed={stored_gates.get(name)}",
        )
    stored_guards = {g.get("name"): g for g in evaluation.get("guards") or [] if isinstance(g, dict)}
    for comparison in again["guards"]:
        stored = stored_guards.get(comparison["name"]) or {}
        result.add(
            f"guard.{comparison['name']}",
            stored.get("passed") == comparison["passed"] and stored.get("violations") == comparison["violations"],
            f"recomputed passed={comparison['passed']} with {len(comparison['violations'])} violations, "
            f"stored passed={stored.get('passed')} with {len(stored.get('violations') or [])}",
        )
    result.add(
        "verdict",
        evaluation["verdict"] == again["verdict"],
        f"recomputed {again['verdict']}, stored {evaluation['verdict']}",
    )


def _compare(result: Verification, name: str, stored: Any, recomputed: float, tolerance: float) -> None:
    ok = isinstance(stored, (int, float)) and math.isclose(stored, recomputed, rel_tol=tolerance, abs_tol=tolerance)
    result.add(name, ok, f"stored {stored}, recomputed {recomputed}")
