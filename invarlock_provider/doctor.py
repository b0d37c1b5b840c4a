"""``invarlock doctor``: what this machine would evaluate with and where evidence would go.

Every check is a line an operator can act on: a missing extra is the pip command that installs it,
an unusable store names the URI and the reason. The store check writes, reads back and deletes one
probe object, because "reachable" alone has let many a nightly run fail at its last step; a local
store folder that does not exist yet is judged by where it would be created, never created: doctor
leaves nothing behind.
"""

from __future__ import annotations

import os
import platform
import re
import secrets
import shutil
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from invarlock_provider import __version__
from invarlock_provider.errors import InvarlockError, pip_install, redact_url_credentials

OK, WARN, FAIL = "ok", "warn", "FAIL"
PACKAGES: tuple[tuple[str, str | None], ...] = (
    ("cryptography", None),
    ("torch", "hf"),
    ("transformers", "hf"),
    ("tokenizers", "hf"),
    ("datasets", "hf"),
    ("boto3", "s3"),
    ("apache-airflow", "airflow"),
)
PROBE_PREFIX = ".invarlock-doctor"
SCRIPT, OWN_SCRIPT = "invarlock", "invarlock-airflow"
ENTRY_POINT = "invarlock_provider.cli:console_main"
# A pip/uv console-script launcher: its interpreter (the shebang, or pip's `#!/bin/sh` + `'''exec'`
# form for paths a shebang cannot hold) and the `from MODULE import FUNCTION` it runs.
_INTERPRETER = re.compile(r"\A#!(\S+)[^\n]*\n(?:'''exec' \"([^\"]+)\")?")
_LAUNCHER = re.compile(r"^from ([\w.]+) import (\w+)$", re.MULTILINE)


@dataclass(frozen=True)
class Finding:
    section: str
    status: str
    detail: str


def versions() -> list[Finding]:
    system = f"invarlock {__version__}, Python {platform.python_version()}, {platform.platform()}"
    installed, missing = [], []
    for package, extra in PACKAGES:
        try:
            installed.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            missing.append(Finding("versions", WARN, f"{package} not installed: {pip_install(extra)}"))
    return [Finding("versions", OK, system), Finding("versions", OK, ", ".join(installed) or "no extras"), *missing]


def script_on_path() -> list[Finding]:
    """Which package the ``invarlock`` on PATH runs. The InvarLock package on PyPI installs a script
    of the same name, and of two installed together the last one owns it without a word; the
    launcher's own import line and interpreter say which it is, whatever the packages' records claim."""
    found = shutil.which(SCRIPT)
    module = f"`{sys.executable} -m invarlock_provider.cli`"
    if found is None:
        detail = f"no `{SCRIPT}` on PATH: add {sysconfig.get_path('scripts')} to it, or run {module}"
        return [Finding("versions", WARN, detail)]
    try:
        head = Path(found).read_bytes()[:4096].decode()
    except (OSError, UnicodeDecodeError):
        head = ""
    interpreter, launcher = _INTERPRETER.match(head), _LAUNCHER.search(head)
    if interpreter is None or launcher is None:
        detail = f"`{SCRIPT}` on PATH ({found}) is no Python launcher doctor can read; `{OWN_SCRIPT}` runs this package"
        return [Finding("versions", WARN, detail)]
    target = f"{launcher[1]}:{launcher[2]}"
    if target != ENTRY_POINT:
        scripts = metadata.entry_points(group="console_scripts")
        owners = sorted({ep.dist.name for ep in scripts if ep.value == target and ep.dist is not None})
        detail = (
            f"`{SCRIPT}` on PATH ({found}) runs {' or '.join(owners) or 'another package'} ({target}), not this "
            f"package: use `{OWN_SCRIPT}`, this package's commands under a name of its own"
        )
        return [Finding("versions", WARN, detail)]
    python = Path(interpreter[2] or interpreter[1])
    # Folders, not files, are resolved: every venv's python links to the same base interpreter.
    here = {Path(sysconfig.get_path("scripts")).resolve(), Path(sys.executable).parent.resolve()}
    if python.parent.resolve() not in here:
        detail = f"`{SCRIPT}` on PATH ({found}) runs this package in another Python ({python}); here run {module}"
        return [Finding("versions", WARN, detail)]
    return [Finding("versions", OK, f"`{SCRIPT}` on PATH: {found} (this package)")]


def device() -> list[Finding]:
    try:
        import torch
    except ImportError:
        return [Finding("device", WARN, f"torch not installed, no evaluations: {pip_install('hf')}")]
    found = [Finding("device", OK, f"cpu: {os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            found.append(
                Finding(
                    "device",
                    OK,
                    f"cuda:{index} {props.name}, {props.total_memory / 2**30:.1f} GiB, CUDA {torch.version.cuda}, "
                    f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}",
                )
            )
    else:
        build = f"torch built with CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only torch build"
        found.append(Finding("device", OK, f"cuda: not available ({build})"))
    mps = torch.backends.mps.is_available()
    found.append(Finding("device", OK, f"mps: {'available' if mps else 'not available'}"))
    return found


def network() -> list[Finding]:
    from invarlock_provider.evaluation.network import ALLOW_NETWORK_ENV, network_allowed

    if network_allowed():
        detail = f"hub downloads allowed ({ALLOW_NETWORK_ENV}=1): runs may fetch new revisions"
        return [Finding("network", WARN, detail)]
    return [Finding("network", OK, f"hub downloads off: local files and caches only ({ALLOW_NETWORK_ENV}=1 allows)")]


