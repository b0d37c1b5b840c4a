"""Window arithmetic: which token windows a run evaluates, and their digests.

Pure and torch-free so it can be tested exactly. Selection ranks candidate windows by
sha256(seed:index) rather than a library RNG, whose streams are allowed to change between numpy
releases: the same corpus tokens + seed give the same windows on any machine, forever.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from invarlock_provider.errors import BadInputError

MAX_CANDIDATES = 2_000_000


@dataclass(frozen=True)
class WindowPlan:
    """The windows chosen for a run; ids are candidate indices (start = id * stride)."""

    preview_ids: tuple[int, ...]
    final_ids: tuple[int, ...]
    candidates: int


def candidate_count(n_tokens: int, window_len: int, stride: int) -> int:
    if n_tokens < window_len:
        return 0
    return (n_tokens - window_len) // stride + 1


def plan_windows(n_tokens: int, window_len: int, stride: int, preview_n: int, final_n: int, seed: int) -> WindowPlan:
    """Pick disjoint preview and final windows, each listed in corpus order."""
    candidates = candidate_count(n_tokens, window_len, stride)
    wanted = preview_n + final_n
    if candidates < wanted:
        raise BadInputError(
            f"corpus too short: {n_tokens} tokens fit {candidates} windows of {window_len} tokens "
            f"(stride {stride}), but preview_n + final_n = {wanted} were requested; "
            f"lower the window counts to at most {candidates} in total or use a longer corpus"
        )
    if candidates > MAX_CANDIDATES:
        raise BadInputError(
            f"corpus too long: {n_tokens} tokens give {candidates} candidate windows (stride {stride}), more than "
            f"the {MAX_CANDIDATES} a report may record (verify recomputes the selection); raise the stride"
        )
    preview_ids, final_ids = select_window_ids(candidates, preview_n, final_n, seed)
    return WindowPlan(preview_ids=preview_ids, final_ids=final_ids, candidates=candidates)


@functools.lru_cache(maxsize=32)
def select_window_ids(candidates: int, preview_n: int, final_n: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """The preview and final window ids the seed picks among ``candidates``, each in corpus order.

    ``verify`` calls this too: the ids a report lists must be exactly these, so no window can be
    dropped or swapped after the fact. Cached, since subject and baseline share their selection."""
    ranked = heapq.nsmallest(preview_n + final_n, range(candidates), key=lambda index: _rank(seed, index))
    return tuple(sorted(ranked[:preview_n])), tuple(sorted(ranked[preview_n:]))


def _rank(seed: int, index: int) -> bytes:
    return hashlib.sha256(f"{seed}:{index}".encode()).digest()


def window_tokens(stream: np.ndarray, window_id: int, window_len: int, stride: int) -> np.ndarray:
    start = window_id * stride
    return stream[start : start + window_len]


def token_digest(token_ids: Sequence[int] | np.ndarray) -> str:
    """sha256 of the window's token ids as little-endian int32: stable across platforms."""
    return hashlib.sha256(np.asarray(token_ids, dtype="<i4").tobytes()).hexdigest()


def windows_digest(windows: Sequence[np.ndarray]) -> str:
    """sha256 over all selected token ids, preview windows first, then final."""
    digest = hashlib.sha256()
    for window in windows:
        digest.update(np.asarray(window, dtype="<i4").tobytes())
    return digest.hexdigest()
