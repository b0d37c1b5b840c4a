"""Model and tokenizer loading, and the digests that identify what was evaluated.

Loading is offline unless the network policy allows the hub, and ``trust_remote_code`` is only
ever what the preset says. Weights load from safetensors only: a pickle checkpoint can run code
when it is loaded, so it is refused by name before anything is read. The digests hash content
(tensor bytes, vocabulary and merges), never file names or timestamps, so the same weights give
the same digest wherever they were copied.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock_provider.config import ModelConfig, is_commit
from invarlock_provider.errors import BadInputError
from invarlock_provider.evaluation.network import network_allowed
from invarlock_provider.evaluation.placement import Placement
from invarlock_provider.fileio import canonical_json
from invarlock_provider.resources import is_embedded, resolve_embedded

_NETWORK_HINT = "network is off: set INVARLOCK_ALLOW_NETWORK=1 to download from the hub"
SAFE_WEIGHTS = "model.safetensors"
SAFE_WEIGHTS_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = "pytorch_model*.bin*"  # one file, its shards, or their index
_RESAVE_HINT = "convert it to safetensors: model.save_pretrained(folder, safe_serialization=True)"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    tokenizer_size: int
    source: str
    context_length: int | None
    placement: Placement
    quantization: str | None


def resolve_model_source(reference: str) -> tuple[str, bool]:
    """Return (path or hub id, is_local); a path-looking reference must exist."""
    if is_embedded(reference):
        return str(resolve_embedded(reference)), True
    path = Path(reference).expanduser()
    if path.is_dir():
        return str(path.resolve()), True
    looks_like_path = reference.startswith((".", "/", "~")) or reference.count("/") > 1
    if looks_like_path or path.exists():
        raise BadInputError(f"model path not found or not a directory: {reference}")
    return reference, False


def check_model_weights(config: ModelConfig) -> None:
    """The model's weight files, checked before anything is loaded: a checkpoint that can never
    load (pickle, damaged safetensors) is refused before the tokenizer, the corpus or the model."""
    model_source, model_local = resolve_model_source(config.id)
    if model_local:
        check_weight_files(Path(model_source))
    elif not network_allowed() and (snapshot := _cached_snapshot(config)) is not None:
        check_weight_files(snapshot)


def load_tokenizer(config: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    offline = not network_allowed()
    source, local = resolve_model_source(config.tokenizer or config.id)
    try:
        return AutoTokenizer.from_pretrained(source, **_hub_options(config, offline))
    except (OSError, ValueError) as exc:
        raise BadInputError(_load_failure("tokenizer", source, local, offline, exc)) from None


def import_model_class(config: ModelConfig) -> tuple[Any, Any]:
    """The checkpoint's config and its causal-LM class, imported now so the import is timed on its
    own (transformers imports a family's modeling module on first use: seconds, not milliseconds)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    source, local = resolve_model_source(config.id)
    offline = not network_allowed()
    try:
        model_config = AutoConfig.from_pretrained(source, **_hub_options(config, offline))
    except (OSError, ValueError) as exc:
        raise BadInputError(_load_failure("model", source, local, offline, exc)) from None
    mapping = AutoModelForCausalLM._model_mapping
    model_class = mapping.get(type(model_config), AutoModelForCausalLM)
    return model_config, model_class


def load_model(
    config: ModelConfig,
    tokenizer: Any,
    tokenizer_size: int,
    model_config: Any,
    model_class: Any,
    *,
    dtype: Any,
    placement: Placement,
) -> LoadedModel:
    """Load straight onto the placement's devices; a quantized checkpoint's method is checked first.

    ``tokenizer_size`` is taken by the caller beforehand: the tokenizer may be busy encoding the
    corpus on another thread, and a Rust tokenizer must not be borrowed by two threads at once."""
    import torch
    from safetensors import SafetensorError

    from invarlock_provider.evaluation.placement import check_fits
    from invarlock_provider.evaluation.quantized import check_method_available, quantization_method

    source, local = resolve_model_source(config.id)
    offline = not network_allowed()
    method = quantization_method(model_config)
    if method is not None:
        check_method_available(
            method, source, cuda_devices=torch.cuda.device_count() if torch.cuda.is_available() else 0
        )
    try:
        model = model_class.from_pretrained(
            source,
            config=model_config,
            dtype=dtype,
            use_safetensors=True,
            **placement.from_pretrained_kwargs(),
            **_hub_options(config, offline),
        )
    except (OSError, ValueError, ImportError, SafetensorError) as exc:
        raise BadInputError(_load_failure("model", source, local, offline, exc)) from None
    check_fits(model, placement)
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        tokenizer_size=tokenizer_size,
        source=source,
        context_length=context_length(model.config),
        placement=placement,
        quantization=method,
    )


