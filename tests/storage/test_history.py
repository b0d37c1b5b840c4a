"""`invarlock history` over several nights of real bundles in SeaweedFS."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invarlock_provider.storage.archive import archive_report
from invarlock_provider.storage.history import report_history
from invarlock_provider.storage.s3 import S3Store
from invarlock_provider.storage.uri import parse_store_uri
from tests.storage.conftest import cli, date_evaluation

# subject_balanced: the quant8 subject three nights, a damaged checkpoint on the third.
NIGHTS = (("quant8", 7), ("quant8", 5), ("damaged", 4), ("quant8", 1))


class CountingStore(S3Store):
    """The real store, recording which keys were read and which prefixes listed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read: list[str] = []
        self.listed: list[str] = []

    def read_bytes(self, key: str) -> bytes:
        self.read.append(key)
        return super().read_bytes(key)

    def list(self, prefix: str):
        self.listed.append(prefix)
        return super().list(prefix)


@pytest.fixture
def nights(seaweed, bucket: str, s3_settings, real_runs: dict[str, Path], tmp_path: Path) -> datetime:
    """Four nights of subject_balanced and two of quant8_balanced, archived at those dates."""
    store = S3Store(parse_store_uri(f"s3://{bucket}/nightly"), s3_settings)
    now = datetime.now(UTC).replace(microsecond=0)
    plan = [("subject_balanced", subject, days) for subject, days in NIGHTS]
    plan += [("quant8_balanced", "quant8", 6), ("quant8_balanced", "quant8", 2)]
    for number, (name, subject, days) in enumerate(plan):
        output = tmp_path / f"night{number}" / name
        code, _, stderr = cli(
            "report", "--run", str(real_runs[subject]), "--baseline", str(real_runs["baseline"]),
            "--format", "html", "--output", str(output), "--copy-baseline",
        )  # fmt: skip
        assert code == 0, stderr
        date_evaluation(output, now - timedelta(days=days))  # that night's evaluation
        archive_report(store, output)
    return now


def test_the_table_lists_every_night_oldest_first(nights: datetime, bucket: str, s3_env) -> None:
    code, stdout, stderr = cli("history", f"s3://{bucket}/nightly")
    assert code == 0, stderr
    lines = stdout.strip().splitlines()
    assert lines[-1] == "6 bundles, 2 report names"
    subject = [line for line in lines if " subject_balanced " in line]
    assert [line.split()[3] for line in subject] == ["PASS", "PASS", "FAIL", "PASS"]
    dates = [line.split()[0] for line in subject]
    assert dates == sorted(dates) and dates[0] == f"{nights - timedelta(days=7):%Y-%m-%d}"
    uri = rf"s3://{bucket}/nightly/subject_balanced/ev-[0-9a-f]{{24}}"
    assert all(re.search(rf"limit +1\.\d+  {uri}$", line) for line in subject)


def test_json_and_since_and_the_chart(nights: datetime, bucket: str, s3_env, tmp_path: Path) -> None:
    page = tmp_path / "history.html"
    args = ("history", f"s3://{bucket}/nightly", "--report", "subject_balanced", "--since", "6d", "--json")
    code, stdout, stderr = cli(*args, "--html", str(page))
    assert code == 0, stderr
    history = json.loads(stdout)
    assert list(history) == ["subject_balanced"]  # --report
    points = history["subject_balanced"]
    assert [p["verdict"] for p in points] == ["PASS", "FAIL", "PASS"]  # --since 6d drops the night 7 days ago
    for point in points:
        assert point["ci"][0] <= point["ratio"] <= point["ci"][1]
        assert point["ratio_limit"] == pytest.approx(1.102)  # balanced: 1.10 + hysteresis, from the ratio gate
    html = page.read_text()
    circles = re.findall(r'<circle class="point (\w+)" data-evidence-id="(ev-[0-9a-f]{24})" data-verdict="(\w+)"', html)
    assert [(c[0], c[2]) for c in circles] == [("pass", "PASS"), ("fail", "FAIL"), ("pass", "PASS")]
    assert [c[1] for c in circles] == [p["evidence_id"] for p in points]
    assert '<polygon class="band"' in html and '<polyline class="limit"' in html
    assert "<script" not in html and "http" not in html.split("<body>", 1)[1].replace(f"s3://{bucket}", "")
    # each point links to its bundle
    assert all(f'href="s3://{bucket}/nightly/subject_balanced/{p["evidence_id"]}"' in html for p in points)


def test_one_report_name_reads_none_of_the_others(nights: datetime, bucket: str, s3_settings) -> None:
    store = CountingStore(parse_store_uri(f"s3://{bucket}/nightly"), s3_settings)
    history = report_history(store, "nightly", "quant8_balanced")
    assert [len(points) for points in history.reports.values()] == [2]
    assert store.listed == ["nightly/quant8_balanced"]
    assert store.read and all(key.startswith("nightly/quant8_balanced/ev-") for key in store.read)
    # one manifest per bundle, plus one evaluation for the one policy both nights were judged by
    assert len(store.read) == 3


def test_a_report_name_with_a_path_in_it_is_refused(bucket: str, s3_env) -> None:
    code, _, stderr = cli("history", f"s3://{bucket}/nightly", "--report", "../other")
    assert code == 2
    assert stderr.strip().splitlines()[-1].startswith("error: --report '../other' is not allowed")


def test_a_local_store_links_each_point_to_its_rendered_report(
    real_runs: dict[str, Path], tmp_path: Path, index_path: Path
) -> None:
    output = tmp_path / "reports" / "quant8_balanced"
    code, _, stderr = cli(
        "report", "--run", str(real_runs["quant8"]), "--baseline", str(real_runs["baseline"]),
        "--format", "html", "--output", str(output),
    )  # fmt: skip
    assert code == 0, stderr
    evidence = tmp_path / "evidence"
    code, stdout, stderr = cli("archive", str(output), "--to", evidence.as_uri(), "--json")
    assert code == 0, stderr
    bundle = json.loads(stdout)["bundle_uri"]
    page = tmp_path / "local.html"
    code, stdout, stderr = cli("history", evidence.as_uri(), "--html", str(page))
    assert code == 0, stderr
    assert stdout.strip().endswith(f"1 bundles, 1 report names, chart in {page}")
    assert f'href="{bundle}/evaluation.html"' in page.read_text()
