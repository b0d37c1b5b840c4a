from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from invarlock_provider.errors import BadInputError
from invarlock_provider.layout import completed_runs, create_run_dir, publish_latest, resolve_report

NOW = datetime(2025, 10, 10, 18, 25, 15, tzinfo=UTC)


def _complete(run_dir: Path, marker: str) -> None:
    (run_dir / "report.json").write_text(marker)


def test_runs_in_the_same_second_never_collide(tmp_path: Path) -> None:
    dirs = [create_run_dir(tmp_path / "baseline", NOW) for _ in range(12)]
    assert [d.name for d in dirs[:3]] == ["20251010_182515", "20251010_182515_01", "20251010_182515_02"]
    assert len({d.name for d in dirs}) == 12
    for index, run_dir in enumerate(dirs):
        _complete(run_dir, str(index))
    assert completed_runs(tmp_path / "baseline")[-1].name == "20251010_182515_11"


def test_latest_points_at_newest_completed_run(tmp_path: Path) -> None:
    out = tmp_path / "baseline"
    older = create_run_dir(out, NOW)
    _complete(older, "older")
    publish_latest(out, older)
    newer = create_run_dir(out, NOW.replace(minute=26))
    _complete(newer, "newer")
    publish_latest(out, newer)
    failed = create_run_dir(out, NOW.replace(minute=27))  # no report: a failed run
    assert (out / "report.json").read_text() == "newer"
    assert resolve_report(out / "report.json") == (newer / "report.json").resolve()
    assert resolve_report(out) == (newer / "report.json").resolve()
    assert resolve_report(older) == (older / "report.json").resolve()
    with pytest.raises(BadInputError, match=r"no report\.json"):
        resolve_report(failed)


def test_missing_report_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="report not found"):
        resolve_report(tmp_path / "nothing" / "report.json")


def test_output_under_a_file_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BadInputError, match=r"^output dir not writable: .*file/runs"):
        create_run_dir(blocker / "runs", NOW)
