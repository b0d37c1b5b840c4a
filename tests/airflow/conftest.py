"""A throw-away Airflow home (SQLite) for the whole session, created before Airflow is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_HOME = Path(tempfile.mkdtemp(prefix="invarlock-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
# One key for this process and the `airflow` subprocesses, so secrets one writes the other reads.
os.environ["AIRFLOW__CORE__FERNET_KEY"] = "kKCyvymh3yT1X6eYVtiGvBaCdeYM_3-HHTCTxEZtdXs="
# The API server app built in-process (tests/airflow/test_evidence_plugin.py) signs its JWTs with this.
os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] = "invarlock-tests-jwt-secret-" + "0" * 40


@pytest.fixture(scope="session", autouse=True)
def airflow_db() -> Path:
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=dict(os.environ))
    return _HOME


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """INVARLOCK_WORKDIR and INVARLOCK_HOME for one test; the DAG modules are re-imported to see it."""
    monkeypatch.setenv("INVARLOCK_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("INVARLOCK_HOME", str(tmp_path / "work" / ".invarlock"))
    return tmp_path / "work"


def load_dag(name: str):
    """Import a DAG file fresh (module-level settings read the environment at import)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"dag_{name}", REPO / "dags" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


from tests.storage.conftest import bucket, locked_bucket, s3_settings, seaweed  # noqa: E402, F401  (the real S3 server, shared)


@pytest.fixture
def evidence_connection(seaweed, bucket: str, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """Make an aws-type Airflow connection to the SeaweedFS bucket, with path-style addressing
    written either way the hook accepts ("flag": path_style, "amazon": config_kwargs)."""
    import json

    from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY

    def make(style: str) -> str:
        addressing = (
            {"path_style": True} if style == "flag" else {"config_kwargs": {"s3": {"addressing_style": "path"}}}
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_EVIDENCE_S3",
            json.dumps(
                {
                    "conn_type": "aws",
                    "login": ACCESS_KEY,
                    "password": SECRET_KEY,
                    "extra": {
                        "endpoint_url": seaweed.endpoint,
                        "region_name": "us-east-1",
                        "bucket": bucket,
                        **addressing,
                    },
                }
            ),
        )
        return "evidence_s3"

    return make
