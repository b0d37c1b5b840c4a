"""How each report has moved over nights: one point per complete bundle, from its manifest.

A report name's history lists only ``<prefix>/<report name>/`` and reads one manifest per bundle
(in parallel), so it never touches other names' bundles. Reports are keyed by their path below the
prefix (``teamA/quant8`` and ``teamB/quant8`` are two histories). The ratio gate's limit is not in
the manifest; it is read from one evaluation per distinct policy digest the report was judged by.
A bundle whose manifest cannot be read, or that lists files that are not there, is no point: it is
reported by name in ``skipped``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from invarlock_provider.errors import InvarlockError
from invarlock_provider.reporting.evaluation import EVALUATION_FILE
from invarlock_provider.storage.bundle_reader import BundleSummary, list_bundles
from invarlock_provider.storage.objectstore import ObjectStore
from invarlock_provider.storage.uri import check_segment, join_key
from invarlock_provider.strict_json import loads_object


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


@dataclass
class History:
    """Points per report (its path below the prefix), oldest first, and the bundles left out, with why."""

    reports: dict[str, list[HistoryPoint]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def report_history(
    store: ObjectStore,
    prefix: str,
    report_name: str | None = None,
    *,
    since: timedelta | None = None,
    now: datetime | None = None,
    lister: Callable[[ObjectStore, str], list[BundleSummary]] = list_bundles,
) -> History:
    """Complete bundles under ``prefix`` (or only ``report_name``'s), oldest first, per report.
    ``lister`` finds them (the Airflow plugin passes one that remembers complete bundles)."""
    where = join_key(prefix, check_segment(report_name, "report name")) if report_name else prefix
    cutoff = (now or datetime.now(UTC)) - since if since is not None else None
    history = History()
    bundles = []
    for bundle in lister(store, where):
        if bundle.state == "damaged":
            history.skipped.append((bundle.uri, bundle.problem or "damaged"))
        elif bundle.complete and report_name in (None, bundle.report_name):
            bundles.append(bundle)
    if cutoff is not None:
        bundles = [b for b in bundles if b.created_at >= cutoff]  # type: ignore[operator]
    limits = _ratio_limits(store, bundles, history.skipped)
    for bundle in bundles:
        manifest = bundle.manifest or {}
        name = bundle.report_path[len(prefix) :].strip("/") if prefix else bundle.report_path
        history.reports.setdefault(name or bundle.report_name, []).append(
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
    history.reports = dict(sorted(history.reports.items()))
    return history


def _ratio_limits(
    store: ObjectStore, bundles: list[BundleSummary], skipped: list[tuple[str, str]]
) -> dict[str, float | None]:
    """The ratio gate's limit per policy digest, from the newest bundle judged by that policy; an
    evaluation that cannot say is reported and its policy drawn without a limit."""
    newest: dict[str, BundleSummary] = {}
    for bundle in bundles:
        newest[(bundle.manifest or {})["policy_digest"]] = bundle
    limits: dict[str, float | None] = {}
    for digest, bundle in newest.items():
        key = join_key(bundle.key, EVALUATION_FILE)
        limits[digest] = None
        try:
            evaluation = loads_object(store.read_bytes(key), store.uri.locate(key))
        except InvarlockError as exc:
            skipped.append((bundle.uri, f"no ratio limit: {exc}"))
            continue
        gates = evaluation.get("gates") if isinstance(evaluation.get("gates"), list) else []
        ratio_gate = next((g for g in gates if isinstance(g, dict) and g.get("name") == "ratio"), None)
        limit = ratio_gate.get("limit") if ratio_gate else None
        limits[digest] = float(limit) if isinstance(limit, (int, float)) and not isinstance(limit, bool) else None
    return limits
