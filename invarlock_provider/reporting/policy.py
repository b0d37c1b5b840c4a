"""Tier policies: resolve a tier from tiers.yaml, fingerprint it, and judge gates against it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock_provider.config import deep_merge, load_yaml_mapping
from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import canonical_json, sha256_bytes
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
    return TierPolicy(tier=tier, snapshot={"tier": tier, **snapshot})


def gate(name: str, value: Any, limit: Any, comparison: str, passed: bool, detail: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "limit": limit,
        "comparison": comparison,
        "passed": passed,
        "detail": detail,
    }
