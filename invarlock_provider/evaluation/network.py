"""The offline-by-default network policy for model and dataset hubs.

Evaluations must be reproducible from what is on the machine; silently downloading a newer
revision of a model or dataset would change the evidence. Hub access is opt-in.
"""

from __future__ import annotations

import os

ALLOW_NETWORK_ENV = "INVARLOCK_ALLOW_NETWORK"
_OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def network_allowed() -> bool:
    return os.environ.get(ALLOW_NETWORK_ENV, "").strip().lower() in {"1", "true", "yes"}


def apply_network_policy() -> bool:
    """Set the Hugging Face offline switches unless network is allowed; call before importing HF."""
    allowed = network_allowed()
    if not allowed:
        for name in _OFFLINE_SWITCHES:
            os.environ[name] = "1"
    return allowed
