"""The gates of an evaluation as JUnit XML, the report format every CI system reads.

One test suite per evaluation (``invarlock.<report name>``), one test case per gate: a failed
gate is a ``<failure>`` whose message is the gate's one-line reason (value, comparison, limit),
so a CI page lists which gate failed and by how much without opening the evidence. The verdict,
tier, ratio and its interval, the policy digest and the evaluation's sha256 are suite properties.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from invarlock_provider.reporting.evaluation import DIGEST_FIELD, gate_reason
from invarlock_provider.reporting.policy import gate_outcome


def junit_xml(evaluation: dict[str, Any], report_name: str) -> bytes:
    gates = [g for g in evaluation["gates"] if isinstance(g, dict)]
    failures = sum(gate_outcome(g) != "pass" for g in gates)
    suite_name = f"invarlock.{report_name}"
    suites = ET.Element("testsuites", name="invarlock", tests=str(len(gates)), failures=str(failures), errors="0")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=suite_name,
        tests=str(len(gates)),
        failures=str(failures),
        errors="0",
        skipped="0",
        timestamp=str(evaluation.get("created_at", "")),
    )
    properties = ET.SubElement(suite, "properties")
    metric = evaluation.get("primary_metric") or {}
    for name, value in (
        ("verdict", evaluation["verdict"]),
        ("tier", evaluation.get("tier")),
        ("ratio", metric.get("ratio")),
        ("ci", metric.get("ci")),
        ("policy_digest", evaluation.get("policy_digest")),
        ("evaluation_sha256", evaluation.get(DIGEST_FIELD)),
    ):
        ET.SubElement(properties, "property", name=name, value="" if value is None else str(value))
    for entry in gates:
        case = ET.SubElement(suite, "testcase", classname=suite_name, name=str(entry["name"]))
        if gate_outcome(entry) != "pass":
            reason = gate_reason(entry)
            # INSUFFICIENT is no pass either: a CI job must not go green on evidence too thin to judge.
            kind = "insufficient" if gate_outcome(entry) == "insufficient" else "gate"
            failure = ET.SubElement(case, "failure", message=reason.splitlines()[0], type=kind)
            failure.text = reason
    ET.indent(suites)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="utf-8") + b"\n"
