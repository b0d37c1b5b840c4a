"""docs/models.md's family table is the test matrix's list, regenerated: never edited apart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_family_table_matches_the_tested_families() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/models_table.py", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    from tests.evaluation.families import FAMILIES

    text = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    for family in FAMILIES:
        assert f"| {family.name} | `{family.config_class}` |" in text
