"""Pairing checks: were subject and baseline scored on exactly the same tokens?

Two kinds of disagreement are told apart. A different dataset or tokenizer means the baseline is
the wrong file altogether: that is bad input and no evaluation is written. Any other difference
(windows, counts, lengths, token digests) is recorded as a failed pairing check with both values,
and the evaluation FAILs; nothing is ever paired on a silently chosen subset.
"""

from __future__ import annotations

import re
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
# A value longer than this is cut to its first _SHOWN characters: twelve hex digits tell two digests
# apart, and the whole one is in the evaluation's pairing checks.
_MAX_SHOWN = 20
_SHOWN = 12
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
    """Refuse a baseline built on another dataset or tokenizer, in one line: both values of the field,
    or of both fields (abbreviated) when both differ, so neither hides behind the other. Two lm-eval
    imports record neither (their tasks are paired example by example instead)."""
    from invarlock_provider.reporting.lm_eval_reports import both_from_lm_eval

    unrecorded = both_from_lm_eval(subject, baseline)
    checks = []
    for section, key in IDENTITY_FIELDS:
        ours = subject.data[section].get(key)
        theirs = baseline.data[section].get(key)
        checks.append(
            PairingCheck(f"{section}.{key}", ours, theirs, ours == theirs and (ours is not None or unrecorded))
        )
    wrong = [check for check in checks if not check.ok]
    if len(wrong) == 1:
        check = wrong[0]
        what = "dataset" if check.field == "data.dataset_digest" else "tokenizer"
        raise BadInputError(
            f"baseline {baseline.path} was evaluated on a different {what}: "
            f"{check.field} subject {check.subject} vs baseline {check.baseline}"
        )
    if wrong:
        values = "; ".join(f"{c.field} subject {_shown(c.subject)} vs baseline {_shown(c.baseline)}" for c in wrong)
        raise BadInputError(f"baseline {baseline.path} was evaluated on a different dataset and tokenizer: {values}")
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
    """One line for one mismatched field, both values abbreviated (a list is recorded as a count, or
    as its first difference with how many differ)."""
    extra = f" ({check.detail})" if check.detail else ""
    return f"{check.field}: subject {_shown(check.subject)} != baseline {_shown(check.baseline)}{extra}"


def explain(mismatches: list[PairingCheck]) -> str:
    """The pairing gate's detail: one line per mismatched field. Runs of different profiles differ in
    nine fields; joined on one line they made a ~900 character sentence nobody could read."""
    return "\n".join(describe(check) for check in mismatches)


def _shown(value: Any) -> str:
    """A value from a run report (hostile input to verify): abbreviated, and never a line break."""
    text = _CONTROL.sub("?", str(value))
    return text if len(text) <= _MAX_SHOWN else f"{text[:_SHOWN]}..."
