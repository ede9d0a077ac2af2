"""Real servers for the publish tests, started as subprocesses on free 127.0.0.1 ports.

Each is started once per session (they are slow to start) and stopped by
its pid. Fixtures (import them into a test module to use them):

* ``moto_s3`` - moto's server mode: fast, checks no credentials; ``aws_env``: the
  same with its credentials in this process's environment (function scope).
* ``seaweed_s3`` - SeaweedFS with an S3 gateway that checks credentials
  (``AKID``/``SECRET``; ``READER``/``READER-SECRET`` may only read and list;
  anonymous may read) and checksums.
* ``pypiserver`` (function scope, emptied before each test) over the
  session's ``pypiserver_session`` with an htpasswd file (update, download
  and list need credentials); ``open_pypiserver`` (module scope): one that
  asks for them only to upload.
* ``devpi`` - devpi-server; ``devpi_index()`` makes a fresh user index.

The classes are usable outside pytest too (benchmarks start them).
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import subprocess_env

BIN = Path(sys.executable).parent

# A host name for a server on 127.0.0.1 that pip does not count as loopback, as
# it does not count a mirror's name on the LAN (``mirror.internal``): pip reads
# the host with ipaddress, which takes no "127.1", so it compares it with
# "localhost" as a name and wants --trusted-host; the C library's resolver
# (inet_aton) and uv's URL parser read it as 127.0.0.1. No name service needed.
LAN_HOST = "127.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def quiet_ports(count: int) -> list[int]:
    """``count`` free ports below the kernel's ephemeral range, which
    :func:`free_port` draws from: no outgoing connection can take one between the
    probe and the server's bind (SeaweedFS's services connect to each other while
    the later ones start, and one took a port picked for another: "address already
    in use")."""
    try:
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768
    found: list[int] = []
    for port in random.sample(range(20000, max(first, 20500)), 400):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise RuntimeError("not enough free ports below the ephemeral range")


class ServerProcess:
    """A subprocess with its log in a file; stopped by pid (TERM, then KILL)."""

    def __init__(self, name: str, argv: Sequence[str], workdir: Path,
                 env: dict[str, str] | None = None, term_timeout: float = 5,
                 outside: Sequence[Path] = ()) -> None:
        """``outside``: files the server makes outside ``workdir`` that cannot be
        moved into it; :meth:`stop` removes them once the server is gone."""
        self.name = name
        self.term_timeout = term_timeout
        self.outside = tuple(outside)
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(list(argv), stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=workdir, env=env, start_new_session=True)

    def wait_until(self, ready: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001, S110 - not up yet: refused, 5xx, boto errors
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not start in {timeout} s: "
                           f"{self.log_path.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(self.term_timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()
        for path in self.outside:
            path.unlink(missing_ok=True)


# ----------------------------------------------------------------------
# S3 servers
# ----------------------------------------------------------------------


@dataclass
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    process: ServerProcess
    ports: tuple[int, ...] = ()  # SeaweedFS: the ports of all its services

    def env(self) -> dict[str, str]:
        """Environment for boto3 / aws CLI / lockmirror subprocesses."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def export(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Put :meth:`env` into this process's environment for the test."""
        for name, value in self.env().items():
            monkeypatch.setenv(name, value)

    def client(self, *, secret_key: str | None = None) -> Any:
        import boto3  # type: ignore[import-untyped]

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key)

    def new_bucket(self, *, public: bool = True) -> str:
        """A fresh bucket; ``public`` lets anonymous clients (pip) GET its objects."""
        name = f"b-{uuid.uuid4().hex[:12]}"
        client = self.client()
        client.create_bucket(Bucket=name)
        if public and "moto" in self.process.name:
            # moto answers anonymous GETs only when a bucket policy allows them;
            # SeaweedFS's anonymous identity has Read in its config instead
            client.put_bucket_policy(Bucket=name, Policy=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                               "Resource": f"arn:aws:s3:::{name}/*"}]}))
        return name

    def keys(self, bucket: str) -> dict[str, int]:
        """Every key in the bucket with its size."""
        found: dict[str, int] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                found[entry["Key"]] = entry["Size"]
        return found

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def counting_client(dest: Any) -> tuple[Any, list[tuple[str, str]]]:
    """lockmirror's boto3 client for ``dest`` (an ``S3Destination``), recording each
    operation it sends as (name, key)."""
    from lockmirror.net.s3_client import make_client

    client = make_client(dest)
    calls: list[tuple[str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, str(params.get("Key", ""))))

    client.meta.events.register("provide-client-params.s3.*", record)
    return client, calls


