"""Guard comparison: the subject's guard measurements judged against the baseline's under a tier.

Each run measures its own model; only the pair can say whether the edit changed what must not
change (structure) or moved a few weight matrices far more than the rest (spectral outliers).
The comparison uses only numbers stored in the two reports, so ``verify`` can redo it offline.
"""

from __future__ import annotations

import math
from statistics import median
from typing import Any

from invarlock_provider.guards.record import GUARD_NAMES, INVARIANTS, SPECTRAL, find_guard, guard_record
from invarlock_provider.reporting.policy import TierPolicy
from invarlock_provider.reporting.run_report import RunReport

INVARIANT_FIELDS = ("parameters", "structure_hash", "tied_embeddings", "norm_layers", "embedding_rows")
MAD_TO_SIGMA = 1.4826
MIN_LOG_SCALE = 1e-6
MAX_NAMED = 5


def compare_guards(subject: RunReport, baseline: RunReport, policy: TierPolicy) -> list[dict[str, Any]]:
    measured = {
        name: (find_guard(subject.data.get("guards"), name), find_guard(baseline.data.get("guards"), name))
        for name in GUARD_NAMES
    }
    results = []
    for name, (ours, theirs) in measured.items():
        violations = [
            f"{name} not measured in the {role} report (made before guards existed?)"
            for role, record in (("subject", ours), ("baseline", theirs))
            if record is None
        ]
        if violations or ours is None or theirs is None:
            results.append(guard_record(name, {}, violations))
            continue
        violations = [
            f"{role} run failed {name}: {'; '.join(record.get('violations') or ['no detail'])}"
            for role, record in (("subject", ours), ("baseline", theirs))
            if not record.get("passed")
        ]
        if name == INVARIANTS:
            metrics, found = _compare_invariants(ours["metrics"], theirs["metrics"])
        else:
            metrics, found = _compare_spectral(ours["metrics"], theirs["metrics"], policy["guards"][SPECTRAL])
        results.append(guard_record(name, metrics, violations + found))
    return results


def _compare_invariants(ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    checks = []
    violations = []
    for field in INVARIANT_FIELDS:
        subject_value, baseline_value = ours.get(field), theirs.get(field)
        same = subject_value == baseline_value
        checks.append({"field": field, "subject": subject_value, "baseline": baseline_value, "ok": same})
        if not same:
            violations.append(f"{field}: subject {_brief(subject_value)} != baseline {_brief(baseline_value)}")
    return {"checks": checks}, violations


def _brief(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in sorted(value.items()))
    return str(value)


def _compare_spectral(
    ours: dict[str, Any], theirs: dict[str, Any], caps: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    subject_modules = {m["name"]: m for m in ours.get("modules", [])}
    baseline_modules = {m["name"]: m for m in theirs.get("modules", [])}
    violations = []
    only_subject = sorted(set(subject_modules) - set(baseline_modules))
    only_baseline = sorted(set(baseline_modules) - set(subject_modules))
    if only_subject or only_baseline:
        violations.append(
            f"modules differ: {len(only_subject)} only in subject {_names(only_subject)}, "
            f"{len(only_baseline)} only in baseline {_names(only_baseline)}"
        )
    rows = []
    families: dict[str, Any] = {}
    for family in caps["ratio_cap"]:
        names = [n for n, m in baseline_modules.items() if m["family"] == family and n in subject_modules]
        family_rows = _family_rows(family, names, subject_modules, baseline_modules, caps)
        rows += family_rows
        ratios = [row["ratio"] for row in family_rows if row["ratio"] is not None]
        families[family] = {
            "modules": len(family_rows),
            "median_ratio": median(ratios) if ratios else None,
            "min_ratio": min(ratios, default=None),
            "max_ratio": max(ratios, default=None),
            "max_abs_z": max((abs(row["z"]) for row in family_rows if row["z"] is not None), default=None),
        }
    for row in rows:
        if row["ratio"] is None:
            violations.append(f"{row['name']} ({row['family']}): baseline sigma_max is 0, no ratio")
        elif row["hard_capped"]:
            violations.append(
                f"{row['name']} ({row['family']}, layer {row['layer']}): sigma_max ratio {row['ratio']:.4f} "
                f"beyond hard cap {caps['ratio_cap'][row['family']]}"
            )
    soft = [row["name"] for row in rows if row["soft_capped"]]
    if len(soft) > caps["max_caps"]:
        violations.append(f"{len(soft)} modules beyond the soft cap (max_caps {caps['max_caps']}): {_names(soft)}")
    metrics = {"families": families, "soft_capped": soft, "modules": rows}
    return metrics, violations


def _family_rows(
    family: str,
    names: list[str],
    subject_modules: dict[str, Any],
    baseline_modules: dict[str, Any],
    caps: dict[str, Any],
) -> list[dict[str, Any]]:
    """Per-module ratio and robust z-score of its log ratio against the family's median and MAD."""
    ratios: dict[str, float | None] = {}
    for name in names:
        theirs, ours = float(baseline_modules[name]["sigma_max"]), float(subject_modules[name]["sigma_max"])
        ratios[name] = ours / theirs if theirs > 0 else (1.0 if ours == 0 else None)
    logs = {name: math.log(r) for name, r in ratios.items() if r is not None and r > 0}
    center = median(logs.values()) if logs else 0.0
    mad = median(abs(v - center) for v in logs.values()) if logs else 0.0
    scale = max(MAD_TO_SIGMA * mad, MIN_LOG_SCALE)
    cap, z_cap, deadband = caps["ratio_cap"][family], caps["z_cap"][family], caps["deadband"]
    rows = []
    for name in names:
        ratio = ratios[name]
        log_ratio = logs.get(name)
        z = (log_ratio - center) / scale if log_ratio is not None else None
        hard = ratio is not None and (ratio == 0 or max(ratio, 1 / ratio) > cap)
        soft = z is not None and ratio is not None and abs(z) > z_cap and abs(ratio - 1) > deadband
        rows.append(
            {
                "name": name,
                "family": family,
                "layer": baseline_modules[name].get("layer"),
                "baseline_sigma": baseline_modules[name]["sigma_max"],
                "subject_sigma": subject_modules[name]["sigma_max"],
                "ratio": ratio,
                "z": z,
                "hard_capped": hard,
                "soft_capped": soft,
            }
        )
    return rows


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMED])
    return f"[{shown}{f', +{len(names) - MAX_NAMED} more' if len(names) > MAX_NAMED else ''}]"
