"""Guards compared in the report: real runs of the embedded model and of edited checkpoints."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from invarlock_provider.cli import main
from invarlock_provider.errors import BadInputError
from invarlock_provider.reporting.evaluation import DIGEST_FIELD, content_digest
from invarlock_provider.reporting.policy import load_tier


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def evaluate(subject: Path, baseline: Path, output: Path, *extra: str) -> dict:
    args = ["--run", str(subject), "--baseline", str(baseline), "--format", "html", "--output", str(output)]
    code, _, stderr = cli("report", *args, *extra)
    assert code == 0, stderr
    return json.loads((output / "evaluation.report.json").read_text())


def gate(evaluation: dict, name: str) -> dict:
    return next(g for g in evaluation["gates"] if g["name"] == name)


def guard(evaluation: dict, name: str) -> dict:
    return next(g for g in evaluation["guards"] if g["name"] == name)


def saved_variant(source: Path, target: Path, change) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(source, target)
    model = AutoModelForCausalLM.from_pretrained(target)
    with torch.no_grad():
        model = change(model) or model
    model.save_pretrained(target)
    return target


def drop_last_block(model):
    """Same tokenizer and embeddings, one transformer block fewer: another architecture."""
    from transformers import GPT2LMHeadModel

    config = model.config
    config.n_layer -= 1
    smaller = GPT2LMHeadModel(config)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(f"transformer.h.{config.n_layer}.")}
    smaller.load_state_dict(state)
    return smaller


@pytest.fixture(scope="module")
def dev_runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    from invarlock_provider.config import RunOverrides, load_preset
    from invarlock_provider.evaluation.run import execute_run

    root = tmp_path_factory.mktemp("guard-runs")

    def triple_one_mlp(model) -> None:
        model.transformer.h[2].mlp.c_proj.weight.mul_(3)

    models = {
        "tripled": saved_variant(tiny_model_dir, root / "models" / "tripled", triple_one_mlp),
        "shallower": saved_variant(tiny_model_dir, root / "models" / "shallower", drop_last_block),
    }
    specs = {
        "baseline": RunOverrides(),
        "noop": RunOverrides(),
        "quant8": RunOverrides(edit="quant8"),
        **{name: RunOverrides(model=str(path)) for name, path in models.items()},
    }
    return {
        name: execute_run(load_preset(None, "dev", overrides), root / "runs" / name).report_path
        for name, overrides in specs.items()
    }


def test_noop_passes_both_guards_with_unit_ratios(dev_runs: dict[str, Path], tmp_path: Path) -> None:
    evaluation = evaluate(dev_runs["noop"], dev_runs["baseline"], tmp_path / "noop")
    assert gate(evaluation, "invariants")["passed"] and gate(evaluation, "spectral")["passed"]
    assert all(check["ok"] for check in guard(evaluation, "invariants")["metrics"]["checks"])
    assert {row["ratio"] for row in guard(evaluation, "spectral")["metrics"]["modules"]} == {1.0}


def test_quant8_passes_both_guards_and_barely_moves_spectra(dev_runs: dict[str, Path], tmp_path: Path) -> None:
    evaluation = evaluate(dev_runs["quant8"], dev_runs["baseline"], tmp_path / "q8")
    spectral = guard(evaluation, "spectral")
    assert gate(evaluation, "invariants")["passed"] and spectral["passed"], evaluation["reasons"]
    ratios = [row["ratio"] for row in spectral["metrics"]["modules"]]
    assert len(ratios) == 16 and any(r != 1.0 for r in ratios)
    assert max(abs(r - 1) for r in ratios) < 5e-3
    assert spectral["metrics"]["soft_capped"] == []


def test_one_tripled_mlp_matrix_fails_spectral_naming_it(dev_runs: dict[str, Path], tmp_path: Path) -> None:
    evaluation = evaluate(dev_runs["tripled"], dev_runs["baseline"], tmp_path / "x3", "--tier", "aggressive")
    spectral = gate(evaluation, "spectral")
    assert spectral["passed"] is False and evaluation["verdict"] == "FAIL"
    assert "transformer.h.2.mlp.c_proj (mlp, layer 2): sigma_max ratio 3.0000 beyond hard cap 2.0" in spectral["detail"]
    assert any("transformer.h.2.mlp.c_proj" in reason for reason in evaluation["reasons"])
    rows = {row["name"]: row for row in guard(evaluation, "spectral")["metrics"]["modules"]}
    assert rows["transformer.h.2.mlp.c_proj"]["ratio"] == pytest.approx(3.0, rel=1e-5)
    assert [name for name, row in rows.items() if row["hard_capped"]] == ["transformer.h.2.mlp.c_proj"]
    assert gate(evaluation, "invariants")["passed"], "same architecture, finite weights"
    # The verdict rests on the spectral gate alone when perplexity gates are lenient enough.
    lenient = {g["name"]: g["passed"] for g in evaluation["gates"] if g["name"] not in ("spectral", "min_tokens")}
    assert lenient["pairing"] and lenient["invariants"]
    html = (tmp_path / "x3" / "evaluation.html").read_text()
    assert re.search(r'fill="#b3261e"><title>transformer\.h\.2\.mlp\.c_proj: ratio 3</title>', html)


def test_another_architecture_fails_invariants_with_both_hashes(dev_runs: dict[str, Path], tmp_path: Path) -> None:
    evaluation = evaluate(dev_runs["shallower"], dev_runs["baseline"], tmp_path / "arch")
    subject_hash = json.loads(dev_runs["shallower"].read_text())["guards"][0]["metrics"]["structure_hash"]
    baseline_hash = json.loads(dev_runs["baseline"].read_text())["guards"][0]["metrics"]["structure_hash"]
    assert subject_hash != baseline_hash
    invariants = gate(evaluation, "invariants")
    assert invariants["passed"] is False
    assert f"structure_hash: subject {subject_hash} != baseline {baseline_hash}" in invariants["detail"]
    assert any(subject_hash in r and baseline_hash in r for r in evaluation["reasons"])
    assert "parameters: subject" in invariants["detail"]
    spectral = gate(evaluation, "spectral")
    assert spectral["passed"] is False and "4 only in baseline [transformer.h.3.attn.c_attn" in spectral["detail"]
    assert evaluation["pairing"]["ok"], "same tokenizer and data: only the guards can tell"


def test_reports_without_guards_fail_both_guard_gates(dev_runs: dict[str, Path], tmp_path: Path) -> None:
    data = json.loads(dev_runs["noop"].read_text())
    data["guards"] = []
    subject = tmp_path / "old" / "report.json"
    subject.parent.mkdir()
    subject.write_text(json.dumps(data))
    evaluation = evaluate(subject, dev_runs["baseline"], tmp_path / "old-eval")
    for name in ("invariants", "spectral"):
        expected = f"{name} not measured in the subject report (made before guards existed?)"
        assert gate(evaluation, name)["detail"] == expected


def test_verify_recomputes_guard_results(dev_runs: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "x3"
    evaluation = evaluate(dev_runs["tripled"], dev_runs["baseline"], folder)
    forged = dict(evaluation)
    forged["guards"] = [{**g, "passed": True, "violations": []} for g in evaluation["guards"]]
    forged["gates"] = [{**g, "passed": True} for g in evaluation["gates"]]
    forged["verdict"], forged["reasons"] = "PASS", []
    forged[DIGEST_FIELD] = content_digest(forged)
    (folder / "evaluation.report.json").write_text(json.dumps(forged))
    code, stdout, _ = cli("verify", str(folder), "--json")
    assert code == 1
    failed = {c["name"] for c in json.loads(stdout)["checks"] if not c["ok"]}
    assert {"guard.spectral", "gate.spectral", "verdict"} <= failed


def test_guard_overhead_is_recorded(dev_runs: dict[str, Path]) -> None:
    report = json.loads(dev_runs["baseline"].read_text())
    timings = report["meta"]["timings"]
    seconds = sum(g["metrics"]["seconds"] for g in report["guards"])
    assert 0 < seconds <= timings["guards_s"]
    assert report["metrics"]["guard_overhead_of_scoring"] == pytest.approx(timings["guards_s"] / timings["score_s"])


@pytest.mark.parametrize(
    ("spectral", "message"),
    [
        ({"ratio_cap": {"attn": 1.5}}, r"ratio_cap must map exactly attention, mlp to numbers"),
        ({"ratio_cap": {"attention": 0.9, "mlp": 1.5}}, r"ratio_cap values must be numbers > 1"),
        ({"deadband": -0.1}, r"deadband must be a number >= 0"),
        ({"max_caps": 1.5}, r"max_caps must be an integer >= 0"),
    ],
)
def test_bad_spectral_caps_are_refused(tmp_path: Path, spectral: dict, message: str) -> None:
    import yaml

    from invarlock_provider.reporting.policy import default_tiers_path

    document = yaml.safe_load(default_tiers_path().read_text())
    document["tiers"]["balanced"]["guards"] = {"spectral": spectral}
    path = tmp_path / "tiers.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(BadInputError, match=r"tiers\.balanced\.guards\.spectral\." + message):
        load_tier("balanced", path)


def test_caps_are_inside_the_policy_digest() -> None:
    balanced, conservative = load_tier("balanced"), load_tier("conservative")
    assert balanced["guards"]["spectral"]["ratio_cap"] == {"attention": 1.5, "mlp": 1.5}
    assert conservative["guards"]["spectral"]["ratio_cap"] == {"attention": 1.25, "mlp": 1.25}
    changed = {**balanced.snapshot, "guards": {"spectral": {**balanced["guards"]["spectral"], "max_caps": 5}}}
    assert type(balanced)(tier="balanced", snapshot=changed).digest != balanced.digest
