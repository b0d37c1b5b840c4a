"""Paired task accuracy in evaluations: the three outcomes of a task gate, pairing by id (a smaller
run must hold the seed's first examples of the larger), the verdict, exit codes, and verify
recomputing every task number; an evaluation written before tasks and three outcomes still verifies."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_provider.cli import main
from invarlock_provider.reporting.evaluation import DIGEST_FIELD, content_digest
from invarlock_provider.reporting.paired_accuracy import PairedTable, paired_accuracy
from invarlock_provider.reporting.policy import default_tiers_path, load_tier, policy_digest, verdict_of
from invarlock_provider.reporting.task_pairing import compare_tasks
from invarlock_provider.task_file import selection_rank

SEED = 42
LIMITS = {"metric": "accuracy", "min_delta_pp": -1.0, "min_examples": 100, "max_interval_width_pp": 4.0}


@dataclass
class FakeReport:
    """What compare_tasks reads of a run report: its tasks."""

    data: dict[str, Any]


def policy(**accuracy: Any) -> Any:
    tier = load_tier("balanced")
    snapshot = {**tier.snapshot, "accuracy": {**tier.snapshot["accuracy"], **accuracy}}
    return type(tier)(tier="balanced", snapshot=snapshot)


def ranked_ids(count: int) -> list[str]:
    return sorted((f"ex-{n:04d}" for n in range(count)), key=lambda i: selection_rank(SEED, i))


def block(ids: list[str], correct: dict[str, bool], **extra: Any) -> dict[str, Any]:
    examples = [
        {
            "id": i,
            "context": f"context {i}",
            "choices": ["a", "b"],
            "gold": 0,
            "correct": correct[i],
            "correct_norm": False,
        }
        for i in ids
    ]
    base = {"name": "mc", "file_sha256": "f" * 64, "seed": SEED, "scoring": {"method": "loglikelihood"}}
    return {**base, **extra, "examples": examples}


def table_blocks(table: PairedTable) -> tuple[dict[str, Any], dict[str, Any]]:
    ids = ranked_ids(table.n)
    pattern = (
        [(True, True)] * table.both
        + [(True, False)] * table.subject_only
        + [(False, True)] * table.baseline_only
        + [(False, False)] * table.neither
    )
    subject = {i: s for i, (s, _) in zip(ids, pattern, strict=True)}
    baseline = {i: b for i, (_, b) in zip(ids, pattern, strict=True)}
    return block(ids, subject), block(ids, baseline)


def judge(subject: dict[str, Any], baseline: dict[str, Any], tier: Any = None) -> tuple[dict, dict]:
    comparisons, gates = compare_tasks(
        FakeReport({"tasks": [subject]}), FakeReport({"tasks": [baseline]}), tier or policy()
    )
    return comparisons[0], gates[0]


def test_a_loss_within_the_tolerance_passes() -> None:
    comparison, gate = judge(*table_blocks(PairedTable(both=250, subject_only=0, baseline_only=1, neither=549)))
    assert gate["outcome"] == "pass" and gate["passed"] is True
    assert comparison["paired"]["interval"][0] > -0.01
    ids = ranked_ids(800)
    assert comparison["discordant_ids"] == {"subject_only": [], "baseline_only": [ids[250]]}


def test_a_loss_that_cannot_be_ruled_out_fails() -> None:
    _, gate = judge(*table_blocks(PairedTable(both=230, subject_only=14, baseline_only=21, neither=548)))
    assert gate["outcome"] == "fail" and gate["value"] < -1.0 and gate["limit"] == -1.0
    assert "McNemar p=" in gate["detail"] and "813 examples" in gate["detail"]


def test_too_few_examples_is_insufficient_whatever_the_estimate() -> None:
    _, gate = judge(*table_blocks(PairedTable(both=12, subject_only=0, baseline_only=0, neither=28)))
    assert gate["outcome"] == "insufficient" and gate["passed"] is False
    assert (gate["value"], gate["limit"]) == (40, 100) and gate["detail"].startswith("too few examples")


def test_an_interval_wider_than_the_policy_allows_is_insufficient() -> None:
    _, gate = judge(*table_blocks(PairedTable(both=40, subject_only=30, baseline_only=30, neither=50)))
    assert gate["outcome"] == "insufficient" and gate["value"] > 4.0 and gate["limit"] == 4.0


def test_a_policy_without_accuracy_limits_cannot_judge_a_task() -> None:
    tier = load_tier("balanced")
    bare = type(tier)(tier="balanced", snapshot={k: v for k, v in tier.snapshot.items() if k != "accuracy"})
    _, gate = judge(*table_blocks(PairedTable(250, 0, 1, 549)), tier=bare)
    assert gate["outcome"] == "insufficient" and gate["detail"] == "the policy has no accuracy limits"


def test_the_norm_metric_gates_on_correct_norm() -> None:
    subject, baseline = table_blocks(PairedTable(250, 0, 1, 549))
    comparison, gate = judge(subject, baseline, policy(metric="accuracy_norm"))
    assert comparison["metric"] == "accuracy_norm" and comparison["paired"]["subject_accuracy"] == 0
    assert gate["outcome"] == "pass"  # nobody is right by the norm in this table: no change at all


def test_a_smaller_run_pairs_with_the_seeds_first_examples_of_a_larger_one() -> None:
    ids = ranked_ids(300)
    everyone = dict.fromkeys(ids, True)
    comparison, _ = judge(block(ids[:40], everyone), block(ids, everyone))
    assert comparison["pairing"]["ok"] and comparison["paired"]["n"] == 40
    comparison, _ = judge(block(ids, everyone), block(ids[:40], everyone))
    assert comparison["pairing"]["ok"] and comparison["paired"]["n"] == 40


def test_hand_picked_examples_do_not_pair() -> None:
    ids = ranked_ids(300)
    everyone = dict.fromkeys(ids, True)
    picked = [*ids[:39], ids[200]]
    comparison, gate = judge(block(picked, everyone), block(ids, everyone))
    assert not comparison["pairing"]["ok"] and gate["outcome"] == "fail"
    assert "not the first 40 the seed selects" in comparison["pairing"]["detail"]
    assert repr(ids[200]) in comparison["pairing"]["detail"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"file_sha256": "e" * 64}, "file_sha256 differs"),
        ({"seed": 7}, "seed differs"),
        ({"scoring": {"method": "other"}}, "scoring differs"),
    ],
)
def test_different_task_files_seeds_or_scoring_do_not_pair(change: dict[str, Any], named: str) -> None:
    ids = ranked_ids(150)
    everyone = dict.fromkeys(ids, True)
    comparison, gate = judge(block(ids, everyone, **change), block(ids, everyone))
    assert comparison["pairing"]["detail"].startswith(named) and gate["outcome"] == "fail"


def test_a_changed_question_does_not_pair() -> None:
    ids = ranked_ids(150)
    everyone = dict.fromkeys(ids, True)
    subject = block(ids, everyone)
    subject["examples"][3]["gold"] = 1
    comparison, _ = judge(subject, block(ids, everyone))
    assert "1 examples differ in context, choices, gold or document" in comparison["pairing"]["detail"]


def test_a_task_on_one_side_only_fails_its_gate() -> None:
    ids = ranked_ids(150)
    everyone = dict.fromkeys(ids, True)
    other = {**block(ids, everyone), "name": "other"}
    comparisons, gates = compare_tasks(
        FakeReport({"tasks": [block(ids, everyone)]}), FakeReport({"tasks": [other]}), policy()
    )
    assert [g["name"] for g in gates] == ["task.mc", "task.other"]
    assert [c["pairing"]["detail"] for c in comparisons] == [
        "only the subject run has task 'mc'",
        "only the baseline run has task 'other'",
    ]
    assert verdict_of(gates) == "FAIL"


@settings(max_examples=300, deadline=None)
@given(
    both=st.integers(0, 400),
    subject_only=st.integers(0, 40),
    baseline_only=st.integers(0, 40),
    neither=st.integers(0, 400),
)
def test_outcomes_follow_the_rules(both: int, subject_only: int, baseline_only: int, neither: int) -> None:
    table = PairedTable(both, subject_only, baseline_only, neither)
    if table.n == 0:
        return
    _, gate = judge(*table_blocks(table))
    low, high = paired_accuracy(table).interval
    if table.n < LIMITS["min_examples"] or 100 * (high - low) > LIMITS["max_interval_width_pp"]:
        assert gate["outcome"] == "insufficient"
    else:
        assert gate["outcome"] == ("pass" if 100 * low >= LIMITS["min_delta_pp"] else "fail")
    assert verdict_of([gate]) == {"pass": "PASS", "fail": "FAIL", "insufficient": "INSUFFICIENT"}[gate["outcome"]]


def test_any_fail_outweighs_insufficient() -> None:
    gates = [{"outcome": "pass"}, {"outcome": "insufficient"}]
    assert verdict_of(gates) == "INSUFFICIENT"
    assert verdict_of([*gates, {"outcome": "fail"}]) == "FAIL"
    assert verdict_of([{"outcome": "pass"}]) == "PASS"


# Real runs: the embedded model with a 150-example slice of the shipped task, small windows.


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def task_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import yaml

    from invarlock_provider.config import load_yaml_mapping, resolve_preset_path

    folder = tmp_path_factory.mktemp("task-gates")
    preset = load_yaml_mapping(resolve_preset_path("causal_lm/tiny_pydocs_128_tasks"))
    preset["tasks"][0]["limit"] = 150
    preset["dataset"].update(preview_n=20, final_n=20)
    path = folder / "preset.yaml"
    path.write_text(yaml.safe_dump(preset))
    runs = {}
    for name, extra in (("baseline", []), ("quant8", ["--edit", "quant8"]), ("few", ["--task-limit", "30"])):
        code, stdout, stderr = cli("run", "-c", str(path), "--out", str(folder / "runs" / name), "--json", *extra)
        assert code == 0, stderr
        runs[name] = Path(json.loads(stdout)["report"])
    runs["tiers"] = folder / "tiers.yaml"
    tiers = load_yaml_mapping(default_tiers_path())
    tiers["defaults"].update(min_tokens=1000)
    tiers["defaults"]["accuracy"].update(min_examples=100, max_interval_width_pp=50.0, min_delta_pp=-30.0)
    runs["tiers"].write_text(yaml.safe_dump(tiers))
    return runs


def report(subject: Path, baseline: Path, output: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    args = ["report", "--run", str(subject), "--baseline", str(baseline), "--output", str(output), *extra]
    code, _, stderr = cli(*args)
    assert code in (0, 1, 3), stderr
    return code, json.loads((output / "evaluation.report.json").read_text())


def test_evaluation_pairs_the_tasks_and_verify_recomputes_them(task_runs: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "quant8"
    code, evaluation = report(task_runs["quant8"], task_runs["baseline"], folder, "--tiers", str(task_runs["tiers"]))
    assert code == 0 and evaluation["verdict"] == "PASS", evaluation["reasons"]
    (task,) = evaluation["tasks"]
    assert task["pairing"]["ok"] and task["paired"]["n"] == 150
    assert [g["outcome"] for g in evaluation["gates"] if g["name"] == "task.next_sentence"] == ["pass"]
    code, stdout, _ = cli("verify", str(folder), "--json")
    checks = {c["name"]: c["ok"] for c in json.loads(stdout)["checks"]}
    assert code == 0 and checks["task.next_sentence.counts"] and checks["task.next_sentence.ci_low"]
    assert checks["gate.task.next_sentence"] and checks["verdict"]


@pytest.mark.parametrize(
    ("forge", "caught"),
    [
        (lambda t: t["paired"]["discordant"].update(baseline_only=99), "task.next_sentence.counts"),
        (lambda t: t["paired"].update(difference=0.05), "task.next_sentence.difference"),
        (lambda t: t["paired"]["interval"].__setitem__(0, 0.0), "task.next_sentence.ci_low"),
        (lambda t: t["paired"].update(mcnemar_p=0.001), "task.next_sentence.mcnemar_p"),
    ],
)
def test_verify_catches_a_changed_task_number(task_runs: dict[str, Path], tmp_path: Path, forge, caught: str) -> None:
    folder = tmp_path / "forged"
    _, evaluation = report(task_runs["quant8"], task_runs["baseline"], folder, "--tiers", str(task_runs["tiers"]))
    forge(evaluation["tasks"][0])
    evaluation[DIGEST_FIELD] = content_digest(evaluation)  # digest-consistent: only recomputation tells
    (folder / "evaluation.report.json").write_text(json.dumps(evaluation))
    code, stdout, _ = cli("verify", str(folder), "--json")
    failed = {c["name"] for c in json.loads(stdout)["checks"] if not c["ok"]}
    assert code == 1 and caught in failed


def test_few_examples_are_insufficient_with_exit_3(task_runs: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "few"
    args = ("--tiers", str(task_runs["tiers"]), "--fail-on-fail")
    code, evaluation = report(task_runs["few"], task_runs["baseline"], folder, *args)
    assert code == 3 and evaluation["verdict"] == "INSUFFICIENT"
    assert evaluation["reasons"] == [
        r for r in evaluation["reasons"] if r.startswith("task.next_sentence: 30 not >= 100")
    ]
    assert cli("verify", str(folder))[0] == 0  # consistent evidence of an INSUFFICIENT verdict
    code, stdout, _ = cli("verify", str(folder), "--fail-on-fail")
    assert code == 3 and "verdict INSUFFICIENT" in stdout


def test_a_forged_outcome_is_caught(task_runs: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "few-forged"
    _, evaluation = report(task_runs["few"], task_runs["baseline"], folder, "--tiers", str(task_runs["tiers"]))
    for entry in evaluation["gates"]:
        entry.update(passed=True, outcome="pass")
    evaluation["verdict"], evaluation["reasons"] = "PASS", []
    evaluation[DIGEST_FIELD] = content_digest(evaluation)
    (folder / "evaluation.report.json").write_text(json.dumps(evaluation))
    code, stdout, _ = cli("verify", str(folder), "--json")
    failed = {c["name"] for c in json.loads(stdout)["checks"] if not c["ok"]}
    assert code == 1 and {"gate.task.next_sentence", "verdict"} <= failed


def test_an_evaluation_from_before_tasks_and_three_outcomes_still_verifies(
    real_runs: dict[str, Path], tmp_path: Path
) -> None:
    """Written by the previous version: no accuracy section in the policy, no outcome in the gates,
    too few tokens a FAIL. Its verdict is recomputed by the rules it was written under."""
    folder = tmp_path / "old"
    code, evaluation = report(real_runs["quant8"], real_runs["baseline"], folder, "--tier", "conservative")
    evaluation["policy"].pop("accuracy")
    evaluation["policy_digest"] = policy_digest(evaluation["policy"])
    for entry in evaluation["gates"]:
        entry.pop("outcome")
        entry["detail"] = "" if entry["name"] == "min_tokens" else entry["detail"]
    evaluation["verdict"] = "FAIL"  # min_tokens: 25,400 of 40,000, a FAIL by the old rule
    evaluation[DIGEST_FIELD] = content_digest(evaluation)
    (folder / "evaluation.report.json").write_text(json.dumps(evaluation))
    code, stdout, _ = cli("verify", str(folder), "--json")
    result = json.loads(stdout)
    assert code == 0 and result["ok"] and result["verdict"] == "FAIL", [c for c in result["checks"] if not c["ok"]]


def test_report_of_a_subject_file_digest_is_part_of_pairing(task_runs: dict[str, Path], tmp_path: Path) -> None:
    """The run report's task file digest is what pairs two runs' tasks: the same examples from an
    edited file do not pair (an auditor could not tell which file either run read)."""
    data = json.loads(task_runs["quant8"].read_text())
    data["tasks"][0]["file_sha256"] = hashlib.sha256(b"another file").hexdigest()
    forged = tmp_path / "runs" / "other" / "report.json"
    forged.parent.mkdir(parents=True)
    forged.write_text(json.dumps(data))
    _, evaluation = report(forged, task_runs["baseline"], tmp_path / "other", "--tiers", str(task_runs["tiers"]))
    assert evaluation["verdict"] == "FAIL"
    assert evaluation["tasks"][0]["pairing"]["detail"].startswith("file_sha256 differs")


def test_a_tasks_only_pair_is_judged_on_its_tasks(tmp_path: Path) -> None:
    """A preset with no perplexity windows: the runs score tasks only, and the evaluation has no
    perplexity gates, only pairing, guards and the task."""
    import yaml

    from invarlock_provider.config import load_yaml_mapping, resolve_preset_path

    preset = load_yaml_mapping(resolve_preset_path("causal_lm/tiny_pydocs_128_tasks"))
    preset["tasks"][0]["limit"] = 60
    preset["dataset"].update(preview_n=0, final_n=0)
    path = tmp_path / "tasks-only.yaml"
    path.write_text(yaml.safe_dump(preset))
    runs = {}
    for name, extra in (("baseline", []), ("subject", ["--edit", "quant8"])):
        code, stdout, stderr = cli("run", "-c", str(path), "--out", str(tmp_path / "runs" / name), "--json", *extra)
        assert code == 0, stderr
        summary = json.loads(stdout)
        assert summary["ppl_final"] is None and summary["tokens"] == 0
        runs[name] = Path(summary["report"])
    _, evaluation = report(runs["subject"], runs["baseline"], tmp_path / "evaluation")
    assert evaluation["primary_metric"] is None
    assert [g["name"] for g in evaluation["gates"]] == ["pairing", "invariants", "spectral", "task.next_sentence"]
    assert evaluation["tasks"][0]["paired"]["n"] == 60
    assert evaluation["verdict"] == "INSUFFICIENT"  # 60 examples, fewer than the 100 the tier asks for
    assert cli("verify", str(tmp_path / "evaluation"))[0] == 0
