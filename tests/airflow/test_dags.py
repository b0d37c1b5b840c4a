"""Both example DAGs run for real with dag.test() on the embedded model."""

from __future__ import annotations

import json
import re
import shutil
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
        f"runpy.run_path({str(REPO / 'dags' / 'invarlock_promote_example.py')!r})\n"
        f"runpy.run_path({str(REPO / 'dags' / 'invarlock_arrivals.py')!r})\n"
        "heavy = ('torch', 'transformers', 'datasets', 'boto3', 'openlineage')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
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
        # The dev profile scores too few tokens for any tier: both verdicts are INSUFFICIENT, as declared.
        "preset: causal_lm/tiny_pydocs_128\nprofile: dev\ntier: aggressive\nbaseline: {model: null}\n"
        "subjects:\n  - {name: quant8, edit: quant8, expect: INSUFFICIENT}\n"
        "  - {name: noop_control, edit: noop, expect: INSUFFICIENT}\n"
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
    assert dag.max_active_runs == 1  # runs share reports/<report_name>/: a second one queues


@pytest.mark.slow
def test_on_demand_dag_archives_to_s3_through_a_connection(
    workdir: Path, seaweed, bucket, evidence_connection, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    """profile=dev scores too few tokens: INSUFFICIENT. The evidence is archived first, then the
    gate fails the run naming the min_tokens gate."""
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
    states = task_states(dag_run)
    assert str(dag_run.state) == "failed", states
    assert states["archive[-1]"] == "success" and states["gate[-1]"] == "failed", states
    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text
    assert re.search(
        r"1 of 1 reports not as expected: to_s3: INSUFFICIENT \(expected PASS\).*min_tokens: \d+ not >= \d+", logged
    )
    assert f"bundle s3://{bucket}/on-demand/to_s3/ev-" in logged
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
    assert code == 0 and "verdict INSUFFICIENT" in stdout, stdout


NEGATIVE_CONTROL_PLAN = """\
preset: causal_lm/tiny_pydocs_128
profile: ci
tier: balanced
subjects:
  - {name: quant8, edit: quant8}
  - {name: pruned70, edit: "prune:sparsity=0.7"EXPECT}
"""


@pytest.mark.slow
def test_a_negative_control_passes_the_gate_only_when_it_fails_as_expected(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    plan = tmp_path / "nightly.yaml"
    monkeypatch.setenv("INVARLOCK_NIGHTLY_CONFIG", str(plan))
    plan.write_text(NEGATIVE_CONTROL_PLAN.replace("EXPECT", ", expect: FAIL"))
    dag_run = load_dag("invarlock_nightly").test(logical_date=None)
    states = task_states(dag_run)
    assert str(dag_run.state) == "success" and states["gate[-1]"] == "success", states
    verdicts = {
        b.parent.name: json.loads((b / "manifest.json").read_text())["verdict"] for b in bundles(workdir / "evidence")
    }
    assert verdicts == {"quant8_balanced": "PASS", "pruned70_balanced": "FAIL"}

    plan.write_text(NEGATIVE_CONTROL_PLAN.replace("EXPECT", ""))  # the control now expected to PASS
    capsys.readouterr()
    dag_run = load_dag("invarlock_nightly").test(logical_date=None)
    states = task_states(dag_run)
    assert str(dag_run.state) == "failed" and states["gate[-1]"] == "failed", states
    assert {k: v for k, v in states.items() if k.startswith("archive")} == {
        "archive[0]": "success",
        "archive[1]": "success",
    }
    logged = capsys.readouterr().out + caplog.text
    found = re.search(r"1 of 2 reports not as expected: (pruned70_balanced: FAIL \(expected PASS\)[^|\n]*)", logged)
    assert found, logged[-3000:]
    assert "ratio: " in found.group(1) and "not <= 1.102" in found.group(1), found.group(1)
    assert "quant8_balanced" not in found.group(1)


def test_a_bad_expect_is_named(tmp_path: Path) -> None:
    from invarlock_provider.airflow.nightly import load_plan
    from invarlock_provider.errors import BadInputError

    plan = tmp_path / "nightly.yaml"
    plan.write_text("subjects:\n  - {name: s, edit: noop, expect: fail}\n")
    with pytest.raises(
        BadInputError, match=r"nightly\.yaml: subjects\[0\]\.expect must be one of PASS, FAIL, INSUFFICIENT, not 'fail'"
    ):
        load_plan(plan)


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


@pytest.mark.parametrize(
    ("variable", "attribute", "value", "default"),
    [
        ("INVARLOCK_EVALUATION_QUEUE", "queue", "gpu", "default"),
        ("INVARLOCK_EVALUATION_POOL", "pool", "gpus", "default_pool"),
    ],
)
def test_evaluation_tasks_follow_their_queue_and_pool_settings(
    monkeypatch: pytest.MonkeyPatch, variable: str, attribute: str, value: str, default: str
) -> None:
    monkeypatch.setenv(variable, value)
    for name in ("invarlock_nightly", "invarlock_on_demand"):
        settings = {task.task_id: getattr(task, attribute) for task in load_dag(name).tasks}
        assert {settings["evaluate_baseline"], settings["evaluate_subject"]} == {value}
        assert settings["build_report"] == settings["archive"] == default
    monkeypatch.delenv(variable)
    assert {getattr(task, attribute) for task in load_dag("invarlock_nightly").tasks} == {default}


def registered_outlets(name: str) -> list[tuple[str, str, str]]:
    """(task, asset name, asset URI) as the DAG processor registers them: from the serialized DAG,
    where a mapped task has only what .partial() was given."""
    from airflow.dag_processing.collection import _get_dag_assets
    from airflow.serialization.definitions.assets import SerializedAsset
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    serialized = LazyDeserializedDAG.from_dag(load_dag(name))
    return [
        (task_id, asset.name, asset.uri)
        for task_id, asset in _get_dag_assets(serialized, SerializedAsset, inlets=False, outlets=True)
    ]


def asset_events(dag_run, with_extra: bool = False) -> list[tuple]:
    """(task, asset URI[, extra]) of the asset events a DAG run's tasks emitted."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(select(AssetEvent).where(AssetEvent.source_run_id == dag_run.run_id)).all()
        rows = [(e.source_task_id, e.asset.uri, *([dict(e.extra or {})] if with_extra else [])) for e in events]
        return sorted(rows, key=str)


@pytest.mark.parametrize("target", ["s3://evidence/nightly/", None])
def test_the_nightly_archive_target_is_an_asset_when_the_dag_is_parsed(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, target: str | None
) -> None:
    if target:
        monkeypatch.setenv("INVARLOCK_ARCHIVE_URI", target)
    uri = "s3://evidence/nightly" if target else (workdir / "evidence").resolve().as_uri()
    assert registered_outlets("invarlock_nightly") == [("archive", f"invarlock-evidence:{uri}", uri)]
    # The on-demand target is a Param: known only when a run starts, so no Asset is declared.
    assert registered_outlets("invarlock_on_demand") == []


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("INVARLOCK_OBJECT_LOCK_DAYS", "a year", "INVARLOCK_OBJECT_LOCK_DAYS must be a positive integer"),
        ("INVARLOCK_OBJECT_LOCK_DAYS", "0", "INVARLOCK_OBJECT_LOCK_DAYS must be a positive integer"),
        ("INVARLOCK_OBJECT_LOCK_MODE", "STRICT", "INVARLOCK_OBJECT_LOCK_MODE must be one of GOVERNANCE, COMPLIANCE"),
        ("INVARLOCK_OBJECT_LOCK_DAYS", "30", "INVARLOCK_OBJECT_LOCK_DAYS is set but the archive target file://"),
    ],
)
def test_a_bad_object_lock_setting_fails_the_parse_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    from invarlock_provider.errors import BadInputError

    monkeypatch.setenv(variable, value)
    with pytest.raises(BadInputError, match=message):
        load_dag("invarlock_nightly")


def test_object_lock_settings_reach_the_nightly_archive(monkeypatch: pytest.MonkeyPatch) -> None:
    archive = load_dag("invarlock_nightly").get_task("archive")
    assert (archive.partial_kwargs["object_lock_days"], archive.partial_kwargs["lock_mode"]) == (None, "GOVERNANCE")
    monkeypatch.setenv("INVARLOCK_ARCHIVE_URI", "s3://evidence/nightly")
    monkeypatch.setenv("INVARLOCK_OBJECT_LOCK_DAYS", "365")
    monkeypatch.setenv("INVARLOCK_OBJECT_LOCK_MODE", "compliance")
    archive = load_dag("invarlock_nightly").get_task("archive")
    assert (archive.partial_kwargs["object_lock_days"], archive.partial_kwargs["lock_mode"]) == (365, "COMPLIANCE")


def test_the_nightly_plan_checks_its_tiers_file(tmp_path: Path) -> None:
    from invarlock_provider.airflow.nightly import load_plan
    from invarlock_provider.errors import BadInputError

    plan = tmp_path / "plans" / "nightly.yaml"
    plan.parent.mkdir()
    subjects = "subjects:\n  - {name: quant8, edit: quant8}\n"
    plan.write_text(subjects)
    assert load_plan(plan)["tiers"] is None
    plan.write_text(f"tiers: team-tiers.yaml\n{subjects}")
    with pytest.raises(
        BadInputError,
        match=r"nightly.yaml: tiers file .*/plans/team-tiers.yaml: cannot read \(No such file or directory\)",
    ):
        load_plan(plan)
    (tmp_path / "plans" / "team-tiers.yaml").write_text("schema_version: invarlock.tiers/1\ntiers: {}\n")
    with pytest.raises(BadInputError, match=r"team-tiers\.yaml: no tier 'balanced'"):
        load_plan(plan)  # checked when the plan is read, not after the evaluations
    shutil.copy(REPO / "configs" / "tiers.yaml", tmp_path / "plans" / "team-tiers.yaml")
    assert load_plan(plan)["tiers"] == str((tmp_path / "plans" / "team-tiers.yaml").resolve())


@pytest.mark.slow
def test_nightly_dag_locks_its_evidence_and_judges_by_its_tiers_file(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seaweed, locked_bucket: str, evidence_connection
) -> None:
    from datetime import UTC, datetime, timedelta

    import yaml

    tiers = yaml.safe_load((REPO / "configs" / "tiers.yaml").read_text())
    tiers["tiers"]["balanced"]["ratio_limit"] = 1.5
    (tmp_path / "team-tiers.yaml").write_text(yaml.safe_dump(tiers))
    config = tmp_path / "nightly.yaml"
    config.write_text(
        "preset: causal_lm/tiny_pydocs_128\nprofile: dev\ntier: balanced\ntiers: team-tiers.yaml\n"
        "subjects:\n  - {name: quant8, edit: quant8, expect: INSUFFICIENT}\n"  # dev: too few tokens (min_tokens)
    )
    monkeypatch.setenv("INVARLOCK_NIGHTLY_CONFIG", str(config))
    monkeypatch.setenv("INVARLOCK_ARCHIVE_URI", f"s3://{locked_bucket}/nightly")
    monkeypatch.setenv("INVARLOCK_ARCHIVE_CONN_ID", evidence_connection("flag"))
    monkeypatch.setenv("INVARLOCK_OBJECT_LOCK_DAYS", "2")
    started = datetime.now(UTC)
    dag_run = load_dag("invarlock_nightly").test(logical_date=None)
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert asset_events(dag_run) == [("archive", f"s3://{locked_bucket}/nightly")]  # the declared outlet
    ((_, _, extra),) = asset_events(dag_run, with_extra=True)  # what a DAG scheduled on the Asset reads
    assert extra["verdict"] == "INSUFFICIENT" and extra["report_name"] == "quant8_balanced"
    assert extra["tier"] == "balanced"
    assert extra["bundle_uri"] == f"s3://{locked_bucket}/nightly/quant8_balanced/{extra['evidence_id']}"
    assert len(extra["ci"]) == 2 and extra["ratio"] > 0
    assert extra["subject_model"] and len(extra["subject_weights_digest"]) >= 64

    evaluation = json.loads((workdir / "reports" / "quant8_balanced" / "evaluation.report.json").read_text())
    assert evaluation["policy"]["tier"] == "balanced"
    assert evaluation["policy"]["ratio_limit"] == 1.5  # the bundled balanced tier says 1.10
    client = seaweed.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=locked_bucket, Prefix="nightly/")["Contents"]]
    assert any(key.endswith("/manifest.json") for key in keys), keys
    for key in keys:
        head = client.head_object(Bucket=locked_bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE", key
        retain_until = head["ObjectLockRetainUntilDate"]
        assert started + timedelta(days=2) <= retain_until <= datetime.now(UTC) + timedelta(days=2, seconds=5), key


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("quant:bits=9", r"nightly\.yaml: subjects\[0\]\.edit: bits must be 2-8, got 9"),
        ("prune:sparsity", r"nightly\.yaml: subjects\[0\]\.edit: 'sparsity' in 'prune:sparsity': expected KEY=VALUE"),
        ("int4", r"nightly\.yaml: subjects\[0\]\.edit: unknown edit 'int4'"),
    ],
)
def test_the_nightly_plan_checks_edit_parameters(tmp_path: Path, edit: str, message: str) -> None:
    from invarlock_provider.airflow.nightly import load_plan
    from invarlock_provider.errors import BadInputError

    plan = tmp_path / "nightly.yaml"
    plan.write_text(f"subjects:\n  - {{name: s, edit: '{edit}'}}\n")
    with pytest.raises(BadInputError, match=message):
        load_plan(plan)
    plan.write_text("subjects:\n  - {name: s, edit: 'quant:group=32,bits=4'}\n")
    assert load_plan(plan)["subjects"][0]["edit"] == "quant:bits=4,group=32"


def test_a_plan_and_its_tiers_file_are_read_from_the_bucket(seaweed, bucket: str, s3_settings, tmp_path: Path) -> None:
    """No copy on any worker: the plan names its tiers file beside it, and the sha256 of what was read
    travels with the plan."""
    import hashlib

    from invarlock_provider.airflow.nightly import load_plan
    from invarlock_provider.errors import BadInputError

    client = seaweed.client()
    tiers = (REPO / "configs" / "tiers.yaml").read_bytes()
    client.put_object(Bucket=bucket, Key="plans/team-tiers.yaml", Body=tiers)
    subjects = "subjects:\n  - {name: finetuned, model: 's3://models/finetuned-2026-11/'}\n"
    client.put_object(Bucket=bucket, Key="plans/nightly.yaml", Body=f"tiers: team-tiers.yaml\n{subjects}".encode())
    plan = load_plan(f"s3://{bucket}/plans/nightly.yaml", s3_settings)
    assert plan["tiers"] == f"s3://{bucket}/plans/team-tiers.yaml"
    assert plan["tiers_sha256"] == hashlib.sha256(tiers).hexdigest()
    expected = {
        "run_name": "finetuned",
        "edit": "noop",
        "model": "s3://models/finetuned-2026-11/",
        "revision": "",
        "task_limit": None,
    }
    assert plan["subjects"] == [expected]

    client.put_object(Bucket=bucket, Key="plans/escape.yaml", Body=f"tiers: ../../../x.yaml\n{subjects}".encode())
    with pytest.raises(BadInputError, match=r"escape\.yaml: '\.\./\.\./\.\./x\.yaml' leaves the bucket"):
        load_plan(f"s3://{bucket}/plans/escape.yaml", s3_settings)
    client.put_object(Bucket=bucket, Key="plans/missing.yaml", Body=f"tiers: gone.yaml\n{subjects}".encode())
    with pytest.raises(
        BadInputError, match=rf"missing\.yaml: tiers file s3://{bucket}/plans/gone\.yaml: no such object"
    ):
        load_plan(f"s3://{bucket}/plans/missing.yaml", s3_settings)
    with pytest.raises(BadInputError, match=rf"s3://{bucket}/plans/none\.yaml: no such object"):
        load_plan(f"s3://{bucket}/plans/none.yaml", s3_settings)
    client.put_object(Bucket=bucket, Key="plans/huge.yaml", Body=b"#" * (1024 * 1024 + 1))
    with pytest.raises(BadInputError, match="more than a configuration file may have"):
        load_plan(f"s3://{bucket}/plans/huge.yaml", s3_settings)
