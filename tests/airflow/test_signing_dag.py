"""The nightly DAG signs its bundles with a key kept in an Airflow connection, and the key's bytes
appear nowhere the run wrote: files, task logs, XComs (the metadata database)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from tests.airflow.conftest import load_dag
from tests.storage.conftest import cli

PLAN = """
preset: causal_lm/tiny_pydocs_128
profile: ci
tier: balanced
subjects:
  - {name: quant8, edit: quant8}
retention: {keep_last: 3, max_age: 14d}
"""


def secret_forms(private_pem: Path) -> list[bytes]:
    """The key as PEM, its base64 body and lines, its raw 32 bytes, their base64 and hex."""
    from cryptography.hazmat.primitives import serialization

    pem = private_pem.read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    lines = pem.strip().splitlines()[1:-1]
    return [pem.strip(), b"".join(lines), *lines, raw, base64.b64encode(raw), raw.hex().encode()]


@pytest.mark.slow
def test_the_nightly_dag_signs_through_a_connection_and_leaks_no_key(
    workdir: Path, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    code, stdout, stderr = cli("keygen", "--out", str(tmp_path / "keys"))
    assert code == 0, stderr
    fingerprint = re.search(r"fingerprint: ([0-9a-f]{64})", stdout).group(1)
    private = tmp_path / "keys" / "private.pem"
    connection = {"conn_type": "generic", "password": private.read_text()}
    monkeypatch.setenv("AIRFLOW_CONN_INVARLOCK_SIGNING", json.dumps(connection))
    monkeypatch.setenv("INVARLOCK_SIGNING_CONN_ID", "invarlock_signing")
    plan = tmp_path / "nightly.yaml"
    plan.write_text(PLAN)
    monkeypatch.setenv("INVARLOCK_NIGHTLY_CONFIG", str(plan))

    dag_run = load_dag("invarlock_nightly").test(logical_date=None)
    assert str(dag_run.state) == "success"
    bundles = sorted(p.parent for p in (workdir / "evidence").rglob("manifest.json"))
    assert [b.parent.name for b in bundles] == ["quant8_balanced"]
    code, stdout, _ = cli("verify", str(bundles[0]), "--trusted-key", str(tmp_path / "keys" / "public.pem"))
    trusted = f"signed by {fingerprint} (trusted: {tmp_path / 'keys' / 'public.pem'})"
    assert code == 0 and stdout.strip().endswith(trusted), stdout
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=dag_run.run_id, key="return_value", task_ids="archive", dag_ids="invarlock_nightly"
        )
        assert XComModel.deserialize_value(session.scalars(query).first())["signer"] == fingerprint

    forms = secret_forms(private)
    logged = (capsys.readouterr().out + capsys.readouterr().err + caplog.text).encode()
    places = [p for root in (workdir, airflow_db) for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in places)  # the metadata database: XComs, task instances, logs' index
    for form in forms:
        assert form not in logged
        for path in places:
            assert form not in path.read_bytes(), f"{path} holds the private key"
