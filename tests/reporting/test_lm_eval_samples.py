"""lm-evaluation-harness sample logs read as InvarLock task records (reporting/lm_eval_samples.py).

The strict-reading tests need no lm-eval: they copy ``tests/fixtures/lm_eval/``, a real
``lm_eval --log_samples`` output of the embedded model on three examples of the embedded
next-sentence task (its ``pretty_env_info``, the machine's description, blanked), and change it.
Regenerate it with ``python tests/reporting/test_lm_eval_samples.py --write-fixture``.
The end-to-end test runs lm-eval itself on two random tiny GPT-2 models and checks its
log-likelihoods against InvarLock's own scorer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from invarlock_provider.cli import main
from invarlock_provider.errors import BadInputError
from invarlock_provider.reporting import lm_eval_samples
from invarlock_provider.reporting.lm_eval_samples import (
    RECORD_KEYS,
    LmEvalRun,
    pairing_mismatches,
    read_lm_eval_run,
)
from invarlock_provider.task_file import lm_eval_task_yaml

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "lm_eval"
TASK = "next_sentence_local"
EMBEDDED_TASK = ROOT / "invarlock_provider" / "embedded" / "pydocs-next-sentence.jsonl"
EMBEDDED_MODEL = ROOT / "invarlock_provider" / "embedded" / "tiny-pydocs-gpt2"
FIXTURE_IDS = ("pydocs-01657-05", "pydocs-01226-11", "pydocs-00480-02")
E2E_EXAMPLES = 40


# --- running lm-eval ----------------------------------------------------------------------------


def write_task(folder: Path, rows: list[dict[str, Any]], data_file: str | None = None) -> Path:
    """A local lm-eval multiple-choice task over ``rows`` (InvarLock task-file lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "next_sentence.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (folder / f"{TASK}.yaml").write_text(lm_eval_task_yaml(TASK, data_file or str(data)), encoding="utf-8")
    return folder


def run_lm_eval(pretrained: str, task_dir: Path, out: Path, cwd: Path) -> None:
    env = dict(os.environ)
    for switch in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env[switch] = "1"
    env.setdefault("HF_HOME", str(cwd / "hf-home"))
    env["TOKENIZERS_PARALLELISM"] = "false"
    command = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={pretrained},dtype=float32",
        "--tasks",
        TASK,
        "--include_path",
        str(task_dir),
        "--device",
        "cpu",
        "--batch_size",
        "8",
        "--output_path",
        str(out),
        "--log_samples",
    ]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        pytest.fail(f"lm_eval exited with {done.returncode}:\n{done.stderr[-4000:]}")


def embedded_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in EMBEDDED_TASK.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_fixture() -> None:
    """The committed fixture: the embedded model, three short examples, relative paths."""
    rows = {row["id"]: row for row in embedded_rows()}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        shutil.copytree(EMBEDDED_MODEL, work / "tiny-pydocs-gpt2")
        write_task(work / "task", [rows[i] for i in FIXTURE_IDS], data_file="task/next_sentence.jsonl")
        run_lm_eval("tiny-pydocs-gpt2", Path("task"), Path("out"), cwd=work)
        shutil.rmtree(FIXTURE, ignore_errors=True)
        shutil.copytree(work / "out", FIXTURE)
    (results,) = FIXTURE.glob("*/results_*.json")
    data = json.loads(results.read_text(encoding="utf-8"))
    data["pretty_env_info"] = ""
    results.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


# --- the fixture, copied and changed ------------------------------------------------------------


def copy_fixture(target: Path) -> Path:
    shutil.copytree(FIXTURE, target)
    return target


