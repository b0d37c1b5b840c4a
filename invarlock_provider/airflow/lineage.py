"""OpenLineage facets for the operators' ``get_openlineage_facets_on_complete``.

Imported only from inside those methods, so the OpenLineage client (an optional dependency:
``apache-airflow-providers-openlineage``) is never loaded when a DAG file is parsed; the run
facets below extend ``RunFacet`` through Airflow's compat layer, everything else is imported
where it is used. The library describes what a task read and wrote
(:mod:`invarlock_provider.reporting.lineage`); this module only maps that onto OpenLineage
datasets and facets. The two run facets are ours; their JSON schema ships beside this module
(``lineage_facets.json``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attr
from airflow.providers.common.compat.openlineage.facet import RunFacet

from invarlock_provider.reporting.lineage import GateAssertion, Lineage, LineageDataset
from invarlock_provider.version import __version__

PRODUCER = f"https://pypi.org/project/airflow-provider-invarlock/{__version__}/"
SCHEMA_URL = f"{PRODUCER}lineage_facets.json#/$defs/"


@attr.define
class InvarlockEvaluationRunFacet(RunFacet):
    """The verdict of a paired evaluation and what it was judged by (``invarlock report``/``archive``)."""

    key: ClassVar[str] = "invarlock_evaluation"

    verdict: str
    tier: str
    ratio: float | None
    ci: list[float] | None
    policy_digest: str
    subject_run_id: str | None
    subject_edit: str | None
    baseline_run_id: str | None
    baseline_weights_digest: str | None
    evaluation_digest: str | None
    report_name: str | None = attr.field(default=None)
    evidence_id: str | None = attr.field(default=None)
    bundle_uri: str | None = attr.field(default=None)
    manifest_sha256: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_URL}InvarlockEvaluationRunFacet"


@attr.define
class InvarlockRunRunFacet(RunFacet):
    """One evaluation run (``invarlock run``): which run, what edit, what it measured."""

    key: ClassVar[str] = "invarlock_run"

    run_id: str
    edit: str | None
    report_sha256: str
    ppl_final: float | None
    tokens: int | None

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_URL}InvarlockRunRunFacet"


def _assertion(gate: GateAssertion) -> Any:
    """One gate, with its limit and value where the installed client knows those fields (older
    openlineage-python releases have only ``assertion``, ``success`` and ``column``)."""
    from openlineage.client.generated.data_quality_assertions_dataset import Assertion

    wanted = {
        "assertion": gate.gate,
        "success": gate.passed,
        # A failed gate makes the verdict FAIL; one that could not judge makes it INSUFFICIENT.
        "severity": "warn" if gate.outcome == "insufficient" else "error",
        "name": gate.gate,
        "description": gate.detail or None,
        "expected": gate.expected,
        "actual": gate.actual,
    }
    accepted = attr.fields_dict(Assertion)
    return Assertion(**{key: value for key, value in wanted.items() if key in accepted})


def _dataset_facets(dataset: LineageDataset) -> dict[str, Any]:
    from openlineage.client.generated.dataset_type_dataset import DatasetTypeDatasetFacet
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

    facets: dict[str, Any] = {}
    if dataset.version:
        facets["version"] = DatasetVersionDatasetFacet(datasetVersion=dataset.version, producer=PRODUCER)
    if dataset.kind:
        facets["datasetType"] = DatasetTypeDatasetFacet(datasetType=dataset.kind, producer=PRODUCER)
    return facets


RUN_FACETS = {"evaluation": InvarlockEvaluationRunFacet, "run": InvarlockRunRunFacet}


def operator_lineage(lineage: Lineage | None, run_facet: str) -> Any:
    """The OperatorLineage of a finished task; None when the task did not get as far as knowing it."""
    if lineage is None:
        return None
    from airflow.providers.common.compat.openlineage.facet import InputDataset, OutputDataset
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.generated.data_quality_assertions_dataset import DataQualityAssertionsDatasetFacet

    inputs = []
    for position, dataset in enumerate(lineage.inputs):
        input_facets: dict[str, Any] = {}
        if position == 0 and lineage.assertions:  # the gates judge the subject model
            input_facets["dataQualityAssertions"] = DataQualityAssertionsDatasetFacet(
                assertions=[_assertion(gate) for gate in lineage.assertions], producer=PRODUCER
            )
        inputs.append(
            InputDataset(
                namespace=dataset.namespace,
                name=dataset.name,
                facets=_dataset_facets(dataset),
                inputFacets=input_facets,
            )
        )
    outputs = [
        OutputDataset(namespace=dataset.namespace, name=dataset.name, facets=_dataset_facets(dataset))
        for dataset in lineage.outputs
    ]
    facet = RUN_FACETS[run_facet](**lineage.run, producer=PRODUCER)
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets={facet.key: facet})
