"""The README's two commands are the truth: the first runs from a fresh clone, the second is CI's."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def two_commands() -> tuple[str, str]:
    """The bash blocks of the README's "Two commands" section, in order: (main job, tests)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", section, flags=re.DOTALL)
    assert len(blocks) == 2, "the section holds exactly two bash blocks"
    return blocks[0].strip(), blocks[1].strip()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, test_command = two_commands()
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert lines[-1] == test_command, "the last step of .ci/run is the README's test command, verbatim"


def test_ci_does_nothing_the_readme_command_does_not() -> None:
    """A green CI must mean the README's command passes on a fresh machine: CI only clears the venv,
    and the system packages are the test command's own first step."""
    _, test_command = two_commands()
    steps = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert steps == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "rm -rf .venv", test_command]
    script = (REPO / test_command.split()[-1]).read_text()
    assert script.index("scripts/system_packages.sh") < script.index("scripts/setup_venv.sh")
    assert "--durations=25" in script


def test_every_cli_command_has_help_with_an_example() -> None:
    from click.testing import CliRunner

    from invarlock_provider.cli import _COMMANDS, main

    for name in [*_COMMANDS, "report html"]:
        result = CliRunner().invoke(main, [*name.split(), "--help"])
        assert result.exit_code == 0, name
        assert re.search(r"^\s*Examples?:\n\s+invarlock ", result.stdout, flags=re.MULTILINE), name


@pytest.mark.slow
def test_readme_first_command_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    command, _ = two_commands()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INVARLOCK_", "AIRFLOW", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    result = subprocess.run(
        ["bash", "-c", command], check=False, cwd=clone, env=env, capture_output=True, text=True, timeout=1500
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"DAG run \S+: success", out), out
    verdicts = dict(re.findall(r"^  (\S+_balanced)\s+(PASS|FAIL|INSUFFICIENT)\s", out, flags=re.MULTILINE))
    # The shipped plan: one subject that passes, a negative control the gates catch, and the same
    # subject judged on too few task examples to tell, each as expected.
    assert verdicts == {
        "quant8_balanced": "PASS",
        "pruned70_control_balanced": "FAIL",
        "quant8_few_examples_balanced": "INSUFFICIENT",
    }, out
    assert re.search(r"gate\s+success", out), out
    bundles = re.findall(
        r"^  \S+_balanced\s+(PASS|FAIL|INSUFFICIENT)\s+\S+\s+[-+]\S+ \(\S+\) n=\d+\s+ok\s+(\S+)$",
        out,
        flags=re.MULTILINE,
    )
    assert len(bundles) == 3, out
    for verdict, bundle in ((verdict, Path(path)) for verdict, path in bundles):
        assert bundle.is_relative_to(clone / "quickstart" / "evidence")
        assert (bundle / "manifest.json").is_file() and (bundle / "evaluation.report.json").is_file()
        verify = subprocess.run(
            [str(clone / ".venv" / "bin" / "invarlock"), "verify", str(bundle)],
            check=False,
            capture_output=True,
            text=True,
        )
        # A FAIL bundle verifies too: consistent evidence of a failed evaluation.
        assert verify.returncode == 0 and f"verdict {verdict}" in verify.stdout, verify.stdout + verify.stderr
