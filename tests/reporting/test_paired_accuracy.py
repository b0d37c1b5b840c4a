"""Paired accuracy statistics against references: scipy's exact binomial test and Wilson interval,
and the published Newcombe paired interval (contingencytables, Fagerland, Lydersen and Laake,
"Statistical Analysis of Contingency Tables", chapter 8: Cavo et al. 2012)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from invarlock_provider.reporting.paired_accuracy import (
    PairedTable,
    mcnemar_exact_p,
    newcombe_paired_interval,
    paired_accuracy,
    wilson_interval,
)


def test_newcombe_matches_the_published_example() -> None:
    # Rows: first assessment right/wrong; columns: second right/wrong (59, 6 / 16, 80).
    table = PairedTable(both=59, subject_only=6, baseline_only=16, neither=80)
    result = paired_accuracy(table)
    assert round(result.difference, 4) == -0.0621
    lower, upper = result.interval
    assert (round(lower, 4), round(upper, 4)) == (-0.1186, -0.0046)


@pytest.mark.parametrize(("b", "c"), [(0, 0), (0, 1), (6, 16), (16, 6), (3, 3), (40, 61), (0, 25), (500, 560)])
def test_mcnemar_is_scipys_exact_binomial_test_of_the_discordant_pairs(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else binomtest(min(b, c), b + c, 0.5).pvalue
    assert mcnemar_exact_p(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_beyond_exact_integers_agrees_with_scipy() -> None:
    assert mcnemar_exact_p(15_000, 15_400) == pytest.approx(binomtest(15_000, 30_400, 0.5).pvalue, rel=1e-6)
    assert mcnemar_exact_p(1_000, 5_000) == pytest.approx(binomtest(1_000, 6_000, 0.5).pvalue, rel=1e-6)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 5000), share=st.floats(0, 1))
def test_wilson_is_scipys(n: int, share: float) -> None:
    successes = round(share * n)
    reference = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    lower, upper = wilson_interval(successes, n)
    assert lower == pytest.approx(reference.low, abs=1e-12) and upper == pytest.approx(reference.high, abs=1e-12)


tables = st.builds(
    PairedTable, st.integers(0, 400), st.integers(0, 60), st.integers(0, 60), st.integers(0, 400)
).filter(lambda t: t.n > 0)


@settings(max_examples=500, deadline=None)
@given(table=tables)
def test_the_interval_holds_the_difference_and_swapping_sides_mirrors_it(table: PairedTable) -> None:
    result = paired_accuracy(table)
    lower, upper = result.interval
    assert -1 <= lower <= result.difference <= upper <= 1
    swapped = PairedTable(table.both, table.baseline_only, table.subject_only, table.neither)
    mirror = newcombe_paired_interval(swapped)
    assert mirror[0] == pytest.approx(-upper, abs=1e-12) and mirror[1] == pytest.approx(-lower, abs=1e-12)
    assert 0 < result.mcnemar_p <= 1


def test_counts_from_per_example_correctness() -> None:
    table = PairedTable.from_correctness([True, True, False, False, True], [True, False, True, False, True])
    assert table == PairedTable(both=2, subject_only=1, baseline_only=1, neither=1)
    with pytest.raises(ValueError, match="differ in length"):
        PairedTable.from_correctness([True], [True, False])
