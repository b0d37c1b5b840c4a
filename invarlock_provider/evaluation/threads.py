"""CPU threads for one evaluation, sized to the cores it may use and the evaluations beside it.

torch gives every process one intra-op thread per core of the machine. An Airflow worker runs
several evaluations at once (LocalExecutor's parallelism, Celery's worker concurrency), so with
torch's default four runs on a 2-core worker start eight busy threads that evict each other's
caches: under a load of 5, one run doubled its throughput with ``OMP_NUM_THREADS=1``.

The default here divides the cores this process may use (its CPU affinity and its cgroup's CPU
quota, whichever is smaller) among the evaluations running on the host at that moment. Each
evaluation registers itself with a lock file it holds for its lifetime, in a folder shared by the
host's evaluations; a file whose lock is free belongs to a process that has ended, however it
ended (kill -9 included), so the count needs no clean-up to stay right. The share is computed
again between batches, so an evaluation that started alone gives cores back when others start
and takes them again when they end. ``--concurrent N`` makes N the least divisor (a worker that
will run N evaluations); ``--threads N`` fixes the count.

Inter-op threads serve only parallel graph branches (``torch.jit.fork``), which eager scoring
never uses, so one is enough; torch accepts that setting only before its first parallel op, and
the record says what took effect.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError

RUNTIME_DIR_ENV = "INVARLOCK_RUNTIME_DIR"
CONCURRENT_ENV = "INVARLOCK_CONCURRENT_EVALUATIONS"
THREADS_ENV = "INVARLOCK_THREADS"
_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ThreadRequest:
    """What the caller asked for: a fixed count (None: sized) and the least number of evaluations
    the host runs at once (None: only the live count)."""

    threads: int | None = None
    concurrent: int | None = None


@dataclass(frozen=True)
class UsableCores:
    count: int
    affinity: int
    quota: float | None

    def as_record(self) -> dict[str, Any]:
        return {"count": self.count, "affinity": self.affinity, "cgroup_quota": self.quota}


def cgroup_cpu_quota(root: Path = _CGROUP_ROOT) -> float | None:
    """CPUs' worth of time the cgroup may use (cgroup v2 ``cpu.max``, v1 ``cfs_quota_us``), or None."""
    own = _own_cgroup_path()
    for folder in ([root / own.lstrip("/")] if own else []) + [root]:
        with contextlib.suppress(OSError, ValueError):
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    return None


def _own_cgroup_path() -> str | None:
    """This process's cgroup v2 path (``0::/path``), or None."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    return None


def usable_cores() -> UsableCores:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    count = affinity if quota is None else max(1, min(affinity, math.floor(quota)))
    return UsableCores(count=count, affinity=affinity, quota=quota)


def threads_for(cores: int, evaluations: int) -> int:
    """Intra-op threads for one of ``evaluations`` runs sharing ``cores``: at least one each."""
    return max(1, cores // max(1, evaluations))


def parse_threads(value: str | int | None, *, source: str = "--threads") -> int | None:
    """``auto``/None -> None (sized), a positive integer -> itself; anything else is a one-line error."""
    if value is None or str(value).strip().lower() in ("", "auto"):
        return None
    return _positive(value, source, "a positive integer or 'auto'")


def parse_concurrent(value: str | int | None, *, source: str = "--concurrent") -> int | None:
    if value is None or str(value).strip() == "":
        return None
    return _positive(value, source, "a positive integer (evaluations at once)")


def _positive(value: str | int, source: str, expected: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise BadInputError(f"{source}: expected {expected}, not {value!r}")
    return number


def thread_request(threads: str | None, concurrent: str | int | None) -> ThreadRequest:
    """The CLI's options, falling back to INVARLOCK_THREADS and INVARLOCK_CONCURRENT_EVALUATIONS."""
    if threads is None and os.environ.get(THREADS_ENV):
        fixed = parse_threads(os.environ[THREADS_ENV], source=THREADS_ENV)
    else:
        fixed = parse_threads(threads)
    if concurrent is None and os.environ.get(CONCURRENT_ENV):
        return ThreadRequest(fixed, parse_concurrent(os.environ[CONCURRENT_ENV], source=CONCURRENT_ENV))
    return ThreadRequest(fixed, parse_concurrent(concurrent))


def runtime_dir() -> Path:
    """Where the host's evaluations register; not TMPDIR, which a task points at its own scratch."""
    configured = os.environ.get(RUNTIME_DIR_ENV)
    if configured:
        return Path(configured)
    return Path("/tmp") / f"invarlock-{os.getuid()}" / "evaluations"


class EvaluationRegistry:
    """Live evaluations on this host: one lock file per process, held while it runs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._handle: Any = None
        self._path: Path | None = None

    def register(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Locked before it gets the name others count, so a probe never takes an unlocked new file
        # for a dead one.
        pending = self.folder / f".{os.getpid()}.pending"
        handle = pending.open("w")
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = self.folder / f"{os.getpid()}.lock"
        pending.replace(path)
        self._handle, self._path = handle, path

    def unregister(self) -> None:
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            if self._path is not None:
                self._path.unlink()
        self._handle.close()
        self._handle, self._path = None, None

    def live(self) -> int:
        """Registered evaluations whose process still holds its lock (this one included)."""
        count = 0
        try:
            entries = list(self.folder.glob("*.lock"))
        except OSError:
            return 1
        for path in entries:
            if path == self._path:
                count += 1
                continue
            try:
                with path.open("a") as probe:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                count += 1
                continue
            except OSError:
                continue
            with contextlib.suppress(OSError):
                path.unlink()  # its process ended without unregistering (killed)
        return max(1, count)


@dataclass
class ThreadSizer:
    """Applies and re-applies the thread count of one evaluation; recorded in ``meta.threads``."""

    requested: int | None = None
    concurrent: int | None = None
    registry: EvaluationRegistry = field(default_factory=lambda: EvaluationRegistry(runtime_dir()))
    cores: UsableCores = field(default_factory=usable_cores)
    used: list[int] = field(default_factory=list)
    interop: int | None = None
    peers_seen: int = 1

    def __enter__(self) -> ThreadSizer:
        import torch

        if self.requested is None:
            with contextlib.suppress(OSError):
                self.registry.register()
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        self.interop = torch.get_num_interop_threads()
        self.resize()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.registry.unregister()

    def resize(self) -> int:
        """Divide the cores again among the evaluations running now; the count in effect."""
        import torch

        if self.requested is not None:
            threads = self.requested
        else:
            evaluations = max(self.registry.live(), self.concurrent or 1)
            self.peers_seen = max(self.peers_seen, evaluations)
            threads = threads_for(self.cores.count, evaluations)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if not self.used or self.used[-1] != threads:
            self.used.append(threads)
        return threads

    def as_record(self) -> dict[str, Any]:
        return {
            "requested": self.requested if self.requested is not None else "auto",
            "concurrent": self.concurrent,
            "usable_cores": self.cores.as_record(),
            "most_evaluations_seen": self.peers_seen if self.requested is None else None,
            "intra_op": self.used,
            "inter_op": self.interop,
        }
