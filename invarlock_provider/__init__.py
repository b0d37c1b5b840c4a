"""airflow-provider-invarlock: paired model-quality evaluations as auditable evidence.

Importing the package is cheap on purpose (Airflow imports it while parsing DAG files): the
engine's heavy stacks load inside the functions that use them.
"""

from __future__ import annotations

from invarlock_provider.version import __version__

__all__ = ["__version__"]
