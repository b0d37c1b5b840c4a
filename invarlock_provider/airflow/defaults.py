"""Where the example DAGs keep runs, reports and evidence: environment, with defaults.

``INVARLOCK_WORKDIR`` (default ``~/invarlock``) holds ``runs/``, ``reports/`` and ``evidence/``, so
the DAGs run with no configuration at all. ``INVARLOCK_ARCHIVE_URI`` (``s3://BUCKET/PREFIX``) and
``INVARLOCK_ARCHIVE_CONN_ID`` point the nightly archive at a bucket, and
``INVARLOCK_EVALUATION_QUEUE`` sends the evaluation tasks (the only ones that need a GPU) to the
workers listening on that queue. These are read when a DAG
file is parsed, which is why they are environment variables and not files.
"""

from __future__ import annotations

import os
from pathlib import Path

WORKDIR_ENV = "INVARLOCK_WORKDIR"


def workdir() -> Path:
    return Path(os.environ.get(WORKDIR_ENV) or Path.home() / "invarlock")


def default_archive_target() -> str:
    return (workdir() / "evidence").resolve().as_uri()


def archive_target() -> str:
    return os.environ.get("INVARLOCK_ARCHIVE_URI") or default_archive_target()


def archive_conn_id() -> str | None:
    return os.environ.get("INVARLOCK_ARCHIVE_CONN_ID") or None


def evaluation_queue() -> str:
    """Queue of the evaluation tasks; Airflow's default queue when unset."""
    from airflow.configuration import conf

    return os.environ.get("INVARLOCK_EVALUATION_QUEUE") or conf.get("operators", "default_queue")
