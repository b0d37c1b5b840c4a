"""Tier policies: resolve a tier from tiers.yaml, fingerprint it, and judge gates against it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock_provider.config import deep_merge, load_yaml_mapping, parse_yaml_mapping
from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import canonical_json, sha256_bytes
from invarlock_provider.resources import configs_dir
from invarlock_provider.verdicts import FAIL, INSUFFICIENT, PASS
from invarlock_provider.weights.blocks import FAMILIES as SPECTRAL_FAMILIES

TIERS_SCHEMA = "invarlock.tiers/1"
TIERS = ("balanced", "conservative", "aggressive")
# The bootstrap is re-run by every verify and every page view: its cost (replicates x windows) is
# bounded by what a policy may ask for, not by whoever wrote the snapshot.
MIN_REPLICATES, MAX_REPLICATES = 100, 20_000
ACCURACY_KEYS = ("metric", "min_delta_pp", "min_examples", "max_interval_width_pp", "confidence")
_REQUIRED = {
    "ratio_limit": (int, float),
    "hysteresis": (int, float),
    "min_tokens": int,
    "drift_band": list,
    "tail_q95_limit": (int, float),
    "bootstrap": dict,
    "guards": dict,
}


@dataclass(frozen=True)
class TierPolicy:
    tier: str
    snapshot: dict[str, Any]

    @property
    def digest(self) -> str:
        return policy_digest(self.snapshot)

    def __getitem__(self, key: str) -> Any:
        return self.snapshot[key]


def policy_digest(snapshot: dict[str, Any]) -> str:
    return sha256_bytes(canonical_json(snapshot))


def default_tiers_path() -> Path:
    return configs_dir() / "tiers.yaml"


def load_tier(tier: str, path: Path | None = None) -> TierPolicy:
    path = path or default_tiers_path()
    return tier_from_document(tier, load_yaml_mapping(path), str(path))


def tier_from_text(tier: str, text: str, where: str) -> TierPolicy:
    """A tier of a tiers file read elsewhere (a store); ``where`` names it in errors."""
    return tier_from_document(tier, parse_yaml_mapping(text, where), where)


def tier_from_document(tier: str, document: dict[str, Any], path: str) -> TierPolicy:
    if document.get("schema_version") != TIERS_SCHEMA:
        raise BadInputError(f"{path}: schema_version must be {TIERS_SCHEMA!r}")
    tiers = document.get("tiers")
    if not isinstance(tiers, dict) or tier not in tiers:
        known = ", ".join(tiers) if isinstance(tiers, dict) else "none"
        raise BadInputError(f"{path}: no tier {tier!r} (tiers: {known})")
    snapshot = deep_merge(document.get("defaults") or {}, tiers[tier] or {})
    check_policy(snapshot, f"{path}: tiers.{tier}")
    return TierPolicy(tier=tier, snapshot={"tier": tier, **snapshot})


def check_policy(snapshot: Any, where: str) -> None:
    """A tier policy, from tiers.yaml or from an evaluation's snapshot: every field a gate or the
    bootstrap reads, of the right type and within bounds, so a hostile snapshot can neither crash a
    verification nor make it run for minutes."""
    if not isinstance(snapshot, dict):
        raise BadInputError(f"{where}: expected a mapping")
    for key, expected in _REQUIRED.items():
        if not isinstance(snapshot.get(key), expected) or isinstance(snapshot.get(key), bool):
            raise BadInputError(f"{where}.{key} missing or of the wrong type")
    for key in ("ratio_limit", "hysteresis", "tail_q95_limit"):
        if not math.isfinite(snapshot[key]) or snapshot[key] < 0:
            raise BadInputError(f"{where}.{key} must be a finite number >= 0")
    band = snapshot["drift_band"]
    if len(band) != 2 or not all(_number(v) for v in band) or not band[0] < band[1]:
        raise BadInputError(f"{where}.drift_band must be [low, high] with low < high")
    bootstrap = snapshot["bootstrap"]
    replicates = bootstrap.get("replicates")
    if (
        not isinstance(replicates, int)
        or isinstance(replicates, bool)
        or not MIN_REPLICATES <= replicates <= MAX_REPLICATES
    ):
        raise BadInputError(
            f"{where}.bootstrap.replicates must be an integer from {MIN_REPLICATES} to {MAX_REPLICATES}"
        )
    confidence = bootstrap.get("confidence")
    if not _number(confidence) or not 0 < confidence < 1:
        raise BadInputError(f"{where}.bootstrap.confidence must be in (0, 1)")
    seed = bootstrap.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise BadInputError(f"{where}.bootstrap.seed must be an integer >= 0")
    _check_spectral_caps(where, snapshot["guards"].get("spectral"))
    if "accuracy" in snapshot:
        _check_accuracy(snapshot["accuracy"], f"{where}.accuracy")


def _check_accuracy(limits: Any, where: str) -> None:
    if not isinstance(limits, dict) or set(limits) != set(ACCURACY_KEYS):
        raise BadInputError(f"{where} must hold exactly {', '.join(ACCURACY_KEYS)}")
    if limits["metric"] not in ("accuracy", "accuracy_norm"):
        raise BadInputError(f"{where}.metric must be accuracy or accuracy_norm")
    delta = limits["min_delta_pp"]
    if not _number(delta) or not -100 <= delta <= 0:
        raise BadInputError(f"{where}.min_delta_pp must be a number from -100 to 0 (percentage points)")
    examples = limits["min_examples"]
    if not isinstance(examples, int) or isinstance(examples, bool) or examples < 1:
        raise BadInputError(f"{where}.min_examples must be an integer >= 1")
    width = limits["max_interval_width_pp"]
    if not _number(width) or not 0 < width <= 200:
        raise BadInputError(f"{where}.max_interval_width_pp must be a number in (0, 200]")
    if not _number(limits["confidence"]) or not 0 < limits["confidence"] < 1:
        raise BadInputError(f"{where}.confidence must be in (0, 1)")


def _check_spectral_caps(policy: str, caps: Any) -> None:
    where = f"{policy}.guards.spectral"
    if not isinstance(caps, dict):
        raise BadInputError(f"{where} missing (ratio_cap, z_cap, deadband, max_caps)")
    for key, floor in (("ratio_cap", 1.0), ("z_cap", 0.0)):
        per_family = caps.get(key)
        if not isinstance(per_family, dict) or set(per_family) != set(SPECTRAL_FAMILIES):
            raise BadInputError(f"{where}.{key} must map exactly {', '.join(SPECTRAL_FAMILIES)} to numbers")
        if not all(_number(v) and math.isfinite(v) and v > floor for v in per_family.values()):
            raise BadInputError(f"{where}.{key} values must be numbers > {floor:g}")
    if not _number(caps.get("deadband")) or not 0 <= caps["deadband"] < math.inf:
        raise BadInputError(f"{where}.deadband must be a number >= 0")
    if not isinstance(caps.get("max_caps"), int) or isinstance(caps["max_caps"], bool) or caps["max_caps"] < 0:
        raise BadInputError(f"{where}.max_caps must be an integer >= 0")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def gate(
    name: str,
    value: Any,
    limit: Any,
    comparison: str,
    passed: bool,
    detail: str = "",
    *,
    insufficient: bool = False,
) -> dict[str, Any]:
    """``insufficient``: a gate that did not pass because the evidence is too thin to judge, not
    because it shows a regression."""
    return {
        "name": name,
        "value": value,
        "limit": limit,
        "comparison": comparison,
        "passed": passed,
        "outcome": "pass" if passed else "insufficient" if insufficient else "fail",
        "detail": detail,
    }


def gate_outcome(entry: dict[str, Any]) -> str:
    """pass, fail or insufficient; a gate written before three outcomes existed has ``passed`` alone."""
    outcome = entry.get("outcome")
    if outcome in ("pass", "fail", "insufficient"):
        return str(outcome)
    return "pass" if entry.get("passed") is True else "fail"


def verdict_of(gates: list[dict[str, Any]]) -> str:
    """FAIL when any gate shows a failure; else INSUFFICIENT when any could not judge; else PASS."""
    outcomes = {g["outcome"] for g in gates}
    return FAIL if "fail" in outcomes else INSUFFICIENT if "insufficient" in outcomes else PASS


def judges_insufficient(snapshot: dict[str, Any]) -> bool:
    """Policies with an ``accuracy`` section (this version on) call too little evidence INSUFFICIENT;
    an older evaluation's snapshot without one is judged as it was when written: FAIL."""
    return "accuracy" in snapshot