def run_files(folder: Path) -> tuple[Path, Path]:
    (results,) = folder.glob("*/results_*.json")
    (samples,) = folder.glob(f"*/samples_{TASK}_*.jsonl")
    return results, samples


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def edit(
    folder: Path,
    results: Callable[[dict[str, Any]], None] | None = None,
    samples: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None] | None = None,
    *,
    consistent: bool = True,
) -> None:
    """Change a copied run; ``consistent`` recomputes every hash and count lm-eval derives from the
    samples, as a run of a different task or model would have them."""
    results_path, samples_path = run_files(folder)
    data = json.loads(results_path.read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in samples_path.read_text(encoding="utf-8").splitlines()]
    if samples is not None:
        rows = samples(rows) or rows
    if consistent:
        for row in rows:
            row["doc_hash"] = _sha(json.dumps(row["doc"], indent=2, ensure_ascii=False))
            row["prompt_hash"] = _sha(row["arguments"]["gen_args_0"]["arg_0"])
            row["target_hash"] = _sha(row["target"])
        data["task_hashes"][TASK] = _sha("".join(r["doc_hash"] + r["prompt_hash"] + r["target_hash"] for r in rows))
        data["n-samples"][TASK]["effective"] = len(rows)
        for metric in ("acc", "acc_norm"):
            data["results"][TASK][f"{metric},none"] = sum(r[metric] for r in rows) / len(rows)
    if results is not None:
        results(data)
    results_path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    samples_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def relog(row: dict[str, Any]) -> None:
    """The acc and acc_norm lm-eval logs for a sample's scores and gold."""
    from invarlock_provider.task_file import first_max

    scores = [float(response[0]) for response in row["filtered_resps"]]
    choices, gold = row["doc"]["choices"], int(row["target"])
    row["acc"] = float(first_max(scores) == gold)
    row["acc_norm"] = float(first_max([s / len(c) for s, c in zip(scores, choices, strict=True)]) == gold)


def refused(folder: Path) -> str:
    with pytest.raises(BadInputError) as caught:
        read_lm_eval_run(folder)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return copy_fixture(tmp_path / "baseline"), copy_fixture(tmp_path / "subject")


# --- two runs as evidence: invarlock report --lm-eval ----------------------------------------------


def lm_eval_report(pair: tuple[Path, Path], output: Path, *extra: str) -> tuple[int, str, dict[str, Any]]:
    result = CliRunner().invoke(
        main, ["report", "--lm-eval", str(pair[0]), "--lm-eval", str(pair[1]), "--output", str(output), *extra]
    )
    evaluation = output / "evaluation.report.json"
    return result.exit_code, result.output, json.loads(evaluation.read_text()) if evaluation.is_file() else {}


def test_two_runs_become_an_evaluation_that_verifies(pair: tuple[Path, Path], tmp_path: Path) -> None:
    code, output, evaluation = lm_eval_report(pair, tmp_path / "reports" / "pair", "--fail-on-fail")
    assert code == 3 and evaluation["verdict"] == "INSUFFICIENT", output  # three documents: too few to judge
    (task,) = evaluation["tasks"]
    assert task["pairing"]["ok"] and task["paired"]["n"] == 3
    assert evaluation["guards"] == [] and evaluation["primary_metric"] is None
    subject = json.loads((tmp_path / "reports" / "pair" / "report.json").read_text())
    assert subject["meta"]["scorer"] == "lm-eval" and subject["meta"]["lm_eval"]["version"]
    assert (tmp_path / "reports" / "lm_eval_baseline" / "report.json").is_file()  # copied as with --copy-baseline
    verified = CliRunner().invoke(main, ["verify", str(tmp_path / "reports" / "pair")])
    assert verified.exit_code == 0 and "consistent, verdict INSUFFICIENT" in verified.stdout, verified.output


def test_runs_of_different_documents_fail_with_the_reason(pair: tuple[Path, Path], tmp_path: Path) -> None:
    def reword(rows: list[dict[str, Any]]) -> None:
        for row in rows[1:]:
            row["doc"]["id"] += "-v2"

    edit(pair[1], samples=reword)
    code, output, evaluation = lm_eval_report(pair, tmp_path / "reports" / "pair")
    assert code == 0 and f"lm-eval pairing: task {TASK}: 2 documents differ (doc_hash): ids 1, 2" in output
    assert evaluation["verdict"] == "FAIL"
    assert "2 examples differ in context, choices, gold or document" in evaluation["tasks"][0]["pairing"]["detail"]


