"""Checkpoints read as hostile input, and which one a retry resumes from."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.checkpoint import Checkpointer, choose_resume, decode, encode, key_differences

KEY = {"weights_digest": "a" * 64, "tokenizer_hash": "t", "dtype": "float32", "versions": {"torch": "2.13.0"}}
WINDOWS = {"preview": 4, "final": 4}


def saved(losses: dict[str, list[float]], key: dict = KEY, batch: int = 2, run_id: str = "r-1") -> bytes:
    return encode(run_id, key, batch, losses)


@settings(max_examples=80, deadline=None)
@given(
    preview=st.lists(st.floats(0, 50, allow_nan=False), max_size=4),
    final=st.lists(st.floats(0, 50, allow_nan=False), max_size=4),
)
def test_what_is_saved_is_read_back_exactly(preview: list[float], final: list[float]) -> None:
    if final and len(preview) < 4:
        final = []
    checkpoint = decode(saved({"preview": preview, "final": final}), "c", WINDOWS)
    assert checkpoint.logloss == {"preview": preview, "final": final}
    assert checkpoint.key == KEY and checkpoint.batch_size == 2 and checkpoint.run_id == "r-1"


def test_a_truncated_checkpoint_is_refused_by_name() -> None:
    raw = saved({"preview": [1.0, 2.0], "final": []})
    with pytest.raises(BadInputError, match=r"^s3://b/runs/x/\.tries/r/ckpt: "):
        decode(raw[: len(raw) // 2], "s3://b/runs/x/.tries/r/ckpt", WINDOWS)


def test_an_altered_value_that_still_parses_is_refused() -> None:
    document = json.loads(saved({"preview": [1.0, 2.0], "final": []}))
    document["body"]["logloss"]["preview"][0] = 0.5  # better than it was, and valid JSON
    with pytest.raises(BadInputError, match="differs from the sha256 it records"):
        decode(json.dumps(document).encode(), "c", WINDOWS)


@pytest.mark.parametrize(
    ("losses", "message"),
    [
        ({"preview": [1.0] * 5, "final": []}, "5 windows, this run has 4"),
        ({"preview": [1.0], "final": [2.0]}, "before the preview split was complete"),
        ({"preview": [-1.0], "final": []}, "finite NLL >= 0"),
    ],
)
def test_digest_consistent_but_impossible_checkpoints_are_refused(losses: dict, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        decode(saved(losses), "c", WINDOWS)


def test_the_checkpoint_with_most_windows_and_the_same_key_is_resumed() -> None:
    other_model = {**KEY, "weights_digest": "b" * 64}
    found = [
        ("few", saved({"preview": [1.0, 2.0], "final": []})),
        ("other-model", saved({"preview": [1.0] * 4, "final": [2.0] * 4}, key=other_model)),
        ("truncated", saved({"preview": [1.0] * 4, "final": [2.0, 2.0]})[:40]),
        ("most", saved({"preview": [1.0] * 4, "final": [2.0, 2.0]}, run_id="r-2")),
    ]
    discarded: list[tuple[str, str]] = []
    chosen = choose_resume(found, KEY, WINDOWS, 2, True, lambda where, why: discarded.append((where, why)))
    assert chosen is not None and chosen.where == "most" and chosen.run_id == "r-2" and chosen.windows == 6
    reasons = dict(discarded)
    assert (
        reasons["other-model"] == "weights_digest: checkpoint bbbbbbbbbbbb...bbbbbbbb, this run aaaaaaaaaaaa...aaaaaaaa"
    )
    assert "truncated" in reasons and set(reasons) == {"other-model", "truncated"}


def test_a_fixed_batch_size_that_differs_discards_the_checkpoint_and_auto_adopts_it() -> None:
    found = [("c", saved({"preview": [1.0] * 4, "final": []}, batch=8))]
    discarded: list[tuple[str, str]] = []
    assert choose_resume(found, KEY, WINDOWS, 2, True, lambda w, r: discarded.append((w, r))) is None
    assert discarded == [("c", "batch_size: checkpoint 8, this run 2")]
    assert choose_resume(found, KEY, WINDOWS, 2, False, lambda w, r: None).batch_size == 8


def test_a_newer_library_version_is_named_as_the_difference() -> None:
    newer = {**KEY, "versions": {"torch": "2.14.0"}}
    assert key_differences(KEY, newer) == ["versions.torch: checkpoint 2.13.0, this run 2.14.0"]


def test_checkpoints_are_saved_at_the_interval_and_at_split_ends() -> None:
    now = [0.0]
    written: list[bytes] = []
    counts: list[int] = []
    checkpointer = Checkpointer(
        written.append, "r", KEY, 2, 10.0, counts.append, lambda reason: None, clock=lambda: now[0]
    )
    losses: dict[str, list[float]] = {"preview": [], "final": []}
    for second in range(1, 26):
        now[0] = float(second)
        losses["preview"].append(1.0)
        checkpointer.maybe_save(losses)
    checkpointer.maybe_save(losses, force=True)
    checkpointer.maybe_save(losses, force=True)  # nothing new: not saved again
    assert counts == [10, 20, 25] and len(written) == 3
    assert decode(written[-1], "c", {"preview": 25, "final": 0}).logloss["preview"] == [1.0] * 25


def test_a_failed_save_is_reported_and_scoring_goes_on() -> None:
    def full(data: bytes) -> None:
        raise OSError(28, "No space left on device", "/scratch/checkpoint.json")

    failures: list[str] = []
    checkpointer = Checkpointer(full, "r", KEY, 2, 0.0, lambda done: None, failures.append)
    checkpointer.maybe_save({"preview": [1.0], "final": []}, force=True)
    assert failures == ["/scratch/checkpoint.json: No space left on device"] and checkpointer.count == 0
