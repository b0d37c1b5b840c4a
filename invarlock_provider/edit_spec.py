"""Edit specifications: ``NAME[:KEY=VALUE,...]`` as the CLI, presets and nightly plans write them.

Parsed and validated without torch, so a bad parameter in a plan or on the command line is a
one-line error before any model is loaded, naming the parameter and what it accepts.

    noop                        the baseline itself (a control)
    quant8                      quant:bits=8 per output channel (the original built-in name)
    quant:bits=4[,group=32]     round-to-nearest symmetric, per output channel or per group of inputs
    prune:sparsity=0.5          unstructured magnitude pruning of the attention and MLP weights
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from invarlock_provider.errors import BadInputError

QUANT_BITS = range(2, 9)
EDIT_NAMES = ("noop", "quant8", "quant", "prune")


@dataclass(frozen=True)
class EditSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        """The canonical text form (sorted keys), as report.json records it."""
        if not self.params:
            return self.name
        return f"{self.name}:" + ",".join(f"{key}={self.params[key]}" for key in sorted(self.params))


def parse_edit(text: str, where: str = "--edit") -> EditSpec:
    """``quant:bits=4,group=32`` -> EditSpec("quant", {"bits": 4, "group": 32}); errors name ``where``."""
    if not isinstance(text, str) or not text.strip():
        raise BadInputError(f"{where}: expected an edit such as noop, quant8, quant:bits=4 or prune:sparsity=0.5")
    name, _, rest = text.strip().partition(":")
    if name not in EDIT_NAMES:
        raise BadInputError(f"{where}: unknown edit {name!r}; expected one of {', '.join(EDIT_NAMES)}")
    raw: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))) if rest else ():
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise BadInputError(f"{where}: {item!r} in {text!r}: expected KEY=VALUE")
        if key in raw:
            raise BadInputError(f"{where}: parameter {key!r} given twice in {text!r}")
        raw[key] = value
    return EditSpec(name, _PARAMETERS[name](raw, where))


def _no_parameters(raw: dict[str, str], where: str) -> dict[str, Any]:
    if raw:
        raise BadInputError(f"{where}: this edit takes no parameters, got {', '.join(sorted(raw))}")
    return {}


def _quant(raw: dict[str, str], where: str) -> dict[str, Any]:
    _known(raw, ("bits", "group"), where)
    if "bits" not in raw:
        raise BadInputError(f"{where}: quant needs bits, e.g. quant:bits=4")
    bits = _integer(raw["bits"], "bits", where)
    if bits not in QUANT_BITS:
        raise BadInputError(f"{where}: bits must be {QUANT_BITS.start}-{QUANT_BITS.stop - 1}, got {bits}")
    params: dict[str, Any] = {"bits": bits}
    if "group" in raw:
        group = _integer(raw["group"], "group", where)
        if group < 1:
            raise BadInputError(f"{where}: group must be a positive number of input columns, got {group}")
        params["group"] = group
    return params


def _prune(raw: dict[str, str], where: str) -> dict[str, Any]:
    _known(raw, ("sparsity",), where)
    if "sparsity" not in raw:
        raise BadInputError(f"{where}: prune needs sparsity, e.g. prune:sparsity=0.5")
    try:
        sparsity = float(raw["sparsity"])
    except ValueError:
        raise BadInputError(f"{where}: sparsity must be a number in [0, 1), got {raw['sparsity']!r}") from None
    if not 0.0 <= sparsity < 1.0:
        raise BadInputError(f"{where}: sparsity must be in [0, 1), got {sparsity}")
    return {"sparsity": sparsity}


def _known(raw: dict[str, str], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise BadInputError(f"{where}: unknown parameter {unknown[0]!r}; expected {', '.join(allowed)}")


def _integer(value: str, name: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadInputError(f"{where}: {name} must be an integer, got {value!r}") from None


_PARAMETERS = {"noop": _no_parameters, "quant8": _no_parameters, "quant": _quant, "prune": _prune}


def edit_label(edit: dict[str, Any] | None) -> str | None:
    """The edit as its spec (``quant:bits=4,group=32``); reports older than specs have only a name."""
    edit = edit or {}
    return edit.get("spec") or edit.get("name")
