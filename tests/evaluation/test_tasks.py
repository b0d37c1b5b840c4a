"""Multiple-choice tasks scored in a real run (embedded model, real torch): lm-eval's scoring,
batch-independent, recorded per example, and every derived field checked when read back."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from invarlock_provider.cli import main
from invarlock_provider.errors import BadInputError
from invarlock_provider.reporting.run_report import parse_run_report
from invarlock_provider.resources import resolve_embedded
from invarlock_provider.task_file import parse_task_file, select_examples

TASK = "embedded:pydocs-next-sentence.jsonl"


def run(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["run", "--profile", "dev", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    return json.loads(Path(summary["report"]).read_text())


@pytest.fixture(scope="module")
def task_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import yaml

    from invarlock_provider.config import load_yaml_mapping, resolve_preset_path

    folder = tmp_path_factory.mktemp("tasks")
    preset = load_yaml_mapping(resolve_preset_path("causal_lm/tiny_pydocs_128_tasks"))
    preset["tasks"][0]["limit"] = 60
    path = folder / "preset.yaml"
    path.write_text(yaml.safe_dump(preset))
    return {
        "preset": path,
        "out": folder / "runs" / "tasks",
        "report": run("-c", str(path), "--out", str(folder / "runs" / "tasks")),
    }


def test_a_run_records_each_example_and_the_accuracy(task_run: dict[str, Any]) -> None:
    block = task_run["report"]["tasks"][0]
    assert block["name"] == "next_sentence" and block["n"] == 60 and block["examples_available"] > 500
    examples = select_examples(parse_task_file(resolve_embedded(TASK).read_bytes(), TASK), 60, 42)
    assert [e["id"] for e in block["examples"]] == [e.id for e in examples]
    assert block["accuracy"] == sum(e["correct"] for e in block["examples"]) / 60
    assert 0.25 <= block["accuracy"] <= 1, "the embedded model does better than chance"
    assert all(len(e["logprobs"]) == 4 and all(v < 0 for v in e["logprobs"]) for e in block["examples"])
    assert task_run["report"]["meta"]["timings"]["tasks_s"] > 0


def test_scores_are_the_models_own_log_likelihood_of_each_choice(task_run: dict[str, Any], tiny_model_dir) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    for record in task_run["report"]["tasks"][0]["examples"][:3]:
        context = tokenizer.encode(record["context"])
        for choice, stored in zip(record["choices"], record["logprobs"], strict=True):
            whole = tokenizer.encode(record["context"] + " " + choice)
            assert whole[: len(context)] == context
            with torch.inference_mode():
                logprobs = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), dim=-1)
            expected = sum(float(logprobs[i - 1, whole[i]]) for i in range(len(context), len(whole)))
            assert math.isclose(stored, expected, rel_tol=1e-4, abs_tol=1e-3)


def test_a_score_does_not_depend_on_its_batch(tiny_model_dir) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from invarlock_provider.evaluation.task_scoring import score_examples

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    examples = select_examples(parse_task_file(resolve_embedded(TASK).read_bytes(), TASK), 24, 7)
    single, _ = score_examples(model, tokenizer, examples, device="cpu", batch_size=1, max_length=256)
    batched, cost = score_examples(model, tokenizer, examples, device="cpu", batch_size=16, max_length=256)
    assert cost["requests"] == 96
    for one, many in zip(single, batched, strict=True):
        assert one.pred == many.pred
        assert max(abs(a - b) for a, b in zip(one.logprobs, many.logprobs, strict=True)) < 1e-3


def tampered(report: dict[str, Any], change) -> bytes:
    copy = json.loads(json.dumps(report))
    change(copy["tasks"][0])
    return json.dumps(copy).encode()


def flip_correct(block: dict[str, Any]) -> None:
    block["examples"][3]["correct"] = not block["examples"][3]["correct"]


def raise_a_wrong_choice(block: dict[str, Any]) -> None:
    example = block["examples"][0]
    wrong = next(i for i in range(4) if i != example["gold"])
    example["logprobs"][wrong] = 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (flip_correct, "tasks.next_sentence.examples[3].correct"),
        (raise_a_wrong_choice, "tasks.next_sentence.examples[0].pred"),
        (lambda b: b.__setitem__("accuracy", b["accuracy"] + 0.01), "tasks.next_sentence.accuracy"),
        (lambda b: b["examples"][5].__setitem__("context", "edited"), "examples_sha256: not the digest"),
        (lambda b: b["examples"].pop(), "n is not the number of examples"),
        (lambda b: b["examples"][1]["logprobs"].pop(), "expected one log-probability"),
    ],
)
def test_a_changed_per_example_result_is_caught_when_the_report_is_read(
    task_run: dict[str, Any], change, message: str
) -> None:
    with pytest.raises(BadInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_run_report(tampered(task_run["report"], change), Path("report.json"), "subject")
    parse_run_report(json.dumps(task_run["report"]).encode(), Path("report.json"), "subject")


def test_a_task_file_changed_under_the_same_path_is_scored_again(tmp_path: Path, write_preset) -> None:
    task = tmp_path / "task.jsonl"
    examples = resolve_embedded(TASK).read_bytes().splitlines(keepends=True)[:30]
    task.write_bytes(b"".join(examples))
    preset = write_preset({"tasks": [{"name": "mine", "path": str(task)}]})
    out = tmp_path / "runs" / "mine"
    first = run("-c", str(preset), "--out", str(out))
    assert run("-c", str(preset), "--out", str(out))["meta"]["reused_from"] is not None
    task.write_bytes(b"".join(examples[:29]))
    third = run("-c", str(preset), "--out", str(out))
    assert third["meta"]["reused_from"] is None and third["tasks"][0]["n"] == 29
    assert third["tasks"][0]["file_sha256"] != first["tasks"][0]["file_sha256"]
