"""A user:password in an endpoint URL never reaches a printed or logged message.

botocore quotes the endpoint in its connection errors, so an endpoint given as
``http://key:secret@host`` (flag, AWS_ENDPOINT_URL or an Airflow connection) would otherwise land
in terminals, task logs and alerts. Real CLI, real SeaweedFS, a real closed port, real Airflow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.storage.conftest import cli
from tests.storage.seaweed import ACCESS_KEY

USERINFO = "AKIAFAKEUSER:fake-url-secret"
SECRETS = ("AKIAFAKEUSER", "fake-url-secret")
UNREACHABLE = f"http://{USERINFO}@127.0.0.1:9"


def with_userinfo(endpoint: str) -> str:
    return endpoint.replace("http://", f"http://{USERINFO}@", 1)


def assert_no_secret(*outputs: str) -> None:
    for output in outputs:
        for secret in SECRETS:
            assert secret not in output, output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('endpoint URL: "http://key:secret@127.0.0.1:9/b?x=1"', 'endpoint URL: "http://***@127.0.0.1:9/b?x=1"'),
        ("https://token@host/path", "https://***@host/path"),
        ("http://user:p@ss@host:9/key@v", "http://***@host:9/key@v"),
        ("two: HTTP://a:b@h1 and s3+http://c:d@h2/x", "two: HTTP://***@h1 and s3+http://***@h2/x"),
        ("no userinfo: http://host:9/key@v s3://bucket/a@b mail me@example.com", None),
    ],
)
def test_userinfo_is_replaced_and_nothing_else(text: str, expected: str | None) -> None:
    from invarlock_provider.errors import redact_url_credentials

    assert redact_url_credentials(text) == (expected if expected is not None else text)


COMMANDS = [
    ("ls", "s3://{bucket}/nightly"),
    ("prune", "s3://{bucket}/nightly", "--max-age", "1d"),
    ("history", "s3://{bucket}/nightly"),
    ("verify", "s3://{bucket}/nightly/q8"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_unreachable_endpoint_flag_with_userinfo_is_redacted(s3_env: str, bucket: str, command: tuple) -> None:
    args = [part.format(bucket=bucket) for part in command]
    code, stdout, stderr = cli(*args, "--endpoint-url", UNREACHABLE)
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "cannot reach the endpoint" in stderr and "http://***@127.0.0.1:9/" in stderr
    assert_no_secret(stdout, stderr)


def test_unreachable_endpoint_from_the_environment_is_redacted(
    s3_env: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", UNREACHABLE)
    code, stdout, stderr = cli("ls", f"s3://{bucket}/nightly")
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert "http://***@127.0.0.1:9/" in stderr
    assert_no_secret(stdout, stderr)


def test_malformed_endpoint_with_userinfo_is_one_redacted_line(s3_env: str, bucket: str) -> None:
    """boto3 refuses it while building the client, quoting it whole: no traceback, no secret."""
    code, stdout, stderr = cli("ls", f"s3://{bucket}/nightly", "--endpoint-url", f"http://{USERINFO}@exa mple:9")
    assert code == 2, stderr
    hint = "give the endpoint as http(s)://host[:port]"
    assert stderr == f"error: s3://{bucket}: Invalid endpoint: http://***@exa mple:9; {hint}\n"
    assert_no_secret(stdout, stderr)


def test_real_endpoint_with_userinfo_prints_no_secret(
    s3_env: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SeaweedFS answers through an endpoint carrying userinfo: success and its refusals stay clean."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", with_userinfo(s3_env))
    code, stdout, stderr = cli("ls", f"s3://{bucket}/nightly")
    assert code == 0 and stdout.strip() == "0 bundles", stderr
    code, stdout, stderr = cli("ls", "s3://no-such-bucket/nightly")
    assert code == 2 and stderr == "error: s3://no-such-bucket: bucket 'no-such-bucket' does not exist\n"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    code, stdout, stderr = cli("ls", f"s3://{bucket}/nightly")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "credentials rejected" in stderr
    assert_no_secret(stdout, stderr)


def test_doctor_redacts_the_endpoint_in_text_and_json(s3_env: str, bucket: str) -> None:
    for extra in ([], ["--json"]):
        code, stdout, stderr = cli("doctor", "--store", f"s3://{bucket}/nightly", "--endpoint-url", UNREACHABLE, *extra)
        assert code == 1, stdout + stderr
        assert "http://***@127.0.0.1:9/" in stdout
        assert_no_secret(stdout, stderr)
    code, stdout, stderr = cli("doctor", "--store", f"s3://{bucket}/nightly", "--endpoint-url", with_userinfo(s3_env))
    assert code == 0 and f"ok    store     s3://{bucket}/nightly: reachable" in stdout, stdout + stderr
    assert_no_secret(stdout, stderr)


OPERATOR = """
from invarlock_provider.airflow.operators import PruneRunsOperator

operator = PruneRunsOperator(
    task_id="prune", runs_root={runs!r}, evidence_target="s3://{bucket}/nightly", keep_last=1, conn_id="leaky"
)
try:
    operator.execute({{}})
except Exception as exc:
    print("FAILED:", exc)
"""


@pytest.mark.skipif(importlib.util.find_spec("airflow") is None, reason="needs the [airflow] extra")
def test_operator_failure_redacts_the_connection_endpoint(tmp_path: Path, bucket: str) -> None:
    """The task's failure (what Airflow logs and alerts on) through a connection whose endpoint
    carries userinfo; in its own interpreter with a throw-away AIRFLOW_HOME."""
    connection = {
        "conn_type": "aws",
        "login": ACCESS_KEY,
        "password": "connection-password",
        "extra": {"endpoint_url": UNREACHABLE, "region_name": "us-east-1", "path_style": True},
    }
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_LEAKY": json.dumps(connection),
    }
    script = OPERATOR.format(runs=str(tmp_path / "runs"), bucket=bucket)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAILED:")]
    assert len(failures) == 1, result.stdout + result.stderr
    assert "cannot reach the endpoint" in failures[0] and "http://***@127.0.0.1:9/" in failures[0]
    assert "(connection 'leaky')" in failures[0]
    assert_no_secret(result.stdout, result.stderr)
