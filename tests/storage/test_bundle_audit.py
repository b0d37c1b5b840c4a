"""What an auditor does with archived bundles, on both backends: ls and verify a store, a report
name or one bundle; fetch, which keeps nothing unless every file matched; and bundles whose
manifest or address no longer fits the evidence inside."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from invarlock_provider.storage.objectstore import ObjectStore
from invarlock_provider.storage.stores import open_store
from invarlock_provider.storage.uri import bundle_location
from tests.storage.conftest import cli

BACKENDS = ["s3", "file"]
OTHER_ID = "ev-000000000000000000000000"


class Evidence:
    """A store prefix on one backend, with raw access to its objects for tampering."""

    def __init__(self, prefix: str, store: ObjectStore) -> None:
        self.prefix = prefix
        self.store = store
        self.base = bundle_location(prefix)[1]

    def archive(self, report_dir: Path) -> str:
        code, stdout, stderr = cli("archive", str(report_dir), "--to", self.prefix, "--json")
        assert code == 0, stderr
        return json.loads(stdout)["bundle_uri"]

    def key(self, uri: str) -> str:
        """The key of a URI under this prefix, in this store (a file:// root is the prefix's parent)."""
        assert uri.startswith(f"{self.prefix}/")
        return self.base + uri.removeprefix(self.prefix)

    def put(self, key: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "object"
            path.write_bytes(data)
            self.store.put_file(key, path, None)

    def copy_bundle(self, uri: str, target_key: str) -> str:
        source = self.key(uri)
        for info in list(self.store.list(source)):
            self.put(target_key + info.key.removeprefix(source), self.store.read_bytes(info.key))
        return self.store.uri.locate(target_key)

    def edit_manifest(self, uri: str, change: Callable[[dict], None]) -> None:
        key = f"{self.key(uri)}/manifest.json"
        manifest = json.loads(self.store.read_bytes(key))
        change(manifest)
        self.put(key, json.dumps(manifest, indent=2).encode())


@pytest.fixture(params=BACKENDS)
def evidence(request: pytest.FixtureRequest, tmp_path: Path, index_path: Path) -> Evidence:
    if request.param == "s3":
        request.getfixturevalue("s3_env")
        prefix = f"s3://{request.getfixturevalue('bucket')}/nightly"
        settings = request.getfixturevalue("s3_settings")
    else:
        prefix, settings = (tmp_path / "evidence").as_uri(), None
    root, _ = bundle_location(prefix)
    return Evidence(prefix, open_store(root, settings))


def ls(target: str) -> list[dict]:
    code, stdout, stderr = cli("ls", target, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


# --- ls: a store, a report name, one bundle -----------------------------------------------------


def test_ls_a_store_a_report_name_and_a_bundle(evidence: Evidence, reports: Path) -> None:
    uris = {name: evidence.archive(reports / name) for name in ("quant8_balanced", "damaged_balanced")}
    assert {(r["report_name"], r["uri"]) for r in ls(evidence.prefix)} == set(uris.items())
    for name, uri in uris.items():
        assert [(r["report_name"], r["uri"], r["complete"]) for r in ls(f"{evidence.prefix}/{name}")] == [
            (name, uri, True)
        ]
        assert [r["uri"] for r in ls(uri)] == [uri]
    assert ls(f"{evidence.prefix}/no_such_report") == []


# --- verify a prefix ------------------------------------------------------------------------------


def test_verify_a_prefix_verifies_every_complete_bundle(evidence: Evidence, reports: Path) -> None:
    uris = {name: evidence.archive(reports / name) for name in ("quant8_balanced", "damaged_balanced")}
    incomplete = f"{evidence.base}/partial/{OTHER_ID}"
    evidence.put(f"{incomplete}/report.json", b"{}")

    code, stdout, stderr = cli("verify", evidence.prefix)
    assert code == 0, stdout + stderr
    lines = stdout.splitlines()
    assert f"{uris['quant8_balanced']}: bundle consistent, verdict PASS" in lines
    assert f"{uris['damaged_balanced']}: bundle consistent, verdict FAIL" in lines
    assert f"{evidence.store.uri.locate(incomplete)}: bundle INCOMPLETE (no manifest)" in lines
    assert lines[-1] == "3 bundles: 2 consistent, 0 FAILED, 1 incomplete (not verified)" and len(lines) == 4

    code, stdout, _ = cli("verify", f"{evidence.prefix}/damaged_balanced", "--json")
    assert code == 0
    [row] = json.loads(stdout)
    assert (row["path"], row["ok"], row["complete"], row["verdict"]) == (uris["damaged_balanced"], True, True, "FAIL")
    assert "bundle.evidence_id" in {check["name"] for check in row["checks"]}

    damaged_report = f"{evidence.key(uris['damaged_balanced'])}/report.json"
    evidence.put(damaged_report, evidence.store.read_bytes(damaged_report) + b" ")
    code, stdout, _ = cli("verify", evidence.prefix)
    assert code == 1
    assert f"{uris['quant8_balanced']}: bundle consistent, verdict PASS" in stdout
    assert f"{uris['damaged_balanced']}: bundle 3 of " in stdout
    assert "checks FAILED (bundle.report.json, bundle.evidence_id, bundle.key), verdict FAIL" in stdout
    assert stdout.splitlines()[-1] == "3 bundles: 1 consistent, 1 FAILED, 1 incomplete (not verified)"
    code, stdout, _ = cli("verify", evidence.prefix, "--json")
    assert code == 1
    assert sorted((row["complete"], row["ok"]) for row in json.loads(stdout)) == [
        (False, None),
        (True, False),
        (True, True),
    ]


def test_verify_a_prefix_without_complete_bundles_is_exit_2(evidence: Evidence) -> None:
    empty = f"{evidence.prefix}/nothing_here"
    code, stdout, stderr = cli("verify", empty)
    assert code == 2 and stdout == ""
    assert stderr.splitlines() == [f"error: {empty}: no bundles under this prefix, nothing to verify"]
    evidence.put(f"{evidence.base}/partial/{OTHER_ID}/report.json", b"{}")
    code, stdout, stderr = cli("verify", f"{evidence.prefix}/partial")
    assert code == 2 and "INCOMPLETE" in stdout and "only incomplete bundles" in stderr


# --- manifest and address against the evidence ----------------------------------------------------


def forge_fields(manifest: dict) -> None:
    """Every field the manifest copies from the evaluation, and its own evidence id and report name."""
    manifest.update(ratio=0.5, ci=[0.4, 0.6], tier="aggressive", policy_digest="0" * 64, verdict="FAIL")
    manifest.update(evidence_id=OTHER_ID, report_name="other_name")
    manifest["run_ids"] = {"subject": "another-run", "baseline": "another-run"}


FIELD_CHECKS = {
    "manifest.ratio",
    "manifest.ci",
    "manifest.tier",
    "manifest.policy_digest",
    "manifest.verdict",
    "manifest.run_ids.subject",
    "manifest.run_ids.baseline",
    "bundle.evidence_id",
}


def unlist_baseline(manifest: dict) -> None:
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "baseline/report.json"]


@pytest.mark.parametrize(
    ("change", "remote_checks", "folder_checks"),
    [
        (forge_fields, FIELD_CHECKS | {"bundle.report_name"}, FIELD_CHECKS),  # a fetched folder has no key
        (unlist_baseline, {"bundle.baseline/report.json"}, {"bundle.baseline/report.json"}),
    ],
    ids=["fields", "unlisted-file"],
)
def test_manifest_fields_must_match_the_evidence(
    evidence: Evidence, reports: Path, tmp_path: Path, change, remote_checks: set, folder_checks: set
) -> None:
    uri = evidence.archive(reports / "quant8_balanced")
    evidence.edit_manifest(uri, change)
    code, stdout, _ = cli("verify", uri, "--json")
    assert code == 1
    assert remote_checks <= {c["name"] for c in json.loads(stdout)["checks"] if not c["ok"]}
    assert cli("fetch", uri, "--to", str(tmp_path / "audit"))[0] == 0  # fetch checks files, verify the rest
    code, stdout, _ = cli("verify", str(tmp_path / "audit"), "--json")
    assert code == 1
    assert folder_checks <= {c["name"] for c in json.loads(stdout)["checks"] if not c["ok"]}
    code, stdout, _ = cli("verify", str(tmp_path / "audit"))
    assert all(f"FAIL {name}: " in stdout for name in folder_checks)


def test_a_bundle_copied_to_another_address_fails(evidence: Evidence, reports: Path) -> None:
    uri = evidence.archive(reports / "quant8_balanced")
    evidence_id = uri.rsplit("/", 1)[1]
    copied = evidence.copy_bundle(uri, f"{evidence.base}/quant8_balanced/{OTHER_ID}")
    code, stdout, _ = cli("verify", copied)
    assert code == 1
    assert f"FAIL bundle.key: bundle at {OTHER_ID}, recomputed {evidence_id}" in stdout
    renamed = evidence.copy_bundle(uri, f"{evidence.base}/damaged_balanced/{evidence_id}")
    code, stdout, _ = cli("verify", renamed)
    assert code == 1 and "FAIL bundle.report_name: manifest quant8_balanced, key damaged_balanced" in stdout
    assert cli("verify", uri)[0] == 0


def test_a_local_bundle_folder_is_checked_against_its_name(reports: Path, tmp_path: Path, index_path: Path) -> None:
    uri = Evidence((tmp_path / "evidence").as_uri(), open_store((tmp_path / "evidence").as_uri())).archive(
        reports / "quant8_balanced"
    )
    folder = Path(uri.removeprefix("file://"))
    assert cli("verify", str(folder))[0] == 0
    moved = folder.rename(folder.with_name(OTHER_ID))
    code, stdout, _ = cli("verify", str(moved))
    assert code == 1 and f"FAIL bundle.key: bundle at {OTHER_ID}, recomputed {folder.name}" in stdout


# --- fetch keeps nothing unless every file matched -----------------------------------------------


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "empty-folder"])
def test_failed_fetch_leaves_nothing(evidence: Evidence, reports: Path, tmp_path: Path, existing: bool) -> None:
    uri = evidence.archive(reports / "quant8_balanced")
    target = tmp_path / "audit"
    if existing:
        target.mkdir()
    baseline = f"{evidence.key(uri)}/baseline/report.json"
    evidence.put(baseline, evidence.store.read_bytes(baseline).replace(b'"noop"', b'"nope"', 1))
    code, _, stderr = cli("fetch", uri, "--to", str(target))
    assert code == 1 and "baseline/report.json changed" in stderr and "nothing was kept" in stderr
    assert (list(target.iterdir()) == []) if existing else not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".audit")], "no staging folder left behind"
    code, _, _ = cli("verify", str(target))
    assert code == 2


