"""The arrivals DAG's first task: find checkpoints uploaded since the last poll and claim each once.

The plan (``INVARLOCK_NIGHTLY_CONFIG``) says how to judge them (preset, profile, tier, tiers file,
baseline) and, under ``arrivals:``, where to look; ``INVARLOCK_ARRIVALS_URI`` overrides the watched
prefix. Claims are kept in the work store (``storage/arrivals.py``), keyed by this DAG run, so a
retry of this task offers the same checkpoints and no other run offers them again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from invarlock_provider.airflow.defaults import work_root
from invarlock_provider.airflow.nightly import load_plan, plan_location, plan_store_settings

ARRIVALS_ENV = "INVARLOCK_ARRIVALS_URI"


class ArrivalsOperator(BaseOperator):
    """Return the newly claimed checkpoints as evaluation kwargs (what the evaluations map over) and
    push the plan's settings under XCom key ``settings``, as the nightly's ``plan`` task does. With
    nothing new the task is skipped, and the evaluations, reports and gate with it.

    ``watch`` (a store URI or a folder) and ``marker`` override the plan's ``arrivals:``; ``conn_id``
    reaches the watched bucket, the plan and the work store that holds the claims.
    """

    template_fields: Sequence[str] = ("watch", "marker", "conn_id")

    def __init__(
        self, *, watch: str | None = None, marker: str | None = None, conn_id: str | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("retries", 2)  # a retry finds this run's own claims again
        super().__init__(**kwargs)
        self.watch = watch
        self.marker = marker
        self.conn_id = conn_id

    def execute(self, context: Any) -> list[dict[str, str]]:
        from airflow.sdk.exceptions import AirflowSkipException

        from invarlock_provider.airflow.hooks import EvidenceStoreHook
        from invarlock_provider.airflow.operators._common import task_failure
        from invarlock_provider.errors import InvarlockError
        from invarlock_provider.storage.arrivals import DEFAULT_MARKER, claimed_arrivals
        from invarlock_provider.storage.stores import open_store
        from invarlock_provider.storage.uri import bundle_location

        ti = context["ti"]
        try:
            plan = load_plan(plan_location(), plan_store_settings(self.conn_id))
            section = plan.get("arrivals") or {}
            watch = self.watch or os.environ.get(ARRIVALS_ENV) or section.get("watch")
            if not watch:
                raise AirflowSkipException(
                    f"no watched prefix: set arrivals.watch in {plan_location()} or {ARRIVALS_ENV}"
                )
            marker = self.marker or section.get("marker") or DEFAULT_MARKER
            settings = EvidenceStoreHook(self.conn_id or None).s3_settings
            watched_root, prefix = bundle_location(watch)
            claims_root, claims_prefix = bundle_location(_existing(work_root()))
            owner = f"{ti.dag_id}/{ti.run_id}"
            watched, claims = open_store(watched_root, settings), open_store(claims_root, settings)
            arrivals = claimed_arrivals(watched, prefix, claims, claims_prefix, owner, marker)
        except InvarlockError as exc:
            raise task_failure(exc, self.conn_id) from None
        if not arrivals:
            raise AirflowSkipException(f"no new complete checkpoint under {watch} (marker {marker})")
        for arrival in arrivals:
            self.log.info("evaluating %s (complete since %s)", arrival.uri, arrival.marker_time.isoformat())
        tier = plan["tier"]
        shared = {k: v for k, v in plan.items() if k not in ("subjects", "expectations")}
        ti.xcom_push(key="settings", value={**shared, "expectations": {f"{a.name}_{tier}": "PASS" for a in arrivals}})
        return [{"run_name": a.name, "model": a.uri, "edit": "noop", "revision": ""} for a in arrivals]


def _existing(root: str) -> str:
    """The local work folder is made on first use, as the evaluations make it."""
    if "://" not in root:
        Path(root).mkdir(parents=True, exist_ok=True)
    return root
