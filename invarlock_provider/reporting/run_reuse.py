"""Whether an earlier run of the same name reproduces this one: its report read as hostile input.

The reuse key is built by the run (``evaluation/reuse.py``); here each candidate report is parsed
strictly, its recorded key compared field by field, its windows and tasks checked against this
run's and its perplexities recomputed from its NLL, before its numbers are taken.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.checkpoint import key_differences
from invarlock_provider.evaluation.reuse import key_sha256
from invarlock_provider.reporting.run_report import SPLITS, parse_run_report
from invarlock_provider.run_sites import MAX_REPORT_BYTES

# The newest complete runs of a name that are looked at; an older match is a stale configuration.
MAX_CANDIDATES = 3
# A recorded perplexity and the one recomputed from its NLL agree to rounding, or the report was edited.
PPL_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Reused:
    """The run whose numbers this run takes: where its report is, its digest, and who scored them."""

    where: str
    run_id: str
    report_sha256: str
    scored_run_id: str
    logloss: dict[str, list[float]]
    tasks: list[dict[str, Any]]

    def as_record(self, key: dict[str, Any]) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "report": self.where,
            "report_sha256": self.report_sha256,
            "scored_run_id": self.scored_run_id,
            "key_sha256": key_sha256(key),
        }


def find_reusable(
    candidates: Iterable[tuple[str, bytes]],
    key: dict[str, Any],
    windows: Any,
    passed_over: Callable[[str, str], None],
) -> Reused | None:
    """The first candidate (newest first) that reproduces this run; each one passed over is reported
    to ``passed_over`` (where, why), so a run that scores again says what changed."""
    for number, (where, raw) in enumerate(candidates):
        if number == MAX_CANDIDATES:
            break
        try:
            return _reusable(where, raw, key, windows)
        except BadInputError as exc:
            passed_over(where, str(exc).removeprefix(f"{where}: "))
    return None


def _reusable(where: str, raw: bytes, key: dict[str, Any], windows: Any) -> Reused:
    if not raw:
        raise BadInputError(f"{where}: empty or larger than {MAX_REPORT_BYTES} bytes")
    report = parse_run_report(raw, Path(where), "earlier")
    data = report.data
    theirs = data["meta"].get("reuse_key")
    if not isinstance(theirs, dict):
        raise BadInputError(f"{where}: records no reuse key (made by an older version)")
    differences = key_differences(theirs, key, "earlier run")
    if differences:
        raise BadInputError(f"{where}: {'; '.join(differences)}")
    seq_len = key["seq_len"]
    logloss: dict[str, list[float]] = {}
    for split in SPLITS:
        block = report.windows(split)
        ids = list(getattr(windows.plan, f"{split}_ids"))
        if block["window_ids"] != ids or block["token_digests"] != windows.digests(split):
            raise BadInputError(f"{where}: evaluation_windows.{split} are not this run's windows")
        if block["token_counts"] != [seq_len - 1] * len(ids):
            raise BadInputError(f"{where}: evaluation_windows.{split}.token_counts are not this run's")
        logloss[split] = [float(v) for v in block["logloss"]]
        recorded = data["metrics"]["primary_metric"].get(split)
        recomputed = math.exp(sum(logloss[split]) / len(ids)) if ids else None
        if recorded is None or recomputed is None or not math.isclose(recorded, recomputed, rel_tol=PPL_TOLERANCE):
            raise BadInputError(f"{where}: metrics.primary_metric.{split} is not the perplexity of its windows")
    tasks = data.get("tasks", [])
    if [block.get("examples_sha256") for block in tasks] != [task["examples_sha256"] for task in key["tasks"]]:
        raise BadInputError(f"{where}: its tasks are not the ones its reuse key names")
    earlier = data["meta"].get("reused_from")
    scored_by = earlier.get("scored_run_id") if isinstance(earlier, dict) else None
    return Reused(
        where=where,
        run_id=report.run_id,
        report_sha256=report.sha256,
        scored_run_id=scored_by if isinstance(scored_by, str) else report.run_id,
        logloss=logloss,
        tasks=tasks,
    )
