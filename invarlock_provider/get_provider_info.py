"""Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point."""

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
                "external-doc-url": "https://pypi.org/project/airflow-provider-invarlock/",
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
