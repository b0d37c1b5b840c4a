"""Acting on the nightly evidence from another DAG: read the triggering asset events, keep the PASS
bundles, write a promotion record for each into the evidence store.

The example consumer (dags/invarlock_promote_example.py) is scheduled on the nightly evidence
Asset; every archive task attaches the verdict, ratio and CI, tier, report name, bundle URI,
evidence id and the subject's model and weights digest to its asset event. An asset event is a
claim (an Airflow user who may create asset events can post one with any verdict), so a bundle
is promoted only after it verifies, from this operator's own target store and with the
deployment's trusted keys, with the verdict PASS. A record is ``<evidence prefix>/.promotions/
<report name>/<evidence id>.json``: the same bundle promoted twice writes the same record, so
retries are safe.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator

PROMOTIONS_FOLDER = ".promotions"
PROMOTION_SCHEMA = "invarlock.promotion/1"


class PromotePassingBundlesOperator(BaseOperator):
    """Write a promotion record for every PASS bundle among the triggering asset events."""

    template_fields: Sequence[str] = ("target", "conn_id")

    def __init__(self, *, target: str, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.conn_id = conn_id

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from invarlock_provider.airflow.hooks import EvidenceStoreHook
        from invarlock_provider.storage.bundle_reader import guarded, verify_remote_bundle
        from invarlock_provider.storage.signing import deployment_trust
        from invarlock_provider.storage.uri import check_evidence_id, check_segment
        from invarlock_provider.storage.workstore import put_bytes

        events = [event for batch in context["triggering_asset_events"].values() for event in batch]
        trust = deployment_trust()
        store = None
        promoted = []
        for event in events:
            extra = dict(event.extra or {})
            if not extra.get("bundle_uri"):
                self.log.info("skipped an event without evidence metadata: %s", extra)
                continue
            if extra.get("verdict") != "PASS":
                self.log.info("not promoted (%s): %s", extra.get("verdict"), extra["bundle_uri"])
                continue
            store = store or EvidenceStoreHook(self.conn_id or None).get_store(self.target)
            name = check_segment(str(extra["report_name"]), "report_name")
            evidence_id = check_evidence_id(str(extra["evidence_id"]), "evidence_id")
            base = store.uri.key(name, evidence_id)  # in this operator's target, whatever the event says
            uri = store.uri.locate(base)
            verified = guarded(uri, functools.partial(verify_remote_bundle, store, base, uri, trust))
            if not verified.ok or verified.verdict != "PASS":
                failed = verified.failed()[0].detail if not verified.ok else f"its verdict is {verified.verdict}"
                self.log.warning("not promoted, %s does not verify as PASS: %s", uri, failed)
                continue
            record = {
                "schema_version": PROMOTION_SCHEMA,
                **extra,
                "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "promoted_by": {"dag_id": context["dag"].dag_id, "run_id": context["run_id"]},
            }
            put_bytes(store, store.uri.key(PROMOTIONS_FOLDER, name, f"{evidence_id}.json"), json.dumps(record).encode())
            self.log.info(
                "promoted %s (ratio %s, %s)", extra["bundle_uri"], extra.get("ratio"), extra.get("subject_model")
            )
            promoted.append(record)
        return promoted
