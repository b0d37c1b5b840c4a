"""The three operators' OpenLineage events, as the OpenLineage provider's listener emits them.

The on-demand DAG runs with ``dag.test()`` in its own interpreter, so that the provider reads the
file transport setting when its plugin loads (it is off in every other test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.airflow.conftest import REPO

SCHEMA = json.loads((REPO / "invarlock_provider" / "airflow" / "lineage_facets.json").read_text())
DAG_TEST = """
import runpy
dag = runpy.run_path({path!r})["dag"]
print("DAG RUN", dag.test(run_conf={{"profile": "dev", "report_name": "lineage"}}).state)
"""


def check_facet(facet: dict, name: str) -> None:
    """Our part of the facet's schema (the RunFacet it extends is OpenLineage's, not fetched here)."""
    assert facet["_schemaURL"].endswith(f"lineage_facets.json#/$defs/{name}")
    jsonschema.validate(facet, SCHEMA["$defs"][name]["allOf"][1])


@pytest.fixture(scope="module")
def lineage_events(tmp_path_factory: pytest.TempPathFactory, airflow_db: Path) -> tuple[list[dict], Path]:
    base = tmp_path_factory.mktemp("lineage")
    events_file = base / "openlineage.jsonl"
    env = {
        **os.environ,
        "INVARLOCK_WORKDIR": str(base / "work"),
        "INVARLOCK_HOME": str(base / "work" / ".invarlock"),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "invarlock-test",
    }
    code = DAG_TEST.format(path=str(REPO / "dags" / "invarlock_on_demand.py"))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert "DAG RUN failed" in result.stdout, result.stdout[-2000:] + result.stderr[-4000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    return events, base / "work"


def completed(events: list[dict], task_id: str) -> list[dict]:
    return [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == f"invarlock_on_demand.{task_id}"]


def report(work: Path, name: str) -> dict:
    return json.loads(next((work / "runs" / name).glob("*/report.json")).read_text())


@pytest.mark.slow
def test_each_evaluation_reads_its_model_and_dataset_and_writes_its_run_folder(lineage_events) -> None:
    events, work = lineage_events
    for task_id, run_name in (("evaluate_subject", "lineage_subject"), ("evaluate_baseline", "lineage_baseline")):
        (event,) = completed(events, task_id)
        run = report(work, run_name)
        model, dataset = event["inputs"]
        assert (model["namespace"], model["name"]) == ("invarlock", "embedded:tiny-pydocs-gpt2")
        assert model["facets"]["version"]["datasetVersion"] == run["meta"]["weights_digest"]
        assert model["facets"]["datasetType"]["datasetType"] == "MODEL"
        assert (dataset["namespace"], dataset["name"]) == ("invarlock", run["data"]["path"])
        assert dataset["facets"]["version"]["datasetVersion"] == run["data"]["dataset_digest"]
        (output,) = event["outputs"]
        run_dirs = list((work / "runs" / run_name).glob("2*"))
        assert (output["namespace"], output["name"]) == ("file", str(run_dirs[0]))
        facet = event["run"]["facets"]["invarlock_run"]
        check_facet(facet, "InvarlockRunRunFacet")
        assert facet["run_id"] == run["run_id"]
        assert facet["edit"] == ("quant8" if task_id == "evaluate_subject" else "noop")


@pytest.mark.slow
def test_report_and_archive_carry_one_assertion_per_gate_and_the_verdict(lineage_events) -> None:
    events, work = lineage_events
    evaluation = json.loads((work / "reports" / "lineage" / "evaluation.report.json").read_text())
    (bundle,) = [p.parent for p in (work / "evidence").rglob("manifest.json")]
    subject = report(work, "lineage_subject")
    for task_id, output_path in (("build_report", work / "reports" / "lineage"), ("archive", bundle)):
        (event,) = completed(events, task_id)
        model, dataset = event["inputs"]
        assert model["facets"]["version"]["datasetVersion"] == subject["meta"]["weights_digest"]
        assert dataset["facets"]["version"]["datasetVersion"] == subject["data"]["dataset_digest"]
        assertions = model["inputFacets"]["dataQualityAssertions"]["assertions"]
        assert [a["assertion"] for a in assertions] == [g["name"] for g in evaluation["gates"]]
        assert [a["success"] for a in assertions] == [g["passed"] for g in evaluation["gates"]]
        min_tokens = next(a for a in assertions if a["assertion"] == "min_tokens")  # the dev profile's failure
        gate = next(g for g in evaluation["gates"] if g["name"] == "min_tokens")
        assert min_tokens["success"] is False and min_tokens["severity"] == "warn"  # could not judge
        assert (min_tokens["expected"], min_tokens["actual"]) == (f">= {gate['limit']}", str(gate["value"]))
        assert [(o["namespace"], o["name"]) for o in event["outputs"]] == [("file", str(output_path))]
        facet = event["run"]["facets"]["invarlock_evaluation"]
        check_facet(facet, "InvarlockEvaluationRunFacet")
        metric = evaluation["primary_metric"]
        assert facet["verdict"] == evaluation["verdict"] == "INSUFFICIENT"
        assert (facet["ratio"], facet["ci"], facet["tier"]) == (metric["ratio"], metric["ci"], evaluation["tier"])
        assert facet["policy_digest"] == evaluation["policy_digest"]
        assert facet["report_name"] == "lineage"
    archive_facet = completed(events, "archive")[0]["run"]["facets"]["invarlock_evaluation"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert archive_facet["evidence_id"] == manifest["evidence_id"] == bundle.name
    assert archive_facet["bundle_uri"] == bundle.as_uri()
