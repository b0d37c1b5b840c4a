"""Where the CLI is pointed: a plain local path is its file:// URI for every command that reads
evidence (ls, verify, fetch, history, prune), an unknown preset name is answered with the bundled
ones, and a pairing FAIL names each mismatched field on its own line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from invarlock_provider.config import bundled_presets
from invarlock_provider.resources import configs_dir
from tests.storage.conftest import cli, evidence_root, reports  # noqa: F401  (fixtures, used by name)


@pytest.fixture
def evidence(reports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    """Both report names archived into ./evidence; the tests run in its parent folder."""
    monkeypatch.setenv("INVARLOCK_HOME", str(tmp_path / "invarlock-home"))
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "evidence"
    for name in ("quant8_balanced", "damaged_balanced"):
        code, _, stderr = cli("archive", str(reports / name), "--to", store.as_uri())
        assert code == 0, stderr
    return store


def bundle_folder(evidence: Path, name: str) -> Path:
    (folder,) = (evidence / name).glob("ev-*")
    return folder


def same_as_uri(*args: str, plain: str, uri: str) -> tuple[int, str]:
    """Run a command on the plain path and on its file:// URI: same exit status, same output."""
    by_path = cli(*args[:1], plain, *args[1:])
    by_uri = cli(*args[:1], uri, *args[1:])
    assert by_path == by_uri, (by_path, by_uri)
    return by_path[0], by_path[1]


# --- 1. a plain path is its file:// URI -----------------------------------------------------------


@pytest.mark.parametrize("plain", ["evidence", "evidence/", "./evidence", "evidence/quant8_balanced"])
def test_ls_history_and_verify_of_a_plain_folder_match_its_uri(evidence: Path, plain: str) -> None:
    uri = (Path.cwd() / plain).resolve().as_uri()
    code, stdout = same_as_uri("ls", plain=plain, uri=uri)
    bundles = 2 if plain.rstrip("/").endswith("evidence") else 1
    assert code == 0 and stdout.endswith(f"{bundles} bundles\n")
    code, stdout = same_as_uri("ls", "--json", plain=plain, uri=uri)
    assert len(json.loads(stdout)) == bundles
    code, stdout = same_as_uri("history", plain=plain, uri=uri)
    assert code == 0 and f"{bundles} bundles" in stdout.splitlines()[-1]
    code, stdout = same_as_uri("verify", plain=plain, uri=uri)
    assert code == 0 and stdout.splitlines()[-1] == (
        f"{bundles} bundles: {bundles} consistent, 0 FAILED, 0 incomplete (not verified)"
    )
    assert all(line.startswith("file://") for line in stdout.splitlines()[:-1])  # one line per bundle


def test_a_plain_bundle_folder_is_one_bundle(evidence: Path) -> None:
    folder = bundle_folder(evidence, "quant8_balanced")
    plain = str(folder.relative_to(Path.cwd()))
    assert same_as_uri("ls", "--json", plain=plain, uri=folder.as_uri())[0] == 0
    code, stdout, stderr = cli("verify", plain)
    assert code == 0, stderr
    assert stdout == f"{plain}: bundle consistent, verdict PASS\n"  # the bundle folder, checked as before


def test_verify_keeps_a_reports_folder_a_reports_folder(reports: Path) -> None:  # noqa: F811
    code, stdout, stderr = cli("verify", str(reports / "quant8_balanced"))
    assert code == 0, stderr
    assert stdout == f"{reports / 'quant8_balanced'}: evaluation consistent, verdict PASS\n"
    code, stdout, stderr = cli("verify", str(reports / "quant8_balanced" / "report.json"))
    assert code == 0 and "evaluation consistent" in stdout, stderr


def test_fetch_from_a_plain_bundle_folder(evidence: Path) -> None:
    folder = bundle_folder(evidence, "damaged_balanced")
    plain = str(folder.relative_to(Path.cwd()))
    code, stdout, stderr = cli("fetch", plain, "--to", "audit")
    assert code == 0, stderr
    assert stdout.startswith(f"fetched {plain} -> audit (all files match the manifest)")
    assert sorted(p.name for p in Path("audit").iterdir()) == sorted(p.name for p in folder.iterdir())
    code, stdout, _ = cli("verify", "audit")
    assert code == 0 and "bundle consistent, verdict FAIL" in stdout


