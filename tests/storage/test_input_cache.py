"""Checkpoints and corpora read from a real S3 server into the worker's input cache: fetched once,
checked, shared by concurrent fetches, bounded, and never cached half-uploaded."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import sha256_file
from invarlock_provider.resources import resolve_embedded
from invarlock_provider.run_inputs import checkpoint_names
from invarlock_provider.storage.input_cache import InputCache, InputChangedError
from invarlock_provider.storage.s3 import S3Store, StoreUnavailableError
from invarlock_provider.storage.uri import parse_store_uri
from tests.conftest import system_tool
from tests.storage.conftest import cli
from tests.storage.faults import pausing
from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY

REPO = Path(__file__).resolve().parents[2]


class CountingStore(S3Store):
    """The real store, recording every download."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.downloaded: list[str] = []
        self._lock = threading.Lock()

    def download_hashed(self, key: str, target: Path, size: int, etag: str | None) -> str:
        with self._lock:
            self.downloaded.append(key)
        return super().download_hashed(key, target, size, etag)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model saved as a training job would: sharded safetensors with an index."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_embedded("embedded:tiny-pydocs-gpt2")
    folder = tmp_path_factory.mktemp("checkpoint") / "finetuned-2026-11"
    model = AutoModelForCausalLM.from_pretrained(source)
    model.save_pretrained(folder, max_shard_size="4MB", safe_serialization=True)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    assert (folder / "model.safetensors.index.json").is_file() and len(list(folder.glob("*.safetensors"))) >= 3
    return folder


def upload(seaweed, bucket: str, folder: Path, prefix: str) -> dict[str, bytes]:
    client = seaweed.client()
    sent = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            sent[key] = path.read_bytes()
    return sent


def store_of(bucket: str, settings) -> CountingStore:
    return CountingStore(parse_store_uri(f"s3://{bucket}"), settings)


def test_a_checkpoint_is_fetched_once_then_read_from_the_cache(
    seaweed, bucket: str, s3_settings, checkpoint: Path, tmp_path: Path
) -> None:
    upload(seaweed, bucket, checkpoint, "models/finetuned-2026-11")
    upload(seaweed, bucket, checkpoint, "models/copy-of-it")  # same content under other keys
    store = store_of(bucket, s3_settings)
    cache = InputCache(tmp_path / "cache")
    check = checkpoint_names("s3://x/models/finetuned-2026-11")
    first = cache.fetch(store, "models/finetuned-2026-11", check_names=check)
    names = sorted(p.relative_to(checkpoint).as_posix() for p in checkpoint.rglob("*") if p.is_file())
    assert [item.name for item in first.objects] == names and first.downloaded == len(names)
    for item in first.objects:
        assert sha256_file(first.path / item.name) == sha256_file(checkpoint / item.name) == item.sha256
        assert item.etag and item.size == (checkpoint / item.name).stat().st_size
    assert first.uri == f"s3://{bucket}/models/finetuned-2026-11"
    assert len(store.downloaded) == len(names)

    store.downloaded.clear()
    second = InputCache(tmp_path / "cache").fetch(store, "models/finetuned-2026-11/", check_names=check)
    assert second.downloaded == 0 and store.downloaded == [] and second.digest == first.digest
    assert second.path == first.path

    copy = cache.fetch(store, "models/copy-of-it")  # other keys, other ETag records: downloaded, one blob each
    assert copy.digest == first.digest and copy.path == first.path and copy.downloaded == len(names)
    assert len(list((tmp_path / "cache" / "blobs").iterdir())) == len(names)
    record = first.as_record()
    assert record["uri"] == first.uri and {o["name"] for o in record["objects"]} == set(names)
    assert all(json.dumps(o) for o in record["objects"])  # JSON-ready for meta.inputs