def test_a_version_mismatch_fails_and_a_lone_folder_is_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    def bump(data: dict[str, Any]) -> None:
        data["versions"][TASK] = 2.0

    edit(pair[1], results=bump)
    code, output, evaluation = lm_eval_report(pair, tmp_path / "reports" / "pair")
    assert code == 0 and evaluation["verdict"] == "FAIL", output
    assert evaluation["tasks"][0]["pairing"]["detail"].startswith("file_sha256 differs")
    lone = CliRunner().invoke(main, ["report", "--lm-eval", str(pair[0]), "--output", str(tmp_path / "x")])
    assert lone.exit_code == 2 and "give it twice" in lone.output


# --- reading the real fixture -------------------------------------------------------------------


def test_the_fixture_reads_as_invarlock_task_records() -> None:
    from invarlock_provider.reporting.run_report import check_tasks
    from invarlock_provider.task_file import TaskExample, examples_digest

    run = read_lm_eval_run(FIXTURE)
    results, samples = run_files(FIXTURE)
    assert run.results_file == results
    assert run.model == "tiny-pydocs-gpt2"
    assert run.lm_eval_version == "0.4.13"
    assert run.results_sha256 == hashlib.sha256(results.read_bytes()).hexdigest()
    assert run.samples_sha256 == {TASK: hashlib.sha256(samples.read_bytes()).hexdigest()}
    task = run.tasks[TASK]
    assert (task.version, task.n_samples, task.target_delimiter) == (1.0, 3, " ")
    rows = {row["id"]: row for row in embedded_rows()}
    for number, record in enumerate(task.examples):
        assert tuple(record) == RECORD_KEYS
        source = rows[FIXTURE_IDS[number]]
        assert record["id"] == str(number)
        assert (record["context"], record["choices"], record["gold"]) == (
            source["context"],
            source["choices"],
            source["gold"],
        )
    logged = json.loads(results.read_text())["results"][TASK]
    assert (task.accuracy, task.accuracy_norm) == (logged["acc,none"], logged["acc_norm,none"])
    # The records are what check_tasks accepts in a report.json.
    examples = [TaskExample(r["id"], r["context"], tuple(r["choices"]), r["gold"]) for r in task.examples]
    block = {
        "name": TASK,
        "examples": task.examples,
        "n": len(task.examples),
        "examples_sha256": examples_digest(examples),
        "accuracy": task.accuracy,
        "accuracy_norm": task.accuracy_norm,
    }
    check_tasks([block], "lm-eval")
    assert pairing_mismatches(run, run) == []


def test_the_newest_results_file_is_read_and_named(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path / "run")
    results, samples = run_files(folder)
    newer = "2099-01-01T00-00-00.000001"
    date = results.name.removeprefix("results_").removesuffix(".json")
    shutil.copy(results, results.with_name(f"results_{newer}.json"))
    message = refused(folder)  # the newest results file is read: its samples file is not there
    assert f"results_{newer}.json" in message
    assert f"samples_{TASK}_{newer}.jsonl is missing" in message
    shutil.copy(samples, samples.with_name(samples.name.replace(date, newer)))
    assert read_lm_eval_run(folder).results_file.name == f"results_{newer}.json"
    # The model folder itself is accepted too; two model folders are not guessed between.
    assert read_lm_eval_run(results.parent).results_file.name == f"results_{newer}.json"
    shutil.copytree(results.parent, folder / "another-model")
    assert "results of several models" in refused(folder)


# --- pairing ------------------------------------------------------------------------------------