def test_prune_of_a_plain_folder_prunes_its_bundles(evidence: Path) -> None:
    uri = evidence.as_uri()
    code, stdout = same_as_uri("prune", "--keep-last", "0", "--max-age", "0s", "--dry-run", plain="evidence", uri=uri)
    assert code == 0 and stdout.endswith("2 would delete, 0 kept\n")
    code, stdout, stderr = cli("prune", "evidence", "--keep-last", "0", "--max-age", "0s")
    assert code == 0, stderr
    assert stdout.endswith("2 deleted, 0 kept\n")
    assert cli("ls", "evidence")[1] == "0 bundles\n"


@pytest.mark.parametrize("target", ["runs", "runs/", "./runs", "."])
def test_prune_of_a_runs_folder_stays_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    monkeypatch.setenv("INVARLOCK_HOME", str(tmp_path / "invarlock-home"))
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path / "runs" if target == "." else tmp_path)
    code, stdout, stderr = cli("prune", target, "--keep-last", "1", "--dry-run", "--json")
    assert code == 0, stderr
    assert "deleted_objects" not in json.loads(stdout)  # the runs plan, not a bucket's


@pytest.mark.parametrize(
    "command",
    [["ls"], ["verify"], ["history"], ["fetch", "--to", "audit"], ["prune", "--keep-last", "1", "--dry-run"]],
)
def test_a_missing_path_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = cli(command[0], "no-such-evidence", *command[1:])
    assert code == 2 and stdout == ""
    assert re.fullmatch(r"error: no-such-evidence: no such (file or )?folder\n", stderr), stderr
    assert not (tmp_path / "no-such-evidence").exists() and not (tmp_path / "audit").exists()


@pytest.mark.parametrize("command", ["ls", "verify", "history", "fetch", "prune"])
@pytest.mark.parametrize("path", ["evidence\x00/x", "evi\ndence"])
def test_control_characters_in_a_path_are_one_line(tmp_path: Path, command: str, path: str) -> None:
    extra = ["--to", str(tmp_path / "x")] if command == "fetch" else ["--keep-last", "1"] if command == "prune" else []
    code, stdout, stderr = cli(command, path, *extra)
    assert code == 2 and stdout == ""
    assert "control characters (such as NUL) are not allowed" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_another_scheme_is_refused_naming_what_is_accepted() -> None:
    code, _, stderr = cli("ls", "gs://bucket/nightly")
    assert code == 2
    assert stderr == "error: gs://bucket/nightly: expected a local folder, file:///PATH or s3://BUCKET[/PREFIX]\n"


# --- 2. an unknown preset names the bundled ones ----------------------------------------------------


@pytest.mark.parametrize("name", ["nope", "causal_lm/nope"])
def test_an_unknown_preset_lists_the_bundled_presets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, stderr = cli("run", "-c", name)
    shipped = sorted(
        p.relative_to(configs_dir() / "presets").with_suffix("").as_posix()
        for p in (configs_dir() / "presets").rglob("*.yaml")
    )
    assert {"causal_lm/wikitext2_512", "causal_lm/tiny_pydocs_128"} <= set(shipped) and bundled_presets() == shipped
    assert code == 2
    assert stderr == (
        f"error: preset {name!r} not found: neither a file nor a bundled preset (bundled: {', '.join(shipped)})\n"
    )
    assert not (tmp_path / "runs").exists()


# --- 3. a pairing FAIL: one line per mismatched field ----------------------------------------------