def test_an_object_replaced_during_its_download_is_never_cached(
    seaweed, bucket: str, s3_settings, checkpoint: Path, tmp_path: Path
) -> None:
    upload(seaweed, bucket, checkpoint, "models/uploading")
    store = store_of(bucket, s3_settings)
    cache = InputCache(tmp_path / "cache")
    shard = sorted(checkpoint.glob("model-*.safetensors"))[0].name
    outcome: dict[str, BaseException] = {}

    def fetch() -> None:
        try:
            cache.fetch(store, "models/uploading")
        except BaseException as exc:
            outcome["error"] = exc

    with pausing(store, "download_hashed", shard) as (reached, go):
        worker = threading.Thread(target=fetch)
        worker.start()
        assert reached.wait(60)
        replaced = b"\0" * 1000  # the training job writes the shard again while it is read
        seaweed.client().put_object(Bucket=bucket, Key=f"models/uploading/{shard}", Body=replaced)
        go.set()
        worker.join(60)
    error = outcome["error"]
    assert isinstance(error, InputChangedError) and "changed during the download" in str(error)
    assert shard in str(error) and "nothing was cached" in str(error)
    assert list((tmp_path / "cache" / "entries").iterdir()) == []
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    blobs = {p.name for p in (tmp_path / "cache" / "blobs").iterdir()}
    assert sha256_file(checkpoint / shard) not in blobs

    fetched = cache.fetch(store, "models/uploading")  # the upload has settled: the new bytes, recorded
    by_name = {item.name: item for item in fetched.objects}
    assert (fetched.path / shard).read_bytes() == replaced and by_name[shard].size == 1000


def test_two_workers_fetching_at_once_share_one_entry(
    seaweed, bucket: str, s3_settings, checkpoint: Path, tmp_path: Path
) -> None:
    upload(seaweed, bucket, checkpoint, "models/shared")
    results: list = []
    errors: list = []

    def fetch() -> None:
        try:
            results.append(InputCache(tmp_path / "cache").fetch(store_of(bucket, s3_settings), "models/shared"))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=fetch) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert errors == [] and len({r.digest for r in results}) == 1 and len({r.path for r in results}) == 1
    entries = [p for p in (tmp_path / "cache" / "entries").iterdir() if p.is_dir()]
    assert len(entries) == 1
    assert len(list((tmp_path / "cache" / "blobs").iterdir())) == len(results[0].objects)
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_least_recently_used_entries_go_first_and_held_ones_stay(
    seaweed, bucket: str, s3_settings, tmp_path: Path
) -> None:
    client = seaweed.client()
    for number in range(3):
        client.put_object(Bucket=bucket, Key=f"corpora/c{number}.txt", Body=bytes([65 + number]) * 400_000)
    store = store_of(bucket, s3_settings)
    cache = InputCache(tmp_path / "cache", limit_bytes=1_000_000)  # two of the three fit
    first = cache.fetch(store, "corpora/c0.txt", single_file=True)
    second = cache.fetch(store, "corpora/c1.txt", single_file=True)
    first.release()
    third = cache.fetch(store, "corpora/c2.txt", single_file=True)  # c0 is least recently used and free
    assert not first.path.exists() and second.path.is_file() and third.path.is_file()
    assert third.path.name == "c2.txt" and third.path.read_bytes() == b"C" * 400_000

    fourth = cache.fetch(store, "corpora/c0.txt", single_file=True)  # c1 and c2 are held: over the limit
    assert second.path.is_file() and third.path.is_file() and fourth.path.is_file()
    blobs = sum(p.stat().st_size for p in (tmp_path / "cache" / "blobs").iterdir())
    assert blobs == 1_200_000
    with pytest.raises(BadInputError, match="more than the input cache may hold"):
        InputCache(tmp_path / "small", limit_bytes=100_000).fetch(store, "corpora/c0.txt", single_file=True)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"model.safetensors": b"x"}, "no config.json under this prefix"),
        ({"config.json": b"{}", "pytorch_model.bin": b"x"}, "pytorch_model.bin: pickle weights are refused"),
        ({"config.json": b"{}", "README.md": b"x"}, "no weights under this prefix"),
    ],
)
def test_a_prefix_that_is_no_checkpoint_fails_before_any_download(
    seaweed, bucket: str, s3_settings, tmp_path: Path, files: dict[str, bytes], message: str
) -> None:
    for name, body in files.items():
        seaweed.client().put_object(Bucket=bucket, Key=f"models/bad/{name}", Body=body)
    store = store_of(bucket, s3_settings)
    uri = f"s3://{bucket}/models/bad"
    with pytest.raises(BadInputError, match=message) as caught:
        InputCache(tmp_path / "cache").fetch(store, "models/bad", check_names=checkpoint_names(uri))
    assert str(caught.value).startswith(uri) and store.downloaded == []
    with pytest.raises(BadInputError, match="no objects under this prefix"):
        InputCache(tmp_path / "cache").fetch(store, "models/nothing-here")


