"""Fetching a sharded checkpoint from a bucket into the worker's input cache, against a plain
parallel boto3 download of the same objects, and the cost of a cache hit.

A GPT-2-shaped checkpoint of about 537M parameters (n_embd 1280, 24 layers; fp16 random weights in
safetensors shards of --shard-mb, with the index, config and tokenizer files a save_pretrained
folder has) is uploaded to SeaweedFS on 127.0.0.1. Each repeat, in alternating order:

- boto3: every object with ``download_file`` (its default transfer manager), 8 objects at a time;
- cache miss: ``InputCache.fetch`` into an empty cache (listing, name checks, the same downloads,
  sha256 of each object, a HEAD after each, blobs and the entry's hard links);
- cache hit: the same fetch again (listing, known-object records, the entry already there).

    python benchmarks/input_fetch.py [--shard-mb 500] [--repeats 3]

Targets (issue 25): miss throughput >= 0.8x boto3's; a hit < 5% of a miss.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.storage.seaweed import SeaweedServer  # noqa: E402

BUCKET = "models"
PREFIX = "checkpoints/gpt2-537m"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def build_checkpoint(folder: Path, shard_mb: int) -> tuple[int, int]:
    """(parameters, bytes): shapes from the transformers model class, built on the meta device."""
    import torch
    from safetensors.torch import save_file
    from transformers import GPT2Config, GPT2LMHeadModel

    from invarlock_provider.resources import resolve_embedded

    config = GPT2Config(n_embd=1280, n_layer=24, n_head=20, n_positions=1024, vocab_size=50257)
    with torch.device("meta"):
        model = GPT2LMHeadModel(config)
    shapes = {name: tuple(p.shape) for name, p in model.state_dict().items() if name != "lm_head.weight"}
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy2(resolve_embedded("embedded:tiny-pydocs-gpt2") / name, folder / name)
    generator = torch.Generator().manual_seed(0)
    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]
    for name, shape in shapes.items():
        count = 1
        for dim in shape:
            count *= dim
        if sizes[-1] and sizes[-1] + 2 * count > shard_mb << 20:
            shards.append({})
            sizes.append(0)
        shards[-1][name] = torch.randn(shape, generator=generator).to(torch.float16)
        sizes[-1] += 2 * count
    weight_map = {}
    for number, shard in enumerate(shards, start=1):
        file = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    index = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    parameters = sum(int(torch.Size(shape).numel()) for shape in shapes.values())
    return parameters, sum(p.stat().st_size for p in folder.iterdir())


def boto3_download(client, keys: list[str], target: Path) -> float:
    target.mkdir(parents=True)
    begin = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: client.download_file(BUCKET, key, str(target / Path(key).name)), keys))
    return time.perf_counter() - begin


def cache_fetch(cache, store) -> tuple[float, int]:
    from invarlock_provider.run_inputs import checkpoint_names

    begin = time.perf_counter()
    fetched = cache.fetch(store, PREFIX, check_names=checkpoint_names(f"s3://{BUCKET}/{PREFIX}/"))
    seconds = time.perf_counter() - begin
    fetched.release()
    return seconds, fetched.downloaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shard-mb", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from invarlock_provider.storage.input_cache import InputCache
    from invarlock_provider.storage.s3 import S3Store
    from invarlock_provider.storage.uri import StoreURI

    with tempfile.TemporaryDirectory(prefix="invarlock-bench-") as tmp:
        root = Path(tmp)
        parameters, total = build_checkpoint(root / "checkpoint", args.shard_mb)
        server = SeaweedServer(root / "seaweed")
        server.start()
        try:
            client = server.client()
            client.create_bucket(Bucket=BUCKET)
            keys = []
            for path in sorted((root / "checkpoint").iterdir()):
                key = f"{PREFIX}/{path.name}"
                client.upload_file(str(path), BUCKET, key)
                keys.append(key)
            store = S3Store(StoreURI("s3", BUCKET, ""), server.settings())
            plain, miss, hit = [], [], []
            for repeat in range(args.repeats):
                runs = ["boto3", "cache"] if repeat % 2 == 0 else ["cache", "boto3"]
                for method in runs:
                    if method == "boto3":
                        target = root / f"plain-{repeat}"
                        plain.append(boto3_download(client, keys, target))
                        shutil.rmtree(target)
                        continue
                    cache = InputCache(root / f"cache-{repeat}", limit_bytes=4 * total)
                    seconds, downloaded = cache_fetch(cache, store)
                    assert downloaded == len(keys), downloaded
                    miss.append(seconds)
                    seconds, downloaded = cache_fetch(cache, store)
                    assert downloaded == 0, downloaded
                    hit.append(seconds)
                    shutil.rmtree(cache.root)
        finally:
            server.stop()

    mib = total / (1 << 20)
    print(f"checkpoint: {parameters / 1e6:.0f}M parameters (fp16), {len(keys)} objects, {mib:,.0f} MiB")
    print(f"SeaweedFS on 127.0.0.1; median of {args.repeats} repeats, alternating order\n")
    print("| fetch | median s | MiB/s | runs (s) |")
    print("|---|---:|---:|---|")
    for label, values in (("boto3 download_file, 8 at a time", plain), ("input cache, miss", miss)):
        median = statistics.median(values)
        print(f"| {label} | {median:.2f} | {mib / median:,.0f} | {', '.join(f'{v:.2f}' for v in values)} |")
    median_hit = statistics.median(hit)
    print(f"| input cache, hit | {median_hit:.3f} | | {', '.join(f'{v:.3f}' for v in hit)} |")
    ratio = statistics.median(plain) / statistics.median(miss)
    print(f"\nmiss throughput / boto3 throughput: {ratio:.2f}x (target >= 0.8x)")
    print(f"hit / miss: {100 * median_hit / statistics.median(miss):.2f}% (target < 5%)")


if __name__ == "__main__":
    main()
