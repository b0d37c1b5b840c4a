"""The container setup in docker/: the compose file as docker-compose itself renders it (services,
queues, GPU request, shared volumes, the evidence bucket and its connection), and the Dockerfile's
install step checked against the repository's one install script and its pins."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE_FILE = "docker/docker-compose.yaml"

AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker-cpu",
    "airflow-worker-gpu",
}
SUPPORT_SERVICES = {"postgres", "redis", "objectstore", "objectstore-init"}
# Services that run or schedule tasks, i.e. read INVARLOCK_WORK_URI.
TASK_SERVICES = ("airflow-scheduler", "airflow-dag-processor", "airflow-worker-cpu", "airflow-worker-gpu")
CONN_ENV = "AIRFLOW_CONN_INVARLOCK_EVIDENCE"

needs_compose = pytest.mark.usefixtures("docker_compose")  # fails, never skips, when it is missing


# --- the Dockerfile, read as instructions -------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "Dockerfile ends in a continuation line"
    return instructions


def dockerfile_args(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_instructions() if kw == keyword]


def dockerfile_arg_default(name: str) -> str:
    for args in dockerfile_args("ARG"):
        key, _, default = args.partition("=")
        if key == name:
            return default
    raise AssertionError(f"no ARG {name} in {DOCKERFILE}")


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in dockerfile_args("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY, its --flags dropped."""
    result = []
    for args in dockerfile_args("COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        result.append((words[:-1], words[-1]))
    return result


def constraint_pin(name: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = re.fullmatch(rf"\s*{re.escape(name)}\s*==\s*([^\s#]+)\s*(#.*)?", line, flags=re.IGNORECASE)
        if match:
            return match.group(1)
    raise AssertionError(f"constraints.txt does not pin {name}")


def test_dockerfile_installs_with_the_shared_install_script() -> None:
    runs = dockerfile_args("RUN")
    installs = [run for run in runs if "scripts/install_provider.sh" in run]
    assert len(installs) == 1, runs
    words = shlex.split(installs[0])
    # The torch build comes from the variant's wheel index, for this RUN only (not an ENV of the image).
    assert "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}" in words
    assert "PIP_EXTRA_INDEX_URL" not in " ".join(dockerfile_args("ENV"))
    assert dockerfile_arg_default("TORCH_VARIANT") == "cpu"
    script = next(i for i, w in enumerate(words) if w.endswith("scripts/install_provider.sh"))
    targets = words[script + 2 :]  # after the script: PYTHON, then the pip targets
    assert targets == ["/opt/invarlock-src[hf,s3,airflow]"], targets  # non-editable, with the extras
    # One source of truth: no other RUN installs Python packages on its own.
    assert not [run for run in runs if run is not installs[0] and re.search(r"\bpip\b|\buv\b", run)]
    # ... and the venv setup calls the same script, which applies constraints.txt.
    assert "scripts/install_provider.sh" in (ROOT / "scripts" / "setup_venv.sh").read_text()
    assert re.search(r'-c "\$root/constraints\.txt"', (ROOT / "scripts" / "install_provider.sh").read_text())


def test_dockerfile_copies_everything_the_wheel_build_needs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {
        "pyproject.toml",
        "constraints.txt",
        "scripts",
        project["project"]["readme"],
        *wheel["packages"],
        *wheel["force-include"],
        Path(project["tool"]["hatch"]["version"]["path"]).parts[0],
    }
    copied = {
        Path(source).parts[0]
        for sources, destination in copies()
        if destination.startswith("/opt/invarlock-src")
        for source in sources
    }
    assert needed <= copied, needed - copied
    assert (["dags/"], "/opt/airflow/dags/") in copies()
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not (copied | {"dags"}) & ignored
    assert {".venv", ".git", "runs", "reports", "evidence", ".ruff_cache", ".pytest_cache", "quickstart"} <= ignored
    assert "**/__pycache__" in ignored


def test_base_image_airflow_matches_the_constraints_pin() -> None:
    from packaging.specifiers import SpecifierSet

    image = dockerfile_arg_default("AIRFLOW_IMAGE")
    assert dockerfile_args("FROM") == ["${AIRFLOW_IMAGE}"]
    match = re.fullmatch(r"apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)", image)
    assert match, image
    airflow_version, python_version = match.groups()
    assert airflow_version == constraint_pin("apache-airflow")
    requires_python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python_version in SpecifierSet(requires_python), (python_version, requires_python)


# --- the compose file, rendered by docker-compose -----------------------------------------------


def mounts(service: dict) -> dict[str, str]:
    """Container path -> volume, from the short (docker-compose 1.x) or long (Compose v2) syntax."""
    result = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source"), volume["target"]
        result[target] = source
    return result


def command(service: dict) -> list[str]:
    value = service["command"]
    return shlex.split(value) if isinstance(value, str) else list(value)


def worker_queues(service: dict) -> list[str]:
    words = command(service)
    assert words[:3] == ["airflow", "celery", "worker"], words
    for flag in ("--queues", "-q"):
        if flag in words:
            return words[words.index(flag) + 1].split(",")
    raise AssertionError(f"worker listens on no explicit queue: {words}")


def worker_concurrency(service: dict) -> int | None:
    """The worker's --concurrency (-c); None: Celery's default ([celery] worker_concurrency, 16)."""
    words = command(service)
    for flag in ("--concurrency", "-c"):
        if flag in words:
            return int(words[words.index(flag) + 1])
    return None


def volume_at(service: dict, path: str) -> str | None:
    """The volume that holds path in the service: the mount with the longest target above it."""
    above = [target for target in mounts(service) if Path(path).is_relative_to(target)]
    return mounts(service)[max(above, key=len)] if above else None


def gpu_requests(service: dict) -> list[dict]:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # Only the defaults of ${VAR:-default} are rendered: no caller environment, no docker/.env.
    empty_env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    empty_env_file.write_text("")
    env = {"PATH": os.environ["PATH"], "HOME": str(empty_env_file.parent)}
    result = subprocess.run(
        ["docker-compose", "--env-file", str(empty_env_file), "-f", COMPOSE_FILE, "config"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def services(rendered: dict) -> dict[str, dict]:
    return rendered["services"]


@needs_compose
def test_services(services: dict[str, dict]) -> None:
    assert set(services) == AIRFLOW_SERVICES | SUPPORT_SERVICES
    assert command(services["airflow-init"]) == ["airflow", "db", "migrate"]
    assert command(services["airflow-apiserver"]) == ["airflow", "api-server"]
    assert command(services["airflow-scheduler"]) == ["airflow", "scheduler"]
    assert command(services["airflow-dag-processor"]) == ["airflow", "dag-processor"]


@needs_compose
def test_airflow_services_share_one_configuration(services: dict[str, dict]) -> None:
    envs = [services[name]["environment"] for name in sorted(AIRFLOW_SERVICES)]
    shared = (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__FERNET_KEY",
        "INVARLOCK_WORK_URI",
        "INVARLOCK_EVALUATION_QUEUE",
        "INVARLOCK_ARCHIVE_URI",
        "INVARLOCK_ARCHIVE_CONN_ID",
        "INVARLOCK_OBJECT_LOCK_DAYS",
        "INVARLOCK_OBJECT_LOCK_MODE",
        "HF_HOME",
        CONN_ENV,
    )
    for key in shared:
        assert len({env[key] for env in envs}) == 1, key
    env = envs[0]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname in services
    assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname in services
    execution_api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution_api.hostname == "airflow-apiserver"
    assert execution_api.path == "/execution/"
    published = {str(port["target"]) for port in services["airflow-apiserver"]["ports"]}
    assert str(execution_api.port) in published


@needs_compose
def test_gpu_worker_reserves_gpus_and_serves_the_evaluation_queue(services: dict[str, dict]) -> None:
    gpu, cpu = services["airflow-worker-gpu"], services["airflow-worker-cpu"]
    assert gpu_requests(gpu), gpu.get("deploy")
    assert not gpu_requests(cpu)
    assert "deploy" not in cpu
    evaluation_queue = gpu["environment"]["INVARLOCK_EVALUATION_QUEUE"]
    assert worker_queues(gpu) == [evaluation_queue] == ["gpu"]
    assert worker_queues(cpu) == ["default"]  # Airflow's [operators] default_queue: every other task
    # Every evaluation uses cuda:0: one at a time per GPU worker, not Celery's default of 16.
    assert worker_concurrency(gpu) == 1


@needs_compose
def test_workers_keep_the_hugging_face_cache_on_a_named_volume(rendered: dict, services: dict[str, dict]) -> None:
    workers = ("airflow-worker-cpu", "airflow-worker-gpu")
    hf_home = services["airflow-worker-gpu"]["environment"]["HF_HOME"]
    assert hf_home == dockerfile_env()["HF_HOME"]  # created in the image, so the volume is writable
    volumes = {volume_at(services[name], hf_home) for name in workers}
    assert len(volumes) == 1, volumes
    volume = volumes.pop()
    assert volume in rendered["volumes"], f"{volume} is not a named volume"
    for name in workers:
        assert services[name]["environment"]["HF_HOME"] == hf_home
        assert "HF_HUB_CACHE" not in services[name]["environment"]  # would move the hub cache off HF_HOME


@needs_compose
def test_nightly_evidence_is_locked_in_the_object_lock_bucket(
    services: dict[str, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    from invarlock_provider.airflow.defaults import object_lock_days, object_lock_mode

    env = services["airflow-worker-cpu"]["environment"]
    assert env["INVARLOCK_OBJECT_LOCK_DAYS"] == "365"
    assert env["INVARLOCK_OBJECT_LOCK_MODE"] == "GOVERNANCE"
    monkeypatch.setenv("INVARLOCK_ARCHIVE_URI", env["INVARLOCK_ARCHIVE_URI"])
    monkeypatch.setenv("INVARLOCK_OBJECT_LOCK_DAYS", env["INVARLOCK_OBJECT_LOCK_DAYS"])
    monkeypatch.setenv("INVARLOCK_OBJECT_LOCK_MODE", env["INVARLOCK_OBJECT_LOCK_MODE"])
    assert (object_lock_days(), object_lock_mode()) == (365, "GOVERNANCE")  # what the nightly DAG reads
    # ... in the bucket objectstore-init creates with Object Lock (the archive refuses to lock elsewhere).
    assert "--with-lock" in command(services["objectstore-init"])
    assert urlsplit(env["INVARLOCK_ARCHIVE_URI"]).netloc == command(services["objectstore-init"])[-1].split("/")[1]


@needs_compose
def test_gpu_image_is_a_cuda_build_and_the_others_cpu(services: dict[str, dict]) -> None:
    for name in AIRFLOW_SERVICES:
        build = services[name]["build"]
        assert Path(build["context"]) == ROOT, build
        assert (Path(build["context"]) / build["dockerfile"]) == DOCKERFILE
    gpu_variant = services["airflow-worker-gpu"]["build"]["args"]["TORCH_VARIANT"]
    assert re.fullmatch(r"cu\d+", gpu_variant), gpu_variant
    cpu_services = AIRFLOW_SERVICES - {"airflow-worker-gpu"}
    assert {services[name]["build"]["args"]["TORCH_VARIANT"] for name in cpu_services} == {"cpu"}
    # Two builds, two tags: one must not overwrite the other.
    assert {services[name]["image"] for name in cpu_services} == {services["airflow-apiserver"]["image"]}
    assert services["airflow-worker-gpu"]["image"] != services["airflow-apiserver"]["image"]


@needs_compose
def test_task_services_share_no_work_folder_only_the_bucket(rendered: dict, services: dict[str, dict]) -> None:
    env = services["airflow-worker-gpu"]["environment"]
    work = urlsplit(env["INVARLOCK_WORK_URI"])
    connection = json.loads(env[CONN_ENV])
    assert work.scheme == "s3" and work.netloc == connection["extra"]["bucket"]
    assert "INVARLOCK_WORK_CONN_ID" not in env  # the archive's connection serves the work store too
    evidence_prefix = urlsplit(env["INVARLOCK_ARCHIVE_URI"]).path.strip("/")
    assert not work.path.strip("/").startswith(evidence_prefix), "runs must not sit under the locked evidence"
    workdir = dockerfile_env()["INVARLOCK_WORKDIR"]
    for name in TASK_SERVICES:
        assert services[name]["environment"]["INVARLOCK_WORK_URI"] == env["INVARLOCK_WORK_URI"]
        assert workdir not in mounts(services[name]), f"{name} mounts a shared work folder"
    assert not any("work" in volume for volume in rendered["volumes"]), rendered["volumes"]
    logs = {mounts(services[name]).get("/opt/airflow/logs") for name in AIRFLOW_SERVICES}
    assert len(logs) == 1
    assert logs.pop() in rendered["volumes"]


@needs_compose
def test_objectstore_init_creates_the_bucket_with_object_lock(services: dict[str, dict]) -> None:
    init = services["objectstore-init"]
    words = command(init)
    assert words[0] == "mb"
    assert "--with-lock" in words
    assert "--ignore-existing" in words
    alias, bucket = words[-1].split("/")
    mc_host = urlsplit(init["environment"][f"MC_HOST_{alias}"])
    assert mc_host.hostname == "objectstore"
    objectstore = services["objectstore"]["environment"]
    assert (mc_host.username, mc_host.password) == (objectstore["MINIO_ROOT_USER"], objectstore["MINIO_ROOT_PASSWORD"])
    assert init["depends_on"]["objectstore"]["condition"] == "service_healthy"
    assert "healthcheck" in services["objectstore"]
    for name in AIRFLOW_SERVICES:
        condition = services[name]["depends_on"]["objectstore-init"]["condition"]
        assert condition == "service_completed_successfully", name
    assert bucket == "invarlock-evidence"


@needs_compose
def test_evidence_connection_points_at_the_created_bucket(services: dict[str, dict]) -> None:
    env = services["airflow-worker-cpu"]["environment"]
    conn = json.loads(env[CONN_ENV])
    assert conn["conn_type"] == "aws"
    assert env["INVARLOCK_ARCHIVE_CONN_ID"].upper() == CONN_ENV.removeprefix("AIRFLOW_CONN_")
    endpoint = urlsplit(conn["extra"]["endpoint_url"])
    assert endpoint.hostname == "objectstore"
    assert endpoint.port == 9000
    assert conn["extra"]["path_style"] is True
    archive = urlsplit(env["INVARLOCK_ARCHIVE_URI"])
    created = command(services["objectstore-init"])[-1].split("/")[1]
    assert archive.scheme == "s3"
    assert conn["extra"]["bucket"] == archive.netloc == created
    objectstore = services["objectstore"]["environment"]
    assert (conn["login"], conn["password"]) == (objectstore["MINIO_ROOT_USER"], objectstore["MINIO_ROOT_PASSWORD"])


@needs_compose
def test_evidence_store_hook_reads_the_rendered_connection(services: dict[str, dict], tmp_path: Path) -> None:
    """The provider's own hook, in a throw-away Airflow home, builds its S3 settings from it."""
    env = services["airflow-worker-cpu"]["environment"]
    script = (
        "import dataclasses, json\n"
        "from invarlock_provider.airflow.hooks import EvidenceStoreHook\n"
        f"hook = EvidenceStoreHook({env['INVARLOCK_ARCHIVE_CONN_ID']!r})\n"
        "print(json.dumps(dataclasses.asdict(hook.s3_settings)))\n"
    )
    child_env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        CONN_ENV: env[CONN_ENV],
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=child_env, check=True, capture_output=True, text=True
    )
    settings = json.loads(result.stdout.strip().splitlines()[-1])
    objectstore = services["objectstore"]["environment"]
    assert settings["endpoint_url"] == "http://objectstore:9000"
    assert settings["path_style"] is True
    assert settings["region_name"] == "us-east-1"
    assert settings["aws_access_key_id"] == objectstore["MINIO_ROOT_USER"]
    assert settings["aws_secret_access_key"] == objectstore["MINIO_ROOT_PASSWORD"]
