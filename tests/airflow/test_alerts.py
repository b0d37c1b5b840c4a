"""The verdict alert: a real SMTP server (aiosmtpd on 127.0.0.1) receives the gate's e-mail; an
alert whose SMTP connection does not work is logged with the connection id and hides nothing."""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.airflow.conftest import load_dag
from tests.storage.seaweed import free_ports


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    (port,) = free_ports(1)
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def smtp_connection(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    extra = {"disable_tls": True, "disable_ssl": True, "timeout": 5, "retry_limit": 1}
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERT_SMTP", json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": extra})
    )
    monkeypatch.setenv("INVARLOCK_ALERT_SMTP_CONN_ID", "alert_smtp")
    monkeypatch.setenv("INVARLOCK_ALERT_EMAIL", "ml-platform@example.com, oncall@example.com")
    monkeypatch.setenv("INVARLOCK_ALERT_FROM", "invarlock@example.com")


@pytest.mark.slow
def test_a_failed_verdict_is_mailed(workdir: Path, smtp_server, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, port = smtp_server
    smtp_connection(monkeypatch, port)
    dag_run = load_dag("invarlock_on_demand").test(logical_date=None, run_conf={"profile": "dev", "report_name": "q8"})
    assert str(dag_run.state) == "failed"
    assert len(inbox.messages) == 1, "one alert, from the gate"
    message = inbox.messages[0]
    assert message["Subject"].startswith("InvarLock: invarlock_on_demand verdicts not as expected")
    assert {address.strip() for address in message["To"].split(",")} == {
        "ml-platform@example.com",
        "oncall@example.com",
    }
    body = message.get_body(("html", "plain")).get_content()
    assert re.search(r"q8: INSUFFICIENT \(expected PASS\), ratio 1\.0000 .*min_tokens: \d+ not >= \d+", body), body
    bundle = next((workdir / "evidence" / "q8").glob("ev-*"))
    assert bundle.resolve().as_uri() in body  # where the evidence is
    assert "Gate log: <a href=" in body


@pytest.mark.slow
def test_an_unusable_smtp_connection_is_logged_and_hides_nothing(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    (closed_port,) = free_ports(1)  # nothing listens there
    smtp_connection(monkeypatch, closed_port)
    dag_run = load_dag("invarlock_on_demand").test(logical_date=None, run_conf={"profile": "dev", "report_name": "q8"})
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "failed" and states["archive"] == "success" and states["gate"] == "failed", states
    assert list((workdir / "evidence" / "q8").glob("ev-*/manifest.json")), "the evidence is archived"
    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text
    assert "verdict alert through SMTP connection 'alert_smtp' failed" in logged, logged[-3000:]


def test_a_bad_alert_address_fails_the_parse_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from invarlock_provider.errors import BadInputError

    monkeypatch.setenv("INVARLOCK_ALERT_EMAIL", "ml platform team")
    with pytest.raises(BadInputError, match="INVARLOCK_ALERT_EMAIL must be comma-separated e-mail addresses"):
        load_dag("invarlock_nightly")
