"""What progress lines and checkpoints cost, as a share of scoring time, and what a resume saves.

Runs `invarlock run` on the embedded preset's release profile (800 windows of 128 tokens), as an
operator starts it (`--run-dir-name`, so checkpoints are saved), several times per setting,
interleaved, and reads each run's own timings: `checkpoint_s` (encoding and writing checkpoints),
`progress_s` (progress lines) and `events_mirror_s` (copying the timeline to the store; zero for a
local folder) against `score_s`. With `--store s3://BUCKET/PREFIX` (credentials from the AWS_*
variables) the same runs go to a work store. Then one run is stopped with SIGTERM once 60% of its
windows are checkpointed and run again: the table shows the retry's wall time beside an
uninterrupted run's.

    python benchmarks/long_run_costs.py [--repeats 3] [--threads 1] [--store s3://bucket/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = ["run", "--profile", "release", "--json", "--no-progress"]


def cli(out: str, run_dir: str, threads: int, env: dict[str, str]) -> tuple[dict, float]:
    command = [sys.executable, "-m", "invarlock_provider.cli", *RUN, "--threads", str(threads), "--out", out]
    began = time.perf_counter()
    result = subprocess.run([*command, "--run-dir-name", run_dir], capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout), wall


def read_report(summary: dict) -> dict:
    location = summary["report"]
    if location.startswith("s3://"):
        from invarlock_provider.storage.workstore import work_location

        folder = work_location(location.rsplit("/", 1)[0])
        return json.loads(folder.store.read_bytes(f"{folder.key}/report.json"))
    return json.loads(Path(location).read_text())


def costs(report: dict) -> dict[str, float]:
    timings = report["meta"]["timings"]
    return {key: timings.get(key, 0.0) for key in ("score_s", "checkpoint_s", "progress_s", "events_mirror_s")}


def run_name(index: int) -> str:
    return f"20261205_0{index // 60 % 10}{index % 60:02d}00_01"


def killed_at_60_percent(out: Path, threads: int, env: dict[str, str]) -> tuple[int, float]:
    """Start a run, SIGTERM it once a checkpoint holds 480 of its 800 windows; (windows, wall s)."""
    command = [sys.executable, "-m", "invarlock_provider.cli", *RUN, "--threads", str(threads), "--out", str(out)]
    began = time.perf_counter()
    process = subprocess.Popen([*command, "--run-dir-name", run_name(999)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    saved = 0
    while saved < 480:
        if process.poll() is not None:
            raise SystemExit("the run ended before 60% of its windows were checkpointed")
        for events in out.glob(".tries/*/*/run/events.jsonl"):
            for line in events.read_text().splitlines():
                event = json.loads(line)
                if event["event"] == "checkpoint_saved":
                    saved = max(saved, event["data"]["windows"])
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    process.wait()
    return saved, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store", default=None, metavar="s3://BUCKET/PREFIX")
    args = parser.parse_args()
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} before")
    settings = {"default interval (60 s)": None, "every 1 s": "1", "every 0.2 s": "0.2"}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in settings}
    counter = 0
    with tempfile.TemporaryDirectory(prefix="invarlock-bench-") as scratch:
        root = args.store.rstrip("/") if args.store else scratch
        for _ in range(args.repeats):
            for name, interval in settings.items():
                env = {**os.environ, "INVARLOCK_CHECKPOINT_INTERVAL_S": interval or "60"}
                counter += 1
                summary, _ = cli(f"{root}/costs", run_name(counter), args.threads, env)
                report = read_report(summary)
                rows[name].append({**costs(report), "checkpoints": report["meta"]["scoring"]["checkpoints"]})
        print(f"\n{'checkpoints':<24} {'saved':>6} {'score s':>8} {'ckpt ms':>8} {'lines ms':>8} {'mirror ms':>9} "
              f"{'share':>7}")  # fmt: skip
        for name, measured in rows.items():
            score = statistics.median(m["score_s"] for m in measured)
            ckpt = statistics.median(m["checkpoint_s"] for m in measured)
            lines = statistics.median(m["progress_s"] for m in measured)
            mirror = statistics.median(m["events_mirror_s"] for m in measured)
            share = (ckpt + lines + mirror) / score
            saved = statistics.median(m["checkpoints"] for m in measured)
            print(f"{name:<24} {saved:>6.0f} {score:>8.3f} {ckpt * 1e3:>8.2f} {lines * 1e3:>8.2f} "
                  f"{mirror * 1e3:>9.2f} {share:>7.2%}")  # fmt: skip

        env = {**os.environ, "INVARLOCK_CHECKPOINT_INTERVAL_S": "0.2"}
        local = Path(scratch) / "resume"
        windows, killed_wall = killed_at_60_percent(local, args.threads, env)
        _, retry_wall = cli(str(local), run_name(999), args.threads, env)
        _, fresh_wall = cli(str(Path(scratch) / "fresh"), run_name(998), args.threads, env)
        print(f"\nresume after SIGTERM at {windows}/800 windows (local folder, checkpoints every 0.2 s)")
        print(f"{'killed try s':>12} {'retry s':>8} {'restart s':>9} {'saved s':>8}")
        print(f"{killed_wall:>12.2f} {retry_wall:>8.2f} {fresh_wall:>9.2f} {fresh_wall - retry_wall:>8.2f}")
    print(f"\nload average {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
