"""Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point.

The integration carries no ``external-doc-url`` (optional in Airflow's schema): the package has no
published documentation site, and the docs ship in the repository (README.md, docs/), which a
URL cannot point at truthfully.
"""

from __future__ import annotations

from typing import Any

from invarlock_provider.version import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-invarlock",
        "name": "InvarLock",
        "description": "Paired model-quality evaluations of causal language models, archived as verifiable evidence.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "InvarLock",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "InvarLock",
                "python-modules": [
                    "invarlock_provider.airflow.operators",
                    "invarlock_provider.airflow.gate",
                    "invarlock_provider.airflow.promote",
                ],
            }
        ],
        "hooks": [{"integration-name": "InvarLock", "python-modules": ["invarlock_provider.airflow.hooks"]}],
        "connection-types": [
            {
                "connection-type": "invarlock_evidence",
                "hook-class-name": "invarlock_provider.airflow.hooks.EvidenceStoreHook",
            }
        ],
        "extra-links": ["invarlock_provider.airflow.links.EvidenceLink"],
        "plugins": [{"name": "invarlock", "plugin-class": "invarlock_provider.airflow.plugin.InvarlockPlugin"}],
    }