def test_a_run_of_another_model_pairs(pair: tuple[Path, Path]) -> None:
    """What names the model (its arguments merged into the task metadata, the YAML's path) differs
    between two models' runs and does not stop the pairing; the log-likelihoods may differ."""
    baseline, subject = pair

    def other_model(data: dict[str, Any]) -> None:
        data["configs"][TASK]["metadata"].update(pretrained="/elsewhere/quant8", dtype="bfloat16")
        data["configs"][TASK]["metadata"]["config_source"] = "/elsewhere/task.yaml"
        data["config"]["model_args"] = {"pretrained": "/elsewhere/quant8", "dtype": "bfloat16"}
        data["model_name"] = "/elsewhere/quant8"

    def other_scores(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            for number, response in enumerate(row["filtered_resps"]):
                response[0] = str(-10.0 * (number + 1))
            row["resps"] = [[response] for response in row["filtered_resps"]]
            relog(row)

    edit(subject, results=other_model, samples=other_scores)
    a, b = read_lm_eval_run(baseline), read_lm_eval_run(subject)
    assert b.model == "/elsewhere/quant8"
    assert a.tasks[TASK].config_sha256 == b.tasks[TASK].config_sha256
    assert pairing_mismatches(a, b) == []


def mismatches(pair: tuple[Path, Path], **changes: Any) -> list[str]:
    baseline, subject = pair
    edit(subject, **changes)
    return pairing_mismatches(read_lm_eval_run(baseline), read_lm_eval_run(subject))


def test_a_different_task_version_does_not_pair(pair: tuple[Path, Path]) -> None:
    def bump(data: dict[str, Any]) -> None:
        data["versions"][TASK] = 2.0

    assert mismatches(pair, results=bump) == [f"task {TASK}: version 1.0 in the baseline, 2.0 in the subject"]


def test_a_different_config_does_not_pair(pair: tuple[Path, Path]) -> None:
    def prompt(data: dict[str, Any]) -> None:
        data["configs"][TASK]["num_fewshot"] = 5
        data["configs"][TASK]["metadata"]["max_seq_lengths"] = [4096]  # a --metadata task argument

    (line,) = mismatches(pair, results=prompt)
    assert line.startswith(f"task {TASK}: configs differ in metadata, num_fewshot (sha256 ")


def test_different_documents_do_not_pair(pair: tuple[Path, Path]) -> None:
    def drop_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return rows[1:]

    assert mismatches(pair, samples=drop_first) == [f"task {TASK}: different documents: 1 only in the baseline (ids 0)"]


def test_a_changed_document_does_not_pair(pair: tuple[Path, Path]) -> None:
    def reword(rows: list[dict[str, Any]]) -> None:
        for row in rows[1:]:
            row["doc"]["id"] += "-v2"

    assert mismatches(pair, samples=reword) == [f"task {TASK}: 2 documents differ (doc_hash): ids 1, 2"]


def test_a_different_context_choice_or_gold_is_named(pair: tuple[Path, Path]) -> None:
    def change(rows: list[dict[str, Any]]) -> None:
        first, second = rows[0], rows[1]
        for pair_ in first["arguments"].values():
            pair_["arg_0"] = "Few-shot example.\n\n" + pair_["arg_0"]
        second["arguments"]["gen_args_3"]["arg_1"] += "!"
        second["doc"]["choices"][3] += "!"

    assert mismatches(pair, samples=change) == [
        f"task {TASK}: 1 documents differ (doc_hash): ids 1",
        f"task {TASK}: 1 documents have a different context: ids 0",
        f"task {TASK}: 1 documents have a different choices: ids 1",
    ]


def test_a_task_on_one_side_only_does_not_pair(pair: tuple[Path, Path]) -> None:
    baseline, subject = pair
    a = read_lm_eval_run(baseline)
    b = read_lm_eval_run(subject)
    renamed = LmEvalRun(**{**b.__dict__, "tasks": {"other_task": b.tasks[TASK]}})
    assert pairing_mismatches(a, renamed) == [
        f"task {TASK}: only in the baseline ({a.results_file})",
        f"task other_task: only in the subject ({b.results_file})",
    ]


def test_many_differing_documents_are_counted(pair: tuple[Path, Path]) -> None:
    baseline, subject = pair

    def nine(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        copies = [json.loads(json.dumps(rows[number % 3])) | {"doc_id": number} for number in range(3, 9)]
        return rows + copies

    def shift_golds(rows: list[dict[str, Any]]) -> None:
        """Another gold for documents 1-8, with the acc/acc_norm their log-likelihoods give."""
        for row in rows[1:]:
            choices = row["doc"]["choices"]
            gold = (row["doc"]["gold"] + 1) % len(choices)
            row["doc"]["gold"], row["target"] = gold, str(gold)
            relog(row)

    edit(baseline, samples=nine)
    edit(subject, samples=nine)
    assert mismatches((baseline, subject), samples=shift_golds) == [
        f"task {TASK}: 8 documents differ (doc_hash): ids 1, 2, 3 and 5 more",
        f"task {TASK}: 8 documents have a different gold: ids 1, 2, 3 and 5 more",
    ]


# --- refused input ------------------------------------------------------------------------------


def test_a_generation_task_is_refused_by_name(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path / "run")

    def generate(data: dict[str, Any]) -> None:
        data["configs"][TASK]["output_type"] = "generate_until"

    edit(folder, results=generate)
    message = refused(folder)
    assert f"task '{TASK}': output_type 'generate_until'" in message
    assert "results_" in message


def test_nan_is_refused(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path / "run")
    _, samples = run_files(folder)
    text = samples.read_text()
    assert '"acc": 0.0' in text
    samples.write_text(text.replace('"acc": 0.0', '"acc": NaN', 1))
    assert "NaN is not JSON" in refused(folder)
    folder = copy_fixture(tmp_path / "run2")

    def nan_score(rows: list[dict[str, Any]]) -> None:
        rows[2]["filtered_resps"][1][0] = "nan"
        rows[2]["resps"][1] = [rows[2]["filtered_resps"][1]]

    edit(folder, samples=nan_score)
    message = refused(folder)
    assert ':3: doc_id 2: filtered_resps[1]: log-likelihood "nan" is not a finite number <= 0' in message


def test_a_missing_samples_file_is_refused(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path / "run")
    _, samples = run_files(folder)
    samples.unlink()
    message = refused(folder)
    assert f"task '{TASK}': its samples file {samples.name} is missing" in message


def test_an_acc_its_log_likelihoods_do_not_give_is_refused(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path / "run")

    def flip(rows: list[dict[str, Any]]) -> None:
        rows[1]["acc"] = 1.0 - rows[1]["acc"]

    edit(folder, samples=flip)
    _, samples = run_files(folder)
    message = refused(folder)
    assert message.startswith(f"{samples}:2: doc_id 1: acc: lm-eval logged ")
    assert "but the logged log-likelihoods give" in message


def test_an_edited_log_likelihood_is_refused(tmp_path: Path) -> None:
    """The gold choice's score raised so it wins: lm-eval's own acc no longer agrees."""
    folder = copy_fixture(tmp_path / "run")

    def promote(rows: list[dict[str, Any]]) -> None:
        gold = int(rows[0]["target"])
        assert rows[0]["acc"] == 0.0
        rows[0]["filtered_resps"][gold][0] = "-0.0001"
        rows[0]["resps"][gold] = [rows[0]["filtered_resps"][gold]]

    edit(folder, samples=promote)
    message = refused(folder)
    expected = "acc: lm-eval logged 0.0, but the logged log-likelihoods give 1.0 (prediction 0, gold 0)"
    assert f":1: doc_id 0: {expected}" in message


def test_duplicate_doc_ids_are_refused(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path / "run")
    edit(folder, samples=lambda rows: [*rows, rows[0]])
    assert ":4: doc_id 0: duplicate document (first at line 1)" in refused(folder)


def test_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path / "run")
    _, samples = run_files(folder)
    os.truncate(samples, lm_eval_samples.MAX_FILE_BYTES + 1)  # sparse: nothing is written
    assert refused(folder) == f"{samples}: {lm_eval_samples.MAX_FILE_BYTES + 1} bytes, larger than 256 MiB"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r[0].update(doc_hash="0" * 64), ":1: doc_id 0: doc_hash: not the sha256 of the logged doc"),
        (lambda r: r[0]["doc"].update(gold=1), ":1: doc_id 0: doc_hash: not the sha256 of the logged doc"),
        (lambda r: r[1].update(doc_id="1"), ':2: doc_id: expected an integer >= 0, found "1"'),
        (lambda r: r[1].update(filter="take_first"), "doc_id 1: filter 'take_first': only unfiltered"),
        (lambda r: r[1].update(extra=1), "doc_id 1: not an lm-eval sample (unknown extra)"),
        (lambda r: r[1].pop("resps"), "doc_id 1: not an lm-eval sample (missing resps)"),
        (lambda r: r[2].update(target="[0, 1]"), 'doc_id 2: target: "[0, 1]": several gold answers'),
        (lambda r: r[2].update(target="7"), "doc_id 2: target: gold 7 is out of range (expected an index 0-3)"),
        (lambda r: r[2]["filtered_resps"][0].__setitem__(1, "maybe"), 'is_greedy "maybe" is not True or False'),
        (lambda r: r[2]["filtered_resps"][0].__setitem__(0, "1.5"), 'log-likelihood "1.5" is not a finite number'),
        (lambda r: r[2]["resps"][0].append(r[2]["resps"][0][0]), "doc_id 2: resps[0]: expected [filtered_resps[0]]"),
        (
            lambda r: r[2]["arguments"]["gen_args_1"].update(arg_0="another context"),
            "doc_id 2: arguments: choices continue different contexts",
        ),
        (
            lambda r: r[2]["arguments"]["gen_args_1"].update(arg_1="no delimiter"),
            "doc_id 2: arguments.gen_args_1.arg_1: \"no delimiter\" is not the target delimiter ' ' and a choice",
        ),
        (lambda r: r[2]["metrics"].append("acc_mutual_info"), "doc_id 2: acc_mutual_info"),
    ],
)
def test_a_malformed_sample_is_refused_by_line_document_and_field(
    tmp_path: Path, change: Callable[[list[dict[str, Any]]], Any], expected: str
) -> None:
    folder = copy_fixture(tmp_path / "run")
    edit(folder, samples=lambda rows: change(rows) and None, consistent=False)
    message = refused(folder)
    assert expected in message
    assert message.startswith(str(run_files(folder)[1]))


