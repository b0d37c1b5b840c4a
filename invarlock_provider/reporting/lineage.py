"""What an evaluation read and wrote, named the way OpenLineage names datasets.

Plain data only: the Airflow layer (``invarlock_provider.airflow.lineage``) turns it into
OpenLineage facets, so the library stays free of both Airflow and the OpenLineage client. Names
follow OpenLineage's naming conventions where they exist: a store object is namespace
``s3://BUCKET`` with its key as the name, a local file or folder is namespace ``file`` with its
absolute path. A Hugging Face hub model or dataset is namespace ``huggingface`` with its id; what
ships inside this package (``embedded:...``) is namespace ``invarlock``. The content digest each
run records (weights digest, dataset digest) is the dataset's version, so two runs that read the
same bytes point at the same version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from invarlock_provider.edit_spec import edit_label
from invarlock_provider.errors import BadInputError
from invarlock_provider.reporting.policy import gate_outcome
from invarlock_provider.resources import is_embedded

EMBEDDED_NAMESPACE = "invarlock"
HUB_NAMESPACE = "huggingface"


@dataclass(frozen=True)
class LineageDataset:
    namespace: str
    name: str
    version: str | None = None
    kind: str | None = None  # OpenLineage datasetType, e.g. MODEL


@dataclass(frozen=True)
class GateAssertion:
    """One gate of an evaluation: an assertion about the subject model against its baseline."""

    gate: str
    passed: bool
    outcome: str  # pass, fail or insufficient (too little evidence to judge)
    expected: str
    actual: str
    detail: str


@dataclass(frozen=True)
class Lineage:
    inputs: list[LineageDataset]
    outputs: list[LineageDataset]
    assertions: list[GateAssertion] = field(default_factory=list)  # about inputs[0], the subject model
    run: dict[str, Any] = field(default_factory=dict)  # what the run facet carries


def location_dataset(location: str) -> LineageDataset:
    """``s3://BUCKET/KEY`` -> (``s3://BUCKET``, KEY); ``file:///PATH`` or a path -> (``file``, /PATH)."""
    parts = urlsplit(location)
    if parts.scheme == "s3":
        return LineageDataset(f"s3://{parts.netloc}", parts.path.lstrip("/"))
    if parts.scheme == "file":
        return LineageDataset("file", unquote(parts.path))
    if parts.scheme:
        raise BadInputError(f"{location}: expected a local path, file:///PATH or s3://BUCKET/KEY")
    return LineageDataset("file", str(Path(location).resolve()))


def run_identity(report: dict[str, Any]) -> dict[str, Any]:
    """The model and dataset one run read, with their digests (part of the run's summary/XCom)."""
    meta, data = report["meta"], report["data"]
    source_fields = ("provider", "path", "dataset_id", "dataset_config", "split", "text_field")
    return {
        "model": {
            "id": meta.get("model_id"),
            "source": meta.get("model_source"),
            "revision": meta.get("model_revision"),
            "weights_digest": meta.get("weights_digest"),
            "edit": edit_label(report.get("edit")),
        },
        "dataset": {
            **{key: data[key] for key in source_fields if data.get(key) is not None},
            "dataset_digest": data.get("dataset_digest"),
        },
    }


def model_dataset(model: dict[str, Any]) -> LineageDataset:
    """The evaluated model; its version is the digest of the weights that were scored (after the edit)."""
    reference = str(model["id"])
    source = str(model.get("source") or reference)
    if is_embedded(reference):
        namespace, name = EMBEDDED_NAMESPACE, reference
    elif source != reference or Path(source).is_absolute():  # loaded from a local folder
        namespace, name = "file", source
    else:
        namespace, name = HUB_NAMESPACE, reference
    return LineageDataset(namespace, name, model.get("weights_digest"), "MODEL")


def corpus_dataset(dataset: dict[str, Any]) -> LineageDataset:
    """The evaluation text; its version is the dataset digest (sha256 of the text that was read)."""
    if dataset.get("provider") == "hf":
        parts = (dataset.get("dataset_id"), dataset.get("dataset_config"), dataset.get("split"))
        return LineageDataset(HUB_NAMESPACE, "/".join(str(p) for p in parts if p), dataset.get("dataset_digest"))
    path = str(dataset.get("path"))
    if is_embedded(path):
        return LineageDataset(EMBEDDED_NAMESPACE, path, dataset.get("dataset_digest"))
    return LineageDataset("file", str(Path(path).resolve()), dataset.get("dataset_digest"))


def run_lineage(identity: dict[str, Any], run_dir: str, run: dict[str, Any]) -> Lineage:
    """``invarlock run``: model and dataset in, the run folder out."""
    return Lineage(
        inputs=[model_dataset(identity["model"]), corpus_dataset(identity["dataset"])],
        outputs=[location_dataset(run_dir)],
        run=run,
    )


def gate_assertions(evaluation: dict[str, Any]) -> list[GateAssertion]:
    return [
        GateAssertion(
            gate=entry["name"],
            passed=bool(entry["passed"]),
            outcome=gate_outcome(entry),
            expected=f"{entry['comparison']} {_text(entry['limit'])}",
            actual=_text(entry["value"]),
            detail=entry.get("detail") or "",
        )
        for entry in evaluation["gates"]
    ]


def _text(value: Any) -> str:
    if isinstance(value, list):
        return f"[{', '.join(_text(v) for v in value)}]"
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def evaluation_lineage(
    evaluation: dict[str, Any], subject_report: dict[str, Any], output: str, extra: dict[str, Any] | None = None
) -> Lineage:
    """``invarlock report`` and ``archive``: the subject's model and dataset in, the folder or bundle
    out, one assertion per gate, and the verdict with what it was judged by."""
    identity = run_identity(subject_report)
    metric = evaluation.get("primary_metric") or {}
    run = {
        "verdict": evaluation["verdict"],
        "tier": evaluation["tier"],
        "ratio": metric.get("ratio"),
        "ci": metric.get("ci"),
        "policy_digest": evaluation["policy_digest"],
        "subject_run_id": evaluation["subject"].get("run_id"),
        "subject_edit": evaluation["subject"].get("edit"),
        "baseline_run_id": evaluation["baseline"].get("run_id"),
        "baseline_weights_digest": evaluation["baseline"].get("weights_digest"),
        "evaluation_digest": evaluation.get("evaluation_digest"),
        **(extra or {}),
    }
    return Lineage(
        inputs=[model_dataset(identity["model"]), corpus_dataset(identity["dataset"])],
        outputs=[location_dataset(output)],
        assertions=gate_assertions(evaluation),
        run=run,
    )
