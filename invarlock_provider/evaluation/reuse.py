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
The key is built here; an earlier report is read and judged as evidence by
``reporting/run_reuse.py``, which the command hands to the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from invarlock_provider.fileio import canonical_json, sha256_bytes

REUSE_KEY_SCHEMA = "invarlock.reuse-key/1"


def reuse_key(
    scoring_key: dict[str, Any],
    snapshot: dict[str, Any],
    profile: str | None,
    tasks: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """``scoring_key`` is the checkpoint key; ``snapshot`` the resolved preset as the report records
    it; ``tasks`` each task's name and the sha256 of its file and of its selected examples."""
    preset = {section: dict(values) if isinstance(values, dict) else values for section, values in snapshot.items()}
    preset["eval"] = {k: v for k, v in preset.get("eval", {}).items() if k != "batch_size"}
    return {"schema": REUSE_KEY_SCHEMA, **scoring_key, "preset": preset, "profile": profile, "tasks": list(tasks)}


def key_sha256(key: dict[str, Any]) -> str:
    return sha256_bytes(canonical_json(key))
