from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from invarlock_provider.cli import main
from invarlock_provider.storage.s3 import S3Settings
from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer

_bucket_numbers = itertools.count()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_settings(seaweed: SeaweedServer) -> S3Settings:
    return seaweed.settings()


@pytest.fixture
def bucket(seaweed: SeaweedServer) -> str:
    name = f"evidence-{next(_bucket_numbers)}"
    seaweed.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def locked_bucket(seaweed: SeaweedServer) -> str:
    name = f"locked-{next(_bucket_numbers)}"
    seaweed.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, seaweed: SeaweedServer) -> str:
    """Credentials the way operators pass them: the standard AWS variables."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint)
    monkeypatch.setenv("INVARLOCK_S3_PATH_STYLE", "1")
    return seaweed.endpoint


@pytest.fixture
def index_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INVARLOCK_HOME", str(tmp_path / "invarlock-home"))
    return tmp_path / "invarlock-home" / "archive-index.json"


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="session")
def evidence_root(real_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """reports/quant8_balanced (with html) and reports/damaged_balanced built from real runs."""
    root = tmp_path_factory.mktemp("evidence")
    for name, subject in (("quant8_balanced", "quant8"), ("damaged_balanced", "damaged")):
        code, _, stderr = cli(
            "report",
            "--run",
            str(real_runs[subject]),
            "--baseline",
            str(real_runs["baseline"]),
            "--format",
            "html",
            "--output",
            str(root / "reports" / name),
            "--copy-baseline",
        )
        assert code == 0, stderr
    return root / "reports"


@pytest.fixture
def reports(evidence_root: Path, tmp_path: Path) -> Path:
    """A private copy per test, so tests may tamper with it."""
    target = tmp_path / "reports"
    shutil.copytree(evidence_root, target, symlinks=True)
    return target


def date_evaluation(report_dir: Path, when: datetime) -> None:
    """Make ``report_dir``'s evaluation one built at ``when`` (its digest recomputed): a bundle is
    dated by its evaluation, so this is how a test puts evidence on another night."""
    from invarlock_provider.fileio import write_json_atomic
    from invarlock_provider.reporting.evaluation import DIGEST_FIELD, EVALUATION_FILE, content_digest

    path = report_dir / EVALUATION_FILE
    evaluation = json.loads(path.read_text())
    evaluation["created_at"] = when.isoformat(timespec="seconds")
    evaluation[DIGEST_FIELD] = content_digest(evaluation)
    write_json_atomic(path, evaluation)
    (report_dir / "evaluation.html").unlink(missing_ok=True)  # rendered from the evaluation before
