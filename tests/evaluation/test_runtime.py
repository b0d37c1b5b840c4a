"""Machine facts a run records and acts on: the CPU and its vector extensions, the bf16-vs-fp32
matmul rates behind the slow-bf16 warning, the fixed-cost breakdown, and determinism without
torch._inductor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from invarlock_provider.cli import main
from invarlock_provider.evaluation import runtime

DEV = ["--profile", "dev"]


def cpuinfo_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return set()


def test_the_cpu_profile_reads_proc_cpuinfo() -> None:
    cpu = runtime.cpu_profile()
    flags = cpuinfo_flags()
    assert cpu.model and cpu.model != "unknown"
    assert set(cpu.vector_extensions) == flags & set(runtime.VECTOR_EXTENSIONS)
    assert cpu.native_bf16 == bool(flags & set(runtime.NATIVE_BF16))


def test_matmul_rates_are_measured_for_both_dtypes() -> None:
    rates = runtime.matmul_rates(size=128, seconds=0.01)
    assert set(rates) == {"float32", "bfloat16"} and all(rate > 0 for rate in rates.values())


def test_the_warning_names_the_cpu_and_both_rates() -> None:
    cpu = runtime.CpuProfile(model="AMD EPYC 7B13", vector_extensions=("avx", "avx2", "fma"))
    message = runtime.slow_bf16_warning({"float32": 180.0, "bfloat16": 9.5}, cpu)
    assert message == (
        "--dtype bfloat16 on this CPU (AMD EPYC 7B13; no native bf16: none of avx512_bf16, amx_bf16, bf16) runs "
        "matmuls at 9.5 GFLOP/s against 180.0 for float32; expect a much slower run, or use --dtype float32"
    )
    assert runtime.slow_bf16_warning({"float32": 180.0, "bfloat16": 590.0}, cpu) is None


def run_json(*args: str) -> tuple[dict, list[dict], str]:
    result = CliRunner().invoke(main, ["run", *DEV, *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    report_path = Path(json.loads(result.stdout)["report"])
    events = [json.loads(line) for line in (report_path.parent / "events.jsonl").read_text().splitlines()]
    return json.loads(report_path.read_text()), events, result.stderr


def test_bf16_on_a_cpu_without_fast_bf16_warns_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine's own bf16 speed cannot be changed, so the measured rates are replaced by an
    AVX2-only machine's (the fault being simulated); everything downstream is real."""
    slow = {"float32": 180.0, "bfloat16": 9.5}
    monkeypatch.setattr(runtime, "matmul_rates", lambda: slow)
    report, events, stderr = run_json("--dtype", "bfloat16", "--out", str(tmp_path / "bf16"))
    warnings = [line for line in stderr.splitlines() if line.startswith("warning: --dtype bfloat16 on this CPU")]
    assert len(warnings) == 1 and "9.5 GFLOP/s against 180.0" in warnings[0]
    slow_events = [e for e in events if e["event"] == "slow_bf16"]
    assert len(slow_events) == 1 and slow_events[0]["level"] == "warning"
    assert slow_events[0]["data"]["gflops"] == slow
    assert report["meta"]["host"]["matmul_gflops"] == slow and report["meta"]["dtype"] == "bfloat16"


def test_bf16_records_this_machines_real_rates(tmp_path: Path) -> None:
    report, events, stderr = run_json("--dtype", "bfloat16", "--out", str(tmp_path / "bf16"))
    rates = report["meta"]["host"]["matmul_gflops"]
    assert rates["float32"] > 0 and rates["bfloat16"] > 0
    warned = any(e["event"] == "slow_bf16" for e in events)
    assert warned == (rates["bfloat16"] < rates["float32"]) == ("warning: --dtype bfloat16" in stderr)


def test_the_fixed_cost_breakdown_is_in_meta_timings(tmp_path: Path) -> None:
    report, _, _ = run_json("--out", str(tmp_path / "t"))
    timings = report["meta"]["timings"]
    parts = ("imports_s", "setup_s", "tokenizer_s", "model_import_s", "model_load_s", "digest_s", "edit_s",
             "guards_s", "windows_s", "windows_wait_s", "batch_probe_s", "score_s")  # fmt: skip
    assert all(timings[key] >= 0 for key in parts)
    assert timings["imports_total_s"] == pytest.approx(timings["imports_s"] + timings["model_import_s"], abs=1e-3)
    assert timings["load_s"] == pytest.approx(
        timings["tokenizer_s"] + timings["model_import_s"] + timings["model_load_s"], abs=1e-3
    )
    on_main_thread = sum(timings[key] for key in parts if key != "windows_s")  # windows run beside the load
    assert on_main_thread <= timings["total_s"] + 0.05
    assert timings["process_s"] >= timings["total_s"]
    assert report["meta"]["host"]["cpu"] == runtime.cpu_profile().as_record()
    assert report["meta"]["host"]["matmul_gflops"] is None  # measured only for bf16 on a CPU


def test_a_run_sets_deterministic_algorithms_without_importing_torch_inductor(tmp_path: Path) -> None:
    script = (
        "import sys, torch\n"
        "from invarlock_provider.evaluation.runtime import configure_determinism\n"
        "flags = configure_determinism('cpu')\n"
        "print(flags['torch_deterministic_algorithms'], 'torch._inductor.config' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.split() == ["True", "False"]
