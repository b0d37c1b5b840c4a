"""DAG parse cost: import time of each DAG file beyond `import airflow.sdk`, and proof that
parsing imports none of torch, transformers, datasets, boto3, openlineage (checked in sys.modules).

Each measurement is a fresh interpreter: import airflow.sdk, then time runpy of the DAG file.
OpenLineage is switched on (console transport) when its provider is installed, as a deployment
that collects lineage would run; the operators import it only after a task has run.

    python benchmarks/dag_parse.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

DAGS = Path(__file__).resolve().parent.parent / "dags"
HEAVY = ("torch", "transformers", "datasets", "boto3", "openlineage")
PROBE = """
import json, runpy, sys, time
import airflow.sdk
begin = time.perf_counter()
runpy.run_path({path!r})
elapsed = time.perf_counter() - begin
print(json.dumps({{"ms": elapsed * 1000, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    env = dict(os.environ)
    lineage = importlib.util.find_spec("airflow.providers.openlineage") is not None
    if lineage:
        env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = '{"type": "console"}'
    print(f"OpenLineage provider: {'installed, console transport on' if lineage else 'not installed'}")
    print(f"{'DAG file':<28} {'median ms':>10} {'min ms':>8}  heavy modules imported")
    print("-" * 72)
    for path in sorted(DAGS.glob("*.py")):
        samples, heavy = [], set()
        for _ in range(args.repeats):
            output = subprocess.run(
                [sys.executable, "-c", PROBE.format(path=str(path), heavy=HEAVY)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            ).stdout
            result = json.loads(output.strip().splitlines()[-1])
            samples.append(result["ms"])
            heavy.update(result["heavy"])
        print(f"{path.name:<28} {statistics.median(samples):10.1f} {min(samples):8.1f}  {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
