"""Task files read strictly: each bad line named, selection by a seeded rank of ids."""

from __future__ import annotations

import json
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_provider.errors import BadInputError
from invarlock_provider.resources import resolve_embedded
from invarlock_provider.task_file import examples_digest, first_max, parse_task_file, select_examples


def lines(*records: object) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


GOOD = {"id": "a", "context": "The sky is", "choices": ["blue.", "green."], "gold": 0}


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{**GOOD, "gold": 2}], "t.jsonl:1: gold 2 is out of range (expected an index 0-1)"),
        ([{**GOOD, "gold": True}], "t.jsonl:1: gold True is out of range"),
        ([GOOD, GOOD], "t.jsonl:2: duplicate id 'a' (first at line 1)"),
        ([{**GOOD, "choices": ["blue.", ""]}], "t.jsonl:1: choices: every choice must be a non-empty string"),
        ([{**GOOD, "choices": ["only"]}], "t.jsonl:1: choices: expected a list of 2 to 26 strings"),
        ([GOOD, {"id": "b", "query": "x", "choices": ["a", "b"], "label": 0}], "t.jsonl:2: expected exactly the keys"),
        ([{**GOOD, "extra": 1}], "unknown extra"),
        (['{"id": "a", "context": NaN}'], "t.jsonl:1: not a JSON object"),
        (["[1, 2]"], "t.jsonl:1: expected a JSON object, got list"),
        ([{**GOOD, "id": ""}], "t.jsonl:1: id: expected a non-empty string"),
        ([], "t.jsonl: no examples"),
    ],
)
def test_a_bad_task_file_is_named_by_line(records: list[object], message: str) -> None:
    with pytest.raises(BadInputError, match=re.escape(message)):
        parse_task_file(lines(*records), "t.jsonl")


def test_a_task_file_that_is_not_utf8_is_named() -> None:
    with pytest.raises(BadInputError, match=re.escape("t.jsonl: not UTF-8 text")):
        parse_task_file(b"\xff\xfe", "t.jsonl")


def test_the_embedded_example_task_parses() -> None:
    examples = parse_task_file(resolve_embedded("embedded:pydocs-next-sentence.jsonl").read_bytes(), "embedded")
    assert len(examples) > 500 and all(len(e.choices) == 4 for e in examples)
    assert {e.gold for e in examples} == {0, 1, 2, 3}


ids = st.lists(st.text("abcdefghij0123456789-", min_size=1, max_size=8), min_size=1, max_size=60, unique=True)


@settings(max_examples=200, deadline=None)
@given(names=ids, limit=st.integers(1, 80), seed=st.integers(0, 2**32), shuffle_seed=st.integers(0, 100))
def test_selection_depends_on_ids_and_seed_not_on_file_order(names, limit, seed, shuffle_seed) -> None:
    records = [{"id": n, "context": "c", "choices": ["x", "y"], "gold": 1} for n in names]
    shuffled = list(records)
    random.Random(shuffle_seed).shuffle(shuffled)
    first = select_examples(parse_task_file(lines(*records), "a"), limit, seed)
    second = select_examples(parse_task_file(lines(*shuffled), "b"), limit, seed)
    assert len(first) == min(limit, len(names))
    assert {e.id for e in first} == {e.id for e in second}
    assert examples_digest(first) == examples_digest(sorted(second, key=lambda e: names.index(e.id)))


def test_ties_go_to_the_first_choice_as_numpy_argmax() -> None:
    assert first_max([-1.0, -0.5, -0.5]) == 1 and first_max([0.0]) == 0