def start_moto(workdir: Path) -> S3Server:
    port = free_port()
    process = ServerProcess("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p",
                                     str(port)], workdir)
    url = f"http://127.0.0.1:{port}"
    process.wait_until(lambda: requests.get(url + "/moto-api/", timeout=1).status_code < 500)
    return S3Server(url, "moto-key", "moto-secret", process)


def start_seaweed(workdir: Path) -> S3Server:
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [
        {"name": "admin", "credentials": [{"accessKey": "AKID", "secretKey": "SECRET"}],
         "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
        {"name": "reader", "credentials": [{"accessKey": "READER", "secretKey": "READER-SECRET"}],
         "actions": ["Read", "List"]},
        {"name": "anonymous", "actions": ["Read"]},
    ]}))
    (workdir / "data").mkdir()
    names = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3",
             "s3.grpc")
    ports = dict(zip(names, quiet_ports(len(names)), strict=True))
    (workdir / "logs").mkdir()
    # weed writes its log files to $TMPDIR and its unix sockets to /tmp unless told
    argv = [str(BIN / "weed"), f"-logdir={workdir / 'logs'}", "server", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", f"-dir={workdir / 'data'}", "-filer", "-s3",
            f"-s3.config={config}", "-volume.max=100", "-master.volumeSizeLimitMB=32",
            f"-s3.localSocket={workdir / 's3.sock'}",
            f"-filer.localSocket={workdir / 'filer.sock'}",
            # the catalog servers default to fixed ports (8181, 9101): parallel runs collide
            "-s3.port.iceberg=0", "-s3.port.lance=0"]
    grpc_sockets = []
    for name, port in ports.items():  # "volume.grpc" -> -volume.port.grpc=N
        service, _, grpc = name.partition(".")
        argv.append(f"-{service}.port{'.grpc' if grpc else ''}={port}")
        if grpc:  # `weed server` puts these in /tmp, with no flag to move them
            grpc_sockets.append(Path(f"/tmp/seaweedfs-{service}-grpc-{port}.sock"))  # noqa: S108
    # SeaweedFS shuts down gracefully for many seconds; its data is thrown away anyway
    process = ServerProcess("seaweedfs", argv, workdir, term_timeout=0.5, outside=grpc_sockets)
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", "AKID", "SECRET", process,
                      tuple(ports.values()))

    def ready() -> bool:
        client = server.client()
        client.list_buckets()
        name = f"probe-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=name)   # volumes are ready only when this works
        client.put_object(Bucket=name, Key="probe", Body=b"1")
        return True

    process.wait_until(ready)
    return server


# ----------------------------------------------------------------------
# Upload-API servers
# ----------------------------------------------------------------------


@dataclass
class UploadServer:
    url: str            # the upload endpoint
    simple_url: str
    username: str
    password: str
    packages: Path | None = None


@dataclass
class PypiServer:
    server: UploadServer
    process: ServerProcess

    def clear(self) -> None:
        assert self.server.packages is not None
        for entry in self.server.packages.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def start_pypiserver(workdir: Path, authenticate: str = "update,download,list") -> PypiServer:
    """pypiserver with an htpasswd file; ``authenticate``: the actions that need it."""
    from passlib.apache import HtpasswdFile  # type: ignore[import-untyped]

    packages = workdir / "packages"
    packages.mkdir()
    htpasswd = HtpasswdFile(str(workdir / "htpasswd"), new=True)
    htpasswd.set_password("uploader", "s3cret-pass")
    htpasswd.save()
    port = free_port()
    process = ServerProcess("pypiserver", [
        str(BIN / "pypi-server"), "run", "-i", "127.0.0.1", "-p", str(port),
        "-P", str(workdir / "htpasswd"), "-a", authenticate, "--disable-fallback",
        str(packages)], workdir)
    url = f"http://127.0.0.1:{port}/"
    process.wait_until(lambda: requests.get(url + "health", timeout=1).status_code == 200)
    return PypiServer(UploadServer(url, url + "simple/", "uploader", "s3cret-pass", packages),
                      process)


