"""Paired accuracy of two models on the same examples: the change, its interval, and whether the
discordant examples could be chance.

Both models answer the same examples, so the comparison is paired: what matters is the examples one
side gets right and the other wrong. An unpaired z-test (lm-evaluation-harness's model comparator)
ignores that pairing and is too wide when the models agree on most examples. Here:

- the difference is subject accuracy minus baseline accuracy (negative: the subject lost accuracy);
- its interval is Newcombe's square-and-add interval for paired proportions (Newcombe 1998,
  "Improved confidence intervals for the difference between binomial proportions based on paired
  data", method 10): Wilson score intervals for each side, combined with the correlation of the
  pair (phi, continuity-corrected as in the paper);
- McNemar's exact test: under "no change" each discordant example is equally likely to favour
  either side, so the two-sided p-value is that of a Binomial(b + c, 1/2) count as extreme as the
  smaller of the two.

Pure Python, so the library needs no scipy; the tests compare with scipy and published values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

# Up to this many discordant examples the binomial tail is summed in exact integers.
EXACT_LIMIT = 20_000


@dataclass(frozen=True)
class PairedTable:
    """The paired 2x2 table: ``both`` right, ``subject_only`` right, ``baseline_only`` right, ``neither``."""

    both: int
    subject_only: int
    baseline_only: int
    neither: int

    @classmethod
    def from_correctness(cls, subject: Sequence[bool], baseline: Sequence[bool]) -> PairedTable:
        if len(subject) != len(baseline):
            raise ValueError(f"paired results differ in length: {len(subject)} and {len(baseline)}")
        pairs = list(zip(subject, baseline, strict=True))
        return cls(
            both=sum(s and b for s, b in pairs),
            subject_only=sum(s and not b for s, b in pairs),
            baseline_only=sum(b and not s for s, b in pairs),
            neither=sum(not s and not b for s, b in pairs),
        )

    @property
    def n(self) -> int:
        return self.both + self.subject_only + self.baseline_only + self.neither

    @property
    def subject_correct(self) -> int:
        return self.both + self.subject_only

    @property
    def baseline_correct(self) -> int:
        return self.both + self.baseline_only


@dataclass(frozen=True)
class PairedAccuracy:
    table: PairedTable
    subject_accuracy: float
    baseline_accuracy: float
    difference: float
    interval: tuple[float, float]
    mcnemar_p: float
    confidence: float

    def as_record(self) -> dict[str, object]:
        return {
            "n": self.table.n,
            "subject_accuracy": self.subject_accuracy,
            "baseline_accuracy": self.baseline_accuracy,
            "difference": self.difference,
            "interval": list(self.interval),
            "confidence": self.confidence,
            "mcnemar_p": self.mcnemar_p,
            "discordant": {"subject_only": self.table.subject_only, "baseline_only": self.table.baseline_only},
            "concordant": {"both": self.table.both, "neither": self.table.neither},
            "method": {"interval": "newcombe-paired-wilson (method 10)", "test": "mcnemar-exact"},
        }


def paired_accuracy(table: PairedTable, confidence: float = 0.95) -> PairedAccuracy:
    if table.n == 0:
        raise ValueError("no paired examples")
    subject = table.subject_correct / table.n
    baseline = table.baseline_correct / table.n
    return PairedAccuracy(
        table=table,
        subject_accuracy=subject,
        baseline_accuracy=baseline,
        difference=subject - baseline,
        interval=newcombe_paired_interval(table, confidence),
        mcnemar_p=mcnemar_exact_p(table.subject_only, table.baseline_only),
        confidence=confidence,
    )


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for one proportion."""
    if not 0 <= successes <= n or n == 0:
        raise ValueError(f"expected 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_paired_interval(table: PairedTable, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's method 10 for subject accuracy minus baseline accuracy."""
    n = table.n
    p1, p2 = table.subject_correct / n, table.baseline_correct / n
    l1, u1 = wilson_interval(table.subject_correct, n, confidence)
    l2, u2 = wilson_interval(table.baseline_correct, n, confidence)
    margins = (table.subject_correct, n - table.subject_correct, table.baseline_correct, n - table.baseline_correct)
    phi = 0.0
    if all(margins):
        cross = table.both * table.neither - table.subject_only * table.baseline_only
        if cross > n / 2:
            corrected = cross - n / 2
        elif cross >= 0:
            corrected = 0.0
        else:
            corrected = cross
        phi = corrected / math.sqrt(math.prod(margins))
    difference = p1 - p2
    lower = difference - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = difference + math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    return max(-1.0, lower), min(1.0, upper)


def mcnemar_exact_p(subject_only: int, baseline_only: int) -> float:
    """Two-sided exact McNemar p-value: 2 * P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2), at most 1."""
    if subject_only < 0 or baseline_only < 0:
        raise ValueError("discordant counts must be >= 0")
    n = subject_only + baseline_only
    smaller = min(subject_only, baseline_only)
    if n == 0 or 2 * smaller == n:
        return 1.0
    if n <= EXACT_LIMIT:
        term, tail = 1, 1  # C(n, 0)
        for k in range(1, smaller + 1):
            term = term * (n - k + 1) // k
            tail += term
        return min(1.0, _twice_share(tail, n))
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) for k in range(smaller + 1)]
    top = max(logs)
    log_tail = top + math.log(sum(math.exp(v - top) for v in logs)) - n * math.log(2)
    return min(1.0, 2 * math.exp(log_tail))


def _twice_share(tail: int, n: int) -> float:
    """2 * tail / 2**n, for a tail too large for a float too (its top 60 bits are plenty)."""
    shift = max(0, tail.bit_length() - 60)
    return math.ldexp(tail >> shift, shift + 1 - n)