@pytest.fixture(scope="module")
def dev_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of the dev profile: fewer windows than the default, so it cannot pair with one."""
    out = tmp_path_factory.mktemp("dev") / "runs" / "dev"
    code, _, stderr = cli("run", "--profile", "dev", "--out", str(out))
    assert code == 0, stderr
    return out / "report.json"


PROFILE_MISMATCHES = [
    "data.preview_n: subject 32 != baseline 200",
    "data.final_n: subject 32 != baseline 200",
    *(
        f"evaluation_windows.{split}.{name}: subject 32 values != baseline 200 values (different lengths)"
        for split in ("preview", "final")
        for name in ("window_ids", "token_digests", "token_counts")
    ),
]


def test_runs_of_different_profiles_fail_one_line_per_field(
    dev_run: Path, real_runs: dict[str, Path], tmp_path: Path
) -> None:
    output = tmp_path / "reports" / "dev_balanced"
    code, stdout, stderr = cli(
        "report", "--run", str(dev_run), "--baseline", str(real_runs["baseline"]), "--output", str(output)
    )
    assert code == 0, stderr
    lines = stdout.splitlines()
    start = lines.index("  - pairing: 9 not == 0:")
    shown = [line.strip() for line in lines[start + 1 : start + 10]]
    assert all(line.startswith("      ") for line in lines[start + 1 : start + 10])
    assert set(PROFILE_MISMATCHES) <= set(shown)
    (digest,) = [line for line in shown if line.startswith("data.windows_digest:")]
    assert re.fullmatch(r"data\.windows_digest: subject [0-9a-f]{12}\.\.\. != baseline [0-9a-f]{12}\.\.\.", digest)
    assert max(len(line) for line in lines[1:]) < 120  # the first names the output folder

    evaluation = json.loads((output / "evaluation.report.json").read_text())
    pairing = next(g for g in evaluation["gates"] if g["name"] == "pairing")
    assert pairing["detail"].splitlines() == shown
    failed = [c for c in evaluation["pairing"]["checks"] if not c["ok"]]
    assert len(failed) == 9 and evaluation["verdict"] == "FAIL"
    assert (
        next(c for c in failed if c["field"] == "data.windows_digest")["subject"]
        == json.loads(dev_run.read_text())["data"]["windows_digest"]
    )  # the evidence keeps whole values; only the explanation abbreviates
    code, stdout, stderr = cli("verify", str(output))
    assert code == 0 and stdout == f"{output}: evaluation consistent, verdict FAIL\n", stdout + stderr


def test_a_single_mismatch_stays_one_line(real_runs: dict[str, Path], tmp_path: Path) -> None:
    subject = rewrite(real_runs["quant8"], tmp_path / "s" / "report.json", lambda d: d["data"].update(stride=64))
    output = tmp_path / "reports" / "seq"
    code, stdout, stderr = cli(
        "report", "--run", str(subject), "--baseline", str(real_runs["baseline"]), "--output", str(output)
    )
    assert code == 0, stderr
    assert "  - pairing: 1 not == 0 (data.stride: subject 64 != baseline 128)" in stdout.splitlines()


def test_a_baseline_on_another_dataset_and_tokenizer_names_both_in_one_line(
    real_runs: dict[str, Path], tmp_path: Path
) -> None:
    def change(data: dict) -> None:
        data["data"]["dataset_digest"] = "f" * 64
        data["meta"]["tokenizer_hash"] = "e" * 64

    baseline = rewrite(real_runs["baseline"], tmp_path / "b" / "report.json", change)
    output = tmp_path / "reports" / "wrong"
    code, _, stderr = cli(
        "report", "--run", str(real_runs["quant8"]), "--baseline", str(baseline), "--output", str(output)
    )
    assert code == 2 and len(stderr.splitlines()) == 1
    assert re.fullmatch(
        rf"error: baseline {re.escape(str(baseline))} was evaluated on a different dataset and tokenizer: "
        r"data\.dataset_digest subject [0-9a-f]{12}\.\.\. vs baseline f{12}\.\.\.; "
        r"meta\.tokenizer_hash subject [0-9a-f]{12}\.\.\. vs baseline e{12}\.\.\.\n",
        stderr,
    )
    assert not (output / "evaluation.report.json").exists()


def rewrite(source: Path, target: Path, change) -> Path:
    data = json.loads(source.read_text())
    change(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data))
    return target
