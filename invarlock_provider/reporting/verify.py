"""Offline verification of evidence: recompute everything a verdict rests on.

An auditor runs this years later with only this package: it checks the evaluation's own content
digest, the sha256 of both referenced run reports and what the evaluation says about each (run id,
model, weights digest, edit), the policy digest of the stored snapshot, that each report's windows
are the ones its seed selects, and then recomputes pairing, the ratio, its interval, every gate and
the verdict from the stored per-window values. Anything that does not match is a named failed
check. Evidence is hostile input: it is parsed strictly, every reference must stay where it
belongs (in a bundle: the bundle's own two reports), and every bound is checked before any work.
"""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.windows import MAX_CANDIDATES, select_window_ids
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
from invarlock_provider.reporting.policy import TierPolicy, check_policy, policy_digest
from invarlock_provider.reporting.run_report import SPLITS, RunReport, parse_run_report
from invarlock_provider.reporting.stats import MAX_BOOTSTRAP_DRAWS
from invarlock_provider.strict_json import MalformedJSONError, expect_digest, loads_object
from invarlock_provider.verdicts import VERDICTS

BASELINE_DIR = "baseline"
RATIO_TOLERANCE = 1e-9
CI_TOLERANCE = 1e-6
MAX_REPORT_BYTES = 64 * 1024 * 1024
_REQUIRED_KEYS = ("subject", "baseline", "policy", "policy_digest", "gates", "verdict", "tier", DIGEST_FIELD)
ROLES = ("subject", "baseline")


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
    trusted: str | None = None  # the trusted key's name, when trust was given and the signature is trusted
    manifest_etag: str | None = None  # a bundle's manifest as the store identified it when it was read
    evaluation: dict[str, Any] | None = field(default=None, repr=False)
    # The evaluation rebuilt from the two reports and the stored policy: where the stored one holds
    # more than verify compares (free text, details), this is what the evidence says.
    recomputed: dict[str, Any] | None = field(default=None, repr=False)
    reports: dict[str, RunReport] = field(default_factory=dict, repr=False)  # the reports checked, by role

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))

    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "ok": self.ok,
            "verdict": self.verdict,
            "signer": self.signer,
            "trusted": self.trusted,
            "checks": [check.__dict__ for check in self.checks],
        }


def verify_path(path: Path) -> Verification:
    folder = path.parent if path.is_file() else path
    if (folder / EVALUATION_FILE).is_file():
        return verify_evaluation(folder)
    if (folder / REPORT_FILE).is_file():
        result = Verification(path=folder, kind="run_report")
        report = parse_run_report(read_bounded(folder / REPORT_FILE), folder / REPORT_FILE, "run")
        result.add("report.schema", True, f"{report.run_id}, sha256 {report.sha256}")
        for name, ok, detail in window_checks(report):
            result.add(f"run.{name}", ok, detail)
        return result
    raise MalformedEvidenceError(f"{path}: no {EVALUATION_FILE} or {REPORT_FILE} to verify")