def cache_dirs() -> list[Finding]:
    from invarlock_provider.airflow.defaults import WORKDIR_ENV, workdir
    from invarlock_provider.storage.index import default_index_path

    hf_home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    folders = {
        "HF_HOME": hf_home,
        "HF_HUB_CACHE": Path(os.environ.get("HF_HUB_CACHE") or hf_home / "hub"),
        "HF_DATASETS_CACHE": Path(os.environ.get("HF_DATASETS_CACHE") or hf_home / "datasets"),
        "archive index ($INVARLOCK_HOME)": default_index_path().parent,
        f"DAG workdir (${WORKDIR_ENV})": workdir(),
    }
    return [Finding("caches", *_folder_state(label, path)) for label, path in folders.items()]


def _folder_state(label: str, path: Path) -> tuple[str, str]:
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    free = f", {shutil.disk_usage(existing).free / 2**30:.1f} GiB free" if existing else ""
    if path.is_dir():
        writable = os.access(path, os.W_OK | os.X_OK)
        return (OK if writable else WARN), f"{label}: {path} ({'writable' if writable else 'NOT writable'}{free})"
    return OK, f"{label}: {path} (not created yet{free})"


def store(target: str, settings: Any = None, conn_id: str | None = None) -> list[Finding]:
    """Reachability, then a probe object written, read back and deleted under the target prefix."""
    from invarlock_provider.storage.local import LocalFolderStore
    from invarlock_provider.storage.stores import check_store, open_store
    from invarlock_provider.storage.uri import bundle_location

    try:
        root, base = bundle_location(target)
        if conn_id:
            from invarlock_provider.errors import require

            require("airflow", "airflow")
            try:
                settings = _connection_settings(conn_id)
            except Exception as exc:  # Airflow's lookup errors differ between versions and backends
                return [Finding("store", FAIL, f"connection {conn_id}: {exc}; create it or fix --conn-id")]
        opened = open_store(root, None if root.scheme == "file" else settings)
        local = isinstance(opened, LocalFolderStore)
        if local:
            opened.check_writable(create=False)
        else:
            check_store(opened)
    except InvarlockError as exc:
        return [Finding("store", FAIL, f"{target}: not reachable: {exc}")]
    found = [Finding("store", OK, f"{target}: reachable" + (f" through connection {conn_id}" if conn_id else ""))]
    if local and not opened.folder.is_dir():
        found.append(Finding("store", OK, f"{target}: not created yet; writable where the first archive creates it"))
    else:
        found.append(_probe(opened, "/".join(p for p in (base.strip("/"), PROBE_PREFIX) if p), target))
    try:
        lock = opened.supports_object_lock()
    except InvarlockError as exc:
        return [*found, Finding("store", WARN, f"object lock: cannot tell ({exc})")]
    found.append(Finding("store", OK, f"object lock: {'enabled on the bucket' if lock else 'not available'}"))
    return found


def _connection_settings(conn_id: str) -> Any:
    """The task-side lookup (environment, secrets backends), then the metadata database, which a
    task would reach through the API server but a shell on an Airflow host reads directly."""
    from invarlock_provider.airflow.hooks import EvidenceStoreHook, settings_from_connection

    try:
        return EvidenceStoreHook(conn_id).s3_settings
    except Exception:
        from airflow.secrets.metastore import MetastoreBackend

        connection = MetastoreBackend().get_connection(conn_id)
        if connection is None:
            raise
        return settings_from_connection(connection)


def _probe(opened: Any, prefix: str, target: str) -> Finding:
    from invarlock_provider.fileio import sha256_bytes

    key = f"{prefix}/{secrets.token_hex(6)}.txt"
    payload = f"invarlock doctor probe {time.time()}\n".encode()
    begin = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            probe = Path(scratch) / "probe.txt"
            probe.write_bytes(payload)
            opened.put_file(key, probe, sha256_bytes(payload))
        if opened.read_bytes(key) != payload:
            return Finding("store", FAIL, f"{target}: probe object {key} read back different bytes")
        outcome = opened.delete([key])
    except InvarlockError as exc:
        return Finding("store", FAIL, f"{target}: not writable: {exc}")
    elapsed = (time.perf_counter() - begin) * 1000
    if key in outcome.kept_locked or key in outcome.errors:
        reason = outcome.kept_locked.get(key) or outcome.errors.get(key)
        return Finding("store", WARN, f"{target}: writable; probe {key} could not be deleted ({reason})")
    return Finding("store", OK, f"{target}: writable (probe written, read back and deleted in {elapsed:.0f} ms)")


def diagnose(target: str | None, settings: Any = None, conn_id: str | None = None) -> list[Finding]:
    """Every finding, with user:password redacted from URLs: the store's errors quote its endpoint
    (and Airflow's lookup errors a connection's URI), and doctor's output is pasted into tickets."""
    findings = versions() + script_on_path() + device() + network() + cache_dirs()
    if target:
        findings += store(target, settings, conn_id)
    return [replace(finding, detail=redact_url_credentials(finding.detail)) for finding in findings]


def as_dicts(findings: list[Finding]) -> list[dict[str, str]]:
    return [asdict(finding) for finding in findings]
