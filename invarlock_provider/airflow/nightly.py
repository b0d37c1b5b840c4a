"""The nightly DAG's plan: configs/nightly.yaml, validated, read when the DAG runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from invarlock_provider.config import PROFILES, check_revision, parse_yaml_mapping
from invarlock_provider.edit_spec import parse_edit
from invarlock_provider.errors import BadInputError
from invarlock_provider.resources import configs_dir
from invarlock_provider.storage.arrivals import DEFAULT_MARKER, check_marker
from invarlock_provider.storage.uri import check_segment
from invarlock_provider.verdicts import VERDICTS

PLAN_ENV = "INVARLOCK_NIGHTLY_CONFIG"
TIERS = ("balanced", "conservative", "aggressive")


def load_plan(location: str | Path | None = None, settings: Any = None) -> dict[str, Any]:
    """Validated plan: preset, profile, tier, tiers file, baseline model, subjects (run kwargs), the
    verdict each subject's report is expected to have (``expect``, PASS by default), retention.

    ``location`` is a path or a store URI (``s3://``, ``file://``; ``settings`` reach the store). A
    relative ``tiers`` is relative to the plan, not to the worker's working directory. The tiers file
    is read here, once: its sha256 (``tiers_sha256``) travels with the plan, so every build_report
    judges by exactly the policy this read, on any worker.
    """
    from invarlock_provider.fileio import sha256_bytes
    from invarlock_provider.storage.documents import beside, read_document

    path = str(location or plan_location())
    raw = parse_yaml_mapping(_text(read_document(path, settings), path), path)
    profile = raw.get("profile")
    if profile is not None and profile not in PROFILES:
        raise BadInputError(f"{path}: profile must be one of {', '.join(PROFILES)}")
    tier = raw.get("tier", "balanced")
    if tier not in TIERS:
        raise BadInputError(f"{path}: tier must be one of {', '.join(TIERS)}")
    tiers, tiers_sha256 = raw.get("tiers"), None
    if tiers is not None:
        if not isinstance(tiers, str) or not tiers:
            raise BadInputError(f"{path}: tiers must be the path or URI of a tiers.yaml")
        tiers = beside(path, tiers)
        try:
            document = read_document(tiers, settings)
        except BadInputError as exc:
            raise BadInputError(f"{path}: tiers file {exc}") from None
        from invarlock_provider.reporting.policy import tier_from_text

        tier_from_text(tier, _text(document, tiers), tiers)  # a bad file fails the plan, not hours later
        tiers_sha256 = sha256_bytes(document)
    entries = raw.get("subjects")
    if not isinstance(entries, list) or not entries:
        raise BadInputError(f"{path}: subjects must be a non-empty list")
    subjects = []
    expectations: dict[str, str] = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BadInputError(f"{path}: subjects[{position}] needs a name")
        name = check_segment(entry["name"], f"{path}: subjects[{position}].name")
        edit = parse_edit(str(entry.get("edit") or "noop"), f"{path}: subjects[{position}].edit").spec
        unknown = set(entry) - {"name", "edit", "model", "revision", "expect", "task_limit"}
        if unknown:
            raise BadInputError(f"{path}: subjects[{position}]: unknown keys {', '.join(sorted(unknown))}")
        expect = entry.get("expect", "PASS")
        if expect not in VERDICTS:
            raise BadInputError(
                f"{path}: subjects[{position}].expect must be one of {', '.join(VERDICTS)}, not {expect!r}"
            )
        task_limit = entry.get("task_limit")
        if task_limit is not None and (type(task_limit) is not int or task_limit < 1):
            raise BadInputError(f"{path}: subjects[{position}].task_limit must be an integer >= 1")
        expectations[f"{name}_{tier}"] = expect  # the report BuildReportOperator names after the subject
        revision = _revision(entry.get("revision"), f"{path}: subjects[{position}].revision")
        subjects.append(
            {
                "run_name": name,
                "edit": edit,
                "model": entry.get("model") or "",
                "revision": revision,
                "task_limit": task_limit,
            }
        )
    retention = raw.get("retention") or {}
    unknown = set(raw) - {"preset", "profile", "tier", "tiers", "baseline", "subjects", "retention", "arrivals"}
    if unknown:
        raise BadInputError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    return {
        "preset": raw.get("preset"),
        "profile": profile,
        "tier": tier,
        "tiers": tiers,
        "tiers_sha256": tiers_sha256,
        "baseline_model": (raw.get("baseline") or {}).get("model"),
        "baseline_revision": _revision((raw.get("baseline") or {}).get("revision"), f"{path}: baseline.revision"),
        "subjects": subjects,
        "expectations": expectations,
        "retention_keep_last": retention.get("keep_last"),
        "retention_max_age": retention.get("max_age"),
        "arrivals": _arrivals(raw.get("arrivals"), f"{path}: arrivals"),
    }


def _arrivals(value: Any, where: str) -> dict[str, str] | None:
    """Where the arrivals DAG looks for new checkpoints, and the marker a complete one holds."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"watch", "marker"}:
        raise BadInputError(f"{where}: expected a mapping with watch (a URI or folder) and marker")
    watch, marker = value.get("watch"), value.get("marker", DEFAULT_MARKER)
    if watch is not None and (not isinstance(watch, str) or not watch):
        raise BadInputError(f"{where}.watch: expected s3://BUCKET/PREFIX/, file:///PATH or a folder")
    if not isinstance(marker, str):
        raise BadInputError(f"{where}.marker: expected an object name such as {DEFAULT_MARKER}")
    check_marker(marker, f"{where}.marker")
    return {"watch": watch or "", "marker": marker}


class NightlyPlanOperator(BaseOperator):
    """Read the nightly plan (``INVARLOCK_NIGHTLY_CONFIG``: a path, or a store URI read through
    ``conn_id``) when the DAG runs. Returns the subjects (what the evaluations map over) and pushes
    the other settings under XCom key ``settings`` for the templates."""

    def __init__(self, *, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id

    def execute(self, context: Any) -> list[dict[str, Any]]:
        plan = load_plan(plan_location(), plan_store_settings(self.conn_id))
        context["ti"].xcom_push(key="settings", value={k: v for k, v in plan.items() if k != "subjects"})
        return plan["subjects"]


def plan_location() -> str:
    """``INVARLOCK_NIGHTLY_CONFIG`` (a path or a store URI), else the bundled nightly.yaml."""
    return os.environ.get(PLAN_ENV) or str(configs_dir() / "nightly.yaml")


def plan_store_settings(conn_id: str | None) -> Any:
    """The connection's S3 settings when the plan is in a bucket; None (nothing to reach) otherwise."""
    if not plan_location().startswith("s3://"):
        return None
    from invarlock_provider.airflow.hooks import EvidenceStoreHook

    return EvidenceStoreHook(conn_id or None).s3_settings


def _revision(value: Any, where: str) -> str:
    """A hub revision for a run, or "" (the template's "unset")."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadInputError(f"{where}: expected a hub revision (a commit sha), got {value!r}")
    check_revision(value, where)
    return value


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{where}: not UTF-8 text (byte {exc.start})") from None