def test_rejected_credentials_are_one_line(seaweed, bucket: str, tmp_path: Path) -> None:
    from invarlock_provider.storage.s3 import S3Settings

    settings = S3Settings(
        endpoint_url=seaweed.endpoint, region_name="us-east-1", path_style=True,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key="not-the-secret",
    )  # fmt: skip
    with pytest.raises(StoreUnavailableError, match="credentials rejected"):
        InputCache(tmp_path / "cache").fetch(S3Store(parse_store_uri(f"s3://{bucket}"), settings), "models/any")


def test_a_cache_on_a_full_disk_is_refused_before_downloading(seaweed, bucket: str, tmp_path: Path) -> None:
    """A 1 MiB tmpfs as the cache, in a mount namespace of its own, and a 2 MB corpus."""
    seaweed.client().put_object(Bucket=bucket, Key="corpora/big.txt", Body=b"x" * 2_000_000)
    mount = tmp_path / "small-disk"
    mount.mkdir()
    script = "\n".join(
        [
            "import sys",
            "from pathlib import Path",
            "from invarlock_provider.storage.input_cache import InputCache",
            "from invarlock_provider.storage.s3 import S3Settings, S3Store",
            "from invarlock_provider.storage.uri import parse_store_uri",
            f"settings = S3Settings({seaweed.endpoint!r}, 'us-east-1', True, {ACCESS_KEY!r}, {SECRET_KEY!r})",
            f"store = S3Store(parse_store_uri('s3://{bucket}'), settings)",
            f"InputCache(Path({str(mount)!r}) / 'cache').fetch(store, 'corpora/big.txt', single_file=True)",
        ]
    )
    (tmp_path / "fetch.py").write_text(script)
    shell = f"mount -t tmpfs -o size=1m tmpfs {mount} && exec {sys.executable} {tmp_path / 'fetch.py'}"
    command = [system_tool("unshare"), "-m", "sh", "-c", shell]
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "needs 2000000 bytes, the disk has" in last and "INVARLOCK_INPUT_CACHE" in last, done.stderr


