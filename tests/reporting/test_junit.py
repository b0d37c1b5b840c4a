"""`invarlock report --junit`: the gates as JUnit XML a CI system reads, from real runs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.storage.conftest import cli


@pytest.mark.parametrize(("subject", "verdict"), [("quant8", "PASS"), ("damaged", "FAIL")])
def test_each_gate_is_a_test_case_and_each_failed_gate_a_failure(
    real_runs: dict[str, Path], tmp_path: Path, subject: str, verdict: str
) -> None:
    junit = tmp_path / "ci" / "gates.xml"
    code, stdout, stderr = cli(
        "report", "--run", str(real_runs[subject]), "--baseline", str(real_runs["baseline"]),
        "--format", "report", "--output", str(tmp_path / f"{subject}_balanced"), "--copy-baseline",
        "--junit", str(junit), "--json",
    )  # fmt: skip
    assert code == 0, stderr
    summary = json.loads(stdout)
    evaluation = json.loads((tmp_path / f"{subject}_balanced" / "evaluation.report.json").read_text())
    root = ET.fromstring(junit.read_bytes())
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == f"invarlock.{subject}_balanced"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [g["name"] for g in evaluation["gates"]]
    failures = [c.find("failure") for c in cases if c.find("failure") is not None]
    assert int(suite.get("failures")) == len(failures) == len(summary["reasons"])
    assert [f.text for f in failures] == summary["reasons"]
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["verdict"] == verdict == summary["verdict"]
    assert properties["evaluation_sha256"] == evaluation["evaluation_digest"]


def test_an_unwritable_junit_file_is_one_line(real_runs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    code, _, stderr = cli(
        "report", "--run", str(real_runs["quant8"]), "--baseline", str(real_runs["baseline"]),
        "--format", "json", "--junit", str(tmp_path / "file" / "gates.xml"),
    )  # fmt: skip
    assert code == 2 and stderr.strip().count("\n") == 0 and "--junit" in stderr
