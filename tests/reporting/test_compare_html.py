"""Two verified evaluations side by side, from real runs of the embedded model: a PASS (quant8) on the
left, a FAIL (the damaged model, reported under a hostile model id) on the right."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from invarlock_provider.reporting.compare_html import COMPARE_CSS, ComparedBundle, compare_section
from invarlock_provider.reporting.evaluation import split_arrays, write_evaluation
from invarlock_provider.reporting.policy import load_tier
from invarlock_provider.reporting.run_report import load_run_report
from invarlock_provider.reporting.verify import verify_evaluation

MALICIOUS = '<script>alert("x")</script>'
SVG = "{http://www.w3.org/2000/svg}"
QUANTILES = {"min": 0.0, "q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95, "max": 1.0}


def verified_bundle(subject_path: Path, baseline_path: Path, folder: Path, label: str) -> ComparedBundle:
    """Written as `invarlock report` writes it, then read back only through verify."""
    policy = load_tier("balanced")
    write_evaluation(
        folder, load_run_report(subject_path, "subject"), load_run_report(baseline_path, "baseline"), policy
    )
    verification = verify_evaluation(folder)
    assert verification.ok, verification.failed()
    assert verification.recomputed is not None
    return ComparedBundle(
        label=label,
        link=f"/invarlock/bundle?id={label}&x=\"'",
        evaluation=verification.recomputed,
        subject=verification.reports["subject"],
        baseline=verification.reports["baseline"],
    )


@pytest.fixture(scope="module")
def bundles(real_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, ComparedBundle]:
    root = tmp_path_factory.mktemp("compare")
    hostile = json.loads(real_runs["damaged"].read_text())
    hostile["meta"]["model_id"] = MALICIOUS
    evil = root / "evil" / "report.json"
    evil.parent.mkdir()
    evil.write_text(json.dumps(hostile))
    return {
        "pass": verified_bundle(real_runs["quant8"], real_runs["baseline"], root / "quant8", "ev-1 2026-12-02 02:00"),
        "fail": verified_bundle(evil, real_runs["baseline"], root / "evil-eval", "ev-2 <b>2026-12-03</b> 02:00"),
        "unpaired": verified_bundle(real_runs["reseeded"], real_runs["baseline"], root / "reseeded", "ev-3"),
    }


@pytest.fixture(scope="module")
def fragment(bundles: dict[str, ComparedBundle]) -> str:
    return compare_section(bundles["pass"], bundles["fail"])


def parse(fragment: str) -> ET.Element:
    """The fragment is well-formed XML (no void elements, no named entities beyond XML's)."""
    return ET.fromstring(fragment)


def text(element: ET.Element) -> str:
    return "".join(element.itertext()).strip()


def tables(root: ET.Element) -> list[ET.Element]:
    return list(root.iter("table"))


def rows(table: ET.Element) -> list[tuple[str, list[str]]]:
    """(row class, cell texts) for each body row."""
    return [(tr.get("class", ""), [text(td) for td in tr.findall("td")]) for tr in table.find("tbody")]


def gate_cell(entry: dict) -> str:
    rule = {"<=": "\u2264", ">=": "\u2265", "==": "="}[entry["comparison"]]
    value, limit = entry["value"], entry["limit"]
    shown = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (value, limit)]
    return f"{shown[0]} ({rule} {shown[1]}) {'PASS' if entry['passed'] else 'FAIL'}"


def test_the_fixture_is_a_pass_and_a_fail(bundles: dict[str, ComparedBundle]) -> None:
    assert bundles["pass"].evaluation["verdict"] == "PASS"
    assert bundles["fail"].evaluation["verdict"] == "FAIL"
    assert bundles["unpaired"].evaluation["primary_metric"] is None


def test_header_shows_both_verdicts_and_the_ratio_change(bundles: dict[str, ComparedBundle], fragment: str) -> None:
    header = {cells[0]: (css, cells[1:]) for css, cells in rows(tables(parse(fragment))[0])}
    assert header["verdict"] == ("changed", ["PASS", "FAIL", ""])
    left, right = (bundles[k].evaluation["primary_metric"] for k in ("pass", "fail"))
    css, (left_cell, right_cell, change) = header["ratio (CI)"]
    assert css == ""  # two ratios always differ: by how much is the change column, not a mark
    assert left_cell == f"{left['ratio']:.4g} (95% CI {left['ci'][0]:.4g}\u2013{left['ci'][1]:.4g})"
    assert right_cell.startswith(f"{right['ratio']:.4g} (95% CI")
    assert change == f"{right['ratio'] - left['ratio']:+.4g}"
    assert header["tier"] == ("", ["balanced", "balanced", ""])
    assert header["subject model (edit)"][0] == "changed"
    assert header["bundle"][1][1] == "ev-2 <b>2026-12-03</b> 02:00"  # text, not markup
    link = next(parse(fragment).iter("a"))
    assert link.get("href") == "/invarlock/bundle?id=ev-1 2026-12-02 02:00&x=\"'"


def test_gates_side_by_side_with_changed_results_marked(bundles: dict[str, ComparedBundle], fragment: str) -> None:
    left, right = ({g["name"]: g for g in bundles[k].evaluation["gates"]} for k in ("pass", "fail"))
    assert list(left) == list(right)
    table = {cells[0]: (css, cells[1:]) for css, cells in rows(tables(parse(fragment))[1])}
    assert list(table) == list(left)
    for name in left:
        css, cells = table[name]
        assert css == ("changed" if left[name]["passed"] != right[name]["passed"] else ""), name
        if left[name]["comparison"] != "within":
            assert cells == [gate_cell(left[name]), gate_cell(right[name])]
    assert table["ratio"][0] == "changed"
    assert table["ratio"][1][1].endswith("FAIL") and table["ratio"][1][0].endswith("PASS")
    low, high = right["drift"]["limit"]
    assert table["drift"][1][1].startswith(f"{right['drift']['value']:.4g} (within [{low:.4g}, {high:.4g}])")


