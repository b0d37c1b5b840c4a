"""Many real, verifiable bundles fast: synthetic per-window losses paired by the real evaluation and
archived by the real archive code, one per night back from a given time. For pages that must be
seen over weeks of nights (tests, screenshots, benchmarks) without weeks of model runs."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

WINDOWS = 40  # small windows keep building 1,000 real evaluations quick; the pages read manifests


def build_bundles(
    root: Path,
    store: Any,
    name: str,
    count: int,
    now: datetime,
    seed: int,
    tier: str = "balanced",
    fail_every: int = 10,
) -> list[str]:
    """``count`` bundles of report ``name`` judged by ``tier``, one per night back from ``now``;
    every ``fail_every``-th night's subject is worse than the ratio gate allows."""
    import numpy as np

    from benchmarks.report_build import synthetic_report
    from invarlock_provider.reporting.evaluation import write_evaluation
    from invarlock_provider.reporting.policy import load_tier
    from invarlock_provider.reporting.run_report import load_run_report
    from invarlock_provider.storage.archive import archive_report

    rng = np.random.default_rng(seed)
    base = {s: rng.normal(3.0, 0.3, WINDOWS) for s in ("preview", "final")}
    (root / "runs" / "baseline").mkdir(parents=True, exist_ok=True)
    (root / "runs" / "baseline" / "report.json").write_text(json.dumps(synthetic_report("baseline", WINDOWS, base)))
    baseline = load_run_report(root / "runs" / "baseline" / "report.json", "baseline")
    policy = load_tier(tier)

    def night(number: int) -> str:
        folder = root / f"night{seed}-{number}"
        shift = 0.2 if fail_every and number % fail_every == fail_every - 1 else 0.002 * (1 + number % 5)
        subject = {s: base[s] + np.random.default_rng(number + seed).normal(shift, 0.01, WINDOWS) for s in base}
        (folder / "runs" / "subject").mkdir(parents=True)
        (folder / "runs" / "subject" / "report.json").write_text(json.dumps(synthetic_report("s", WINDOWS, subject)))
        report = load_run_report(folder / "runs" / "subject" / "report.json", "subject")
        out = folder / "reports" / name
        when = now - timedelta(days=count - number)
        write_evaluation(out, report, baseline, policy, copy_baseline=False, created_at=when)
        return archive_report(store, out, now=when + timedelta(minutes=5)).evidence_id

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(night, range(count)))
