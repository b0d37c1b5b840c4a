from __future__ import annotations

import json
from pathlib import Path

import pytest

from invarlock_provider.evaluation.events import MAX_STRING, REDACTED, EventLog, is_secret_key, sanitize


@pytest.mark.parametrize(
    "key", ["token", "hf_token", "HF_TOKEN", "authToken", "api_key", "aws_secret_access_key", "password", "db_passwd"]
)
def test_secret_keys_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["tokens", "token_count", "tokens_per_s", "tokenizer_hash", "keyword", "seq_len"])
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not is_secret_key(key)


def test_sanitize_redacts_nested_secrets_and_token_values() -> None:
    cleaned = sanitize({"auth": {"hf_token": "abc", "tokens": 5}, "cmd": "curl -H hf_" + "a" * 30})
    assert cleaned["auth"] == {"hf_token": REDACTED, "tokens": 5}
    assert cleaned["cmd"] == f"curl -H {REDACTED}"


def test_long_strings_are_truncated() -> None:
    cleaned = sanitize({"message": "x" * (MAX_STRING + 50)})
    assert cleaned["message"].startswith("x" * MAX_STRING)
    assert cleaned["message"].endswith("[truncated 50 chars]")


def test_event_lines_have_the_contract_fields(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", "run-1")
    log.emit("start", "run_started", password="hunter2", windows=3)
    log.emit("error", "run_failed", level="error", message="boom")
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [set(line) for line in lines] == [{"ts", "run_id", "phase", "event", "level", "data"}] * 2
    assert lines[0]["data"] == {"password": REDACTED, "windows": 3}
    assert lines[1]["level"] == "error"


def test_unknown_phase_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown phase"):
        EventLog(tmp_path / "e.jsonl", "r").emit("warmup", "x")
