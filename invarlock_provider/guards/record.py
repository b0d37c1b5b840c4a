"""The shape every guard result takes in report.json and in evaluation.report.json."""

from __future__ import annotations

from typing import Any

INVARIANTS = "invariants"
SPECTRAL = "spectral"
GUARD_NAMES = (INVARIANTS, SPECTRAL)


def guard_record(name: str, metrics: dict[str, Any], violations: list[str]) -> dict[str, Any]:
    """A guard passes exactly when it has no violations; each violation is one readable line."""
    return {"name": name, "passed": not violations, "metrics": metrics, "violations": violations}


def find_guard(guards: Any, name: str) -> dict[str, Any] | None:
    if not isinstance(guards, list):
        return None
    return next((g for g in guards if isinstance(g, dict) and g.get("name") == name), None)
