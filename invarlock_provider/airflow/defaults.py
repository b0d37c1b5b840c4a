"""Where the example DAGs keep runs, reports and evidence: environment, with defaults.

``INVARLOCK_WORKDIR`` (default ``~/invarlock``) holds ``runs/``, ``reports/`` and ``evidence/``, so
the DAGs run with no configuration at all. ``INVARLOCK_WORK_URI`` (``s3://BUCKET/PREFIX``) moves
``runs/`` and ``reports/`` into a store instead, for workers that share no disk; its connection is
``INVARLOCK_WORK_CONN_ID``, by default the archive's. ``INVARLOCK_ARCHIVE_URI`` (``s3://BUCKET/PREFIX``) and
``INVARLOCK_ARCHIVE_CONN_ID`` point the nightly archive at a bucket, and
``INVARLOCK_EVALUATION_QUEUE`` sends the evaluation tasks (the only ones that need a GPU) to the
workers listening on that queue; ``INVARLOCK_EVALUATION_POOL`` puts them in an Airflow pool (create
it first), to cap how many evaluate at once across workers. ``INVARLOCK_OBJECT_LOCK_DAYS`` and
``INVARLOCK_OBJECT_LOCK_MODE`` lock the nightly evidence in an Object Lock bucket. These are read
when a DAG file is parsed, which is why they are environment variables and not files; a bad value
fails the parse with a one-line error that names the variable. ``INVARLOCK_ALERT_EMAIL``
(comma-separated addresses) makes the gate task e-mail a failed verdict through the SMTP
connection ``INVARLOCK_ALERT_SMTP_CONN_ID`` (default ``smtp_default``), from
``INVARLOCK_ALERT_FROM``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.storage.objectstore import LOCK_MODES

WORKDIR_ENV = "INVARLOCK_WORKDIR"
WORK_URI_ENV = "INVARLOCK_WORK_URI"
OBJECT_LOCK_DAYS_ENV = "INVARLOCK_OBJECT_LOCK_DAYS"
OBJECT_LOCK_MODE_ENV = "INVARLOCK_OBJECT_LOCK_MODE"
# Airflow's built-in pool; unlike the default queue, its name is not configurable.
DEFAULT_POOL = "default_pool"


def workdir() -> Path:
    return Path(os.environ.get(WORKDIR_ENV) or Path.home() / "invarlock")


def work_root() -> str:
    """Where runs/ and reports/ live: the work store URI, or the local work folder."""
    raw = os.environ.get(WORK_URI_ENV, "").strip()
    if not raw:
        return str(workdir())
    if not raw.startswith(("s3://", "file://")):
        raise BadInputError(f"{WORK_URI_ENV} must be s3://BUCKET[/PREFIX] or file:///PATH, not {raw!r}")
    from invarlock_provider.storage.uri import parse_store_uri

    parse_store_uri(raw)  # a bad bucket or prefix fails the parse, not every task later
    return raw.rstrip("/")


def runs_root() -> str:
    return f"{work_root()}/runs"


def reports_root() -> str:
    return f"{work_root()}/reports"


def work_conn_id() -> str | None:
    """The work store's connection; the evidence store's when none is named."""
    return os.environ.get("INVARLOCK_WORK_CONN_ID") or archive_conn_id()


def default_archive_target() -> str:
    return (workdir() / "evidence").resolve().as_uri()


def archive_target() -> str:
    return os.environ.get("INVARLOCK_ARCHIVE_URI") or default_archive_target()


def archive_conn_id() -> str | None:
    return os.environ.get("INVARLOCK_ARCHIVE_CONN_ID") or None


def served_stores() -> list[tuple[str, str | None]]:
    """The stores the Evidence pages may read, as (root URI, connection id): only what the deployment
    configured. An XCom is no authority on where evidence is (a user with the plain ``user`` role can
    write one through the REST API), so the plugin reads nothing outside these roots and always
    through the root's own connection. A local work folder counts as ``file://``: it is where
    ``build_report`` writes when ``INVARLOCK_WORK_URI`` is unset."""
    stores = [(archive_target(), archive_conn_id()), (default_archive_target(), None)]
    work = work_root()
    if work.startswith(("s3://", "file://")):
        stores.append((work, work_conn_id()))
    else:
        stores.append((Path(work).resolve().as_uri(), None))
    return stores


def signing_conn_id() -> str | None:
    """The connection holding the Ed25519 key that signs archived bundles (its password: the PEM)."""
    return os.environ.get("INVARLOCK_SIGNING_CONN_ID") or None


def hub_conn_id() -> str | None:
    """The connection holding the model hub's token (its password), handed to evaluations only."""
    return os.environ.get("INVARLOCK_HUB_CONN_ID") or None


def evaluation_queue() -> str:
    """Queue of the evaluation tasks; Airflow's default queue when unset."""
    from airflow.configuration import conf

    return os.environ.get("INVARLOCK_EVALUATION_QUEUE") or conf.get("operators", "default_queue")


def evaluation_pool() -> str:
    """Pool of the evaluation tasks; Airflow's default pool when unset."""
    return os.environ.get("INVARLOCK_EVALUATION_POOL") or DEFAULT_POOL


def object_lock_days() -> int | None:
    """Days the nightly archive locks evidence for; None (no lock) when unset."""
    raw = os.environ.get(OBJECT_LOCK_DAYS_ENV, "").strip()
    if not raw:
        return None
    try:
        days = int(raw)
    except ValueError:
        days = 0
    if days < 1:
        raise BadInputError(f"{OBJECT_LOCK_DAYS_ENV} must be a positive integer (days), not {raw!r}")
    if not archive_target().startswith("s3://"):
        raise BadInputError(
            f"{OBJECT_LOCK_DAYS_ENV} is set but the archive target {archive_target()} is a local folder, which "
            "cannot lock objects; set INVARLOCK_ARCHIVE_URI to an Object Lock bucket or unset the variable"
        )
    return days


def object_lock_mode() -> str:
    """GOVERNANCE (privileged users may still delete) unless COMPLIANCE is asked for."""
    mode = os.environ.get(OBJECT_LOCK_MODE_ENV, "").strip().upper() or "GOVERNANCE"
    if mode not in LOCK_MODES:
        raise BadInputError(f"{OBJECT_LOCK_MODE_ENV} must be one of {', '.join(LOCK_MODES)}, not {mode!r}")
    return mode


ALERT_EMAIL_ENV = "INVARLOCK_ALERT_EMAIL"


def alert_callbacks() -> list[Any]:
    """The gate's on_failure_callback: the verdict e-mail when INVARLOCK_ALERT_EMAIL is set."""
    raw = os.environ.get(ALERT_EMAIL_ENV, "").strip()
    if not raw:
        return []
    recipients = [address.strip() for address in raw.split(",") if address.strip()]
    bad = [address for address in recipients if "@" not in address or " " in address]
    if bad or not recipients:
        raise BadInputError(f"{ALERT_EMAIL_ENV} must be comma-separated e-mail addresses, not {raw!r}")
    from invarlock_provider.airflow.alerts import VerdictAlert

    return [
        VerdictAlert(
            to=recipients,
            smtp_conn_id=os.environ.get("INVARLOCK_ALERT_SMTP_CONN_ID") or "smtp_default",
            from_email=os.environ.get("INVARLOCK_ALERT_FROM") or "invarlock@localhost",
        )
    ]