def test_invarlock_run_evaluates_a_checkpoint_and_a_corpus_that_live_only_in_the_bucket(
    seaweed, bucket: str, s3_env: str, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(seaweed, bucket, checkpoint, "models/finetuned-2026-11")
    paragraphs = [p for p in resolve_embedded("embedded:pydocs-eval.txt").read_text().split("\n\n") if p.strip()]
    corpus = "".join(json.dumps({"text": p}) + "\n" for p in paragraphs).encode()
    seaweed.client().put_object(Bucket=bucket, Key="data/pydocs-eval.jsonl", Body=corpus)
    monkeypatch.setenv("INVARLOCK_INPUT_CACHE", str(tmp_path / "cache"))
    model_uri, data_uri = f"s3://{bucket}/models/finetuned-2026-11/", f"s3://{bucket}/data/pydocs-eval.jsonl"
    preset = tmp_path / "from_bucket.yaml"
    preset.write_text(
        "name: from_bucket\n"
        f"model:\n  id: {model_uri}\n"
        f"dataset:\n  provider: jsonl\n  path: {data_uri}\n  seq_len: 128\n  stride: 128\n"
        "  preview_n: 24\n  final_n: 24\n"
        "seed: 42\neval:\n  batch_size: 8\n  device: cpu\n  dtype: float32\n"
    )

    def run(yaml: Path, name: str, *extra: str) -> tuple[dict, dict]:
        code, stdout, stderr = cli("run", "-c", str(yaml), "--out", str(tmp_path / "runs" / name), "--json", *extra)
        assert code == 0, stderr
        summary = json.loads(stdout)
        return summary, json.loads(Path(summary["report"]).read_text())

    _, first = run(preset, "bucket", "--path-style")
    summary, second = run(preset, "bucket", "--path-style")
    meta = first["meta"]
    assert meta["model_id"] == model_uri and first["data"]["path"] == data_uri
    assert meta["inputs"]["model"]["uri"] == model_uri.rstrip("/") and meta["inputs"]["dataset"]["uri"] == data_uri
    shards = {o["name"]: o for o in meta["inputs"]["model"]["objects"]}
    assert shards["model.safetensors.index.json"]["sha256"] == sha256_file(checkpoint / "model.safetensors.index.json")
    assert all(o["etag"] for o in shards.values())
    assert second["meta"]["inputs"] == meta["inputs"]
    assert second["meta"]["weights_digest"] == meta["weights_digest"]

    events = [json.loads(line) for line in (Path(summary["run_dir"]) / "events.jsonl").read_text().splitlines()]
    fetched = [e for e in events if e["event"] == "input_fetched"]
    assert {e["data"]["role"]: e["data"]["downloaded"] for e in fetched} == {"model": 0, "dataset": 0}

    (tmp_path / "eval.jsonl").write_bytes(corpus)
    local_preset = tmp_path / "local.yaml"
    text = preset.read_text().replace(model_uri, str(checkpoint)).replace(data_uri, str(tmp_path / "eval.jsonl"))
    local_preset.write_text(text)
    _, local = run(local_preset, "local")
    assert local["meta"]["weights_digest"] == meta["weights_digest"]  # the same checkpoint, byte for byte
    assert local["data"]["windows_digest"] == first["data"]["windows_digest"]
    assert local["metrics"]["primary_metric"] == first["metrics"]["primary_metric"]
    assert local["meta"]["inputs"] == {}


FETCH_SCRIPT = """
import sys
from pathlib import Path

from tests.storage import faults

faults.install()
from invarlock_provider.run_inputs import checkpoint_names
from invarlock_provider.storage.input_cache import InputCache
from invarlock_provider.storage.s3 import S3Settings, S3Store
from invarlock_provider.storage.uri import parse_store_uri

bucket, cache, endpoint = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
store = S3Store(parse_store_uri(f"s3://{bucket}"), S3Settings(endpoint, "us-east-1", True))
stored = InputCache(cache).fetch(store, "models/killed", check_names=checkpoint_names(f"s3://{bucket}/models/killed"))
print(stored.downloaded)
"""


@pytest.mark.slow
def test_a_fetch_killed_at_any_call_leaves_no_half_entry_and_the_next_one_completes(
    seaweed, bucket: str, checkpoint: Path, tmp_path: Path
) -> None:
    """kill -9 at each store call and each cache record write of a fetch (numbered by a clean one),
    each on a fresh cache: an entry is whole or absent, and a fetch after the kill completes from
    what the killed one left, downloading only what it lacks."""
    import os

    from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY

    upload(seaweed, bucket, checkpoint, "models/killed")
    script = tmp_path / "fetch.py"
    script.write_text(FETCH_SCRIPT)
    base_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": seaweed.endpoint,
        "INVARLOCK_S3_PATH_STYLE": "1",
        "INVARLOCK_FAULT_ACTION": "kill",
    }

    def fetch(cache: Path, log: Path, at: int | None = None) -> subprocess.CompletedProcess:
        env = {**base_env, "INVARLOCK_FAULT_LOG": str(log)}
        if at is not None:
            env["INVARLOCK_FAULT_AT"] = str(at)
        command = [sys.executable, str(script), bucket, str(cache), seaweed.endpoint]
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)

    expected = {p.name: sha256_file(p) for p in checkpoint.iterdir() if p.is_file()}
    clean = fetch(tmp_path / "clean", tmp_path / "clean.log")
    assert clean.returncode == 0 and int(clean.stdout) == len(expected), clean.stderr
    calls = (tmp_path / "clean.log").read_text().splitlines()
    assert len(calls) >= 3 * len(expected)  # a download, a HEAD and a record per object, and the LIST
    for number, call in enumerate(calls):
        cache = tmp_path / f"cache-{number}"
        killed = fetch(cache, tmp_path / f"killed-{number}.log", number)
        assert killed.returncode == -9, (call, killed.stderr[-2000:])
        entries = [entry for entry in (cache / "entries").glob("*") if entry.is_dir()]
        assert entries == [], call  # the entry is built after every object: nothing is whole yet
        after = fetch(cache, tmp_path / f"after-{number}.log")
        assert after.returncode == 0, (call, after.stderr[-2000:])
        assert int(after.stdout) <= len(expected)
        (entry,) = [entry for entry in (cache / "entries").glob("*") if entry.is_dir()]
        assert {p.name: sha256_file(p) for p in entry.iterdir()} == expected, call
        # What a killed download leaves (its part file, or the store's temporary beside it) waits in tmp/
        # for the age cleanup; nothing else is left there.
        assert all(p.name.endswith((".part", ".part.tmp")) for p in (cache / "tmp").iterdir()), call


