"""Imports point down: weights below evaluation and guards, the library never into Airflow.

Read from the source (every import statement, those inside functions included), since the heavy
and the layered imports are deliberately made inside functions where a runtime check cannot see them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "invarlock_provider"

# package -> packages it must never import; evaluation/run.py composes a run and runs the guards.
FORBIDDEN = {
    "weights": ("evaluation", "guards", "reporting", "storage", "airflow", "cli"),
    "guards": ("evaluation", "reporting", "storage", "airflow", "cli"),
    "evaluation": ("reporting", "storage", "airflow", "cli"),
    "reporting": ("airflow", "cli"),  # verify recomputes the window selection from evaluation.windows
    "storage": ("evaluation", "airflow", "cli"),
}
COMPOSERS = {"evaluation/run.py": ("guards",)}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def subpackage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "invarlock_provider" else None


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(package: str) -> None:
    offences = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        allowed = COMPOSERS.get(relative, ())
        for module in imported_modules(path):
            target = subpackage_of(module)
            if target in FORBIDDEN[package] or (target == "guards" and package == "evaluation" and not allowed):
                offences.append(f"{relative} imports {module}")
    assert not offences, offences


def test_edits_find_their_matrices_where_the_guards_do() -> None:
    edits = imported_modules(PACKAGE / "evaluation" / "edits.py")
    spectral = imported_modules(PACKAGE / "guards" / "spectral.py")
    assert "invarlock_provider.weights.blocks" in edits & spectral
    assert not any(subpackage_of(m) == "guards" for m in edits)
