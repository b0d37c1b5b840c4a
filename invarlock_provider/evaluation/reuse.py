"""Reusing a complete run whose numbers this run would reproduce, instead of scoring again.

A nightly scores the baseline and every unchanged subject each night although nothing that decides
their numbers has changed. Before scoring, a run builds its reuse key: everything a window's NLL
depends on (the checkpoint key: weights digest after the edit, tokenizer hash, windows digest and
counts, sequence length, dtype, device class, scoring path, software versions) plus the resolved
preset and profile, batch size excepted (a window's NLL does not depend on it; see
``batching.py``). Only a complete run of the same name whose recorded key equals this one in
every field, whose windows are exactly this run's (ids, token digests, token counts) and whose
report parses strictly is reused; its per-window NLL becomes this run's, recorded with
``meta.reused_from``. lm-evaluation-harness's cache once served one model's scores for another
because its key missed the model: here the key holds the weights as loaded and edited, not a name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.checkpoint import key_differences
from invarlock_provider.fileio import canonical_json, sha256_bytes
from invarlock_provider.reporting.run_report import SPLITS, parse_run_report
from invarlock_provider.run_sites import MAX_REPORT_BYTES

REUSE_KEY_SCHEMA = "invarlock.reuse-key/1"
# The newest complete runs of a name that are looked at; an older match is a stale configuration.
MAX_CANDIDATES = 3
# A recorded perplexity and the one recomputed from its NLL agree to rounding, or the report was edited.
PPL_TOLERANCE = 1e-9


def reuse_key(scoring_key: dict[str, Any], snapshot: dict[str, Any], profile: str | None) -> dict[str, Any]:
    """``scoring_key`` is the checkpoint key; ``snapshot`` the resolved preset as the report records it."""
    preset = {section: dict(values) if isinstance(values, dict) else values for section, values in snapshot.items()}
    preset["eval"] = {k: v for k, v in preset.get("eval", {}).items() if k != "batch_size"}
    return {"schema": REUSE_KEY_SCHEMA, **scoring_key, "preset": preset, "profile": profile}


def key_sha256(key: dict[str, Any]) -> str:
    return sha256_bytes(canonical_json(key))


@dataclass(frozen=True)
class Reused:
    """The run whose numbers this run takes: where its report is, its digest, and who scored them."""

    where: str
    run_id: str
    report_sha256: str
    scored_run_id: str
    logloss: dict[str, list[float]]

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
    earlier = data["meta"].get("reused_from")
    scored_by = earlier.get("scored_run_id") if isinstance(earlier, dict) else None
    return Reused(
        where=where,
        run_id=report.run_id,
        report_sha256=report.sha256,
        scored_run_id=scored_by if isinstance(scored_by, str) else report.run_id,
        logloss=logloss,
    )
