"""Both example DAGs run for real with dag.test() on the embedded model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.airflow.conftest import REPO, load_dag
from tests.storage.conftest import cli


def task_states(dag_run) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}


def bundles(evidence: Path) -> list[Path]:
    return sorted(p.parent for p in evidence.rglob("manifest.json"))


def test_provider_is_registered(airflow_db: Path) -> None:
    airflow = Path(sys.executable).with_name("airflow")
    listed = subprocess.run(
        [str(airflow), "providers", "list", "--output", "json"], capture_output=True, text=True, check=True
    ).stdout
    entry = next(p for p in json.loads(listed) if p["package_name"] == "airflow-provider-invarlock")
    assert entry["version"] == "0.1.0"


def test_dag_files_import_nothing_heavy() -> None:
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(REPO / 'dags' / 'invarlock_nightly.py')!r})\n"
        f"runpy.run_path({str(REPO / 'dags' / 'invarlock_on_demand.py')!r})\n"
        "print(','.join(m for m in ('torch', 'transformers', 'datasets', 'boto3') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


@pytest.mark.slow
@pytest.mark.parametrize("logical_date", ["null", "set"])
def test_on_demand_dag_archives_verifiable_evidence(workdir: Path, logical_date: str) -> None:
    from datetime import UTC, datetime

    dag = load_dag("invarlock_on_demand")
    kwargs = {"logical_date": None} if logical_date == "null" else {"logical_date": datetime.now(UTC)}
    dag_run = dag.test(run_conf={"profile": "ci", "report_name": "q8_demand"}, **kwargs)
    assert str(dag_run.state) == "success", task_states(dag_run)
    found = bundles(workdir / "evidence")
    assert len(found) == 1 and found[0].parent.name == "q8_demand"
    code, stdout, _ = cli("verify", str(found[0]))
    assert code == 0 and "verdict PASS" in stdout
    assert (workdir / "reports" / "q8_demand" / "evaluation.html").is_file()


@pytest.mark.slow
def test_nightly_dag_maps_subjects_and_prunes(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "nightly.yaml"
    config.write_text(
        "preset: causal_lm/tiny_pydocs_128\nprofile: dev\ntier: aggressive\nbaseline: {model: null}\n"
        "subjects:\n  - {name: quant8, edit: quant8}\n  - {name: noop_control, edit: noop}\n"
        "retention: {keep_last: 1, max_age: 0s}\n"
    )
    monkeypatch.setenv("INVARLOCK_NIGHTLY_CONFIG", str(config))
    dag = load_dag("invarlock_nightly")
    dag_run = dag.test(logical_date=None)
    states = task_states(dag_run)
    assert str(dag_run.state) == "success", states
    assert {k for k in states if k.startswith("archive")} == {"archive[0]", "archive[1]"}
    found = bundles(workdir / "evidence")
    assert {b.parent.name for b in found} == {"quant8_aggressive", "noop_control_aggressive"}
    for bundle in found:
        assert cli("verify", str(bundle))[0] == 0
    first_runs = {
        n: sorted(p.name for p in (workdir / "runs" / n).iterdir() if p.is_dir())
        for n in ("baseline", "quant8", "noop_control")
    }
    assert all(len(runs) == 1 for runs in first_runs.values())

    # The next night: new runs are archived, and the previous (archived) runs are pruned.
    second = dag.test(logical_date=None)
    assert str(second.state) == "success", task_states(second)
    for name, runs in first_runs.items():
        remaining = [p.name for p in (workdir / "runs" / name).iterdir() if p.is_dir()]
        assert len(remaining) == 1 and remaining != runs, (name, remaining, runs)
    assert len(bundles(workdir / "evidence")) == 4


def test_a_param_outside_its_enum_is_refused_before_any_task(workdir: Path) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    dag = load_dag("invarlock_on_demand")
    with pytest.raises(ParamValidationError, match="edit"):
        dag.test(run_conf={"edit": "int4"})
    assert not (workdir / "runs").exists()


@pytest.mark.slow
def test_on_demand_dag_archives_to_s3_through_a_connection(
    workdir: Path, seaweed, bucket, evidence_connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY

    evidence_connection("flag")
    from invarlock_provider.airflow.hooks import EvidenceStoreHook

    assert EvidenceStoreHook("evidence_s3").test_connection() == (True, f"bucket {bucket} is reachable")
    dag = load_dag("invarlock_on_demand")
    dag_run = dag.test(
        logical_date=None,
        run_conf={
            "profile": "dev",
            "report_name": "to_s3",
            "archive_target": f"s3://{bucket}/on-demand",
            "archive_conn_id": "evidence_s3",
        },
    )
    assert str(dag_run.state) == "success", task_states(dag_run)
    listed = seaweed.client().list_objects_v2(Bucket=bucket, Prefix="on-demand/to_s3/")["Contents"]
    manifests = [entry["Key"] for entry in listed if entry["Key"].endswith("/manifest.json")]
    assert len(manifests) == 1
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    code, stdout, _ = cli(
        "verify",
        f"s3://{bucket}/{manifests[0].removesuffix('/manifest.json')}",
        "--endpoint-url",
        seaweed.endpoint,
        "--path-style",
        "--region",
        "us-east-1",
    )
    assert code == 0, stdout


def test_gpu_routing_arguments_pass_through() -> None:
    from invarlock_provider.airflow.operators import RunEvaluationOperator

    operator = RunEvaluationOperator(
        task_id="evaluate",
        run_name="x",
        queue="gpu",
        pool="gpus",
        executor_config={"KubernetesExecutor": {"limits": {"nvidia.com/gpu": 1}}},
    )
    assert (operator.queue, operator.pool) == ("gpu", "gpus")
    assert operator.executor_config["KubernetesExecutor"]["limits"] == {"nvidia.com/gpu": 1}
    assert {"preset", "model", "edit", "run_name", "output_root"} <= set(operator.template_fields)


def test_evaluations_follow_the_evaluation_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVARLOCK_EVALUATION_QUEUE", "gpu")
    for name in ("invarlock_nightly", "invarlock_on_demand"):
        queues = {task.task_id: task.queue for task in load_dag(name).tasks}
        assert {queues["evaluate_baseline"], queues["evaluate_subject"]} == {"gpu"}
        assert queues["build_report"] == queues["archive"] == "default"
    monkeypatch.delenv("INVARLOCK_EVALUATION_QUEUE")
    assert {task.queue for task in load_dag("invarlock_nightly").tasks} == {"default"}
