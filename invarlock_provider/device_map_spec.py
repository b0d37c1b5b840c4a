"""The syntax of ``model.device_map`` / ``--device-map`` and ``max_memory``, checked without torch.

Parsing lives apart from loading so that a preset or a command line with a typo fails at
validation, naming the key, before torch is imported or a GPU worker is claimed. Whether the
named devices exist is checked at load time (``evaluation.placement``), on the machine that runs.
"""

from __future__ import annotations

import re
from typing import Any

from invarlock_provider.errors import BadInputError

STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
_DEVICE = re.compile(r"^(cpu|mps|disk|cuda(:\d+)?|\d+)$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def check_device_map(value: str, where: str) -> None:
    if value in STRATEGIES or (_DEVICE.match(value) and value != "disk"):
        return
    raise BadInputError(
        f"{where}: expected {', '.join(STRATEGIES)} or one device (cpu, cuda, cuda:N, mps), got {value!r}"
    )


def device_key(device: str, where: str) -> str:
    """Normalise a max_memory key: ``0`` and ``cuda:0`` are the same GPU."""
    if not _DEVICE.match(device):
        raise BadInputError(f"{where}: unknown device {device!r} (expected cpu, disk, mps, cuda:N or N)")
    if device.isdigit():
        return f"cuda:{device}"
    return "cuda:0" if device == "cuda" else device


def parse_size(value: Any, where: str) -> int:
    """Bytes from ``2GiB``, ``500MB``, ``1.5 GiB`` or a plain integer."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(str(value)) if isinstance(value, str) else None
    if not match:
        raise BadInputError(f"{where}: expected a size such as 2GiB or 500MB, got {value!r}")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise BadInputError(f"{where}: expected a size above zero, got {value!r}")
    return size


def parse_max_memory(mapping: dict[str, Any], where: str) -> dict[str, int]:
    return {
        device_key(str(key), f"{where}.{key}"): parse_size(value, f"{where}.{key}") for key, value in mapping.items()
    }


def check_max_memory(value: dict[str, Any], where: str) -> None:
    parse_max_memory(value, where)


def parse_max_memory_options(items: tuple[str, ...]) -> dict[str, str]:
    """``--max-memory cuda:0=70GiB --max-memory cpu=200GiB`` as a mapping (checked like a preset's)."""
    mapping: dict[str, str] = {}
    for item in items:
        device, sep, size = item.partition("=")
        if not sep or not device or not size:
            raise BadInputError(f"--max-memory {item!r}: expected DEVICE=SIZE, for example cuda:0=70GiB")
        mapping[device] = size
    check_max_memory(mapping, "--max-memory")
    return mapping


def format_size(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def check_batch_size(value: int | str, where: str) -> None:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return
    raise BadInputError(f"{where}: expected auto or an integer >= 1, got {value!r}")