def test_a_samples_file_of_another_run_is_refused(tmp_path: Path) -> None:
    """Every hash consistent within the file, but not the results file's task hash."""
    folder = copy_fixture(tmp_path / "run")
    results, _ = run_files(folder)
    before = json.loads(results.read_text())["task_hashes"][TASK]

    def keep_hash(data: dict[str, Any]) -> None:
        data["task_hashes"][TASK] = before

    edit(folder, results=keep_hash, samples=lambda rows: [rows[1], rows[0], rows[2]])
    assert "task_hashes: the results file's hash is not that of these samples" in refused(folder)


def test_a_results_accuracy_its_samples_do_not_give_is_refused(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path / "run")

    def inflate(data: dict[str, Any]) -> None:
        data["results"][TASK]["acc,none"] = 0.99

    edit(folder, results=inflate)
    assert f"task '{TASK}': results.acc,none: 0.99 is not" in refused(folder)


def test_a_model_url_loses_its_credentials(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path / "run")

    def url(data: dict[str, Any]) -> None:
        data["model_name"] = "https://user:secret@models.example/tiny\x1b[31m"

    edit(folder, results=url)
    assert read_lm_eval_run(folder).model == "https://***@models.example/tiny?[31m"


# --- lm-eval itself -----------------------------------------------------------------------------