@pytest.mark.parametrize("size", [0, 1, 8 * 1024 * 1024, 2 * 8 * 1024 * 1024 + 12345])
def test_a_download_is_hashed_as_it_arrives_part_by_part(
    seaweed, bucket: str, s3_settings, tmp_path: Path, size: int
) -> None:
    """Ranged parts written in place and hashed in order give the object's bytes and sha256, on a
    bucket and on a folder; an object replaced since it was listed is refused, not mixed."""
    import hashlib
    import os

    from invarlock_provider.storage.objectstore import ObjectChangedError
    from invarlock_provider.storage.stores import open_store
    from invarlock_provider.storage.uri import bundle_location

    data = os.urandom(size)
    seaweed.client().put_object(Bucket=bucket, Key="blob/object.bin", Body=data)
    (tmp_path / "folder" / "blob").mkdir(parents=True)
    (tmp_path / "folder" / "blob" / "object.bin").write_bytes(data)
    root, prefix = bundle_location(str(tmp_path / "folder"))
    stores = {
        "s3": (store_of(bucket, s3_settings), "blob/object.bin"),
        "folder": (open_store(root), f"{prefix}/blob/object.bin"),
    }
    for name, (store, key) in stores.items():
        info = store.head(key)
        target = tmp_path / name / "object.bin"
        assert store.download_hashed(key, target, info.size, info.etag) == hashlib.sha256(data).hexdigest()
        assert target.read_bytes() == data
    store, key = stores["s3"]
    listed = store.head(key)
    seaweed.client().put_object(Bucket=bucket, Key=key, Body=data + b"more")
    with pytest.raises(ObjectChangedError, match="replaced while it was downloaded"):
        store.download_hashed(key, tmp_path / "changed" / "object.bin", listed.size, listed.etag)
    assert not (tmp_path / "changed").exists() or list((tmp_path / "changed").iterdir()) == []
