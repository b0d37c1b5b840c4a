"""How each report name has moved over nights: one point per complete bundle, from its manifest.

A report name's history lists only ``<prefix>/<report name>/`` and reads one manifest per bundle
(in parallel), so it never touches other names' bundles. The ratio gate's limit is not in the
manifest; it is read from one evaluation per distinct policy digest the name was judged by.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.reporting.evaluation import EVALUATION_FILE
from invarlock_provider.storage.archive import BundleSummary, list_bundles
from invarlock_provider.storage.objectstore import ObjectStore
from invarlock_provider.storage.uri import check_segment, join_key


@dataclass(frozen=True)
class HistoryPoint:
    report_name: str
    evidence_id: str
    uri: str
    key: str
    created_at: datetime
    verdict: str
    ratio: float | None
    ci: list[float] | None
    tier: str
    ratio_limit: float | None  # the ratio gate's limit this bundle was judged by
    policy_digest: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": self.created_at.isoformat(timespec="seconds")}


def report_history(
    store: ObjectStore,
    prefix: str,
    report_name: str | None = None,
    *,
    since: timedelta | None = None,
    now: datetime | None = None,
) -> dict[str, list[HistoryPoint]]:
    """Complete bundles under ``prefix`` (or only ``report_name``'s), oldest first, per report name."""
    where = join_key(prefix, check_segment(report_name, "report name")) if report_name else prefix
    cutoff = (now or datetime.now(UTC)) - since if since is not None else None
    bundles = [
        b
        for b in list_bundles(store, where)
        if b.complete and b.created_at is not None and report_name in (None, b.report_name)
    ]
    if cutoff is not None:
        bundles = [b for b in bundles if b.created_at >= cutoff]
    limits = _ratio_limits(store, bundles)
    history: dict[str, list[HistoryPoint]] = {}
    for bundle in bundles:
        manifest = bundle.manifest or {}
        history.setdefault(bundle.report_name, []).append(
            HistoryPoint(
                report_name=bundle.report_name,
                evidence_id=bundle.evidence_id,
                uri=bundle.uri,
                key=bundle.key,
                created_at=bundle.created_at,
                verdict=manifest["verdict"],
                ratio=manifest.get("ratio"),
                ci=manifest.get("ci"),
                tier=manifest["tier"],
                ratio_limit=limits.get(manifest["policy_digest"]),
                policy_digest=manifest["policy_digest"],
            )
        )
    return dict(sorted(history.items()))


def _ratio_limits(store: ObjectStore, bundles: list[BundleSummary]) -> dict[str, float | None]:
    """The ratio gate's limit per policy digest, from the newest bundle judged by that policy."""
    newest: dict[str, BundleSummary] = {}
    for bundle in bundles:
        newest[(bundle.manifest or {})["policy_digest"]] = bundle
    limits: dict[str, float | None] = {}
    for digest, bundle in newest.items():
        key = join_key(bundle.key, EVALUATION_FILE)
        try:
            evaluation = json.loads(store.read_bytes(key))
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{store.uri.locate(key)}: not valid JSON ({exc.msg})") from None
        ratio_gate = next((g for g in evaluation.get("gates", []) if g.get("name") == "ratio"), None)
        limits[digest] = ratio_gate["limit"] if ratio_gate else None
    return limits
