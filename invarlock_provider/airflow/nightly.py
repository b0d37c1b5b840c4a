"""The nightly DAG's plan: configs/nightly.yaml, validated, read when the DAG runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from invarlock_provider.airflow.gate import VERDICTS
from invarlock_provider.config import PROFILES, load_yaml_mapping
from invarlock_provider.edit_spec import parse_edit
from invarlock_provider.errors import BadInputError
from invarlock_provider.resources import configs_dir
from invarlock_provider.storage.uri import check_segment

PLAN_ENV = "INVARLOCK_NIGHTLY_CONFIG"
TIERS = ("balanced", "conservative", "aggressive")


def load_plan(path: Path | None = None) -> dict[str, Any]:
    """Validated plan: preset, profile, tier, tiers file, baseline model, subjects (run kwargs), the
    verdict each subject's report is expected to have (``expect``, PASS by default), retention.

    A relative ``tiers`` path is relative to the plan file, not to the worker's working directory.
    """
    path = path or plan_path()
    raw = load_yaml_mapping(path)
    profile = raw.get("profile")
    if profile is not None and profile not in PROFILES:
        raise BadInputError(f"{path}: profile must be one of {', '.join(PROFILES)}")
    tier = raw.get("tier", "balanced")
    if tier not in TIERS:
        raise BadInputError(f"{path}: tier must be one of {', '.join(TIERS)}")
    tiers = raw.get("tiers")
    if tiers is not None:
        if not isinstance(tiers, str) or not tiers:
            raise BadInputError(f"{path}: tiers must be the path of a tiers.yaml")
        tiers = str((path.parent / Path(tiers).expanduser()).resolve())
        if not Path(tiers).is_file():
            raise BadInputError(f"{path}: tiers file {tiers} does not exist")
        from invarlock_provider.reporting.policy import load_tier

        load_tier(tier, Path(tiers))  # a bad file fails the plan, not the reports after hours of evaluation
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
        unknown = set(entry) - {"name", "edit", "model", "expect"}
        if unknown:
            raise BadInputError(f"{path}: subjects[{position}]: unknown keys {', '.join(sorted(unknown))}")
        expect = entry.get("expect", "PASS")
        if expect not in VERDICTS:
            raise BadInputError(f"{path}: subjects[{position}].expect must be PASS or FAIL, not {expect!r}")
        expectations[f"{name}_{tier}"] = expect  # the report BuildReportOperator names after the subject
        subjects.append({"run_name": name, "edit": edit, "model": entry.get("model") or ""})
    retention = raw.get("retention") or {}
    return {
        "preset": raw.get("preset"),
        "profile": profile,
        "tier": tier,
        "tiers": tiers,
        "baseline_model": (raw.get("baseline") or {}).get("model"),
        "subjects": subjects,
        "expectations": expectations,
        "retention_keep_last": retention.get("keep_last"),
        "retention_max_age": retention.get("max_age"),
    }


class NightlyPlanOperator(BaseOperator):
    """Read configs/nightly.yaml when the DAG runs. Returns the subjects (what the evaluations map
    over) and pushes the other settings under XCom key ``settings`` for the templates."""

    def execute(self, context: Any) -> list[dict[str, Any]]:
        plan = load_plan()
        context["ti"].xcom_push(key="settings", value={k: v for k, v in plan.items() if k != "subjects"})
        return plan["subjects"]


def plan_path() -> Path:
    return Path(os.environ.get(PLAN_ENV) or configs_dir() / "nightly.yaml")