def read_bounded(path: Path, limit: int = MAX_REPORT_BYTES) -> bytes:
    """A file's bytes, refused (one line) when it is larger than any evidence file may be."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise MalformedEvidenceError(f"{path}: {size} bytes, more than the {limit} an evidence file may have")
        return path.read_bytes()
    except IsADirectoryError:
        raise MalformedEvidenceError(f"{path}: a folder where a file was expected") from None
    except OSError as exc:
        raise MalformedEvidenceError(f"{path}: cannot read ({exc.strerror})") from None


def verify_evaluation(folder: Path, *, bundle: bool = False) -> Verification:
    """``bundle``: the folder is an evidence bundle, whose evaluation may only refer to the bundle's
    own ``report.json`` (subject) and ``baseline/report.json``; elsewhere (a reports folder) the
    baseline is found where its relative path says."""
    evaluation = load_evaluation(folder / EVALUATION_FILE)
    result = Verification(path=folder, kind="evaluation", verdict=evaluation["verdict"], evaluation=evaluation)
    stored_digest = evaluation[DIGEST_FIELD]
    actual_digest = content_digest(evaluation)
    result.add(
        "evaluation.content_digest",
        stored_digest == actual_digest,
        f"{EVALUATION_FILE} content changed: stored {stored_digest}, recomputed {actual_digest}"
        if stored_digest != actual_digest
        else actual_digest,
    )
    for role in ROLES:
        report = _check_reference(folder, role, evaluation[role], result, bundle=bundle)
        if report is not None:
            result.reports[role] = report
            for name, ok, detail in window_checks(report):
                result.add(f"{role}.{name}", ok, detail)
    stored_policy_digest = policy_digest(evaluation["policy"])
    result.add(
        "policy_digest",
        stored_policy_digest == evaluation["policy_digest"],
        f"stored {evaluation['policy_digest']}, recomputed {stored_policy_digest}",
    )
    try:
        check_policy(evaluation["policy"], "policy")
    except BadInputError as exc:
        result.add("policy", False, f"the stored policy cannot judge anything: {exc}")
        return result
    if len(result.reports) == len(ROLES):
        _check_recomputation(folder, evaluation, result.reports["subject"], result.reports["baseline"], result)
    return result


def load_evaluation(path: Path) -> dict[str, Any]:
    try:
        evaluation = loads_object(read_bounded(path), str(path))
    except MalformedJSONError as exc:
        raise MalformedEvidenceError(str(exc)) from None
    if evaluation.get("schema_version") != EVALUATION_SCHEMA:
        raise MalformedEvidenceError(
            f"{path}: unknown schema_version {evaluation.get('schema_version')!r} (expected {EVALUATION_SCHEMA!r})"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in evaluation]
    if missing:
        raise MalformedEvidenceError(f"{path}: missing {', '.join(missing)}")
    for role in ROLES:
        reference = evaluation[role]
        if not isinstance(reference, dict) or not isinstance(reference.get("path"), str):
            raise MalformedEvidenceError(f"{path}: {role} must hold path and sha256")
        try:
            expect_digest(reference.get("sha256"), f"{path}: {role}.sha256")
        except MalformedJSONError as exc:
            raise MalformedEvidenceError(str(exc)) from None
    if evaluation["verdict"] not in VERDICTS:
        raise MalformedEvidenceError(
            f"{path}: verdict must be one of {', '.join(VERDICTS)}, found {evaluation['verdict']!r}"
        )
    for key, kind in (("tier", str), ("policy_digest", str), (DIGEST_FIELD, str), ("gates", list), ("policy", dict)):
        if not isinstance(evaluation[key], kind):
            raise MalformedEvidenceError(f"{path}: {key} must be a {kind.__name__}")
    if not isinstance(evaluation.get("primary_metric"), (dict, type(None))):
        raise MalformedEvidenceError(f"{path}: primary_metric must be an object or null")
    return evaluation


def reference_location(folder: Path, role: str, reference: dict[str, Any], *, bundle: bool) -> Path:
    """The file a reference names. A subject is always the folder's own report.json; in a bundle the
    baseline is always baseline/report.json; a path is relative and plain, never absolute."""
    recorded = reference["path"]
    if role == "subject":
        if recorded != REPORT_FILE:
            raise MalformedEvidenceError(
                f"the evaluation's subject is {recorded!r}; an evaluation's subject is always its own {REPORT_FILE}"
            )
        return folder / REPORT_FILE
    if bundle:
        return folder / BASELINE_DIR / REPORT_FILE
    if not recorded or "\\" in recorded or "\x00" in recorded or posixpath.isabs(recorded):
        raise MalformedEvidenceError(f"the baseline reference {recorded!r} is not a relative path")
    return folder / recorded


def load_referenced_report(folder: Path, role: str, reference: dict[str, Any], *, bundle: bool = False) -> RunReport:
    """The referenced report, only if its bytes still match the recorded sha256."""
    path = reference_location(folder, role, reference, bundle=bundle)
    if not path.is_file():
        raise BadInputError(f"{role} report missing: {path}")
    raw = read_bounded(path)
    if sha256_bytes(raw) != reference["sha256"]:
        raise BadInputError(f"{path}: sha256 does not match the evaluation's record; run invarlock verify")
    return parse_run_report(raw, path, role)


def _check_reference(
    folder: Path, role: str, reference: dict[str, Any], result: Verification, *, bundle: bool
) -> RunReport | None:
    """Find the referenced report and check its sha256, recording the outcome."""
    name = f"{role}.sha256"
    try:
        found = reference_location(folder, role, reference, bundle=bundle)
    except MalformedEvidenceError as exc:
        result.add(f"{role}.path", False, str(exc))
        return None
    if not found.is_file():
        result.add(name, False, f"{role} report missing: {found}")
        return None
    try:
        raw = read_bounded(found)
    except MalformedEvidenceError as exc:
        result.add(name, False, str(exc))
        return None
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


def window_checks(report: RunReport) -> list[tuple[str, bool, str]]:
    """A report's windows are the ones its seed selects: as many as ``preview_n``/``final_n`` say,
    with exactly the ids the sha256 ranking picks among its candidate windows. Dropping, adding or
    swapping windows after the fact (and recomputing every digest) fails here."""
    data = report.data["data"]
    checks = []
    for split in SPLITS:
        listed = len(report.windows(split)["window_ids"])
        wanted = data[f"{split}_n"]
        checks.append((f"windows.{split}_n", listed == wanted, f"{listed} windows listed, data.{split}_n {wanted}"))
    candidates, seed = data.get("candidate_windows"), data.get("seed")
    if not isinstance(candidates, int) or not isinstance(seed, int) or not 0 <= candidates <= MAX_CANDIDATES:
        detail = f"data.candidate_windows {candidates!r} and data.seed {seed!r} cannot reproduce the selection"
        return [*checks, ("windows.selection", False, detail)]
    if data["preview_n"] + data["final_n"] > candidates or seed < 0:
        return [*checks, ("windows.selection", False, f"{candidates} candidate windows cannot hold the windows listed")]
    expected = select_window_ids(candidates, data["preview_n"], data["final_n"], seed)
    for split, ids in zip(SPLITS, expected, strict=True):
        listed = tuple(report.windows(split)["window_ids"])
        differing = len(set(listed) ^ set(ids))
        checks.append(
            (
                f"windows.{split}_ids",
                listed == ids,
                f"the {len(ids)} ids seed {seed} selects among {candidates} candidates"
                if listed == ids
                else f"{differing} window ids differ from those seed {seed} selects among {candidates} candidates",
            )
        )
    return checks


def _check_recomputation(
    folder: Path, evaluation: dict[str, Any], subject: RunReport, baseline: RunReport, result: Verification
) -> None:
    policy = TierPolicy(tier=evaluation["tier"], snapshot=evaluation["policy"])
    draws = policy["bootstrap"]["replicates"] * len(subject.windows("final")["logloss"])
    if draws > MAX_BOOTSTRAP_DRAWS:
        result.add("bootstrap.size", False, f"{draws} bootstrap draws, more than the {MAX_BOOTSTRAP_DRAWS} allowed")
        return
    try:
        again = build_evaluation(subject, baseline, policy, output_dir=folder)
    except BadInputError as exc:
        result.add("pairing", False, str(exc))
        return
    result.recomputed = {
        **again,
        "created_at": evaluation.get("created_at"),
        "tool_version": evaluation.get("tool_version"),
    }
    stored_pairing = (
        (evaluation.get("pairing") or {}).get("ok") if isinstance(evaluation.get("pairing"), dict) else None
    )
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
        stored_delta = stored_metric.get("delta_logloss")
        _compare(
            result,
            "primary_metric.delta_logloss.q95",
            stored_delta.get("q95") if isinstance(stored_delta, dict) else None,
            metric["delta_logloss"]["q95"],
            RATIO_TOLERANCE,
        )
        stored_ci = stored_metric.get("ci")
        for bound, index in (("ci_low", 0), ("ci_high", 1)):
            value = stored_ci[index] if isinstance(stored_ci, list) and len(stored_ci) == 2 else None
            _compare(result, f"primary_metric.{bound}", value, metric["ci"][index], CI_TOLERANCE)
    stored_gates = {g.get("name"): g for g in evaluation["gates"] if isinstance(g, dict)}
    for entry in again["gates"]:
        name = entry["name"]
        stored = stored_gates.get(name) or {}
        # Evaluations written before three outcomes existed record passed alone.
        fields = ("passed", "outcome") if "outcome" in stored else ("passed",)
        result.add(
            f"gate.{name}",
            all(stored.get(f) == entry[f] for f in fields),
            ", ".join(f"recomputed {f}={entry[f]}, stored {f}={stored.get(f)}" for f in fields),
        )
    extra = sorted(set(stored_gates) - {entry["name"] for entry in again["gates"]}, key=str)
    if extra:
        result.add("gates", False, f"stored gates the evidence does not give: {', '.join(map(str, extra))}")
    _check_tasks(evaluation, again, result)
    guards = evaluation.get("guards") if isinstance(evaluation.get("guards"), list) else []
    stored_guards = {g.get("name"): g for g in guards if isinstance(g, dict)}
    for comparison in again["guards"]:
        stored = stored_guards.get(comparison["name"]) or {}
        violations = stored.get("violations")
        result.add(
            f"guard.{comparison['name']}",
            stored.get("passed") == comparison["passed"] and violations == comparison["violations"],
            f"recomputed passed={comparison['passed']} with {len(comparison['violations'])} violations, "
            f"stored passed={stored.get('passed')} with {len(violations) if isinstance(violations, list) else 0}",
        )
    result.add(
        "verdict",
        evaluation["verdict"] == again["verdict"],
        f"recomputed {again['verdict']}, stored {evaluation['verdict']}",
    )


def _check_tasks(evaluation: dict[str, Any], again: dict[str, Any], result: Verification) -> None:
    """Each task's paired numbers as the two reports give them: the counts exactly, the rates and
    the interval to float precision."""
    stored_tasks = evaluation.get("tasks") if isinstance(evaluation.get("tasks"), list) else []
    stored = {t.get("name"): t for t in stored_tasks if isinstance(t, dict)}
    recomputed = again.get("tasks", [])
    if set(stored) != {t["name"] for t in recomputed} or len(stored) != len(stored_tasks):
        names = [t["name"] for t in recomputed]
        result.add("tasks", False, f"stored tasks {sorted(map(str, stored))}, recomputed {names}")
        return
    for task in recomputed:
        mine, theirs = task.get("paired"), stored[task["name"]].get("paired")
        label = f"task.{task['name']}"
        if mine is None or not isinstance(theirs, dict):
            result.add(f"{label}.pairing", mine is None and theirs is None, task["pairing"]["detail"])
            continue
        counts = ("n", "discordant", "concordant")
        result.add(
            f"{label}.counts",
            all(theirs.get(k) == mine[k] for k in counts),
            ", ".join(f"{k} stored {theirs.get(k)}, recomputed {mine[k]}" for k in counts),
        )
        for key in ("subject_accuracy", "baseline_accuracy", "difference", "mcnemar_p"):
            _compare(result, f"{label}.{key}", theirs.get(key), mine[key], RATIO_TOLERANCE)
        interval = theirs.get("interval")
        for bound, index in (("ci_low", 0), ("ci_high", 1)):
            value = interval[index] if isinstance(interval, list) and len(interval) == 2 else None
            _compare(result, f"{label}.{bound}", value, mine["interval"][index], RATIO_TOLERANCE)


def _compare(result: Verification, name: str, stored: Any, recomputed: float, tolerance: float) -> None:
    ok = (
        isinstance(stored, (int, float))
        and not isinstance(stored, bool)
        and math.isclose(stored, recomputed, rel_tol=tolerance, abs_tol=tolerance)
    )
    result.add(name, ok, f"stored {stored}, recomputed {recomputed}")