def check_weight_files(folder: Path) -> None:
    """Refuse a checkpoint folder whose weights are pickle, or whose safetensors files are damaged.

    transformers would unpickle ``pytorch_model.bin`` (pickle can run code, and ``weights_only``
    is a mitigation, not a format), and reports a truncated or garbled safetensors file as an
    untyped error deep in loading that names no file. Opening each file reads its header only and
    checks that the header's offsets cover the file exactly, so this costs milliseconds.
    """
    from safetensors import SafetensorError, safe_open

    index = folder / SAFE_WEIGHTS_INDEX
    if index.is_file():
        files = [folder / name for name in _index_shards(index)]
    elif (folder / SAFE_WEIGHTS).is_file():
        files = [folder / SAFE_WEIGHTS]
    else:
        pickled = sorted(folder.glob(PICKLE_WEIGHTS))
        if pickled:
            refused = "pickle weights are refused (loading pickle can run code)"
            raise BadInputError(f"{pickled[0]}: {refused}; {_RESAVE_HINT}")
        return  # no weights at all: transformers names what it looked for
    for path in files:
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except FileNotFoundError:
            raise BadInputError(f"{path}: listed in {index.name} but missing; copy the checkpoint again") from None
        except (SafetensorError, OSError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInputError(
                f"{path}: not a readable safetensors file ({reason}); it may be truncated or damaged, "
                "copy or save the checkpoint again"
            ) from None


def _cached_snapshot(config: ModelConfig) -> Path | None:
    """The Hugging Face cache's folder of a hub model at its revision, which is exactly what an
    offline load reads; None when it is not cached or not a valid hub id (the load then says so)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(config.id, "config.json", revision=config.revision)
    except ValueError:
        return None
    return Path(found).parent if isinstance(found, str) else None


def _index_shards(index: Path) -> list[str]:
    """The shard files a sharded checkpoint's index maps its tensors to, each inside the folder."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadInputError(f"{index}: not a readable safetensors index ({type(exc).__name__}: {exc})") from None
    for shard in shards:
        if not isinstance(shard, str) or Path(shard).name != shard:
            raise BadInputError(f"{index}: shard {shard!r} is not a file name in the checkpoint folder")
    return shards


def _hub_options(config: ModelConfig, offline: bool) -> dict[str, Any]:
    return {"revision": config.revision, "trust_remote_code": config.trust_remote_code, "local_files_only": offline}


def _load_failure(what: str, source: str, local: bool, offline: bool, exc: Exception) -> str:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if local:
        return f"cannot load {what} from {source}: {reason}"
    if offline:
        return f"{what} '{source}' is not a local directory or in the Hugging Face cache; {_NETWORK_HINT}"
    return f"cannot load {what} '{source}' from the hub: {reason}"


def hub_commit(config: ModelConfig, loaded: LoadedModel) -> str | None:
    """The hub commit the checkpoint was read at: its snapshot folder in the Hugging Face cache,
    which a hub load fills and an offline load reads (the revision, a branch included, resolved
    through the cache's refs); None for a local folder."""
    if Path(loaded.source).is_dir():
        return None
    snapshot = _cached_snapshot(config)
    return snapshot.name if snapshot is not None else None


def unpinned_hub_inputs(preset: Any, loaded: LoadedModel, commit: str | None, network: bool) -> list[str]:
    """With the network allowed, a hub model or dataset without a commit sha loads whatever its
    branch points at today: one warning each, naming what was read, so the report can be pinned."""
    if not network:
        return []
    warnings = []
    model = preset.model
    if not Path(loaded.source).is_dir() and not is_commit(model.revision):  # read from the hub
        pinned = f"revision {model.revision!r} is not a commit" if model.revision else "no revision"
        warnings.append(
            f"model {model.id}: {pinned}; read at commit {commit}: "
            "set model.revision (or --revision) to that sha to evaluate exactly this again"
        )
    dataset = preset.dataset
    if dataset.provider == "hf" and not is_commit(dataset.revision):
        pinned = f"revision {dataset.revision!r} is not a commit" if dataset.revision else "no revision"
        warnings.append(f"dataset {dataset.id}: {pinned}; set dataset.revision to a commit sha to pin it")
    return warnings


def context_length(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_compatible(loaded: LoadedModel, seq_len: int) -> None:
    """Refuse tokenizer/model pairs and window lengths the model cannot score correctly."""
    rows = loaded.model.get_input_embeddings().weight.shape[0]
    vocab = loaded.tokenizer_size
    if vocab > rows:
        raise BadInputError(
            f"tokenizer/model mismatch: tokenizer has {vocab} tokens but the model's embedding "
            f"has {rows} rows ({loaded.source}); use the tokenizer that belongs to this model"
        )
    if loaded.context_length is not None and seq_len > loaded.context_length:
        raise BadInputError(
            f"dataset.seq_len {seq_len} is longer than the model's context of "
            f"{loaded.context_length} tokens; lower seq_len (and stride)"
        )


def tokenizer_hash(tokenizer: Any) -> str:
    """sha256 over vocabulary, merges, normalisation and special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        content: Any = json.loads(backend.to_str())
    else:
        content = {"vocab": tokenizer.get_vocab()}
    special = {
        "special_tokens": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
        "added_tokens": sorted(str(t) for t in tokenizer.get_added_vocab()),
    }
    return hashlib.sha256(canonical_json({"tokenizer": content, **special})).hexdigest()
