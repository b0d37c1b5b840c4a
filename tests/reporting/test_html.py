"""evaluation.html: escaping, self-containment, and a real render in headless Chromium."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from invarlock_provider.cli import main

MALICIOUS = '<script>alert("x")</script>'


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def html_report(real_runs: dict[str, Path], tmp_path: Path) -> Path:
    return render(real_runs["quant8"], real_runs["baseline"], tmp_path / "reports" / "quant8_balanced")


def render(subject: Path, baseline: Path, output: Path) -> Path:
    code, _, stderr = cli(
        "report", "--run", str(subject), "--baseline", str(baseline), "--format", "html", "--output", str(output)
    )
    assert code == 0, stderr
    return output / "evaluation.html"


def test_html_is_self_contained(html_report: Path) -> None:
    page = html_report.read_text()
    assert page.startswith("<!DOCTYPE html>")
    for needle in ("PASS", "Gates", "ratio_ci_upper", "<svg", "Provenance", "Policy digest"):
        assert needle in page
    for forbidden in ("<script", "http://", "https://", "<link", "@import", "src="):
        assert forbidden not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_report_html_subcommand_renders_beside_the_evaluation(html_report: Path) -> None:
    html_report.unlink()
    code, stdout, _ = cli("report", "html", "--input", str(html_report.parent / "evaluation.report.json"))
    assert code == 0 and stdout.strip() == f"html: {html_report}"
    assert html_report.is_file()


def test_strings_from_reports_are_escaped(real_runs: dict[str, Path], tmp_path: Path) -> None:
    data = json.loads(real_runs["quant8"].read_text())
    data["meta"]["model_id"] = MALICIOUS
    data["edit"]["name"] = "<b>bold</b>"
    subject = tmp_path / "evil" / "report.json"
    subject.parent.mkdir()
    subject.write_text(json.dumps(data))
    page = render(subject, real_runs["baseline"], tmp_path / "out").read_text()
    assert "<script" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_html_refuses_reports_that_changed(html_report: Path) -> None:
    subject = html_report.parent / "report.json"
    subject.write_text(subject.read_text().replace('"noop"', '"other"', 1) + " ")
    code, _, stderr = cli("report", "html", "--input", str(html_report.parent))
    assert code == 2 and "sha256 does not match" in stderr


def test_chromium_renders_a_non_blank_page(html_report: Path, tmp_path: Path, chromium: str) -> None:
    from PIL import Image

    screenshot = tmp_path / "page.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--hide-scrollbars",
            "--window-size=1100,1500",
            f"--screenshot={screenshot}",
            html_report.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1100, 1500)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, tables and charts, not a blank page
    banner_green = sum(count for count, (r, g, b) in colours if (r, g, b) == (0x1F, 0x7A, 0x3F))
    assert banner_green > 5000  # the PASS banner is drawn


def test_the_edit_and_its_parameters_are_shown(html_report: Path) -> None:
    page = html_report.read_text()
    assert "<code>quant8 (bits=8, scheme=symmetric, granularity=per_output_channel, rounding=nearest" in page
    assert "<code>noop</code>" in page  # the baseline's row: no edit, no parameters
