"""The package as people install it: from a clone (it is not on PyPI), with or without extras.

The slow tests install this working tree into a fresh venv exactly as the docs say (`pip install .`
in the clone, no extras) and run the real commands there: a signed bundle made here verifies,
a missing extra names the pip command that works, and beside the real InvarLock package from PyPI
(whose `invarlock` script takes the shared name) `invarlock-airflow` still reaches this package.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import pytest

from invarlock_provider.doctor import ENTRY_POINT
from invarlock_provider.errors import PIP_NAME, install_source, pip_install
from invarlock_provider.get_provider_info import get_provider_info
from tests.storage.conftest import cli, seaweed  # noqa: F401  (the real S3 server, shared)

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# sha256 of https://www.apache.org/licenses/LICENSE-2.0.txt, the text as the ASF publishes it.
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
INVARLOCK_FROM_PYPI = "invarlock==0.17.1"
BLOCK_CRYPTOGRAPHY = """
import sys

class BlockCryptography:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "cryptography":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, BlockCryptography())
from invarlock_provider.cli import main
main(prog_name="invarlock")
"""


@dataclass(frozen=True)
class SignedEvidence:
    reports: Path
    store: Path
    bundle: Path
    public_key: Path
    private_key: Path
    fingerprint: str


@pytest.fixture(scope="module")
def signed(real_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> SignedEvidence:
    """A real signed bundle in a local store, made with this (the dev) install."""
    root = tmp_path_factory.mktemp("signed")
    reports = root / "reports" / "quant8_balanced"
    run, baseline = str(real_runs["quant8"]), str(real_runs["baseline"])
    code, _, stderr = cli(
        "report", "--run", run, "--baseline", baseline, "--format", "report", "--output", str(reports)
    )
    assert code == 0, stderr
    code, stdout, stderr = cli("keygen", "--out", str(root / "keys"))
    assert code == 0, stderr
    fingerprint = stdout.split("fingerprint:")[1].split()[0]
    store, private_key = root / "evidence", root / "keys" / "private.pem"
    archive = ("archive", str(reports), "--to", store.as_uri(), "--signing-key", str(private_key))
    code, _, stderr = cli(*archive, "--index", str(root / "index.json"))
    assert code == 0, stderr
    [manifest] = store.rglob("manifest.json")
    return SignedEvidence(reports, store, manifest.parent, root / "keys" / "public.pem", private_key, fingerprint)


# --- metadata ------------------------------------------------------------------------------------


def test_license_is_the_apache_2_text() -> None:
    assert PYPROJECT["license"] == "Apache-2.0"
    assert hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest() == APACHE_2_SHA256


def test_both_script_names_run_the_same_cli() -> None:
    assert PYPROJECT["scripts"] == {"invarlock": ENTRY_POINT, "invarlock-airflow": ENTRY_POINT}


def test_cryptography_is_a_dependency_of_every_install() -> None:
    assert any(requirement.startswith("cryptography") for requirement in PYPROJECT["dependencies"])


def test_provider_info_is_valid_and_names_no_page_that_does_not_exist() -> None:
    import jsonschema

    schema = json.loads((resources.files("airflow") / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert "http" not in json.dumps(info), "no published page documents this provider"


# --- the pip command in hints --------------------------------------------------------------------


@pytest.fixture
def installed_as(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict | None], None]]:
    """Make importlib.metadata find a real dist-info folder holding ``direct_url.json`` (or none)."""

    def install(direct_url: dict | None) -> None:
        dist_info = tmp_path / "site" / "airflow_provider_invarlock-0.1.0.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.4\nName: {PIP_NAME}\nVersion: 0.1.0\n")
        if direct_url is not None:
            (dist_info / "direct_url.json").write_text(json.dumps(direct_url))
        monkeypatch.setattr(metadata, "distribution", lambda name: metadata.PathDistribution(dist_info))

    install_source.cache_clear()
    yield install
    install_source.cache_clear()


def test_hint_reinstalls_from_the_clone_it_was_installed_from(tmp_path: Path, installed_as) -> None:
    clone = tmp_path / "clone"
    clone.mkdir()
    installed_as({"url": clone.as_uri(), "dir_info": {}})
    assert pip_install("hf") == f"pip install '{clone}[hf]'"
    assert pip_install() == f"pip install {clone}"


def test_hint_keeps_an_editable_install_editable(tmp_path: Path, installed_as) -> None:
    installed_as({"url": tmp_path.as_uri(), "dir_info": {"editable": True}})
    assert pip_install("s3") == f"pip install -e '{tmp_path}[s3]'"


def test_hint_names_the_wheel_it_was_installed_from(tmp_path: Path, installed_as) -> None:
    wheel = tmp_path / "airflow_provider_invarlock-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    installed_as({"url": wheel.as_uri(), "archive_info": {}})
    assert pip_install("hf") == f"pip install '{wheel}[hf]'"


def test_hint_pins_the_commit_of_a_vcs_install(installed_as) -> None:
    installed_as({"url": "https://example.org/team/repo.git", "vcs_info": {"vcs": "git", "commit_id": "0a1b2c"}})
    assert pip_install("hf") == f"pip install '{PIP_NAME}[hf] @ git+https://example.org/team/repo.git@0a1b2c'"


def test_hint_falls_back_to_a_clone_when_the_source_is_gone(tmp_path: Path, installed_as) -> None:
    installed_as({"url": (tmp_path / "deleted-clone").as_uri(), "dir_info": {}})
    assert pip_install("hf") == "pip install '.[hf]' in a clone of the project's repository"


def test_hint_names_the_package_when_an_index_provided_it(installed_as) -> None:
    installed_as(None)
    assert pip_install("hf") == f"pip install '{PIP_NAME}[hf]'"


def test_hint_names_the_source_tree_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    install_source.cache_clear()
    monkeypatch.setattr(metadata, "distribution", not_installed)
    try:
        assert pip_install("hf") == f"pip install '{ROOT}[hf]'"
    finally:
        install_source.cache_clear()


# --- a missing cryptography is exit 2, never verify's exit 1 -------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "{bundle}"],
        ["verify", "{bundle}", "--trusted-key", "{public_key}"],
        ["verify", "{store_uri}"],
        ["keygen", "--out", "{tmp}/keys"],
        ["archive", "{reports}", "--to", "{tmp_uri}/evidence", "--signing-key", "{private_key}"],
    ],
    ids=["verify-bundle", "verify-trusted", "verify-prefix", "keygen", "archive-signed"],
)
def test_without_cryptography_commands_exit_2_with_the_pip_command(
    args: list[str], signed: SignedEvidence, tmp_path: Path
) -> None:
    values = {
        "bundle": signed.bundle,
        "reports": signed.reports,
        "public_key": signed.public_key,
        "private_key": signed.private_key,
        "store_uri": signed.store.as_uri(),
        "tmp": tmp_path,
        "tmp_uri": tmp_path.as_uri(),
    }
    command = [sys.executable, "-c", BLOCK_CRYPTOGRAPHY, *(arg.format(**values) for arg in args)]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"error: cryptography is not installed: {pip_install()}"]
    assert str(ROOT) in pip_install(), "the dev venv is installed from this clone"
    assert list(tmp_path.iterdir()) == []


# --- a fresh venv, installed from the clone as the docs say ---------------------------------------


@pytest.fixture(scope="module")
def clone_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install .` in the clone, no extras, into a venv of its own (packages from the index)."""
    venv = tmp_path_factory.mktemp("clone-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip(venv, "install", ".")
    return venv


def pip(venv: Path, *args: str) -> None:
    command = [str(venv / "bin" / "python"), "-m", "pip", "--quiet", *args]
    result = subprocess.run(command, cwd=ROOT, check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def in_venv(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command of the venv, found on PATH as a user's shell finds it, with nothing of the dev venv."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "INVARLOCK_TRUSTED_KEYS"}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["INVARLOCK_HOME"] = str(cwd / "invarlock-home")
    return subprocess.run(list(args), cwd=cwd, env=env, check=False, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_clone_without_extras_verifies_signed_evidence(
    clone_venv: Path, signed: SignedEvidence, tmp_path: Path
) -> None:
    trusted = ("--trusted-key", str(signed.public_key))
    for target in (str(signed.bundle), signed.store.as_uri()):
        result = in_venv(clone_venv, "invarlock", "verify", target, *trusted, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"signed by {signed.fingerprint}" in result.stdout
    keygen = in_venv(clone_venv, "invarlock-airflow", "keygen", "--out", str(tmp_path / "keys"), cwd=tmp_path)
    assert keygen.returncode == 0, keygen.stderr
    run = in_venv(clone_venv, "invarlock", "run", "--out", "runs/baseline", cwd=tmp_path)
    assert (run.returncode, run.stderr) == (2, f"error: torch is not installed: pip install '{ROOT}[hf]'\n")
    license_text = in_venv(
        clone_venv,
        "python",
        "-c",
        f"import importlib.metadata as m; print(m.distribution({PIP_NAME!r}).read_text('licenses/LICENSE'), end='')",
        cwd=tmp_path,
    )
    assert license_text.stdout == (ROOT / "LICENSE").read_text()


@pytest.mark.slow
def test_beside_the_invarlock_package_invarlock_airflow_still_reaches_this_one(
    clone_venv: Path, signed: SignedEvidence, tmp_path: Path
) -> None:
    """The real InvarLock from PyPI (it wants Python 3.12; only its script matters here, so its code
    and dependencies are not installed) takes `invarlock`; doctor says so, `invarlock-airflow`
    verifies; then the README's repair puts this package's `invarlock` back."""
    pip(clone_venv, "install", "--no-deps", "--ignore-requires-python", INVARLOCK_FROM_PYPI)
    script = clone_venv / "bin" / "invarlock"
    try:
        doctor = in_venv(clone_venv, "invarlock-airflow", "doctor", "--no-store", "--json", cwd=tmp_path)
        assert doctor.returncode == 0, doctor.stderr
        [line] = [e for e in json.loads(doctor.stdout) if "on PATH" in e["detail"]]
        assert line["status"] == "warn"
        assert line["detail"].startswith(f"`invarlock` on PATH ({script}) runs invarlock (invarlock.")
        assert "use `invarlock-airflow`" in line["detail"]
        verify = in_venv(clone_venv, "invarlock-airflow", "verify", str(signed.bundle), cwd=tmp_path)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        pip(clone_venv, "uninstall", "--yes", "invarlock")
    assert not script.exists(), "uninstalling InvarLock took the shared script"
    pip(clone_venv, "install", "--force-reinstall", "--no-deps", ".")
    doctor = in_venv(clone_venv, "invarlock", "doctor", "--no-store", "--json", cwd=tmp_path)
    assert {"section": "versions", "status": "ok", "detail": f"`invarlock` on PATH: {script} (this package)"} in (
        json.loads(doctor.stdout)
    )


@pytest.mark.slow
def test_the_s3_extra_fetches_and_verifies_from_seaweedfs(
    clone_venv: Path,
    signed: SignedEvidence,
    seaweed,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`pip install '.[s3]'`, as the auditors' doc says: ls, fetch and verify a signed bundle in a bucket."""
    from invarlock_provider.storage.archive import archive_report
    from invarlock_provider.storage.s3 import S3Store
    from invarlock_provider.storage.signing import load_signing_key
    from invarlock_provider.storage.uri import parse_store_uri
    from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY

    pip(clone_venv, "install", "-c", str(ROOT / "constraints.txt"), ".[s3]")
    seaweed.client().create_bucket(Bucket="packaging")
    store = S3Store(parse_store_uri("s3://packaging/nightly"), seaweed.settings())
    bundle = archive_report(store, signed.reports, signing_key=load_signing_key(signed.private_key)).bundle_uri
    for name, value in (("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
                        ("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", seaweed.endpoint),
                        ("INVARLOCK_S3_PATH_STYLE", "1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    listed = in_venv(clone_venv, "invarlock", "ls", "s3://packaging/nightly", cwd=tmp_path)
    assert listed.returncode == 0 and f"signed {signed.fingerprint[:16]}" in listed.stdout, listed.stderr
    audit = tmp_path / bundle.rsplit("/", 1)[1]
    fetched = in_venv(clone_venv, "invarlock", "fetch", bundle, "--to", str(audit), cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    for target in (str(audit), bundle):
        verified = in_venv(
            clone_venv, "invarlock", "verify", target, "--trusted-key", str(signed.public_key), cwd=tmp_path
        )
        assert verified.returncode == 0 and "bundle consistent, verdict PASS" in verified.stdout, verified.stdout
