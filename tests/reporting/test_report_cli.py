"""`invarlock report` and `invarlock verify` on real runs of the embedded model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from invarlock_provider.cli import main


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def build(subject: Path, baseline: Path, output: Path, *extra: str) -> dict:
    code, stdout, stderr = cli(
        "report",
        "--run",
        str(subject),
        "--baseline",
        str(baseline),
        "--format",
        "report",
        "--output",
        str(output),
        "--json",
        *extra,
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert Path(summary["report"]) == output / "evaluation.report.json"
    return json.loads((output / "evaluation.report.json").read_text())


def gate(evaluation: dict, name: str) -> dict:
    return next(g for g in evaluation["gates"] if g["name"] == name)


def rewrite(source: Path, target: Path, change) -> Path:
    """Copy a run report with one field changed: for faults a real run cannot produce."""
    data = json.loads(source.read_text())
    change(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2))
    return target


def test_noop_subject_passes(real_runs: dict[str, Path], tmp_path: Path) -> None:
    evaluation = build(real_runs["noop"], real_runs["baseline"], tmp_path / "reports" / "noop")
    assert evaluation["verdict"] == "PASS", evaluation["reasons"]
    metric = evaluation["primary_metric"]
    assert metric["ratio"] == pytest.approx(1.0, abs=1e-9)
    assert metric["ci"] == pytest.approx([1.0, 1.0], abs=1e-9)
    assert all(g["passed"] for g in evaluation["gates"])
    assert evaluation["pairing"]["ok"] is True
    assert {"ratio", "ratio_ci_upper", "min_tokens", "drift", "tail_q95", "pairing", "invariants", "spectral"} == {
        g["name"] for g in evaluation["gates"]
    }
    assert (tmp_path / "reports" / "noop" / "report.json").read_bytes() == real_runs["noop"].read_bytes()


def test_quant8_passes_with_a_ratio_near_one(real_runs: dict[str, Path], tmp_path: Path) -> None:
    evaluation = build(real_runs["quant8"], real_runs["baseline"], tmp_path / "q8")
    metric = evaluation["primary_metric"]
    assert evaluation["verdict"] == "PASS", evaluation["reasons"]
    assert metric["ratio"] != 1.0 and abs(metric["ratio"] - 1.0) < 1e-3
    assert metric["ci"][0] <= metric["ratio"] <= metric["ci"][1]
    assert evaluation["tier"] == "balanced"
    assert evaluation["policy"]["ratio_limit"] == 1.10
    assert evaluation["policy"]["hysteresis"] == 0.002


def test_damaged_subject_fails_on_ratio(real_runs: dict[str, Path], tmp_path: Path) -> None:
    evaluation = build(real_runs["damaged"], real_runs["baseline"], tmp_path / "damaged")
    assert evaluation["verdict"] == "FAIL"
    ratio_gate = gate(evaluation, "ratio")
    assert ratio_gate["passed"] is False and ratio_gate["value"] > 1.102
    assert ratio_gate["limit"] == pytest.approx(1.102)
    assert gate(evaluation, "ratio_ci_upper")["passed"] is False
    assert any(reason.startswith("ratio: ") for reason in evaluation["reasons"])


def test_fail_on_fail_exit_code(real_runs: dict[str, Path], tmp_path: Path) -> None:
    args = (
        "report",
        "--run",
        str(real_runs["damaged"]),
        "--baseline",
        str(real_runs["baseline"]),
        "--format",
        "report",
        "--output",
        str(tmp_path / "d"),
    )
    assert cli(*args)[0] == 0
    code, stdout, _ = cli(*args, "--fail-on-fail")
    assert code == 1
    assert stdout.startswith("FAIL [balanced] ratio ")
    assert (tmp_path / "d" / "evaluation.report.json").is_file()


def test_tiers_change_the_limit(real_runs: dict[str, Path], tmp_path: Path) -> None:
    balanced = build(real_runs["quant8"], real_runs["baseline"], tmp_path / "b")
    conservative = build(real_runs["quant8"], real_runs["baseline"], tmp_path / "c", "--tier", "conservative")
    assert gate(conservative, "ratio")["limit"] == pytest.approx(1.052)
    assert conservative["policy_digest"] != balanced["policy_digest"]
    # 200 final windows x 127 tokens is below the conservative tier's 40,000-token minimum.
    assert gate(conservative, "min_tokens")["passed"] is False
    assert gate(conservative, "min_tokens")["outcome"] == "insufficient"
    assert conservative["verdict"] == "INSUFFICIENT"


def test_promote_baseline_and_copy_baseline(real_runs: dict[str, Path], tmp_path: Path) -> None:
    code, stdout, _ = cli(
        "report",
        "--run",
        str(real_runs["baseline"]),
        "--format",
        "report",
        "--output",
        str(tmp_path / "reports" / "baseline"),
    )
    assert code == 0 and "baseline evidence" in stdout
    assert (tmp_path / "reports" / "baseline" / "report.json").read_bytes() == real_runs["baseline"].read_bytes()

    evaluation = build(
        real_runs["quant8"], real_runs["baseline"], tmp_path / "reports" / "quant8_balanced", "--copy-baseline"
    )
    assert evaluation["baseline"]["path"] == f"../baseline/by-sha256/{evaluation['baseline']['sha256']}/report.json"
    assert cli("verify", str(tmp_path / "reports" / "quant8_balanced"))[0] == 0


def test_with_events_copies_the_subject_timeline(real_runs: dict[str, Path], tmp_path: Path) -> None:
    build(real_runs["quant8"], real_runs["baseline"], tmp_path / "q", "--with-events")
    copied = (tmp_path / "q" / "events.jsonl").read_bytes()
    assert copied == (real_runs["quant8"].parent / "events.jsonl").read_bytes()


def test_run_accepts_folders_and_newest_run(real_runs: dict[str, Path], tmp_path: Path) -> None:
    by_name = build(real_runs["quant8"].parent.parent, real_runs["baseline"].parent.parent, tmp_path / "a")
    by_dir = build(real_runs["quant8"].parent, real_runs["baseline"].parent, tmp_path / "b")
    assert by_name["subject"]["sha256"] == by_dir["subject"]["sha256"]
    assert by_name["baseline"]["sha256"] == by_dir["baseline"]["sha256"]


def test_json_and_markdown_formats_print_without_writing(real_runs: dict[str, Path], tmp_path: Path) -> None:
    code, stdout, _ = cli(
        "report", "--run", str(real_runs["quant8"]), "--baseline", str(real_runs["baseline"]), "--format", "json"
    )
    assert code == 0
    summary = json.loads(stdout)
    assert summary["verdict"] == "PASS" and summary["ratio"] != 1.0 and len(summary["ci"]) == 2
    code, stdout, _ = cli(
        "report", "--run", str(real_runs["damaged"]), "--baseline", str(real_runs["baseline"]), "--format", "md"
    )
    assert code == 0
    assert stdout.startswith("# FAIL: ") and "| ratio |" in stdout


# --- pairing mismatches: FAIL with the field and both values --------------------------------------


def test_different_seed_fails_pairing_on_window_ids(real_runs: dict[str, Path], tmp_path: Path) -> None:
    evaluation = build(real_runs["reseeded"], real_runs["baseline"], tmp_path / "r")
    assert evaluation["verdict"] == "FAIL"
    assert evaluation["primary_metric"] is None
    failed = {c["field"] for c in evaluation["pairing"]["checks"] if not c["ok"]}
    assert {
        "data.windows_digest",
        "evaluation_windows.final.window_ids",
        "evaluation_windows.final.token_digests",
    } <= failed
    pairing = gate(evaluation, "pairing")
    assert pairing["passed"] is False
    assert "evaluation_windows.final.window_ids: subject " in pairing["detail"]
    assert gate(evaluation, "ratio")["comparison"] == "not evaluated"


@pytest.mark.parametrize(
    ("field_path", "value", "expected_field"),
    [
        (("data", "seq_len"), 1024, "data.seq_len"),
        (("data", "stride"), 64, "data.stride"),
        (("data", "final_n"), 199, "data.final_n"),
    ],
)
def test_each_scalar_mismatch_is_named(
    real_runs: dict[str, Path], tmp_path: Path, field_path: tuple[str, str], value: int, expected_field: str
) -> None:
    section, key = field_path
    subject = rewrite(
        real_runs["quant8"], tmp_path / "subject" / "report.json", lambda d: d[section].__setitem__(key, value)
    )
    evaluation = build(subject, real_runs["baseline"], tmp_path / "out")
    check = next(c for c in evaluation["pairing"]["checks"] if c["field"] == expected_field)
    assert check["ok"] is False and check["subject"] == value
    assert evaluation["verdict"] == "FAIL"
    assert f"{expected_field}: subject {value} != baseline" in gate(evaluation, "pairing")["detail"]


def test_token_digest_mismatch_is_named(real_runs: dict[str, Path], tmp_path: Path) -> None:
    def change(data: dict) -> None:
        data["evaluation_windows"]["final"]["token_digests"][5] = "0" * 64

    subject = rewrite(real_runs["quant8"], tmp_path / "s" / "report.json", change)
    evaluation = build(subject, real_runs["baseline"], tmp_path / "out")
    check = next(c for c in evaluation["pairing"]["checks"] if c["field"] == "evaluation_windows.final.token_digests")
    assert check["ok"] is False and check["subject"] == "0" * 64
    assert check["detail"] == "1 of 200 differ; first at position 5"


def test_window_count_mismatch_is_named(real_runs: dict[str, Path], tmp_path: Path) -> None:
    def change(data: dict) -> None:
        for name in ("window_ids", "token_digests", "logloss", "token_counts"):
            data["evaluation_windows"]["preview"][name] = data["evaluation_windows"]["preview"][name][:150]

    subject = rewrite(real_runs["quant8"], tmp_path / "s" / "report.json", change)
    evaluation = build(subject, real_runs["baseline"], tmp_path / "out")
    check = next(c for c in evaluation["pairing"]["checks"] if c["field"] == "evaluation_windows.preview.window_ids")
    assert (check["ok"], check["subject"], check["baseline"]) == (False, "150 values", "200 values")


# --- bad input: one line, exit 2, nothing written ---------------------------------------------------


def refused(tmp_path: Path, subject: Path, baseline: Path, pattern: str) -> None:
    import re

    output = tmp_path / "refused"
    code, _, stderr = cli(
        "report", "--run", str(subject), "--baseline", str(baseline), "--format", "report", "--output", str(output)
    )
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert re.search(pattern, stderr), stderr
    assert not (output / "evaluation.report.json").exists()


def test_missing_baseline(real_runs: dict[str, Path], tmp_path: Path) -> None:
    refused(tmp_path, real_runs["quant8"], tmp_path / "nope" / "report.json", r"report not found: .*nope")


def test_baseline_on_a_different_dataset(real_runs: dict[str, Path], tmp_path: Path) -> None:
    baseline = rewrite(
        real_runs["baseline"],
        tmp_path / "b" / "report.json",
        lambda d: d["data"].__setitem__("dataset_digest", "f" * 64),
    )
    refused(
        tmp_path,
        real_runs["quant8"],
        baseline,
        r"evaluated on a different dataset: data\.dataset_digest subject [0-9a-f]{64} vs baseline f{64}",
    )


def test_baseline_with_a_different_tokenizer(real_runs: dict[str, Path], tmp_path: Path) -> None:
    baseline = rewrite(
        real_runs["baseline"],
        tmp_path / "b" / "report.json",
        lambda d: d["meta"].__setitem__("tokenizer_hash", "e" * 64),
    )
    refused(tmp_path, real_runs["quant8"], baseline, r"different tokenizer: meta\.tokenizer_hash subject")


def test_unknown_schema_version(real_runs: dict[str, Path], tmp_path: Path) -> None:
    baseline = rewrite(
        real_runs["baseline"],
        tmp_path / "b" / "report.json",
        lambda d: d.__setitem__("schema_version", "invarlock.report/99"),
    )
    refused(tmp_path, real_runs["quant8"], baseline, r"unknown schema_version 'invarlock\.report/99'")


def test_truncated_json(real_runs: dict[str, Path], tmp_path: Path) -> None:
    truncated = tmp_path / "t" / "report.json"
    truncated.parent.mkdir()
    truncated.write_bytes(real_runs["baseline"].read_bytes()[:5000])
    refused(tmp_path, real_runs["quant8"], truncated, r"not valid JSON at line \d+ .*\(truncated or corrupt\?\)")


def test_aborted_run_without_metrics(real_runs: dict[str, Path], tmp_path: Path) -> None:
    subject = rewrite(real_runs["quant8"], tmp_path / "s" / "report.json", lambda d: d.pop("metrics"))
    refused(tmp_path, subject, real_runs["baseline"], r"no metrics\.primary_metric \(the run aborted")


# --- verify -------------------------------------------------------------------------------------------


@pytest.fixture
def evidence(real_runs: dict[str, Path], tmp_path: Path) -> Path:
    reports = tmp_path / "reports"
    build(real_runs["quant8"], real_runs["baseline"], reports / "quant8_balanced", "--copy-baseline")
    return reports


def test_verify_passes_on_untouched_evidence(evidence: Path) -> None:
    code, stdout, _ = cli("verify", str(evidence / "quant8_balanced"), "--json")
    assert code == 0
    result = json.loads(stdout)
    assert result["ok"] and result["verdict"] == "PASS"
    names = {c["name"] for c in result["checks"]}
    assert {
        "evaluation.content_digest",
        "subject.sha256",
        "baseline.sha256",
        "policy_digest",
        "pairing",
        "primary_metric.ratio",
        "primary_metric.ci_high",
        "verdict",
    } <= names


def referenced_baseline(evidence: Path) -> Path:
    """The baseline copy the evaluation references (an immutable, content-addressed copy)."""
    evaluation = json.loads((evidence / "quant8_balanced" / "evaluation.report.json").read_text())
    return evidence / "quant8_balanced" / evaluation["baseline"]["path"]


@pytest.mark.parametrize("target", ["quant8_balanced/evaluation.report.json", "quant8_balanced/report.json", None])
@pytest.mark.parametrize("fraction", [0.1, 0.35, 0.5, 0.65, 0.9])
def test_verify_catches_a_single_changed_byte(evidence: Path, target: str | None, fraction: float) -> None:
    path = evidence / target if target else referenced_baseline(evidence)
    data = bytearray(path.read_bytes())
    offset = int(len(data) * fraction)
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    code, stdout, stderr = cli("verify", str(evidence / "quant8_balanced"))
    assert code in (1, 2), stdout
    if code == 1:
        assert "FAIL " in stdout
    else:
        assert stderr.startswith("error: ")


def test_verify_names_the_changed_file(evidence: Path) -> None:
    path = referenced_baseline(evidence)
    data = json.loads(path.read_text())
    data["evaluation_windows"]["final"]["logloss"][0] += 0.5
    path.write_text(json.dumps(data, indent=2))
    code, stdout, _ = cli("verify", str(evidence / "quant8_balanced"))
    assert code == 1
    assert "FAIL baseline.sha256: " in stdout and f"{path.parent.name}/report.json changed" in stdout


def test_verify_recomputes_the_ratio_not_just_digests(evidence: Path) -> None:
    """A consistent forgery: the stored ratio edited and the content digest recomputed."""
    from invarlock_provider.fileio import write_json_atomic
    from invarlock_provider.reporting.evaluation import DIGEST_FIELD, content_digest

    path = evidence / "quant8_balanced" / "evaluation.report.json"
    evaluation = json.loads(path.read_text())
    evaluation["primary_metric"]["ratio"] = 0.5
    evaluation[DIGEST_FIELD] = content_digest(evaluation)
    write_json_atomic(path, evaluation)
    code, stdout, _ = cli("verify", str(evidence / "quant8_balanced"))
    assert code == 1
    assert "FAIL primary_metric.ratio: stored 0.5, recomputed 0.99" in stdout


def test_verify_malformed_and_missing(tmp_path: Path) -> None:
    code, _, stderr = cli("verify", str(tmp_path / "nothing"))
    assert code == 2 and "no such file or folder" in stderr
    (tmp_path / "evaluation.report.json").write_text('{"schema_version": "other/1"}')
    code, _, stderr = cli("verify", str(tmp_path))
    assert code == 2 and "unknown schema_version 'other/1'" in stderr


def test_verify_a_lone_run_report(real_runs: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "baseline"
    folder.mkdir()
    shutil.copy(real_runs["baseline"], folder / "report.json")
    code, stdout, _ = cli("verify", str(folder))
    assert code == 0 and "run_report consistent" in stdout


@pytest.mark.parametrize("role", ["subject", "baseline"])
@pytest.mark.parametrize(
    ("field", "value"),
    [("run_id", "another-run"), ("model_id", "gpt2-xl"), ("weights_digest", "0" * 64), ("edit", "quant4")],
)
def test_verify_checks_what_the_evaluation_says_about_each_run(
    evidence: Path, role: str, field: str, value: str
) -> None:
    """A consistent forgery: the evaluation names another run/model/edit and its digest is recomputed."""
    from invarlock_provider.fileio import write_json_atomic
    from invarlock_provider.reporting.evaluation import DIGEST_FIELD, content_digest

    path = evidence / "quant8_balanced" / "evaluation.report.json"
    evaluation = json.loads(path.read_text())
    original = evaluation[role][field]
    evaluation[role][field] = value
    evaluation[DIGEST_FIELD] = content_digest(evaluation)
    write_json_atomic(path, evaluation)
    code, stdout, _ = cli("verify", str(evidence / "quant8_balanced"))
    assert code == 1
    assert f"FAIL {role}.{field}: evaluation records {value!r}, the {role} report has {original!r}" in stdout
    assert stdout.count("FAIL ") == 1, stdout
