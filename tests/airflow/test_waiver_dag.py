"""A recorded human waiver on a real Airflow: the on-demand DAG (profile dev: INSUFFICIENT where PASS
is expected) waits in Airflow's human-in-the-loop approval; an approver answers through Airflow's
REST API (the Required Actions page's call), as a named user. Approve records a signed waiver beside
the bundle that ls/verify/history show and the trusted key verifies; Reject fails the run and
records nothing; a user who is not an approver is refused by Airflow."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from invarlock_provider.cli import main
from invarlock_provider.storage.signing import generate_key_pair
from tests.airflow.conftest import load_dag


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr


@pytest.fixture
def waiver_env(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name in ("INVARLOCK_ARCHIVE_URI", "INVARLOCK_ARCHIVE_CONN_ID", "INVARLOCK_WORK_URI", "INVARLOCK_TRUSTED_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INVARLOCK_WAIVER_APPROVERS", "ada,grace")
    fingerprint = generate_key_pair(tmp_path / "keys")
    pem = (tmp_path / "keys" / "private.pem").read_text()
    monkeypatch.setenv("AIRFLOW_CONN_WAIVER_SIGNING", json.dumps({"conn_type": "generic", "password": pem}))
    monkeypatch.setenv("INVARLOCK_SIGNING_CONN_ID", "waiver_signing")
    return {"work": workdir, "keys": tmp_path / "keys", "signer": fingerprint}


@pytest.fixture
def api() -> Iterator[tuple[Any, dict[str, str]]]:
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    with TestClient(create_app()) as client:
        manager = get_auth_manager()
        tokens = {
            name: manager.generate_jwt(SimpleAuthManagerUser(username=name, role="admin"))
            for name in ("ada", "mallory")
        }
        yield client, tokens


def awaiting_approval(timeout: float = 600) -> tuple[str, str]:
    """(dag_id, run_id) of the approval task once it waits for a human."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as session:
            waiting = (
                session.query(TaskInstance)
                .filter(
                    TaskInstance.task_id == "approve_waiver", TaskInstance.state == TaskInstanceState.AWAITING_INPUT
                )
                .first()
            )
            if waiting is not None:
                return waiting.dag_id, waiting.run_id
        time.sleep(0.5)
    raise AssertionError("the approval task never waited for input")


def respond(api: tuple[Any, dict[str, str]], answer: str, reason: str, outcome: dict[str, Any]) -> None:
    """Answer the approval as Airflow's UI does, first as a user who is not an approver."""
    client, tokens = api
    try:
        dag_id, run_id = awaiting_approval()
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve_waiver/-1/hitlDetails"
        body = {"chosen_options": [answer], "params_input": {"reason": reason}}
        intruder = client.patch(path, json=body, headers={"Authorization": f"Bearer {tokens['mallory']}"})
        outcome["intruder"] = intruder.status_code
        answered = client.patch(path, json=body, headers={"Authorization": f"Bearer {tokens['ada']}"})
        outcome["answer"] = (answered.status_code, answered.json())
    except BaseException as exc:  # reported to the test thread
        outcome["error"] = repr(exc)


def run_with_answer(api: tuple[Any, dict[str, str]], answer: str, reason: str) -> tuple[Any, dict[str, Any]]:
    outcome: dict[str, Any] = {}
    responder = threading.Thread(target=respond, args=(api, answer, reason, outcome), daemon=True)
    responder.start()
    dag_run = load_dag("invarlock_on_demand").test(run_conf={"profile": "dev", "report_name": "waived"})
    responder.join(timeout=60)
    assert "error" not in outcome, outcome
    return dag_run, outcome


