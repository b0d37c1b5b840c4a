"""Reusing an earlier run's numbers: only under an equal reuse key, never across models, and never
from an earlier report that does not hold up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invarlock_provider.cli import main
from invarlock_provider.evaluation.reuse import reuse_key
from invarlock_provider.fileio import canonical_json
from invarlock_provider.reporting.run_reuse import find_reusable

CI = ["--profile", "ci"]


def run(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["run", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    return {"summary": summary, "report": json.loads(Path(summary["report"]).read_text())}


def events(report: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    run_dir = out / report["run_id"].split("-", 1)[1].rsplit("-", 1)[0]
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reused(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("runs") / "base"
    first = run(*CI, "--out", str(out))
    second = run(*CI, "--out", str(out))
    return {"out": out, "first": first, "second": second}


def test_an_unchanged_run_reuses_the_earlier_runs_numbers_in_a_run_of_its_own(reused: dict[str, Any]) -> None:
    first, second = reused["first"]["report"], reused["second"]["report"]
    assert first["meta"]["reused_from"] is None
    record = second["meta"]["reused_from"]
    assert record["report"] == reused["first"]["summary"]["report"]
    assert record["run_id"] == record["scored_run_id"] == first["run_id"]
    assert record["report_sha256"] == reused["first"]["summary"]["report_sha256"]
    assert second["run_id"] != first["run_id"]
    assert reused["second"]["summary"]["run_dir"] != reused["first"]["summary"]["run_dir"]
    for split in ("preview", "final"):
        assert second["evaluation_windows"][split] == first["evaluation_windows"][split]
    assert second["metrics"]["primary_metric"] == first["metrics"]["primary_metric"]
    assert second["metrics"]["throughput_tokens_per_s"] is None
    assert second["meta"]["scoring"]["batch"]["method"] == "none: scores reused"
    assert [g["name"] for g in second["guards"]] == [g["name"] for g in first["guards"]], "guards still measured"
    timeline = [e["event"] for e in events(second, reused["out"])]
    assert "run_reused" in timeline and timeline[-1] == "report_written"


def test_a_reused_run_is_reused_again_naming_the_run_that_scored(reused: dict[str, Any]) -> None:
    third = run(*CI, "--out", str(reused["out"]))["report"]
    record = third["meta"]["reused_from"]
    assert record["run_id"] == reused["second"]["report"]["run_id"]
    assert record["scored_run_id"] == reused["first"]["report"]["run_id"]


def test_no_reuse_scores_again_and_agrees(reused: dict[str, Any]) -> None:
    fresh = run(*CI, "--out", str(reused["out"]), "--no-reuse")["report"]
    assert fresh["meta"]["reused_from"] is None and fresh["metrics"]["throughput_tokens_per_s"] is not None
    for split in ("preview", "final"):
        ours, theirs = fresh["evaluation_windows"][split], reused["first"]["report"]["evaluation_windows"][split]
        assert max(abs(a - b) for a, b in zip(ours["logloss"], theirs["logloss"], strict=True)) < 1e-6


def test_weights_changed_in_place_under_the_same_model_path_are_scored_again(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """lm-evaluation-harness's cache keyed on the model name and served one model's scores for
    another; here the same folder with other weights is another model."""
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "runs" / "subject"
    first = run(*CI, "--model", str(model), "--out", str(out))["report"]
    tensors = load_file(model / "model.safetensors")
    name = next(n for n in sorted(tensors) if n.endswith("mlp.c_fc.weight"))
    tensors[name] = tensors[name] * 1.01
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    second = run(*CI, "--model", str(model), "--out", str(out))["report"]
    assert second["meta"]["reused_from"] is None
    assert second["meta"]["weights_digest"] != first["meta"]["weights_digest"]
    passed_over = [e for e in events(second, out) if e["event"] == "run_not_reused"]
    assert len(passed_over) == 1 and passed_over[0]["data"]["reason"].startswith("weights_digest: earlier run ")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--seed", "7"], "preset.seed"),
        (["--edit", "quant8"], "preset.edit.name"),
        (["--profile", "dev"], "preset.dataset.final_n"),
    ],
)
def test_a_changed_setting_is_scored_again_and_named(reused: dict[str, Any], args: list[str], field: str) -> None:
    profile = [] if "--profile" in args else CI
    report = run(*profile, *args, "--out", str(reused["out"]))["report"]
    assert report["meta"]["reused_from"] is None
    reasons = [e["data"]["reason"] for e in events(report, reused["out"]) if e["event"] == "run_not_reused"]
    assert reasons and all(f"{field}: earlier run " in reason for reason in reasons)


def test_a_newer_library_is_scored_again(reused: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import invarlock_provider.evaluation.run as engine

    real = engine._versions
    monkeypatch.setattr(engine, "_versions", lambda: {**real(), "transformers": "99.0.0"})
    report = run(*CI, "--out", str(reused["out"]))["report"]
    assert report["meta"]["reused_from"] is None
    reasons = [e["data"]["reason"] for e in events(report, reused["out"]) if e["event"] == "run_not_reused"]
    assert reasons and all("versions.transformers: earlier run" in reason for reason in reasons)


# --- the earlier report as hostile input ------------------------------------------------------------


def windows_of(report: dict[str, Any]) -> Any:
    """The windows this run selected, as the engine hands them to the lookup."""
    blocks = report["evaluation_windows"]
    return SimpleNamespace(
        plan=SimpleNamespace(
            preview_ids=tuple(blocks["preview"]["window_ids"]), final_ids=tuple(blocks["final"]["window_ids"])
        ),
        digests=lambda split: list(blocks[split]["token_digests"]),
    )


def lookup(report: dict[str, Any], key: dict[str, Any], windows: Any) -> tuple[Any, list[str]]:
    reasons: list[str] = []
    found = find_reusable(
        [("earlier/report.json", canonical_json(report))], key, windows, lambda _, r: reasons.append(r)
    )
    return found, reasons


def leaves(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        return [leaf for name, item in value.items() for leaf in leaves(item, (*path, name))]
    return [path]


def replaced(value: dict[str, Any], path: tuple[str, ...], new: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(value))
    target = copy
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = new
    return copy


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_one_changed_field_of_the_key_means_a_fresh_run(reused: dict[str, Any], data: st.DataObject) -> None:
    earlier = reused["first"]["report"]
    key = earlier["meta"]["reuse_key"]
    windows = windows_of(earlier)
    assert lookup(earlier, key, windows)[0] is not None
    path = data.draw(st.sampled_from(leaves(key)))
    old = key
    for name in path:
        old = old[name]
    new = data.draw(
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.lists(st.integers(), max_size=2)
        ).filter(lambda v: canonical_json(v) != canonical_json(old))
    )
    found, reasons = lookup(earlier, replaced(key, path, new), windows)
    assert found is None
    assert reasons[0].startswith(".".join(path) + ": earlier run ") or f"; {'.'.join(path)}: " in reasons[0]


def test_a_value_equal_in_python_but_not_in_json_is_a_difference(reused: dict[str, Any]) -> None:
    earlier = reused["first"]["report"]
    key = earlier["meta"]["reuse_key"]
    found, reasons = lookup(earlier, replaced(key, ("seq_len",), float(key["seq_len"])), windows_of(earlier))
    assert found is None and reasons[0].startswith("seq_len: earlier run ")


def test_the_key_holds_the_preset_but_not_the_batch_size(reused: dict[str, Any]) -> None:
    snapshot = reused["first"]["report"]["preset"]["resolved"]
    scoring = {"weights_digest": "a" * 64}
    key = reuse_key(scoring, snapshot, "ci")
    other_batch = {**snapshot, "eval": {**snapshot["eval"], "batch_size": 64}}
    assert reuse_key(scoring, other_batch, "ci") == key
    assert reuse_key(scoring, snapshot, "dev") != key
    assert reuse_key({"weights_digest": "b" * 64}, snapshot, "ci") != key


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda r: r["evaluation_windows"]["final"]["logloss"].__setitem__(0, 0.5),
            "is not the perplexity of its windows",
        ),
        (
            lambda r: r["evaluation_windows"]["final"]["token_digests"].__setitem__(0, "0" * 64),
            "are not this run's windows",
        ),
        (lambda r: r["meta"].pop("reuse_key"), "records no reuse key"),
        (lambda r: r["evaluation_windows"]["preview"]["logloss"].pop(), "different lengths"),
        (lambda r: r.__setitem__("schema_version", "x"), "unknown schema_version"),
    ],
)
def test_an_earlier_report_that_does_not_hold_up_is_passed_over(
    reused: dict[str, Any], change: Any, reason: str
) -> None:
    earlier = json.loads(json.dumps(reused["first"]["report"]))
    key = earlier["meta"]["reuse_key"]
    windows = windows_of(reused["first"]["report"])
    change(earlier)
    found, reasons = lookup(earlier, key, windows)
    assert found is None and reason in reasons[0]


def test_a_digest_consistent_but_malformed_earlier_report_is_passed_over(reused: dict[str, Any]) -> None:
    windows = windows_of(reused["first"]["report"])
    key = reused["first"]["report"]["meta"]["reuse_key"]
    reasons: list[str] = []
    candidates = [("a/report.json", b'{"schema_version": '), ("b/report.json", b"")]
    assert find_reusable(candidates, key, windows, lambda _, r: reasons.append(r)) is None
    assert len(reasons) == 2