@dataclass
class Devpi:
    url: str
    process: ServerProcess
    password: str = "devpi-pass"

    def new_index(self) -> UploadServer:
        """A fresh user with a non-volatile index (duplicates answer 409, like production)."""
        user = f"u{uuid.uuid4().hex[:8]}"
        session = requests.Session()
        session.headers["Accept"] = "application/json"
        answer = session.put(f"{self.url}{user}", json={"password": self.password,
                                                        "email": f"{user}@example.invalid"})
        answer.raise_for_status()
        login = session.post(f"{self.url}+login", json={"user": user, "password": self.password})
        login.raise_for_status()
        token = login.json()["result"]["password"]
        session.headers["X-Devpi-Auth"] = base64.b64encode(f"{user}:{token}".encode()).decode()
        created = session.put(f"{self.url}{user}/dev", json={"bases": [], "volatile": False})
        created.raise_for_status()
        index = f"{self.url}{user}/dev/"
        return UploadServer(index, index + "+simple/", user, self.password)


def start_devpi(workdir: Path) -> Devpi:
    serverdir = workdir / "devpi"
    subprocess.run([str(BIN / "devpi-init"), "--serverdir", str(serverdir), "--no-root-pypi",
                    "--root-passwd", "root-pass"], check=True, capture_output=True)
    port = free_port()
    process = ServerProcess("devpi", [
        str(BIN / "devpi-server"), "--serverdir", str(serverdir), "--host", "127.0.0.1",
        "--port", str(port), "--offline-mode",
        # devpi's own tests lower these: the default argon2 key derivation
        # costs ~10 s of CPU at every start
        "--argon2-memory-cost", "8192", "--argon2-time-cost", "1", "--argon2-parallelism", "1",
    ], workdir)
    url = f"http://127.0.0.1:{port}/"
    process.wait_until(lambda: requests.get(url + "+api", timeout=1).status_code == 200)
    return Devpi(url, process)


# ----------------------------------------------------------------------
# pytest fixtures
# ----------------------------------------------------------------------


def _serving(start: Callable[[Path], Any], name: str) -> Iterator[Any]:
    """Start a server in a fresh short-pathed directory; stop it and clean up afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=f"lm-{name}-"))  # devpi/SeaweedFS: short paths
    try:
        server = start(workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        server.process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Server]:
    yield from _serving(start_moto, "moto")


@pytest.fixture
def aws_env(moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    moto_s3.export(monkeypatch)
    return moto_s3


@pytest.fixture(scope="session")
def seaweed_s3() -> Iterator[S3Server]:
    yield from _serving(start_seaweed, "weed")


@pytest.fixture(scope="session")
def pypiserver_session() -> Iterator[PypiServer]:
    yield from _serving(start_pypiserver, "pypiserver")


@pytest.fixture
def pypiserver(pypiserver_session: PypiServer) -> UploadServer:
    pypiserver_session.clear()
    return pypiserver_session.server


@pytest.fixture(scope="module")
def open_pypiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UploadServer]:
    """pypiserver that lets anyone read and asks for credentials only to upload, as
    a repository inside often does: a wrong password is refused by the upload itself
    (its HTML error page), and its simple index needs none (check-install --index-url
    takes no credentials). One per test module, starting empty."""
    started = start_pypiserver(tmp_path_factory.mktemp("open-pypiserver"), "update")
    try:
        yield started.server
    finally:
        started.process.stop()


@pytest.fixture(scope="session")
def devpi() -> Iterator[Devpi]:
    yield from _serving(start_devpi, "devpi")


# ----------------------------------------------------------------------
# What the publish tests publish
# ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def index_tree(catalogue: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``dist-index/`` built by the index stage from the fixture catalogue
    (sets core and extra; see tests/index_mirror.py). Read-only: copy it to change it."""
    from index_mirror import make_fixture_mirror

    from lockmirror.stages.index import build_index

    root = tmp_path_factory.mktemp("publish-mirror")
    mirror = make_fixture_mirror(catalogue, root)
    build_index(mirror.lockfiles, mirror.store, mirror.out)
    return mirror.out


def pip_install(target: Path, requirements: Sequence[str], *, index_url: str | None = None,
                find_links: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
    """Install with the real pip into ``target`` from one index (or find-links pages only).

    The index URL goes through PIP_INDEX_URL, so credentials in it stay off argv."""
    environ = subprocess_env(installers=True, PIP_NO_INPUT="1", **(env or {}))
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target)]
    if index_url is not None:
        environ["PIP_INDEX_URL"] = index_url
    else:
        argv.append("--no-index")
    for link in find_links:
        argv += ["--find-links", link]
    done = subprocess.run(argv + list(requirements), env=environ, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
