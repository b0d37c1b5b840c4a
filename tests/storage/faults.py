"""Kill or pause an ``invarlock`` process at a named store call: races and crashes, reproduced exactly.

``python -m tests.storage.faults ARGS...`` runs the real CLI (``invarlock ARGS...``) with every call
that reads or commits evidence counted: the object-store methods of both backends (S3 and a local
folder) and the commits of local folders (atomic file writes, the newest-run link, the rename and
removal that prune a local run). Each call
is appended to ``$INVARLOCK_FAULT_LOG`` as ``<number> <method> <key>`` before it happens; at call
number ``$INVARLOCK_FAULT_AT`` (or the first whose line contains ``$INVARLOCK_FAULT_MATCH``) the
process does ``$INVARLOCK_FAULT_ACTION``: ``kill`` sends itself SIGKILL (kill -9: no cleanup, no
atexit), ``pause`` waits until the file ``$INVARLOCK_FAULT_RELEASE`` exists, then goes on.

The same hooks serve threads in the test process: :func:`pausing` holds one named call in one
thread until the test lets it go. Nothing here changes what a call does.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STORE_METHODS = (
    "check_access",
    "put_file",
    "copy_from",
    "head",
    "read_bytes",
    "download",
    "download_hashed",
    "list",
    "delete",
    "delete_if_match",
)
_counter = itertools.count()
_lock = threading.Lock()


def _describe(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    key = args[0] if args else kwargs.get("key", "")
    if method == "copy_from":
        key = args[2] if len(args) > 2 else kwargs.get("key", "")
    if isinstance(key, list):
        key = ",".join(str(k) for k in key[:3]) + ("..." if len(key) > 3 else "")
    return f"{method} {key}"


def _act(line: str, number: int) -> None:
    at, match = os.environ.get("INVARLOCK_FAULT_AT"), os.environ.get("INVARLOCK_FAULT_MATCH")
    if not ((at is not None and int(at) == number) or (match and match in line)):
        return
    if os.environ.get("INVARLOCK_FAULT_ACTION", "kill") == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    release = Path(os.environ["INVARLOCK_FAULT_RELEASE"])
    Path(f"{release}.waiting").write_text(line)
    while not release.exists():
        time.sleep(0.02)


def _counted(
    method: str, original: Callable[..., Any], *, bound: bool, when: Callable[[str], bool] | None = None
) -> Callable[..., Any]:
    """``original``, counted (when ``when`` accepts the call's description) before it runs."""

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        described = _describe(method, args[1:] if bound else args, kwargs)
        if when is not None and not when(described):
            return original(*args, **kwargs)
        with _lock:
            number = next(_counter)
            log = os.environ.get("INVARLOCK_FAULT_LOG")
            if log:
                with open(log, "a") as handle:
                    handle.write(f"{number} {described}\n")
                    handle.flush()
                    os.fsync(handle.fileno())
        _act(f"{number} {described}", number)
        return original(*args, **kwargs)

    return wrapper


def install() -> None:
    """Count (and maybe kill or pause at) every store call and local commit of this process. The
    functions other modules import by name are replaced before any of those modules is imported."""
    from invarlock_provider import fileio, layout

    for name in ("write_bytes_atomic", "write_json_atomic"):
        setattr(fileio, name, _counted(name, getattr(fileio, name), bound=False))
    layout.publish_latest = _counted("publish_latest", layout.publish_latest, bound=False)
    # A local runs folder is pruned by a rename out of the layout, then the removal of what was renamed.
    pruning = ".deleting-"
    Path.rename = _counted("rename", Path.rename, bound=False, when=lambda d: pruning in d)  # type: ignore[method-assign]
    shutil.rmtree = _counted("rmtree", shutil.rmtree, bound=False, when=lambda d: pruning in d)  # type: ignore[assignment]

    from invarlock_provider.storage.local import LocalFolderStore
    from invarlock_provider.storage.s3 import S3Store

    for cls in (LocalFolderStore, S3Store):
        for method in STORE_METHODS:
            if hasattr(cls, method):
                setattr(cls, method, _counted(method, getattr(cls, method), bound=True))


@contextmanager
def pausing(store: Any, method: str, key_suffix: str) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Hold the first ``method`` call on ``store`` whose key ends with ``key_suffix``: ``reached``
    is set when it is held, and it goes on once the test sets ``go``. For writers in threads."""
    original = getattr(store, method)
    reached, go = threading.Event(), threading.Event()
    held = threading.Lock()

    def wrapper(key: str, *args: Any, **kwargs: Any) -> Any:
        if str(key).endswith(key_suffix) and held.acquire(blocking=False):
            reached.set()
            if not go.wait(timeout=120):
                raise TimeoutError(f"the test never released {method} {key}")
        return original(key, *args, **kwargs)

    setattr(store, method, wrapper)
    try:
        yield reached, go
    finally:
        setattr(store, method, original)


def main() -> None:
    install()
    from invarlock_provider.cli import console_main

    sys.argv = ["invarlock", *sys.argv[1:]]
    console_main()


if __name__ == "__main__":
    main()
