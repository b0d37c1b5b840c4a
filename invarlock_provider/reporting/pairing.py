"""Pairing checks: were subject and baseline scored on exactly the same tokens?

Two kinds of disagreement are told apart. A different dataset or tokenizer means the baseline is
the wrong file altogether: that is bad input and no evaluation is written. Any other difference
(windows, counts, lengths, token digests) is recorded as a failed pairing check with both values,
and the evaluation FAILs; nothing is ever paired on a silently chosen subset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.reporting.run_report import SPLITS, RunReport

IDENTITY_FIELDS = (("data", "dataset_digest"), ("meta", "tokenizer_hash"))
SCALAR_FIELDS = (
    ("data", "seq_len"),
    ("data", "stride"),
    ("data", "preview_n"),
    ("data", "final_n"),
    ("data", "windows_digest"),
)
LIST_FIELDS = ("window_ids", "token_digests", "token_counts")


@dataclass(frozen=True)
class PairingCheck:
    field: str
    subject: Any
    baseline: Any
    ok: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "subject": self.subject,
            "baseline": self.baseline,
            "ok": self.ok,
            "detail": self.detail,
        }


def require_same_identity(subject: RunReport, baseline: RunReport) -> list[PairingCheck]:
    """Refuse a baseline built on another dataset or tokenizer (one line, both values)."""
    checks = []
    for section, key in IDENTITY_FIELDS:
        ours = subject.data[section].get(key)
        theirs = baseline.data[section].get(key)
        if ours != theirs or ours is None:
            raise BadInputError(
                f"baseline {baseline.path} was evaluated on a different "
                f"{'dataset' if key == 'dataset_digest' else 'tokenizer'}: "
                f"{section}.{key} subject {ours} vs baseline {theirs}"
            )
        checks.append(PairingCheck(f"{section}.{key}", ours, theirs, True))
    return checks


def pairing_checks(subject: RunReport, baseline: RunReport) -> list[PairingCheck]:
    checks = require_same_identity(subject, baseline)
    for section, key in SCALAR_FIELDS:
        ours = subject.data[section].get(key)
        theirs = baseline.data[section].get(key)
        checks.append(PairingCheck(f"{section}.{key}", ours, theirs, ours == theirs))
    for split in SPLITS:
        for name in LIST_FIELDS:
            checks.append(
                _compare_lists(
                    f"evaluation_windows.{split}.{name}", subject.windows(split)[name], baseline.windows(split)[name]
                )
            )
    return checks


def _compare_lists(field: str, ours: list[Any], theirs: list[Any]) -> PairingCheck:
    if ours == theirs:
        return PairingCheck(field, f"{len(ours)} equal values", f"{len(theirs)} equal values", True)
    if len(ours) != len(theirs):
        return PairingCheck(field, f"{len(ours)} values", f"{len(theirs)} values", False, "different lengths")
    position = next(i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b)
    differing = sum(1 for a, b in zip(ours, theirs, strict=True) if a != b)
    return PairingCheck(
        field,
        ours[position],
        theirs[position],
        False,
        f"{differing} of {len(ours)} differ; first at position {position}",
    )


def describe(check: PairingCheck) -> str:
    extra = f" ({check.detail})" if check.detail else ""
    return f"{check.field}: subject {check.subject} != baseline {check.baseline}{extra}"
