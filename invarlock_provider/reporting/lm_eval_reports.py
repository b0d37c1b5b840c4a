"""An lm-evaluation-harness run (``lm_eval --log_samples``) as an InvarLock run report, so two such
runs are paired, judged, archived and verified like any two runs of ``invarlock run``.

The report scores tasks only (no perplexity windows) and says where its numbers came from: the
results file's and every samples file's sha256, lm-eval's version, the model as lm-eval named it.
A task's ``file_sha256`` is the sha256 of its lm-eval config with what differs between two models'
runs taken out, and its version is part of its source: two runs pair on a task only when both ran
the same task version with the same config, on the same documents (ids, and per document the same
question). Guards need the model itself, which lm-eval's output does not hold: an evaluation of two
lm-eval reports judges their tasks and pairing only, and says so (``meta.scorer``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from invarlock_provider import __version__
from invarlock_provider.fileio import canonical_json, sha256_bytes
from invarlock_provider.reporting.lm_eval_samples import LmEvalRun, LmEvalTask
from invarlock_provider.reporting.run_report import REPORT_SCHEMA
from invarlock_provider.task_file import TaskExample, examples_digest

LM_EVAL_SCORER = "lm-eval"
_EMPTY_SPLIT = {"window_ids": [], "token_digests": [], "logloss": [], "token_counts": []}


def lm_eval_report(run: LmEvalRun, *, created_at: datetime | None = None) -> dict[str, Any]:
    """The run report of one lm-eval run (every task it has, in name order)."""
    key = sha256_bytes(canonical_json({"results": run.results_sha256, "samples": run.samples_sha256}))
    stamp = (created_at or datetime.now(UTC)).astimezone(UTC)
    return {
        "schema_version": REPORT_SCHEMA,
        "run_id": f"lm-eval-{stamp:%Y%m%d_%H%M%S}-{key[:6]}",
        "created_at": stamp.isoformat(timespec="seconds"),
        "meta": {
            "model_id": run.model,
            "weights_digest": None,  # lm-eval's output does not say which weights it read
            "tokenizer_hash": None,
            "scorer": LM_EVAL_SCORER,
            "lm_eval": {
                "version": run.lm_eval_version,
                "results_file": run.results_file.name,
                "results_sha256": run.results_sha256,
                "samples_sha256": dict(sorted(run.samples_sha256.items())),
            },
            "versions": {"invarlock": __version__, "lm_eval": run.lm_eval_version},
        },
        "data": {
            "provider": LM_EVAL_SCORER,
            "seq_len": 1,
            "stride": 1,
            "preview_n": 0,
            "final_n": 0,
            "candidate_windows": 0,
            "seed": 0,
            "dataset_digest": None,
            "windows_digest": None,
        },
        "evaluation_windows": {"preview": dict(_EMPTY_SPLIT), "final": dict(_EMPTY_SPLIT)},
        "metrics": {"primary_metric": {"kind": "ppl", "preview": None, "final": None}},
        "tasks": [_task_block(run.tasks[name]) for name in sorted(run.tasks)],
        "edit": None,
        "guards": [],
    }


def _task_block(task: LmEvalTask) -> dict[str, Any]:
    examples = [TaskExample(r["id"], r["context"], tuple(r["choices"]), r["gold"]) for r in task.examples]
    n = len(task.examples)
    return {
        "name": task.name,
        "source": f"lm-eval task {task.name} version {task.version}",
        # The task as configured: its version and config (what lm-eval calls the task).
        "file_sha256": sha256_bytes(canonical_json({"version": task.version, "config_sha256": task.config_sha256})),
        "examples_available": task.n_samples,
        "limit": None,
        "selection": "every document lm-eval scored, by doc id",
        "seed": 0,
        "examples_sha256": examples_digest(examples),
        "scoring": {
            "method": "loglikelihood, multiple choice (lm-evaluation-harness)",
            "target_delimiter": task.target_delimiter,
            "accuracy_norm": "log-likelihood per character of the choice",
        },
        "n": n,
        "accuracy": sum(r["correct"] for r in task.examples) / n,
        "accuracy_norm": sum(r["correct_norm"] for r in task.examples) / n,
        # lm-eval's hash of each document as its dataset held it: the same prompt from a changed
        # document does not pair.
        "examples": [{**record, "doc_hash": task.doc_hashes[record["id"]]} for record in task.examples],
    }


def both_from_lm_eval(subject: Any, baseline: Any) -> bool:
    """Two reports of lm-eval runs (tasks only, no guards measured): there was no model to measure
    guards on, so none are compared."""
    return all(
        report.data["meta"].get("scorer") == LM_EVAL_SCORER
        and not report.data.get("guards")
        and not report.windows("final")["logloss"]
        for report in (subject, baseline)
    )
