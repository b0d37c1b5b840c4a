"""Temporary folders that name the process they belong to, so the next try can remove a dead one's.

A task runner killed with SIGKILL (the OOM killer, a lost node) never runs its ``finally``: its
temporary folder, with a run's scratch and downloads in it, stays behind. Each folder made here
holds ``.owner.json`` (PID, the process's start time and the boot id), and the next task on that
host removes the folders whose owner is no longer running. A PID reused by another process is told
apart by its start time; a folder from before a reboot is dead by its boot id.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

OWNER_FILE = ".owner.json"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _owner() -> dict[str, object]:
    return {"pid": os.getpid(), "start_ticks": _start_ticks(os.getpid()), "boot_id": _boot_id()}


def _is_dead(owner: dict[str, object]) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int) or owner.get("start_ticks") is None:
        return False  # an owner this host cannot identify: leave the folder alone
    if owner.get("boot_id") != _boot_id():
        return True
    return _start_ticks(pid) != owner.get("start_ticks")


def claim(folder: Path) -> None:
    """Record this process as the folder's owner."""
    (folder / OWNER_FILE).write_text(json.dumps(_owner()))


def owner_is_dead(folder: Path) -> bool:
    """True only when the folder's recorded owner is known to have ended."""
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(owner, dict) and _is_dead(owner)


@contextlib.contextmanager
def owned_temporary_directory(prefix: str) -> Iterator[Path]:
    """A TemporaryDirectory that says whose it is; removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        claim(Path(folder))
        yield Path(folder)


def remove_dead_scratch(prefixes: Sequence[str], root: Path | None = None) -> list[Path]:
    """Remove the temporary folders with one of ``prefixes`` whose owner has died; returns them."""
    base = root or Path(tempfile.gettempdir())
    removed = []
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(tuple(prefixes)) and p.is_dir()]
    except OSError:
        return []
    for folder in candidates:
        if owner_is_dead(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
