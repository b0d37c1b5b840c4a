"""The README's figures, measured from a fresh clone, with the conditions they hold for.

    python benchmarks/readme_figures.py [--tests] [--repo PATH]

Clones the repository into a temporary folder and times there: the main job (`bash
scripts/quickstart.sh`) the first time (it creates `.venv`), the main job again (`.venv` exists),
the nightly DAG run and its scoring time as the main job reports them, and with `--tests` the
README's test command verbatim (`bash scripts/test.sh`, which installs missing system packages
first; its summary line shows any skip). Every figure is printed
with the machine's usable cores, CPU model and load average before and after, since on a shared
machine the same steps take twice as long and more.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def timed(command: str, cwd: Path) -> tuple[float, str]:
    """Seconds and output of one step run as a new user would, without this process's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INVARLOCK_", "AIRFLOW", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    started = time.perf_counter()
    result = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(
            f"{command} failed (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return seconds, result.stdout + result.stderr


def dag_figures(output: str) -> str:
    match = re.search(r"DAG run \S+: success in ([\d.]+) s \(([\d.]+) s of it scoring windows\)", output)
    return f"DAG run {match.group(1)} s, scoring {match.group(2)} s" if match else "DAG run: not found in the output"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", action="store_true", help="also time the README's test command")
    parser.add_argument("--repo", type=Path, default=REPO, help="the repository to clone (default: this one)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {cores} usable cores, {cpu_model()}, {platform.system()} {platform.machine()}")
    print(f"load average (1, 5, 15 min) before: {load()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="invarlock-figures-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(args.repo), str(clone)], check=True)
        seconds, output = timed("bash scripts/quickstart.sh", clone)
        rows.append(("main job, fresh clone (creates .venv)", minutes(seconds), dag_figures(output)))
        seconds, output = timed("bash scripts/quickstart.sh", clone)
        rows.append(("main job again (.venv exists)", minutes(seconds), dag_figures(output)))
        if args.tests:
            seconds, output = timed("bash scripts/test.sh", clone)  # the README's command, verbatim
            summary = re.findall(r"=+ (.*(?:passed|failed).*) in [\d.]+s", output)
            rows.append(("tests (bash scripts/test.sh)", minutes(seconds), summary[-1] if summary else "no summary"))
    print(f"load average (1, 5, 15 min) after:  {load()}")
    print()
    print(f"| {'step':<40} | {'wall time':>14} | detail |")
    print(f"|{'-' * 42}|{'-' * 16}|--------|")
    for step, wall, detail in rows:
        print(f"| {step:<40} | {wall:>14} | {detail} |")


if __name__ == "__main__":
    main()
