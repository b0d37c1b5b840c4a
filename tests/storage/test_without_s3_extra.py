"""Without the [s3] extra: every s3:// command is one line naming the extra, exit 2, no traceback.

The CLI runs in a fresh interpreter whose import system refuses boto3 and botocore, as it would
on an install without the extra; the rest of the environment is the real one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from invarlock_provider.errors import pip_install

BLOCK_S3_EXTRA = """
import sys

class BlockS3Extra:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"boto3", "botocore"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, BlockS3Extra())
"""
RUN_CLI = BLOCK_S3_EXTRA + "from invarlock_provider.cli import main\nmain(prog_name='invarlock')\n"
BUNDLE = "s3://evidence/nightly/quant8_balanced/ev-0123456789abcdef01234567"
MESSAGE = f"error: boto3 is not installed: {pip_install('s3')}"


def invarlock_without_s3(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", RUN_CLI, *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)


def test_the_shim_really_blocks_botocore() -> None:
    blocked = subprocess.run(
        [sys.executable, "-c", BLOCK_S3_EXTRA + "import botocore.exceptions"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert blocked.returncode == 1 and "ModuleNotFoundError: No module named 'botocore'" in blocked.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["ls", "s3://evidence/nightly"],
        ["fetch", BUNDLE, "--to", "{tmp}/audit"],
        ["verify", BUNDLE],
        ["verify", "s3://evidence/nightly"],
        ["archive", "{tmp}", "--to", "s3://evidence/nightly"],
        ["prune", "s3://evidence/nightly", "--max-age", "1d", "--dry-run"],
    ],
    ids=lambda args: "-".join(args[:1] + [a.split("/")[-1] for a in args[1:2]]),
)
def test_s3_commands_name_the_extra(args: list[str], tmp_path: Path) -> None:
    result = invarlock_without_s3(*(arg.format(tmp=tmp_path) for arg in args))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [MESSAGE]
    assert not (tmp_path / "audit").exists()


def test_file_stores_need_no_extra(tmp_path: Path) -> None:
    result = invarlock_without_s3("ls", (tmp_path / "evidence").as_uri())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 bundles"
