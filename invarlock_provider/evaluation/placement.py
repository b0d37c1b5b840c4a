"""Where a model's weights go: one device, or split across GPUs, CPU and disk by accelerate.

The model always loads straight onto its devices (``from_pretrained(device_map=...)``), so a
checkpoint larger than host memory, or than one GPU, never passes through a full copy in host
memory. A strategy (``auto``/``balanced``/``sequential``) with ``max_memory`` budgets lets
accelerate split the decoder layers; disk offload happens only where ``max_memory`` names a
``disk`` budget, so a too-small budget is a clear error rather than a silent crawl from disk.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from invarlock_provider.device_map_spec import STRATEGIES, format_size, parse_max_memory
from invarlock_provider.errors import BadInputError
from invarlock_provider.weights.tensors import is_meta


@dataclass(frozen=True)
class Placement:
    """What from_pretrained is asked for, and the device the inputs start on."""

    device_map: str
    max_memory: dict[str, int] | None
    input_device: str

    @property
    def split(self) -> bool:
        return self.device_map in STRATEGIES

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"device_map": self.device_map}
        if self.max_memory is not None:
            kwargs["max_memory"] = {_accelerate_key(k): v for k, v in self.max_memory.items()}
        return kwargs


def plan_placement(device_map: str | None, max_memory: dict[str, Any] | None, device: str) -> Placement:
    """Check the requested devices exist on this machine; without a map, the run's device is the map."""
    budgets = parse_max_memory(max_memory, "max_memory") if max_memory else None
    if budgets and device_map is None:
        raise BadInputError(
            "max_memory is set but model.device_map is not: add --device-map auto (or balanced, sequential)"
        )
    for key in budgets or {}:
        check_device_exists(key, f"max_memory.{key}")
    if device_map is None:
        return Placement(device_map=device, max_memory=None, input_device=device)
    if device_map in STRATEGIES:
        first_gpu = sorted(k for k in budgets or {} if k.startswith("cuda"))
        input_device = first_gpu[0] if first_gpu else device
        return Placement(device_map=device_map, max_memory=budgets, input_device=input_device)
    target = "cuda:0" if device_map == "cuda" else device_map
    check_device_exists(target, "device map")
    if target.partition(":")[0] != device:
        raise BadInputError(f"device map {device_map!r} puts the model on {target} but the run's device is {device}")
    if budgets:
        raise BadInputError(f"max_memory needs a splitting device map (auto, balanced, sequential), not {device_map!r}")
    return Placement(device_map=target, max_memory=None, input_device=target)


def requested_device(device_map: str | None, eval_device: str) -> str:
    """A single-device map decides the run's device when ``--device`` is ``auto``."""
    if device_map is None or device_map in STRATEGIES or eval_device != "auto":
        return eval_device
    target = "cuda:0" if device_map == "cuda" else device_map
    check_device_exists(target, "device map")
    return target.partition(":")[0]


def check_device_exists(device: str, where: str) -> None:
    import torch

    if device in ("cpu", "disk"):
        return
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise BadInputError(f"{where}: mps is not available on this machine")
        return
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        present = ", ".join(f"cuda:{i}" for i in range(count)) or "none"
        raise BadInputError(f"{where}: {device} does not exist on this machine (CUDA devices: {present})")


def _accelerate_key(key: str) -> int | str:
    return int(key.partition(":")[2]) if key.startswith("cuda") else key


def describe_device_map(model: Any, placement: Placement) -> dict[str, Any]:
    """For meta: the map asked for, the budgets, the module-to-device map and bytes per device."""
    state = dict(model.named_parameters()) | dict(model.named_buffers())  # tied weights counted once
    # transformers sets hf_device_map only when the map places modules; one device leaves none.
    hf_map = dict(getattr(model, "hf_device_map", None) or {"": _only_device(state.values())})
    bytes_on: dict[str, int] = defaultdict(int)
    for name, tensor in state.items():
        bytes_on[_device_of(hf_map, name)] += tensor.numel() * tensor.element_size()
    return {
        "requested": placement.device_map,
        "max_memory": {k: v for k, v in (placement.max_memory or {}).items()},
        "input_device": placement.input_device,
        "modules": {name or "(model)": str(device) for name, device in hf_map.items()},
        "modules_per_device": dict(Counter(str(device) for device in hf_map.values())),
        "bytes_per_device": dict(bytes_on),
    }


def check_fits(model: Any, placement: Placement) -> None:
    """Refuse a split that spilled to disk without a disk budget, or beyond it."""
    if not placement.split:
        return
    described = describe_device_map(model, placement)
    on_disk = described["bytes_per_device"].get("disk", 0)
    if not on_disk:
        return
    budgets = placement.max_memory or {}
    total = sum(described["bytes_per_device"].values())
    asked = ", ".join(f"{k}={format_size(v)}" for k, v in budgets.items()) or "the free memory of this machine"
    held = format_size(total - on_disk)
    if "disk" not in budgets:
        raise BadInputError(
            f"max_memory too small: the model's weights need {format_size(total)}, {asked} held {held} of them; "
            "raise the budgets, or add disk=SIZE to offload the rest to disk"
        )
    if on_disk > budgets["disk"]:
        raise BadInputError(
            f"max_memory too small: {format_size(on_disk)} of weights would go to disk "
            f"but disk={format_size(budgets['disk'])}"
        )


def _only_device(tensors: Any) -> str:
    devices = {"disk" if is_meta(t) else str(t.device) for t in tensors}
    return devices.pop() if len(devices) == 1 else "mixed"


def _device_of(hf_map: dict[str, Any], tensor_name: str) -> str:
    """The device of the longest module prefix the map names."""
    parts = tensor_name.split(".")
    for cut in range(len(parts), -1, -1):
        prefix = ".".join(parts[:cut])
        if prefix in hf_map:
            device = hf_map[prefix]
            return f"cuda:{device}" if isinstance(device, int) else str(device)
    return "unknown"


def input_device_of(model: Any, fallback: str) -> str:
    """The device the token ids must be on: where the input embedding executes."""
    embedding = model.get_input_embeddings()
    hook = getattr(embedding, "_hf_hook", None)
    execution = getattr(hook, "execution_device", None)
    if execution is not None:
        return f"cuda:{execution}" if isinstance(execution, int) else str(execution)
    return fallback if is_meta(embedding.weight) else str(embedding.weight.device)
