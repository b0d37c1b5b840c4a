"""A real CeleryExecutor Airflow deployment for end-to-end tests, with workers that share nothing.

PostgreSQL (metadata database and Celery result backend) and Redis (broker) come from Debian's
packages; Airflow's API server, scheduler and DAG processor run in this machine's namespaces, and
each Celery worker runs in its own mount and UTS namespace: a private tmpfs over its work folder,
HOME, TMPDIR, AIRFLOW_HOME and task-log folder, and its own hostname. So a task sees only the files
its own worker wrote, as if each worker were a separate machine, and nothing a task writes reaches
the shared disk. Everything listens on 127.0.0.1 on free ports and every process is stopped by PID.

Needs root (Postgres is run as the `postgres` user; the namespaces need CAP_SYS_ADMIN).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from tests.storage.seaweed import free_ports

T = TypeVar("T")

# Fixed rather than generated so that a deployment's logs and tokens can be checked by hand.
FERNET_KEY = "kKCyvymh3yT1X6eYVtiGvBaCdeYM_3-HHTCTxEZtdXs="
SECRET = "invarlock-celery-deployment-shared-secret-for-api-jwt-and-log-server"  # HS512 wants 64 bytes or more

# Inherited variables that would point a component at the pytest session's Airflow home, at a
# folder on the shared disk or at a proxy; the deployment sets its own.
_DROPPED_PREFIXES = ("AIRFLOW", "_AIRFLOW", "INVARLOCK_")
_DROPPED = {"HOME", "TMPDIR", "HF_HOME", "HF_DATASETS_CACHE", "XDG_CACHE_HOME", "PYTHONPATH"}
_PROXIES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}

# Airflow's own log server binds every interface (uvicorn host=""), so workers run with
# --skip-serve-logs and this one, bound to loopback, serves the same app instead.
_LOG_SERVER = (
    "import os, uvicorn; uvicorn.run('airflow.utils.serve_logs.log_server:get_app', factory=True, "
    "host='127.0.0.1', port=int(os.environ['AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT']), "
    "log_config=None, access_log=False)"
)


@dataclass(frozen=True)
class Worker:
    """One Celery worker; `name` is its hostname (what Airflow records as the TI's hostname)."""

    name: str
    queues: str
    concurrency: int


DEFAULT_WORKERS = (Worker("worker-gpu", "gpu", 1), Worker("worker-default", "default", 2))


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None


def postgres_bin() -> Path:
    """Debian keeps the server binaries off PATH, one folder per major version."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is missing: apt-get install postgresql")
    return found[-1].parent


def _session_members(session: int) -> list[int]:
    """Every live (not zombie) process of a session: task processes put themselves in new process
    groups, so killing the leader's group alone would leave them behind."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
                if state != "Z" and os.getsid(int(entry)) == session:
                    members.append(int(entry))
    return members


def _stop_sessions(processes: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM each leader's group (all at once: a Celery worker's warm shutdown takes seconds),
    then SIGKILL whatever of their sessions is left after `grace` seconds."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        for process in processes:
            process.poll()
        if not any(_session_members(process.pid) for process in processes):
            return
        time.sleep(0.2)
    for process in processes:
        for pid in _session_members(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


class _LogProxy(ThreadingHTTPServer):
    """The API server fetches a task's log from http://<TI hostname>:<one configured port>/log/...;
    the workers share 127.0.0.1 and so need a port each, and their hostnames resolve nowhere. The
    API server is pointed at this HTTP proxy, which sends the request to the log server of the
    worker named in the URL, whatever port it says."""

    daemon_threads = True

    def __init__(self, routes: dict[str, int]) -> None:
        self.routes = routes
        super().__init__(("127.0.0.1", 0), _LogProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _LogProxyHandler(BaseHTTPRequestHandler):
    server: _LogProxy

    def do_GET(self) -> None:
        target = urllib.parse.urlsplit(self.path)
        port = self.server.routes.get(target.hostname or "")
        if port is None:
            self.send_error(502, f"no worker named {target.hostname!r}")
            return
        upstream = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request("GET", path, headers={"Authorization": self.headers.get("Authorization", "")})
            response = upstream.getresponse()
            body = response.read()
        except OSError as error:
            self.send_error(502, f"{target.hostname}: {error}")
            return
        finally:
            upstream.close()
        self.send_response(response.status)
        self.send_header("Content-Type", response.getheader("Content-Type", "text/plain"))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a proxied request is visible in the API server's own log."""


class CeleryDeployment:
    """Start with `start()`, always `stop()` (from a `finally`); `deployment()` does both.

    `extra_env` is merged last into every component's environment (so it can also override any
    AIRFLOW__ setting below); `workdir` is the path INVARLOCK_WORKDIR/INVARLOCK_HOME point into,
    the same path string on every worker but a different private tmpfs on each.
    """

    def __init__(
        self,
        root: Path,
        dags_folder: Path,
        extra_env: dict[str, str] | None = None,
        *,
        workdir: Path | None = None,
        workers: tuple[Worker, ...] = DEFAULT_WORKERS,
    ) -> None:
        self.root = root.resolve()
        self.dags_folder = dags_folder.resolve()
        self.extra_env = dict(extra_env or {})
        self.workdir = (workdir or self.root / "work").resolve()
        self.workers = workers
        self.timings: dict[str, float] = {}
        self.logs = self.root / "logs"
        self.postgres_port, self.redis_port, self.api_port, trigger_log_port, *log_ports = free_ports(
            4 + len(self.workers)
        )
        self.log_ports = dict(zip((w.name for w in self.workers), log_ports, strict=True))
        self.trigger_log_port = trigger_log_port
        # The data folder must be reachable by the postgres user; pytest's tmp_path is not (0700).
        self.postgres_dir = Path(tempfile.mkdtemp(prefix="invarlock-postgres-"))
        self.processes: dict[str, _Process] = {}
        self.proxy: _LogProxy | None = None
        self._token: str | None = None

    # -- environment ---------------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        """What every component shares; the per-component folders are added by `_env`."""
        inherited = {
            key: value
            for key, value in os.environ.items()
            if key not in _DROPPED and key.lower() not in _PROXIES and not key.startswith(_DROPPED_PREFIXES)
        }
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, so the driver is named.
        database = f"postgresql+psycopg2://postgres@127.0.0.1:{self.postgres_port}/airflow"
        return {
            **inherited,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__SECRET_KEY": SECRET,
            "AIRFLOW__API_AUTH__JWT_SECRET": SECRET,
            "AIRFLOW__CORE__FERNET_KEY": FERNET_KEY,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            # The worker's namespace hostname, not a DNS lookup of it (which has nothing to find).
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "2",
            # No triggerer runs; a free port all the same, so that one started with server_env() fits.
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.trigger_log_port),
            # Seconds instead of minutes, so a new DAG file is found and parsed at once. Known
            # files keep the 30 s re-parse interval: each parse is a process, on maybe two cores.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            # The cleanup is for versioned bundles (the dags folder is not one); it is a process per worker.
            "AIRFLOW__DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_INTERVAL": "0",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            # One process, not one per core, polls Celery for task states: the machine may have two cores.
            "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
            **self.invarlock_env(),
        }

    def invarlock_env(self) -> dict[str, str]:
        return {"INVARLOCK_WORKDIR": str(self.workdir), "INVARLOCK_HOME": str(self.workdir / ".invarlock")}

    def _env(self, home: Path, tmp: Path, task_logs: Path, **overrides: str) -> dict[str, str]:
        return {
            **self.base_env(),
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(task_logs),
            **overrides,
            **self.extra_env,
        }

    def server_env(self) -> dict[str, str]:
        """API server, scheduler, DAG processor and `airflow` CLI calls: one home under root. Their
        requests for task logs go through the proxy; everything else they call is on loopback."""
        home, tmp, task_logs = self.root / "home", self.root / "tmp", self.root / "task-logs"
        for folder in (home / "airflow", tmp, task_logs):
            folder.mkdir(parents=True, exist_ok=True)
        proxy: dict[str, str] = {}
        if self.proxy is not None:
            proxy = {"HTTP_PROXY": self.proxy.url, "http_proxy": self.proxy.url}
            proxy |= {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        return self._env(home, tmp, task_logs, **proxy)

    def worker_dirs(self, worker: Worker) -> list[Path]:
        """The worker's private folders, each a tmpfs in its namespace (the work folder is the same
        path on every worker): work, HOME, TMPDIR, task logs. On the disk they stay empty."""
        base = self.root / "workers" / worker.name
        return [self.workdir, base / "home", base / "tmp", base / "task-logs"]

    def worker_env(self, worker: Worker) -> dict[str, str]:
        _, home, tmp, task_logs = self.worker_dirs(worker)
        return self._env(
            home,
            tmp,
            task_logs,
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(self.log_ports[worker.name]),
            # A DAG file imported by a task would otherwise leave __pycache__ on the shared disk.
            PYTHONDONTWRITEBYTECODE="1",
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> None:
        """Databases, migration, then every Airflow component at once (their imports overlap) and a
        wait for each to be ready. A component that exits, or a wait that runs out, raises an
        AssertionError naming its log; `timings` says how long each wait took."""
        self.logs.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self._timed("postgres", self._start_postgres)
        self._start_redis()
        self.proxy = _LogProxy(self.log_ports)
        threading.Thread(target=self.proxy.serve_forever, name="celery-log-proxy", daemon=True).start()
        self._timed("db migrate", self._migrate)
        self._timed("redis", lambda: self._wait(self._redis_pong, 10, "redis"))
        airflow = str(Path(sys.executable).with_name("airflow"))
        env = self.server_env()
        self._spawn("api-server", [airflow, "api-server"], env)
        self._spawn("scheduler", [airflow, "scheduler", "--skip-serve-logs"], env)
        self._spawn("dag-processor", [airflow, "dag-processor"], env)
        for worker in self.workers:
            self._spawn_worker(worker)
        self._timed("api", lambda: self._wait(self.token, timeout, "the API server", "api-server"))
        healthy = "a healthy scheduler and DAG processor"
        self._timed("scheduler + dag processor", lambda: self._wait(self._healthy, timeout, healthy, "scheduler"))
        for worker in self.workers:
            self._timed(worker.name, lambda w=worker: self._wait_for_worker(w, timeout))
        self.timings["total"] = time.monotonic() - started

    def stop(self) -> None:
        """Workers first (so no task is left half-way), then the servers, then the databases; each
        step runs even when an earlier one failed, and the first failure is raised at the end."""
        failures: list[Exception] = []
        for step in (self._stop_airflow, self._stop_proxy, self._stop_redis, self._stop_postgres):
            try:
                step()
            except Exception as failure:
                failures.append(failure)
        if failures:
            raise failures[0]

    def _stop_airflow(self) -> None:
        for wave in ([w.name for w in self.workers], ["scheduler", "dag-processor", "api-server"]):
            _stop_sessions([self.processes.pop(name).popen for name in wave if name in self.processes], grace=15)

    def _stop_proxy(self) -> None:
        if self.proxy is not None:
            self.proxy.shutdown()
            self.proxy.server_close()
            self.proxy = None

    def _stop_redis(self) -> None:
        redis = self.processes.pop("redis", None)
        if redis is not None:
            _stop_sessions([redis.popen], grace=10)

    def _stop_postgres(self) -> None:
        postgres = self.processes.pop("postgres", None)
        try:
            if postgres is not None and postgres.alive():
                data = str(self.postgres_dir / "data")
                pg_ctl = [*self._as_postgres(), str(postgres_bin() / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", data]
                subprocess.run(pg_ctl, capture_output=True, timeout=60, check=False)
        finally:
            if postgres is not None:
                _stop_sessions([postgres.popen], grace=10)
            shutil.rmtree(self.postgres_dir, ignore_errors=True)

    def _timed(self, what: str, step: Callable[[], object]) -> None:
        began = time.monotonic()
        step()
        self.timings[what] = time.monotonic() - began

    @staticmethod
    def _as_postgres() -> list[str]:
        return ["runuser", "-u", "postgres", "--"]

    def _start_postgres(self) -> None:
        data, sockets = self.postgres_dir / "data", self.postgres_dir / "sockets"
        sockets.mkdir()
        shutil.chown(self.postgres_dir, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
        bin_dir = postgres_bin()
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        self._run_logged("initdb", [*self._as_postgres(), *initdb, "--no-sync"], {"PATH": os.environ["PATH"]}, 120)
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(sockets),
            "max_connections": "300",
            # A throw-away database: durability costs time and buys nothing.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        postgres = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.postgres_port), *options]
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
        self._spawn("postgres", [*self._as_postgres(), *postgres], env, cwd=self.postgres_dir)
        createdb = [*self._as_postgres(), str(bin_dir / "createdb"), "-h", str(sockets), "-p"]
        createdb += [str(self.postgres_port), "airflow"]
        self._wait(
            lambda: subprocess.run(createdb, capture_output=True, check=False).returncode == 0,
            60,
            "PostgreSQL",
            "postgres",
        )

    def _start_redis(self) -> None:
        redis_dir = self.root / "redis"
        redis_dir.mkdir(exist_ok=True)
        port = str(self.redis_port)
        command = ["redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no"]
        self._spawn("redis", [*command, "--dir", str(redis_dir)], {"PATH": os.environ["PATH"]})

    def _redis_pong(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.redis_port), timeout=2) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")

    def _migrate(self) -> None:
        airflow = str(Path(sys.executable).with_name("airflow"))
        self._run_logged("db-migrate", [airflow, "db", "migrate"], self.server_env(), 600)

    def _run_logged(self, name: str, command: list[str], env: dict[str, str], timeout: float) -> None:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            try:
                code = subprocess.run(
                    command, env=env, cwd=self.root, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
                ).returncode
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{name} did not finish within {timeout:.0f}s; see {log}") from None
        if code != 0:
            raise AssertionError(f"{name} failed with {code}; see {log}\n--- last lines ---\n{_tail(log)}")

    def _spawn(self, name: str, command: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                command,
                env=env,
                cwd=cwd or self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = _Process(name, popen, log)

    def _spawn_worker(self, worker: Worker) -> None:
        """`unshare` gives the shell a private mount table and hostname; the shell mounts the
        tmpfs folders, starts the loopback log server and becomes the worker. The mounts vanish
        with the namespace's last process."""
        mounts = self.worker_dirs(worker)
        for folder in mounts:
            folder.mkdir(parents=True, exist_ok=True)
        airflow = str(Path(sys.executable).with_name("airflow"))
        command = [airflow, "celery", "worker", "--queues", worker.queues, "--concurrency", str(worker.concurrency)]
        command += ["--celery-hostname", worker.name, "--skip-serve-logs", "--without-mingle", "--without-gossip"]
        script = "\n".join(
            [
                "set -eu",
                f"hostname {shlex.quote(worker.name)}",
                *(f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(folder))}" for folder in mounts),
                f"mkdir {shlex.quote(str(mounts[1] / 'airflow'))}",
                f"{shlex.quote(sys.executable)} -c {shlex.quote(_LOG_SERVER)} &",
                f"exec {shlex.join(command)}",
            ]
        )
        namespace = ["unshare", "--mount", "--uts", "--propagation", "private"]
        self._spawn(worker.name, [*namespace, "sh", "-c", script], self.worker_env(worker))

    # -- readiness -----------------------------------------------------------------------------

    def check_alive(self) -> None:
        for process in self.processes.values():
            if not process.alive():
                raise AssertionError(
                    f"{process.name} exited with {process.popen.returncode}; see {process.log}"
                    f"\n--- last lines ---\n{_tail(process.log)}"
                )

    def _wait(self, probe: Callable[[], T], timeout: float, what: str, log_of: str | None = None) -> T:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                value = probe()
                if value:
                    return value
            except (OSError, KeyError, ValueError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                log = self.processes[log_of].log if log_of in self.processes else self.logs
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; see {log}")
            time.sleep(0.25)

    def _healthy(self) -> bool:
        health = self.request("GET", "/api/v2/monitor/health")
        return all(health[part]["status"] == "healthy" for part in ("metadatabase", "scheduler", "dag_processor"))

    def _wait_for_worker(self, worker: Worker, timeout: float) -> None:
        """Celery logs `<nodename> ready.` once the worker consumes from its queues."""
        ready = f"@{worker.name} ready."
        self._wait(lambda: ready in self.worker_log(worker.name), timeout, f"{worker.name} to be ready", worker.name)

    # -- REST API ------------------------------------------------------------------------------

    def token(self) -> str:
        if self._token is None:
            self._token = self._call("GET", "/auth/token", None, None)["access_token"]
        return self._token

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """A REST call as an admin; an HTTP error is raised with the response body in it."""
        try:
            return self._call(method, path, body, self.token())
        except urllib.error.HTTPError as error:
            if error.code == 401:
                self._token = None
                return self._call(method, path, body, self.token())
            raise

    def _call(self, method: str, path: str, body: dict | None, token: str | None) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            error.msg = f"{error.msg}: {method} {path}: {error.read().decode(errors='replace')}"
            raise

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict:
        return self._wait(lambda: self.request("GET", f"/api/v2/dags/{dag_id}"), timeout, f"DAG {dag_id}")

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def run_path(self, dag_id: str, run_id: str) -> str:
        return f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Until the run is success or failed; a component dying meanwhile fails at once."""

        def finished() -> str | None:
            state = self.request("GET", self.run_path(dag_id, run_id))["state"]
            return state if state in ("success", "failed") else None

        return self._wait(finished, timeout, f"run {run_id} of {dag_id} to finish", "scheduler")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """Every TI of the run, mapped ones included (one per map_index), with where it ran:
        hostname is the worker's name and pid the task process's (a plain PID on this machine)."""
        keys = ("task_id", "map_index", "state", "try_number", "hostname", "queue", "pid", "duration")
        found: list[dict] = []
        while True:
            page = self.request("GET", f"{self.run_path(dag_id, run_id)}/taskInstances?limit=100&offset={len(found)}")
            found += [{key: ti.get(key) for key in keys} for ti in page["task_instances"]]
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        path = f"{self.run_path(dag_id, run_id)}/taskInstances/{task_id}/xcomEntries/{key}?map_index={map_index}"
        return self.request("GET", path)["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """A task's log as the UI shows it: the API server fetches it from the worker's log server
        (the file itself is on that worker's tmpfs)."""
        path = f"{self.run_path(dag_id, run_id)}/taskInstances/{task_id}/logs/{try_number}?map_index={map_index}"
        content = self.request("GET", f"{path}&full_content=true")["content"]
        if isinstance(content, str):
            return content
        return "\n".join(
            " ".join(str(line.get(k, "")) for k in ("timestamp", "level", "event")).strip()
            if isinstance(line, dict)
            else str(line)
            for line in content
        )

    def worker_log(self, name: str) -> str:
        """The worker's own stdout/stderr (outside its tmpfs, so readable after it died)."""
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def worker_pid(self, name: str) -> int:
        """A PID inside the worker's namespace: /proc/<pid>/root shows its private folders."""
        return self.processes[name].popen.pid


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def deployment(
    root: Path, dags_folder: Path, extra_env: dict[str, str] | None = None, **options: Any
) -> Iterator[CeleryDeployment]:
    """A started deployment, stopped however the block ends (a failed start included)."""
    running = CeleryDeployment(root, dags_folder, extra_env, **options)
    try:
        running.start()
        yield running
    finally:
        running.stop()
