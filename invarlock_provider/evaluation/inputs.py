"""What a run loads, when its model, tokenizer or corpus came from a store: the local copies.

The preset keeps the URIs (they are what the report records as the model and the corpus); loading
reads the copies. Fetching them is the caller's (``invarlock_provider.run_inputs``): evaluation
never talks to a store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invarlock_provider.config import ModelConfig


@dataclass
class RunInputs:
    """The model config to load from (local paths), the corpus file, task files by task name, and
    each fetched input by role (``model``, ``tokenizer``, ``dataset``, ``task:NAME``), held locked
    against eviction while the run lives."""

    model: ModelConfig
    dataset_file: Path | None = None
    task_files: dict[str, Path] = field(default_factory=dict)
    held: dict[str, Any] = field(default_factory=dict)

    @property
    def records(self) -> dict[str, Any]:
        """meta.inputs: each input's URI, objects (size, sha256, ETag, version) and content digest."""
        return {role: stored.as_record() for role, stored in self.held.items()}
