"""`invarlock run` end to end on the real embedded model (real torch, real transformers)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from invarlock_provider.cli import main

DEV = ["--profile", "dev"]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["run", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_ok(*args: str) -> dict:
    code, stdout, stderr = invoke(*args, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    return json.loads(Path(summary["report"]).read_text())


@pytest.fixture(scope="module")
def baseline_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    out = tmp_path_factory.mktemp("runs") / "baseline"
    first = run_ok(*DEV, "--out", str(out))
    second = run_ok(*DEV, "--out", str(out), "--no-reuse")  # scored again: the numbers must agree
    return first, second, out


def test_two_runs_are_identical(baseline_pair: tuple[dict, dict, Path]) -> None:
    first, second, _ = baseline_pair
    assert first["run_id"] != second["run_id"]
    for key in ("dataset_digest", "windows_digest"):
        assert first["data"][key] == second["data"][key]
    assert first["meta"]["tokenizer_hash"] == second["meta"]["tokenizer_hash"]
    assert first["meta"]["weights_digest"] == second["meta"]["weights_digest"]
    for split in ("preview", "final"):
        a, b = first["evaluation_windows"][split], second["evaluation_windows"][split]
        assert a["window_ids"] == b["window_ids"]
        assert a["token_digests"] == b["token_digests"]
        assert max(abs(x - y) for x, y in zip(a["logloss"], b["logloss"], strict=True)) < 1e-6


def test_latest_resolves_to_the_newest_run(baseline_pair: tuple[dict, dict, Path]) -> None:
    _, second, out = baseline_pair
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(runs) == 2
    assert all((run / "report.json").is_file() and (run / "events.jsonl").is_file() for run in runs)
    latest = json.loads((out / "report.json").read_text())
    assert latest["run_id"] == second["run_id"]


def test_report_has_the_contract_fields(baseline_pair: tuple[dict, dict, Path]) -> None:
    report = baseline_pair[0]
    meta, data, metrics = report["meta"], report["data"], report["metrics"]
    assert report["schema_version"] == "invarlock.report/1"
    assert set(meta["seeds"]) == {"python", "numpy", "torch"}
    assert meta["device"] == "cpu" and meta["dtype"] == "float32"
    assert meta["determinism"]["torch_deterministic_algorithms"] is True
    assert {"torch", "transformers", "invarlock_provider"} <= set(meta["versions"])
    assert {"load_s", "edit_s", "guards_s", "windows_s", "score_s", "total_s"} <= set(meta["timings"])
    assert (data["seq_len"], data["stride"], data["preview_n"], data["final_n"]) == (128, 128, 32, 32)
    final = report["evaluation_windows"]["final"]
    assert len(final["window_ids"]) == len(final["logloss"]) == len(final["token_counts"]) == 32
    assert set(final["token_counts"]) == {127}
    ppl = metrics["primary_metric"]
    assert ppl["kind"] == "ppl"
    weighted = sum(loss * n for loss, n in zip(final["logloss"], final["token_counts"], strict=True))
    assert ppl["final"] == pytest.approx(math.exp(weighted / sum(final["token_counts"])), rel=1e-12)
    # The embedded model learned English: far below the 4,096-token vocabulary.
    assert ppl["final"] < 4096 / 20
    assert metrics["throughput_tokens_per_s"] > 0
    assert metrics["peak_memory_bytes"] > 0
    assert report["edit"]["name"] == "noop"
    assert [(g["name"], g["passed"], g["violations"]) for g in report["guards"]] == [
        ("invariants", True, []),
        ("spectral", True, []),
    ]
    overhead = meta["timings"]["guards_s"] / meta["timings"]["score_s"]
    assert metrics["guard_overhead_of_scoring"] == pytest.approx(overhead)


def test_events_cover_every_phase_in_order(baseline_pair: tuple[dict, dict, Path]) -> None:
    run_dir = sorted(p for p in baseline_pair[2].iterdir() if p.is_dir())[0]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    phases = ["start", "load", "edit", "guards", "guards", "windows", "score", "finalize"]
    assert [e["phase"] for e in events] == phases
    assert {e["run_id"] for e in events} == {baseline_pair[0]["run_id"]}


def test_engine_matches_plain_transformers(
    baseline_pair: tuple[dict, dict, Path], tiny_model_dir: Path, corpus_path: Path
) -> None:
    """An independent reference: tokenize with the tokenizer, slice, model(ids, labels=ids)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report = baseline_pair[0]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    stream = tokenizer(corpus_path.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    seq_len = report["data"]["seq_len"]
    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for window_id in report["evaluation_windows"]["final"]["window_ids"]:
            ids = torch.tensor([stream[window_id * seq_len : (window_id + 1) * seq_len]])
            loss = model(ids, labels=ids).loss.item()
            total_nll += loss * (seq_len - 1)
            total_tokens += seq_len - 1
    reference = math.exp(total_nll / total_tokens)
    engine = report["metrics"]["primary_metric"]["final"]
    assert abs(engine - reference) / reference < 1e-5


def test_quant8_changes_weights_and_moves_nll_slightly(baseline_pair: tuple[dict, dict, Path], tmp_path: Path) -> None:
    """int8 per-channel RTN is close to lossless on this small model (no outlier channels): every
    window's NLL moves, the mean by far less than 1e-3 nats. The sign of the mean is within noise
    here (+3e-5 +- 2e-5 over 1,000 windows); test_edits shows NLL rising as precision drops."""
    baseline = baseline_pair[0]
    subject = run_ok(*DEV, "--edit", "quant8", "--out", str(tmp_path / "quant8"))
    assert subject["meta"]["weights_digest"] != baseline["meta"]["weights_digest"]
    assert subject["meta"]["weights_digest_before_edit"] == baseline["meta"]["weights_digest"]
    assert subject["data"]["windows_digest"] == baseline["data"]["windows_digest"]
    edit = subject["edit"]
    assert edit["name"] == "quant8" and edit["params"]["bits"] == 8
    assert len(edit["modules_changed"]) == 16  # 4 blocks x (c_attn, c_proj, c_fc, mlp.c_proj)
    deltas = [
        s - b
        for s, b in zip(
            subject["evaluation_windows"]["final"]["logloss"],
            baseline["evaluation_windows"]["final"]["logloss"],
            strict=True,
        )
    ]
    assert sum(d != 0 for d in deltas) >= 0.9 * len(deltas)
    assert abs(sum(deltas) / len(deltas)) < 1e-3


def test_bfloat16_stays_close_to_float32(baseline_pair: tuple[dict, dict, Path], tmp_path: Path) -> None:
    baseline = baseline_pair[0]
    subject = run_ok(*DEV, "--dtype", "bfloat16", "--out", str(tmp_path / "bf16"))
    assert subject["meta"]["dtype"] == "bfloat16"
    pairs = zip(
        subject["evaluation_windows"]["final"]["logloss"],
        baseline["evaluation_windows"]["final"]["logloss"],
        strict=True,
    )
    assert max(abs(a - b) for a, b in pairs) < 5e-2


def test_batch_size_does_not_change_scores(baseline_pair: tuple[dict, dict, Path], tmp_path: Path) -> None:
    baseline = baseline_pair[0]
    single = run_ok(*DEV, "--batch-size", "1", "--out", str(tmp_path / "b1"))
    pairs = zip(
        single["evaluation_windows"]["final"]["logloss"],
        baseline["evaluation_windows"]["final"]["logloss"],
        strict=True,
    )
    assert max(abs(a - b) for a, b in pairs) < 1e-5


def test_console_script_exit_code_and_one_line_error(tmp_path: Path) -> None:
    executable = Path(sys.executable).with_name("invarlock")
    result = subprocess.run(
        [str(executable), "run", "-c", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "runs" / "x")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"error: preset file not found: {tmp_path / 'missing.yaml'}\n"
    assert not (tmp_path / "runs").exists()


# --- bad input: one clear line, non-zero exit, no report.json anywhere -------------------------------


def assert_refused(out: Path, args: list[str], pattern: str, code: int = 2, loaded: bool = False) -> str:
    """One ``error:`` line; a run refused after its model loaded has said how far it got before it."""
    exit_code, _, stderr = invoke(*args, "--out", str(out))
    assert exit_code == code, stderr
    *progress, last = stderr.strip().splitlines()
    assert bool(progress) == loaded and all(line.startswith("invarlock run: [") for line in progress), stderr
    assert re.search(pattern, last), last
    if out.parent.is_dir():
        assert not list(out.parent.rglob("report.json"))
    return last


def test_malformed_yaml_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {id: x\n")
    assert_refused(tmp_path / "runs" / "x", ["-c", str(bad)], r"^error: .*bad\.yaml: malformed YAML at line")


def test_unknown_model_path_is_refused(tmp_path: Path) -> None:
    assert_refused(
        tmp_path / "runs" / "x",
        [*DEV, "--model", str(tmp_path / "no-such-model")],
        r"^error: model path not found or not a directory: .*no-such-model$",
    )


def test_uncached_hub_model_offline_is_refused(tmp_path: Path) -> None:
    assert_refused(
        tmp_path / "runs" / "x",
        [*DEV, "--model", "openai-community/gpt2"],
        r"not a local directory or in the Hugging Face cache; network is off: set INVARLOCK_ALLOW_NETWORK=1",
    )


def test_tokenizer_model_vocab_mismatch_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    model_dir = tmp_path / "mismatched"
    shutil.copytree(tiny_model_dir, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.add_tokens([f"<extra_{i}>" for i in range(8)])
    tokenizer.save_pretrained(model_dir)
    assert_refused(
        tmp_path / "runs" / "x",
        [*DEV, "--model", str(model_dir)],
        r"tokenizer/model mismatch: tokenizer has 4104 tokens but the model's embedding has 4096 rows",
    )


def test_short_corpus_says_how_many_windows_fit(tmp_path: Path, write_preset) -> None:
    corpus = tmp_path / "short.txt"
    corpus.write_text("The quick brown fox jumps over the lazy dog. " * 60)
    preset = write_preset({"dataset": {"path": str(corpus)}})
    assert_refused(
        tmp_path / "runs" / "x",
        ["-c", str(preset)],
        r"corpus too short: \d+ tokens fit \d+ windows of 128 tokens \(stride 128\), but preview_n \+ "
        r"final_n = 400 were requested",
        loaded=True,
    )


def test_seq_len_beyond_model_context_is_refused(tmp_path: Path, write_preset) -> None:
    preset = write_preset({"dataset": {"seq_len": 512, "stride": 512, "preview_n": 4, "final_n": 4}})
    assert_refused(
        tmp_path / "runs" / "x",
        ["-c", str(preset)],
        r"dataset\.seq_len 512 is longer than the model's context of 256 tokens",
    )


def saved_variant(source: Path, target: Path, change) -> Path:
    """A copy of a checkpoint with its weights changed in memory and saved again."""
    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(source, target)
    model = AutoModelForCausalLM.from_pretrained(target)
    with torch.no_grad():
        change(model)
    model.save_pretrained(target)
    return target


def run_events(out: Path) -> list[dict]:
    run_dir = next(p for p in out.iterdir() if p.is_dir())
    return [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]


def test_nan_logits_abort_naming_the_window(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Finite weights (the invariants guard passes) whose activations overflow to inf and nan."""

    def overflow(model) -> None:
        model.transformer.ln_f.weight[0] = 3e38

    model_dir = saved_variant(tiny_model_dir, tmp_path / "overflow-model", overflow)
    out = tmp_path / "runs" / "nan"
    line = assert_refused(
        out,
        [*DEV, "--model", str(model_dir)],
        r"non-finite loss \((nan|inf)\) in window preview/\d+; .*aborting without a report",
        code=3,
        loaded=True,
    )
    assert "preview/" in line
    events = run_events(out)
    assert events[-1]["phase"] == "error" and events[-1]["level"] == "error"
    assert not (out / "report.json").exists()


def test_nan_weight_fails_invariants_before_scoring(tmp_path: Path, tiny_model_dir: Path) -> None:
    def poison(model) -> None:
        model.transformer.h[1].mlp.c_fc.weight[3, 7] = float("nan")

    model_dir = saved_variant(tiny_model_dir, tmp_path / "nan-model", poison)
    out = tmp_path / "runs" / "nan"
    assert_refused(
        out,
        [*DEV, "--model", str(model_dir)],
        r"^error: invariants guard failed before scoring: non-finite values in transformer\.h\.1\.mlp\.c_fc\.weight "
        r"\(1 nan, 0 inf\); aborting without a report$",
        code=3,
        loaded=True,
    )
    events = run_events(out)
    phases = [e["phase"] for e in events]
    assert phases == ["start", "load", "edit", "guards", "error"], "nothing may be scored after a failed guard"
    guard = events[3]
    assert guard["level"] == "error" and guard["data"]["guard"] == "invariants" and guard["data"]["passed"] is False
    assert not (out / "report.json").exists()


def test_unwritable_output_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_refused(blocker / "runs" / "x", [*DEV], r"^error: output dir not writable: .*a-file/runs/x")


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--edit", "quant:bits=16"], r"^error: --edit: bits must be 2-8, got 16$"),
        (["--edit", "prune:amount=0.5"], r"^error: --edit: unknown parameter 'amount'; expected sparsity$"),
    ],
)
def test_bad_edit_parameters_and_uris_are_refused_before_loading(tmp_path: Path, args: list[str], pattern: str) -> None:
    assert_refused(tmp_path / "runs" / "x", [*DEV, *args], pattern)


def test_an_out_uri_is_understood_or_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, stderr = invoke(*DEV, "--out", "gs://bucket/runs/x")
    assert (
        code == 2
        and stderr.strip() == "error: gs://bucket/runs/x: expected a local path, file:///PATH or s3://BUCKET/PREFIX"
    )
    assert list(tmp_path.iterdir()) == [], "nothing written, no folder named gs:"
    report = run_ok(*DEV, "--out", (tmp_path / "runs" / "local").as_uri())
    assert (tmp_path / "runs" / "local" / "report.json").is_symlink() and report["run_id"].startswith("local-")


def test_a_preset_edit_is_checked_naming_the_file(tmp_path: Path, write_preset) -> None:
    preset = write_preset({"edit": {"name": "prune:sparsity=2"}})
    assert_refused(
        tmp_path / "runs" / "x",
        ["-c", str(preset)],
        r"^error: .*preset\.yaml: edit\.name: sparsity must be in \[0, 1\)",
    )


def test_prune_edit_is_recorded_in_the_report(tmp_path: Path) -> None:
    report = run_ok(*DEV, "--edit", "prune:sparsity=0.3", "--out", str(tmp_path / "runs" / "pruned"))
    assert report["edit"]["name"] == "prune" and report["edit"]["spec"] == "prune:sparsity=0.3"
    assert report["edit"]["params"]["sparsity"] == 0.3
    assert report["edit"]["achieved_sparsity"] == pytest.approx(0.3, abs=1e-3)