def test_fetch_moves_a_checked_bundle_into_place(
    evidence: Evidence, reports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = evidence.archive(reports / "quant8_balanced")
    (tmp_path / "audit").mkdir()
    code, stdout, stderr = cli("fetch", uri, "--to", str(tmp_path / "audit"))
    assert code == 0, stderr
    assert (tmp_path / "audit" / "manifest.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".audit")]
    code, _, stderr = cli("fetch", uri, "--to", str(tmp_path / "audit"))
    assert code == 2 and "not an empty folder" in stderr
    code, stdout, _ = cli("verify", str(tmp_path / "audit"))
    assert code == 0 and "bundle consistent, verdict PASS" in stdout
    named = tmp_path / "somewhere" / uri.rsplit("/", 1)[1]  # named after its id: checked, parent ignored
    assert cli("fetch", uri, "--to", str(named))[0] == 0
    code, stdout, _ = cli("verify", str(named), "--json")
    assert code == 0 and "bundle.key" in {c["name"] for c in json.loads(stdout)["checks"]}
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    code, _, stderr = cli("fetch", uri, "--to", ".")
    assert code == 2 and "the current folder cannot be replaced" in stderr


@pytest.mark.parametrize("under", ["", "/quant8_balanced"], ids=["store", "report-name"])
def test_prune_a_file_store_or_report_name_keeps_the_named_folder(
    reports: Path, tmp_path: Path, index_path: Path, under: str
) -> None:
    store = tmp_path / "evidence"
    uri = Evidence(store.as_uri(), open_store(store.as_uri())).archive(reports / "quant8_balanced")
    code, stdout, stderr = cli("prune", f"{store.as_uri()}{under}", "--keep-last", "0", "--max-age", "0s")
    assert code == 0, stderr
    assert f"deleted      {uri}" in stdout and stdout.strip().endswith("1 deleted, 0 kept")
    assert ls(store.as_uri()) == []
    assert Path(f"{store}{under}").is_dir(), "the folder the URI names is never removed"
    # The records of what was archived stay: pruning evidence does not un-archive the runs.
    assert sorted(p.name for p in store.iterdir()) == [".archived-runs", *(["quant8_balanced"] if under else [])]
