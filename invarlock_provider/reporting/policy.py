"""Tier policies: resolve a tier from tiers.yaml, fingerprint it, and judge gates against it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock_provider.config import deep_merge, load_yaml_mapping
from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import canonical_json, sha256_bytes
from invarlock_provider.guards.spectral import FAMILIES as SPECTRAL_FAMILIES
from invarlock_provider.resources import configs_dir

TIERS_SCHEMA = "invarlock.tiers/1"
TIERS = ("balanced", "conservative", "aggressive")
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
    document = load_yaml_mapping(path)
    if document.get("schema_version") != TIERS_SCHEMA:
        raise BadInputError(f"{path}: schema_version must be {TIERS_SCHEMA!r}")
    tiers = document.get("tiers")
    if not isinstance(tiers, dict) or tier not in tiers:
        known = ", ".join(tiers) if isinstance(tiers, dict) else "none"
        raise BadInputError(f"{path}: no tier {tier!r} (tiers: {known})")
    snapshot = deep_merge(document.get("defaults") or {}, tiers[tier] or {})
    for key, expected in _REQUIRED.items():
        if not isinstance(snapshot.get(key), expected) or isinstance(snapshot.get(key), bool):
            raise BadInputError(f"{path}: tiers.{tier}.{key} missing or of the wrong type")
    band = snapshot["drift_band"]
    if len(band) != 2 or not band[0] < band[1]:
        raise BadInputError(f"{path}: tiers.{tier}.drift_band must be [low, high] with low < high")
    bootstrap = snapshot["bootstrap"]
    if not isinstance(bootstrap.get("replicates"), int) or bootstrap["replicates"] < 100:
        raise BadInputError(f"{path}: tiers.{tier}.bootstrap.replicates must be an integer >= 100")
    if not 0 < float(bootstrap.get("confidence", 0)) < 1:
        raise BadInputError(f"{path}: tiers.{tier}.bootstrap.confidence must be in (0, 1)")
    if not isinstance(bootstrap.get("seed"), int):
        raise BadInputError(f"{path}: tiers.{tier}.bootstrap.seed must be an integer")
    _check_spectral_caps(path, tier, snapshot["guards"].get("spectral"))
    return TierPolicy(tier=tier, snapshot={"tier": tier, **snapshot})


def _check_spectral_caps(path: Path, tier: str, caps: Any) -> None:
    where = f"{path}: tiers.{tier}.guards.spectral"
    if not isinstance(caps, dict):
        raise BadInputError(f"{where} missing (ratio_cap, z_cap, deadband, max_caps)")
    for key, floor in (("ratio_cap", 1.0), ("z_cap", 0.0)):
        per_family = caps.get(key)
        if not isinstance(per_family, dict) or set(per_family) != set(SPECTRAL_FAMILIES):
            raise BadInputError(f"{where}.{key} must map exactly {', '.join(SPECTRAL_FAMILIES)} to numbers")
        if not all(_number(v) and v > floor for v in per_family.values()):
            raise BadInputError(f"{where}.{key} values must be numbers > {floor:g}")
    if not _number(caps.get("deadband")) or caps["deadband"] < 0:
        raise BadInputError(f"{where}.deadband must be a number >= 0")
    if not isinstance(caps.get("max_caps"), int) or isinstance(caps["max_caps"], bool) or caps["max_caps"] < 0:
        raise BadInputError(f"{where}.max_caps must be an integer >= 0")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def gate(name: str, value: Any, limit: Any, comparison: str, passed: bool, detail: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "limit": limit,
        "comparison": comparison,
        "passed": passed,
        "detail": detail,
    }