def test_quantiles_are_numpys_on_the_final_window_deltas(bundles: dict[str, ComparedBundle], fragment: str) -> None:
    table = tables(parse(fragment))[2]
    headers = [text(th) for th in table.iter("th")]
    assert headers == ["", "windows", *QUANTILES, "mean"]
    for (_, cells), key in zip(rows(table), ("pass", "fail"), strict=True):
        deltas, _ = split_arrays(bundles[key].subject, bundles[key].baseline, "final")
        expected = [f"{np.quantile(deltas, q):.4g}" for q in QUANTILES.values()] + [f"{deltas.mean():.4g}"]
        assert cells[1:] == [str(deltas.size), *expected]
    assert bundles["fail"].evaluation["primary_metric"]["delta_logloss"]["q95"] == pytest.approx(
        np.quantile(split_arrays(bundles["fail"].subject, bundles["fail"].baseline, "final")[0], 0.95)
    )


def test_provenance_differences_come_first_and_equal_fields_fold(fragment: str) -> None:
    root = parse(fragment)
    differing = tables(root)[3]
    details = root.find("details")
    assert details is not None and differing not in list(details.iter("table"))
    listed = rows(differing)
    assert {css for css, _ in listed} == {"differs"}
    names = [cells[0] for _, cells in listed]
    assert {"model", "edit", "weights digest", "report sha256"} <= set(names)
    folded = rows(details.find("table"))
    assert text(details.find("summary")) == f"{len(folded)} equal fields"
    assert {css for css, _ in folded} == {""}
    equal = {cells[0]: cells[1:] for _, cells in folded}
    for name in ("tokenizer hash", "dataset digest", "windows digest", "policy digest", "versions.torch"):
        assert name in equal
    assert len(set(equal["versions.torch"])) == 1
    assert equal["policy digest"][0] == equal["policy digest"][1]  # one value per bundle, spanning its columns
    model = {cells[0]: cells[1:] for _, cells in listed}["model"]
    assert model[2] == MALICIOUS and model[0] == model[1] == model[3] == "embedded:tiny-pydocs-gpt2"


def test_the_same_pair_twice_has_nothing_marked(bundles: dict[str, ComparedBundle]) -> None:
    fragment = compare_section(bundles["pass"], bundles["pass"])
    assert 'class="changed"' not in fragment and 'class="differs"' not in fragment
    assert "No provenance field differs." in fragment
    header = {cells[0]: cells[1:] for _, cells in rows(tables(parse(fragment))[0])}
    assert header["ratio (CI)"][2] == "+0"


def test_an_unpaired_side_has_no_ratio_and_no_deltas(bundles: dict[str, ComparedBundle]) -> None:
    root = parse(compare_section(bundles["pass"], bundles["unpaired"]))
    header = {cells[0]: cells[1:] for _, cells in rows(tables(root)[0])}
    assert header["ratio (CI)"] == [header["ratio (CI)"][0], "no ratio (pairing failed)", ""]
    gates = {cells[0]: cells[1:] for _, cells in rows(tables(root)[1])}
    assert gates["ratio"][1] == "\u2014 (not evaluated) FAIL"
    assert rows(tables(root)[2])[1][1][1:] == ["0", "pairing failed"]
    assert len(list(root.iter(f"{SVG}path"))) == 1  # one outline: the paired side's


def test_svg_is_well_formed_responsive_and_styled_by_css(fragment: str) -> None:
    charts = re.findall(r"<svg\b.*?</svg>", fragment, flags=re.S)
    assert len(charts) == 2
    for chart in charts:
        svg = ET.fromstring(chart)
        assert svg.tag == f"{SVG}svg" and svg.get("viewBox", "").startswith("0 0 ")
        assert svg.get("style") == "width:100%;height:auto"
        assert all(element.get("fill") is None for element in svg.iter())
    ratio, histogram = (ET.fromstring(c) for c in charts)
    classes = [e.get("class") for e in ratio.iter()]
    assert {"left ci", "right ci", "left dot", "right dot", "unity"} <= set(classes)
    assert classes.count("limit") == 2
    assert {"left step", "right step", "zero", "left key", "right key"} <= {e.get("class") for e in histogram.iter()}
    labels = [text(t) for t in histogram.iter(f"{SVG}text")]
    assert "share of windows" in labels and any("\u0394NLL" in label for label in labels)


def test_no_script_and_every_report_string_escaped(fragment: str) -> None:
    assert "<script" not in fragment.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in fragment
    assert "<b>" not in fragment and "&lt;b&gt;2026-12-03&lt;/b&gt;" in fragment
    assert not fragment.startswith("<html") and "<head" not in fragment


def test_every_class_the_fragment_uses_has_a_rule(fragment: str) -> None:
    used = {name for value in re.findall(r'class="([^"]*)"', fragment) for name in value.split()}
    missing = [name for name in used if not re.search(rf"\.{re.escape(name)}\b", COMPARE_CSS)]
    assert not missing
    for variable in ("--il-pass", "--il-fail", "--il-fg", "--il-muted", "--il-accent", "--il-accent2", "--il-border"):
        assert f"var({variable}," in COMPARE_CSS
    assert "svg text{fill:var(--il-muted,#4a5568)" in COMPARE_CSS
