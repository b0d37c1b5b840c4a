"""Time to build an evaluation report: 400 + 400 windows, 3,200 BCa bootstrap replicates.

Uses synthetic run reports with the real schema (per-window losses drawn from the distribution a
quant8 subject shows), so it needs no model. Prints one row per stage, best of several repeats.

    python benchmarks/report_build.py [--windows 400] [--replicates 3200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from invarlock_provider.reporting.evaluation import build_evaluation, write_evaluation
from invarlock_provider.reporting.policy import load_tier
from invarlock_provider.reporting.run_report import REPORT_SCHEMA, load_run_report
from invarlock_provider.reporting.verify import verify_path


def synthetic_report(run_id: str, windows: int, losses: dict[str, np.ndarray]) -> dict:
    """A run report with the windows its seed selects (as ``invarlock verify`` recomputes them)."""
    from invarlock_provider.evaluation.windows import select_window_ids

    candidates, seed = 4 * windows, 0
    selected = dict(zip(("preview", "final"), select_window_ids(candidates, windows, windows, seed), strict=True))

    def block(split: str, offset: int) -> dict:
        return {
            "window_ids": list(selected[split]),
            "token_digests": [f"{i:064x}" for i in selected[split]],
            "logloss": losses[split].tolist(),
            "token_counts": [511] * windows,
        }

    return {
        "schema_version": REPORT_SCHEMA,
        "run_id": run_id,
        "meta": {"model_id": run_id, "tokenizer_hash": "t" * 64, "weights_digest": run_id},
        "data": {
            "dataset_digest": "d" * 64,
            "seq_len": 512,
            "stride": 512,
            "preview_n": windows,
            "final_n": windows,
            "candidate_windows": candidates,
            "seed": seed,
            "windows_digest": "w" * 64,
        },
        "evaluation_windows": {"preview": block("preview", 0), "final": block("final", windows)},
        "metrics": {"primary_metric": {"kind": "ppl", "preview": 20.0, "final": 20.0}},
        "edit": {"name": "quant8"},
        "guards": [  # both sides measured alike, so only the windows decide the verdict
            {"name": "invariants", "passed": True, "metrics": {"parameters": 1}, "violations": []},
            {
                "name": "spectral",
                "passed": True,
                "metrics": {
                    "modules": [
                        {"name": f"h.{layer}.{family}", "family": family, "layer": layer, "sigma_max": 1.0}
                        for layer in range(2)
                        for family in ("attention", "mlp")
                    ]
                },
                "violations": [],
            },
        ],
    }


def best_of(repeats: int, action) -> float:
    timings = []
    for _ in range(repeats):
        begin = time.perf_counter()
        action()
        timings.append(time.perf_counter() - begin)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=400)
    parser.add_argument("--replicates", type=int, default=3200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    base = {s: rng.normal(3.0, 0.3, args.windows) for s in ("preview", "final")}
    subject = {s: base[s] + rng.normal(0.002, 0.01, args.windows) for s in base}
    policy = load_tier("balanced")
    policy.snapshot["bootstrap"] = {**policy.snapshot["bootstrap"], "replicates": args.replicates}

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, losses in (("baseline", base), ("subject", subject)):
            (root / name).mkdir()
            (root / name / "report.json").write_text(json.dumps(synthetic_report(name, args.windows, losses)))
        reports = {n: load_run_report(root / n / "report.json", n) for n in ("subject", "baseline")}
        out = root / "reports" / "subject"
        rows = [
            (
                "load both report.json",
                best_of(
                    args.repeats,
                    lambda: [load_run_report(root / n / "report.json", n) for n in ("subject", "baseline")],
                ),
            ),
            (
                "build evaluation (pairing, stats, BCa, gates)",
                best_of(
                    args.repeats,
                    lambda: build_evaluation(
                        reports["subject"], reports["baseline"], copy.deepcopy(policy), output_dir=out
                    ),
                ),
            ),
            (
                "write evaluation folder",
                best_of(args.repeats, lambda: write_evaluation(out, reports["subject"], reports["baseline"], policy)),
            ),
            ("verify evaluation folder", best_of(args.repeats, lambda: verify_path(out))),
            (
                "`invarlock report` command, process start to exit",
                best_of(
                    args.repeats,
                    lambda: subprocess.run(
                        [
                            str(Path(sys.executable).with_name("invarlock")),
                            "report",
                            "--run",
                            str(root / "subject"),
                            "--baseline",
                            str(root / "baseline"),
                            "--format",
                            "report",
                            "--output",
                            str(out),
                        ],
                        check=True,
                        capture_output=True,
                    ),
                ),
            ),
        ]
    print(f"{args.windows}+{args.windows} windows, {args.replicates} bootstrap replicates, best of {args.repeats}")
    print(f"{'stage':<52} {'seconds':>8}")
    print("-" * 61)
    for stage, seconds in rows:
        print(f"{stage:<52} {seconds:8.3f}")


if __name__ == "__main__":
    main()
