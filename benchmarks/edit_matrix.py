"""What the built-in edits do to the embedded model: ratio, 95% CI and verdict against the
baseline on a profile (default ci), per tier, and whether each edit is deterministic (the same
weights digest from two fresh applications).

    python benchmarks/edit_matrix.py [--profile ci] [--tier balanced]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EDITS = (
    "quant8",
    "quant:bits=4",
    "quant:bits=4,group=32",
    "prune:sparsity=0.3",
    "prune:sparsity=0.5",
    "prune:sparsity=0.7",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--tier", default="balanced")
    args = parser.parse_args()

    from invarlock_provider.config import RunOverrides, load_preset
    from invarlock_provider.evaluation.run import execute_run
    from invarlock_provider.reporting.evaluation import build_evaluation
    from invarlock_provider.reporting.policy import load_tier
    from invarlock_provider.reporting.run_report import load_run_report

    policy = load_tier(args.tier)
    with tempfile.TemporaryDirectory(prefix="invarlock-edits-") as tmp:

        def run(name: str, edit: str) -> object:
            preset = load_preset(None, profile=args.profile, overrides=RunOverrides(edit=edit))
            return load_run_report(execute_run(preset, Path(tmp) / name).report_path, name)

        baseline = run("baseline", "noop")
        print(f"embedded model, {args.profile} profile, tier {args.tier}")
        print(f"{'edit':<24}{'ratio':>9}{'95% CI':>20}{'verdict':>9}  deterministic  failed gates")
        for position, edit in enumerate(EDITS):
            first, second = run(f"e{position}a", edit), run(f"e{position}b", edit)
            same = first.data["meta"]["weights_digest"] == second.data["meta"]["weights_digest"]
            evaluation = build_evaluation(first, baseline, policy, output_dir=Path(tmp))
            metric = evaluation["primary_metric"]
            failed = ", ".join(gate["name"] for gate in evaluation["gates"] if not gate["passed"]) or "-"
            ci = f"{metric['ci'][0]:.4f}-{metric['ci'][1]:.4f}"
            print(f"{edit:<24}{metric['ratio']:>9.4f}{ci:>20}{evaluation['verdict']:>9}  {same!s:<13}  {failed}")


if __name__ == "__main__":
    main()