def states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.mark.slow
def test_an_approved_waiver_is_recorded_signed_and_shown(waiver_env: dict[str, Any], api) -> None:
    reason = "dev profile on purpose: a smoke run, too few tokens is expected"
    dag_run, outcome = run_with_answer(api, "Approve", reason)
    assert outcome["intruder"] == 403  # not an assigned approver: Airflow refuses the answer
    status, body = outcome["answer"]
    assert status == 200 and body["responded_by"]["id"] == "ada", body
    assert str(dag_run.state) == "success", states(dag_run)
    assert states(dag_run)["gate"] == "success" and states(dag_run)["record_waiver"] == "success"

    evidence = waiver_env["work"] / "evidence"
    (bundle,) = (evidence / "waived").glob("ev-*")
    assert json.loads((bundle / "manifest.json").read_text())["verdict"] == "INSUFFICIENT"
    (record_path,) = (evidence / "_waivers").glob("wv-*[0-9a-f].json")
    record = json.loads(record_path.read_text())
    assert (record["approver"]["name"], record["reason"]) == ("ada", reason)
    assert record["bundles"][0]["bundle"] == f"waived/{bundle.name}"
    assert record["context"]["dag_id"] == "invarlock_on_demand" and record["context"]["run_id"] == dag_run.run_id

    code, listed = cli("ls", evidence.as_uri())
    assert code == 0 and f"WAIVED by ada: {reason}" in listed, listed
    code, verified = cli(
        "verify", f"{evidence.as_uri()}/waived/{bundle.name}", "--trusted-key", str(waiver_env["keys"] / "public.pem")
    )
    assert code == 0 and "verdict INSUFFICIENT" in verified and f"WAIVED by ada: {reason}" in verified, verified
    code, verified = cli("verify", evidence.as_uri(), "--fail-on-fail")
    assert code == 0, verified  # the waived INSUFFICIENT is accepted; nothing else is unexpected
    code, history = cli("history", evidence.as_uri())
    assert code == 0 and "WAIVED by ada" in history, history
    # The archive task's page in Airflow's UI (the plugin, as a viewer opens it) shows the waiver.
    client, tokens = api
    page = client.get(
        f"/invarlock/task/invarlock_on_demand/{quote(dag_run.run_id, safe='')}/archive/-1",
        headers={"Authorization": f"Bearer {tokens['ada']}"},
    )
    assert page.status_code == 200 and 'data-verdict="INSUFFICIENT"' in page.text, page.text[-2000:]
    assert f'<p class="il-note waiver" data-waiver="{record["waiver_id"]}">WAIVED by ada: {reason}' in page.text

    # Someone rewrites the waiver's reason: the trusted key no longer vouches for it.
    record["reason"] = "approved by the whole board"
    record_path.write_text(json.dumps(record))
    code, verified = cli(
        "verify", f"{evidence.as_uri()}/waived/{bundle.name}", "--trusted-key", str(waiver_env["keys"] / "public.pem")
    )
    assert code == 1 and "WAIVER INVALID" in verified, verified


@pytest.mark.slow
def test_a_rejected_approval_fails_the_run_and_records_nothing(waiver_env: dict[str, Any], api) -> None:
    dag_run, outcome = run_with_answer(api, "Reject", "not acceptable")
    assert outcome["answer"][0] == 200, outcome
    assert str(dag_run.state) == "failed", states(dag_run)
    assert states(dag_run)["approve_waiver"] == "failed" and states(dag_run)["record_waiver"] == "upstream_failed"
    assert not (waiver_env["work"] / "evidence" / "_waivers").exists()
    code, listed = cli("ls", (waiver_env["work"] / "evidence").as_uri())
    assert code == 0 and "WAIVED" not in listed and "INSUFFICIENT" in listed


def test_without_approvers_the_gate_fails_as_before(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVARLOCK_WAIVER_APPROVERS", raising=False)
    dag = load_dag("invarlock_on_demand")
    assert "approve_waiver" not in dag.task_dict and dag.task_dict["gate"].waivable is False
    monkeypatch.setenv("INVARLOCK_WAIVER_APPROVERS", "ada")
    dag = load_dag("invarlock_on_demand")
    assert dag.task_dict["gate"].waivable is True
    approve = dag.task_dict["approve_waiver"]
    assert approve.assigned_users == [{"id": "ada", "name": "ada"}] and approve.fail_on_reject is True
    assert [t.task_id for t in approve.downstream_list] == ["record_waiver"]
