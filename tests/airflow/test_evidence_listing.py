"""The Evidence page's listing over a real S3 server: one delimiter LIST per report folder, a bundle
remembered once seen complete, and the store's truth about which bundles exist on every request."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from invarlock_provider.airflow.evidence_store import RECHECK_ENV, remembered_bundles
from invarlock_provider.storage.local import LocalFolderStore
from invarlock_provider.storage.s3 import S3Store
from invarlock_provider.storage.uri import parse_store_uri
from tests.airflow.nights import build_bundles


class CountingStore(S3Store):
    """The real store, recording which prefixes were listed in full and which by delimiter."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.listed: list[str] = []
        self.named: list[str] = []

    def list(self, prefix: str):
        self.listed.append(prefix)
        return super().list(prefix)

    def children(self, prefix: str) -> list[str]:
        self.named.append(prefix)
        return super().children(prefix)


def test_children_are_the_names_one_level_down_on_both_stores(seaweed, bucket: str, s3_settings, tmp_path: Path):
    keys = ["pre/a/b/c.json", "pre/a/d.json", "pre/x.json", "pre/.hidden/e.json", "prefix-not/f.json"]
    keys += [f"pre/many/k{number:04d}/f.json" for number in range(1005)]  # more than one page of 1,000
    client = seaweed.client()
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"{}")
    s3 = S3Store(parse_store_uri(f"s3://{bucket}"), s3_settings)
    local = LocalFolderStore(parse_store_uri(f"file://{tmp_path / 'store'}"))
    for key in keys:
        (tmp_path / "store" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "store" / key).write_bytes(b"{}")
    os.symlink(tmp_path / "store" / "pre" / "a", tmp_path / "store" / "pre" / "linked")
    assert s3.children("pre") == [".hidden", "a", "many", "x.json"]  # S3 names what is there
    assert local.children("pre") == ["a", "many", "x.json"]  # as the local store lists: no hidden names, no links
    for store in (s3, local):
        assert store.children("pre/a") == ["b", "d.json"]
        many = store.children("pre/many")
        assert len(many) == 1005 and many[0] == "k0000" and many[-1] == "k1004"
        assert store.children("pre/nothing") == []


def test_complete_bundles_are_listed_once_and_the_store_decides_which_exist(
    seaweed, bucket: str, s3_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CountingStore(parse_store_uri(f"s3://{bucket}/nightly"), s3_settings)
    now = datetime.now(UTC).replace(microsecond=0)
    ids = build_bundles(tmp_path / "a", store, "quant8_balanced", 3, now, seed=1)
    ids += build_bundles(tmp_path / "b", store, "pruned_balanced", 1, now, seed=2)
    client = seaweed.client()
    uploading = f"nightly/quant8_balanced/{ids[1]}/manifest.json"  # the marker a bundle gets last
    manifest = client.get_object(Bucket=bucket, Key=uploading)["Body"].read()
    client.delete_object(Bucket=bucket, Key=uploading)

    def listing() -> dict[str, str]:
        store.listed.clear()
        store.named.clear()
        return {bundle.evidence_id: bundle.state for bundle in remembered_bundles(store, "nightly")}

    first = listing()
    assert first == {ids[0]: "complete", ids[1]: "incomplete", ids[2]: "complete", ids[3]: "complete"}
    names = ["quant8_balanced"] * 3 + ["pruned_balanced"]
    assert sorted(store.listed) == sorted(f"nightly/{name}/{i}" for name, i in zip(names, ids, strict=True))
    assert store.named == ["nightly", "nightly/pruned_balanced", "nightly/quant8_balanced"]

    assert listing() == first and store.listed == [f"nightly/quant8_balanced/{ids[1]}"]  # only the one still uploading

    client.put_object(Bucket=bucket, Key=uploading, Body=manifest)  # its upload finishes
    assert listing()[ids[1]] == "complete" and store.listed == [f"nightly/quant8_balanced/{ids[1]}"]
    assert listing()[ids[1]] == "complete" and store.listed == []  # remembered from now on

    # A prune killed after deleting the marker: SeaweedFS, like a file system, keeps the folder, so
    # the remembered bundle stays listed until its recheck, then is seen for what it is.
    client.delete_object(Bucket=bucket, Key=f"nightly/pruned_balanced/{ids[3]}/manifest.json")
    assert listing()[ids[3]] == "complete" and store.listed == []
    monkeypatch.setenv(RECHECK_ENV, "0.001")
    assert listing()[ids[3]] == "incomplete" and len(store.listed) == 4  # every bundle due: each listed again
    monkeypatch.delenv(RECHECK_ENV)
    assert listing()[ids[3]] == "incomplete" and store.listed == [f"nightly/pruned_balanced/{ids[3]}"]
    gone = client.list_objects_v2(Bucket=bucket, Prefix=f"nightly/pruned_balanced/{ids[3]}/")["Contents"]
    client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": entry["Key"]} for entry in gone]})
    assert ids[3] not in listing()

    later = build_bundles(tmp_path / "c", store, "quant8_balanced", 1, now, seed=3)
    assert listing()[later[0]] == "complete"  # new: listed at once; the empty folder SeaweedFS keeps, every time
    assert sorted(store.listed) == [f"nightly/pruned_balanced/{ids[3]}", f"nightly/quant8_balanced/{later[0]}"]
    one = {bundle.evidence_id for bundle in remembered_bundles(store, "nightly/quant8_balanced")}
    assert one == {*ids[:3], later[0]}


@pytest.mark.parametrize("depth", [1, 2])
def test_bundles_are_found_below_team_folders(bucket: str, s3_settings, tmp_path: Path, depth: int) -> None:
    store = S3Store(parse_store_uri(f"s3://{bucket}"), s3_settings)
    teams = "/".join(f"team{level}" for level in range(depth))
    now = datetime.now(UTC).replace(microsecond=0)
    target = S3Store(parse_store_uri(f"s3://{bucket}/{teams}"), s3_settings)
    ids = build_bundles(tmp_path, target, "quant8_balanced", 2, now, seed=4)
    found = remembered_bundles(store, "")
    assert sorted(b.evidence_id for b in found) == sorted(ids)
    assert {b.report_path for b in found} == {f"{teams}/quant8_balanced"}