def tiny_gpt2(folder: Path, seed: int) -> Path:
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_MODEL)
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=256, vocab_size=len(tokenizer))
    config.bos_token_id = config.eos_token_id = tokenizer.eos_token_id
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_lm_eval_runs_of_two_models_pair_and_agree_with_invarlocks_scorer(tmp_path: Path) -> None:
    """lm-eval itself (installed by the test command, the `lmeval` extra), run offline on a local
    task over two tiny models; then the two runs paired, archived and verified as evidence."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from invarlock_provider.evaluation.task_scoring import score_examples
    from invarlock_provider.task_file import parse_task_file

    rows = embedded_rows()[:E2E_EXAMPLES]
    task_dir = write_task(tmp_path / "task", rows)
    runs: dict[str, LmEvalRun] = {}
    for seed, name in enumerate(("baseline", "subject")):
        model_dir = tiny_gpt2(tmp_path / name, seed)
        run_lm_eval(str(model_dir), task_dir, tmp_path / f"out-{name}", cwd=tmp_path)
        runs[name] = read_lm_eval_run(tmp_path / f"out-{name}")
        logged = json.loads(runs[name].results_file.read_text())
        task = runs[name].tasks[TASK]
        assert task.n_samples == E2E_EXAMPLES
        assert task.accuracy == logged["results"][TASK]["acc,none"]
        assert task.accuracy_norm == logged["results"][TASK]["acc_norm,none"]
        # InvarLock's own scorer on the same model and examples.
        examples = parse_task_file((task_dir / "next_sentence.jsonl").read_bytes(), "task")
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        results, _ = score_examples(model, tokenizer, examples, device="cpu", batch_size=8, max_length=256)
        worst = 0.0
        for record, example, result in zip(task.examples, examples, results, strict=True):
            assert (record["context"], tuple(record["choices"]), record["gold"]) == (
                example.context,
                example.choices,
                example.gold,
            )
            worst = max(worst, *(abs(a - b) for a, b in zip(record["logprobs"], result.logprobs, strict=True)))
        assert worst < 1e-4, f"{name}: lm-eval and InvarLock log-likelihoods differ by up to {worst}"
    assert runs["baseline"].model != runs["subject"].model
    assert runs["baseline"].tasks[TASK].examples != runs["subject"].tasks[TASK].examples
    assert pairing_mismatches(runs["baseline"], runs["subject"]) == []
    # The committed fixture still has the shape lm-eval writes.
    fresh_results, fresh_samples = run_files(tmp_path / "out-baseline")
    fixture_results, fixture_samples = run_files(FIXTURE)
    assert set(json.loads(fresh_results.read_text())) == set(json.loads(fixture_results.read_text()))
    fresh_line = json.loads(fresh_samples.read_text().splitlines()[0])
    fixture_line = json.loads(fixture_samples.read_text().splitlines()[0])
    assert list(fresh_line) == list(fixture_line)

    # The two runs as evidence: paired, judged, archived and verified like two invarlock runs.
    output = tmp_path / "reports" / "lm_eval_pair"
    report = CliRunner().invoke(
        main,
        [
            "report",
            "--lm-eval",
            str(tmp_path / "out-baseline"),
            "--lm-eval",
            str(tmp_path / "out-subject"),
            "--output",
            str(output),
            "--format",
            "html",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert report.exit_code == 0, report.output
    evaluation = json.loads((output / "evaluation.report.json").read_text())
    (paired,) = evaluation["tasks"]
    assert paired["pairing"]["ok"] and paired["paired"]["n"] == E2E_EXAMPLES
    assert paired["paired"]["subject_accuracy"] == runs["subject"].tasks[TASK].accuracy
    assert [g["name"] for g in evaluation["gates"]] == ["pairing", f"task.{TASK}"]
    assert evaluation["verdict"] == "INSUFFICIENT"  # 40 examples: fewer than the tier's 100
    archived = CliRunner().invoke(main, ["archive", str(output), "--to", (tmp_path / "evidence").as_uri()])
    assert archived.exit_code == 0, archived.output
    verified = CliRunner().invoke(main, ["verify", str(tmp_path / "evidence")], catch_exceptions=False)
    assert verified.exit_code == 0 and "1 consistent" in verified.stdout, verified.output


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-fixture"]:
        raise SystemExit("usage: python tests/reporting/test_lm_eval_samples.py --write-fixture")
    write_fixture()
