"""The model-family matrix: each family in families.FAMILIES, as a tiny random-weight checkpoint,
through `invarlock run` (noop and quant8), both guards, a plain transformers forward, and a report."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from invarlock_provider.cli import main
from invarlock_provider.config import RunOverrides, load_preset
from invarlock_provider.evaluation.run import execute_run
from tests.evaluation.checkpoints import pair, save_random_model
from tests.evaluation.families import FAMILIES, Family


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda f: f.name)
def family_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    family: Family = request.param
    root = tmp_path_factory.mktemp(family.name.replace(" ", "_"))
    model_dir = save_random_model(family.build_config(), root / "model", tiny_model_dir, seed=1234)
    reports = {
        name: execute_run(
            load_preset(None, overrides=RunOverrides(model=str(model_dir), edit=edit)), root / name
        ).report
        for name, edit in (("baseline", "noop"), ("noop", "noop"), ("quant8", "quant8"))
    }
    return family, model_dir, reports, root


def test_guards_find_attention_and_mlp_matrices_in_every_layer(family_runs) -> None:
    family, _, reports, _ = family_runs
    spectral = next(g for g in reports["baseline"]["guards"] if g["name"] == "spectral")
    modules = spectral["metrics"]["modules"]
    for kind in ("attention", "mlp"):
        assert {m["layer"] for m in modules if m["family"] == kind} == {0, 1}, kind
    assert all(m["sigma_max"] > 0 for m in modules)
    assert not any("embed" in m["name"] or "lm_head" in m["name"] or "wte" in m["name"] for m in modules)
    assert any("[" in m["name"] for m in modules) == family.expert_matrices
    invariants = next(g for g in reports["baseline"]["guards"] if g["name"] == "invariants")
    assert invariants["passed"], invariants["violations"]


def test_quant8_rewrites_every_block_matrix(family_runs) -> None:
    _, _, reports, _ = family_runs
    edit = reports["quant8"]["edit"]
    spectral = next(g for g in reports["baseline"]["guards"] if g["name"] == "spectral")
    # MoE routers (``mlp.gate``, not a Linear) keep full precision: routing is not weight-only deployable.
    block_names = {m["name"] for m in spectral["metrics"]["modules"] if not m["name"].endswith(".mlp.gate")}
    assert block_names <= set(edit["modules_changed"])
    assert 0 < edit["max_abs_weight_error"] < 1e-2
    assert reports["quant8"]["meta"]["weights_digest"] != reports["baseline"]["meta"]["weights_digest"]
    assert reports["quant8"]["meta"]["weights_digest_before_edit"] == reports["baseline"]["meta"]["weights_digest"]
    moved = [
        abs(a - b)
        for a, b in zip(
            reports["quant8"]["evaluation_windows"]["final"]["logloss"],
            reports["baseline"]["evaluation_windows"]["final"]["logloss"],
            strict=True,
        )
    ]
    assert max(moved) > 0


def test_engine_nll_equals_a_plain_transformers_forward(family_runs, corpus_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    family, model_dir, reports, _ = family_runs
    report = reports["baseline"]
    assert report["meta"]["scoring"]["strategy"] == family.strategy
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    stream = tokenizer(corpus_path.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    seq_len = report["data"]["seq_len"]
    final = report["evaluation_windows"]["final"]
    with torch.no_grad():
        for window_id, engine in list(zip(final["window_ids"], final["logloss"], strict=True))[:40]:
            ids = torch.tensor([stream[window_id * seq_len : (window_id + 1) * seq_len]])
            assert abs(model(ids, labels=ids).loss.item() - engine) < 1e-5, window_id


def test_noop_against_its_baseline_passes(family_runs) -> None:
    *_, root = family_runs
    evaluation = pair(root / "noop" / "report.json", root / "baseline" / "report.json", root / "reports" / "noop")
    assert evaluation["verdict"] == "PASS", evaluation["reasons"]
    assert evaluation["primary_metric"]["ratio"] == 1.0


def test_a_family_whose_matrices_are_not_found_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Mamba (a state-space model: no attention, no MLP block) stands for any family the guards
    do not know: the run stops before scoring, naming the class, and leaves no report."""
    mamba = Family(
        "Mamba", "MambaConfig",
        {"vocab_size": 4096, "hidden_size": 32, "num_hidden_layers": 2, "state_size": 4, "pad_token_id": 0,
         "bos_token_id": 0, "eos_token_id": 0},
    )  # fmt: skip
    model_dir = save_random_model(mamba.build_config(), tmp_path / "mamba", tiny_model_dir, seed=1234)
    result = CliRunner().invoke(
        main, ["run", "--profile", "dev", "--model", str(model_dir), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    *progress, last = result.stderr.strip().splitlines()
    assert progress and all(line.startswith("invarlock run: [") for line in progress), progress
    assert last == (
        "error: spectral guard: no attention or mlp weight matrices found by module name in MambaForCausalLM; "
        "this family is not supported yet (see docs/models.md)"
    )
    assert not list((tmp_path / "r").rglob("report.json"))
