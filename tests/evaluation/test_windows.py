from __future__ import annotations

import hashlib

import numpy as np
import pytest

from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.windows import (
    candidate_count,
    plan_windows,
    token_digest,
    window_tokens,
    windows_digest,
)


@pytest.mark.parametrize(
    ("n_tokens", "window_len", "stride", "expected"),
    [
        (0, 4, 4, 0),
        (3, 4, 4, 0),
        (4, 4, 4, 1),
        (7, 4, 4, 1),
        (8, 4, 4, 2),
        (10, 4, 2, 4),
        (11, 4, 2, 4),
        (12, 4, 2, 5),
    ],
)
def test_candidate_count_is_exact(n_tokens: int, window_len: int, stride: int, expected: int) -> None:
    assert candidate_count(n_tokens, window_len, stride) == expected


def test_plan_is_a_golden_function_of_seed() -> None:
    plan = plan_windows(n_tokens=40, window_len=4, stride=4, preview_n=3, final_n=3, seed=42)
    assert plan.candidates == 10
    assert plan.preview_ids == (0, 1, 6)
    assert plan.final_ids == (4, 7, 9)


def test_plan_is_disjoint_sorted_and_seed_dependent() -> None:
    first = plan_windows(10_000, 128, 128, 20, 30, seed=7)
    again = plan_windows(10_000, 128, 128, 20, 30, seed=7)
    other = plan_windows(10_000, 128, 128, 20, 30, seed=8)
    assert first == again
    assert first != other
    assert not set(first.preview_ids) & set(first.final_ids)
    assert list(first.preview_ids) == sorted(first.preview_ids)
    assert list(first.final_ids) == sorted(first.final_ids)
    assert len(first.preview_ids) == 20 and len(first.final_ids) == 30


def test_short_corpus_says_how_many_windows_fit() -> None:
    with pytest.raises(BadInputError, match=r"fit 3 windows of 128 tokens .*requested"):
        plan_windows(n_tokens=400, window_len=128, stride=128, preview_n=2, final_n=2, seed=1)


def test_window_tokens_slices_by_stride() -> None:
    stream = np.arange(20)
    assert window_tokens(stream, 2, 4, 3).tolist() == [6, 7, 8, 9]


def test_digests_hash_little_endian_int32() -> None:
    expected = hashlib.sha256(np.array([1, 2, 3], dtype="<i4").tobytes()).hexdigest()
    assert token_digest([1, 2, 3]) == expected
    assert token_digest(np.array([1, 2, 3], dtype=np.int64)) == expected
    joined = hashlib.sha256(np.array([1, 2, 3, 4], dtype="<i4").tobytes()).hexdigest()
    assert windows_digest([np.array([1, 2]), np.array([3, 4])]) == joined
