"""`invarlock doctor` against a real local folder and a real S3-compatible server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.storage.conftest import cli


def findings(*args: str) -> tuple[int, list[dict]]:
    code, stdout, _ = cli("doctor", *args, "--json")
    return code, json.loads(stdout)


def store_lines(entries: list[dict]) -> list[tuple[str, str]]:
    return [(e["status"], e["detail"]) for e in entries if e["section"] == "store"]


def test_one_screen_covering_every_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INVARLOCK_ARCHIVE_URI", raising=False)
    code, stdout, _ = cli("doctor")
    lines = stdout.splitlines()
    assert code == 0 and len(lines) <= 24
    sections = {line.split()[1] for line in lines}
    assert sections == {"versions", "device", "network", "caches", "store"}
    assert any("torch 2." in line and "transformers" in line for line in lines)
    assert any(line.startswith("ok    device    cpu:") for line in lines)
    assert any("hub downloads off" in line for line in lines)
    evidence = (tmp_path / "evidence").as_uri()
    assert f"ok    store     {evidence}: not created yet; writable where the first archive creates it" in stdout
    assert not (tmp_path / "evidence").exists(), "doctor creates nothing"


def test_an_existing_store_folder_is_probed_and_left_as_it_was(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    code, entries = findings("--store", evidence.as_uri())
    assert code == 0, entries
    status, detail = store_lines(entries)[1]
    assert status == "ok" and "writable (probe written, read back and deleted" in detail
    assert list(evidence.iterdir()) == [], "the probe and its folder are gone"


def test_doctor_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every folder doctor looks at (store, caches, index, workdir) is missing: it reports them and
    leaves the machine as it was (the store check used to create `./evidence/`)."""
    monkeypatch.chdir(tmp_path)
    for variable, name in (
        ("HOME", "home"),
        ("HF_HOME", "hf"),
        ("INVARLOCK_HOME", "index"),
        ("INVARLOCK_WORKDIR", "w"),
    ):
        monkeypatch.setenv(variable, str(tmp_path / name))
    monkeypatch.delenv("INVARLOCK_ARCHIVE_URI", raising=False)
    code, entries = findings()
    assert code == 0, entries
    assert ("ok", f"{(tmp_path / 'evidence').as_uri()}: reachable") in store_lines(entries)
    assert list(tmp_path.iterdir()) == []


def test_a_store_under_a_file_is_refused_without_creating_anything(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, entries = findings("--store", (blocker / "nightly" / "evidence").as_uri())
    assert code == 1
    [(status, detail)] = store_lines(entries)
    assert status == "FAIL" and detail.endswith(f"cannot create store folder ({blocker} is not a folder)")
    assert list(tmp_path.iterdir()) == [blocker]


def launcher(folder: Path, header: str, module: str, function: str) -> Path:
    """An `invarlock` console script as pip writes it (pip's template), for any entry point."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "invarlock"
    body = [
        header,
        "# -*- coding: utf-8 -*-",
        "import re",
        "import sys",
        f"from {module} import {function}",
        "if __name__ == '__main__':",
        r"    sys.argv[0] = re.sub(r'(-script\.pyw|\.exe)?$', '', sys.argv[0])",
        f"    sys.exit({function}())",
    ]
    script.write_text("\n".join(body) + "\n")
    script.chmod(0o755)
    return script


def path_lines(monkeypatch: pytest.MonkeyPatch, path: Path) -> list[tuple[str, str]]:
    monkeypatch.setenv("PATH", str(path))
    code, entries = findings("--no-store")
    assert code == 0, entries
    return [(e["status"], e["detail"]) for e in entries if "on PATH" in e["detail"]]


def test_the_invarlock_on_path_is_this_package(monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = Path(sys.executable).parent
    assert (scripts / "invarlock").is_file(), "the dev venv's own launcher"
    assert path_lines(monkeypatch, scripts) == [("ok", f"`invarlock` on PATH: {scripts / 'invarlock'} (this package)")]


def test_another_packages_invarlock_on_path_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The InvarLock package's entry point in this interpreter's launcher; the slow packaging test
    installs the real package beside this one."""
    script = launcher(tmp_path / "bin", f"#!{sys.executable}", "invarlock.cli.app", "app")
    [(status, detail)] = path_lines(monkeypatch, script.parent)
    assert status == "warn"
    assert detail == (
        f"`invarlock` on PATH ({script}) runs another package (invarlock.cli.app:app), not this package: "
        "use `invarlock-airflow`, this package's commands under a name of its own"
    )


def test_this_package_in_another_python_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip's `#!/bin/sh` form, for interpreter paths a shebang cannot hold (here: a space)."""
    other = tmp_path / "other venv" / "bin" / "python"
    header = f"#!/bin/sh\n'''exec' \"{other}\" \"$0\" \"$@\"\n' '''"
    script = launcher(tmp_path / "bin", header, "invarlock_provider.cli", "console_main")
    [(status, detail)] = path_lines(monkeypatch, script.parent)
    assert status == "warn"
    assert detail == (
        f"`invarlock` on PATH ({script}) runs this package in another Python ({other}); "
        f"here run `{sys.executable} -m invarlock_provider.cli`"
    )


def test_no_invarlock_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [(status, detail)] = path_lines(monkeypatch, tmp_path)
    assert status == "warn" and detail.startswith("no `invarlock` on PATH: add ")


def test_network_allowed_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVARLOCK_ALLOW_NETWORK", "1")
    code, entries = findings("--no-store")
    assert code == 0
    assert [e["status"] for e in entries if e["section"] == "network"] == ["warn"]
    assert not [e for e in entries if e["section"] == "store"]


def test_unwritable_folder_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, entries = findings("--store", (blocker / "evidence").as_uri())
    assert code == 1
    [(status, detail)] = store_lines(entries)
    assert status == "FAIL" and "cannot create store folder" in detail


def test_bucket_reachable_and_writable(s3_env: str, bucket: str, seaweed) -> None:
    code, entries = findings("--store", f"s3://{bucket}/nightly")
    assert code == 0, entries
    statuses = store_lines(entries)
    assert statuses[0] == ("ok", f"s3://{bucket}/nightly: reachable")
    assert statuses[1][0] == "ok" and "writable (probe written, read back and deleted" in statuses[1][1]
    assert statuses[2] == ("ok", "object lock: not available")
    assert seaweed.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_locked_bucket_reports_object_lock(s3_env: str, locked_bucket: str) -> None:
    code, entries = findings("--store", f"s3://{locked_bucket}/nightly")
    assert code == 0, entries
    assert ("ok", "object lock: enabled on the bucket") in store_lines(entries)


def test_wrong_credentials_and_unreachable_endpoint_fail(
    s3_env: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    code, entries = findings("--store", f"s3://{bucket}")
    assert code == 1
    [(status, detail)] = store_lines(entries)
    assert status == "FAIL" and detail.startswith(f"s3://{bucket}: not reachable: ")
    code, entries = findings("--store", f"s3://{bucket}", "--endpoint-url", "http://127.0.0.1:9")
    assert code == 1 and store_lines(entries)[0][0] == "FAIL"
