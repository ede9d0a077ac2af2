"""Plain helpers the test modules share (no fixtures; those live in conftest.py).

* :func:`subprocess_env` - the environment of a child process (lockmirror, doit, pip,
  uv, git): variables dropped, installers without user configuration, the network
  cut, a git identity, HOME.
* :func:`git` - run git in a repository with that identity and return its output.
* :func:`tree_bytes`, :func:`tree_digests` - every file below a directory.
* :func:`mirror_yaml` - a mirror.yaml on the fixture index.
* :class:`QuietHandler`, :func:`serving` - a small HTTP server of a test's own on
  127.0.0.1, for answers the fixture index does not give.
* :class:`RedirectingServer` - a file server that answers with redirects.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# What every proxy variable points at when the network is cut: nothing listens there.
CLOSED_PROXY = "http://127.0.0.1:9"
_PROXY_NAMES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
# Who commits in the tests' git repositories.
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def subprocess_env(*, drop: Iterable[str] = (), installers: bool = False, offline: bool = False,
                   git_identity: bool = False, home: Path | None = None,
                   venv_first: bool = False, **extra: str) -> dict[str, str]:
    """This process's environment, changed for a child process.

    ``drop``: every variable whose name starts with one of these goes.
    ``installers``: pip and uv read no configuration of the user or the caller (every
    ``PIP_*``, ``UV_*`` and ``VIRTUAL_ENV`` goes; ``PIP_CONFIG_FILE`` is /dev/null), do
    not check pip's version, keep no cache, and uv downloads no Python.
    ``offline`` (implies ``installers``): the network is cut: every proxy variable
    points at a closed port on 127.0.0.1, none is bypassed, and no ``LOCKMIRROR_*``
    setting of the test run reaches the child.
    ``git_identity``: commits by :data:`GIT_IDENTITY`, no system-wide git config, and
    no ``GIT_*`` variable of the caller (an outer git's ``GIT_DIR`` would redirect it).
    ``home``: HOME. ``venv_first``: the test interpreter's ``bin/`` first on PATH.
    ``extra``: set last, over all of the above.
    """
    prefixes = tuple(drop)
    if installers or offline:
        prefixes += ("PIP_", "UV_", "VIRTUAL_ENV")
    if offline:
        prefixes += ("LOCKMIRROR_",)
    if git_identity:
        prefixes += ("GIT_",)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(prefixes)
           and not (offline and name.lower() in _PROXY_NAMES)}
    if installers or offline:
        env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                    "PIP_NO_CACHE_DIR": "1", "UV_PYTHON_DOWNLOADS": "never"})
    if offline:
        for name in ("HTTP_PROXY", "HTTPS_PROXY"):
            env[name] = env[name.lower()] = CLOSED_PROXY
        env["NO_PROXY"] = env["no_proxy"] = ""
    if git_identity:
        env.update(GIT_IDENTITY, GIT_CONFIG_NOSYSTEM="1")
    if home is not None:
        env["HOME"] = str(home)
    if venv_first:
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def git(repo: Path, *args: str, date: str | None = None) -> str:
    """Run ``git -C repo args`` as :data:`GIT_IDENTITY` (commit dates ``date`` when
    given), with ``repo`` as HOME (no user git config), and return its output; a
    failure raises ``CalledProcessError``."""
    env = subprocess_env(git_identity=True, home=repo)
    if date is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    return subprocess.run(["git", "-C", str(repo), *args], env=env, check=True,
                          capture_output=True, text=True).stdout


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (links followed): POSIX path relative to it -> bytes,
    sorted by path."""
    found = {path.relative_to(root).as_posix(): path for path in root.rglob("*")
             if path.is_file()}
    return {rel: found[rel].read_bytes() for rel in sorted(found)}


def tree_digests(root: Path) -> dict[str, str]:
    """Every file below ``root``: POSIX path relative to it -> sha256, sorted by path."""
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in tree_bytes(root).items()}


# name -> (Python, platform tag) of the targets mirror_yaml writes by default
X86_TARGET = {"linux-x86_64-py311": ("3.11", "manylinux_2_28_x86_64")}
ARM_TARGET = {"linux-aarch64-py312": ("3.12", "manylinux_2_28_aarch64")}


def mirror_yaml(url: str, sets: Mapping[str, Sequence[str]], *, name: str = "fixture",
                targets: Mapping[str, tuple[str, str]] = X86_TARGET, extra: str = "") -> str:
    """A mirror.yaml with one source (``url``, named ``fixture``), the targets and sets
    given (set -> requirements), then ``extra`` (YAML text: ``paths:``, ``policy:``).

    Each set stands on one line: the first set's is line 7 when there is one target."""
    lines = ["version: 1", f"name: {name}", f'sources: [{{name: fixture, url: "{url}"}}]',
             "targets:"]
    lines += [f'  {target}: {{python: "{python}", platforms: [{platform}]}}'
              for target, (python, platform) in targets.items()]
    lines.append("sets:")
    lines += [f"  {set_name}: {{requirements: [{', '.join(map(_flow, requirements))}]}}"
              for set_name, requirements in sets.items()]
    return "\n".join(lines) + "\n" + extra


def _flow(requirement: str) -> str:
    """A requirement as an item of a YAML flow sequence: quoted unless plain."""
    return requirement if re.fullmatch(r"[A-Za-z0-9_.\-=<>!~]+", requirement) \
        else '"' + requirement.replace("\\", "\\\\").replace('"', '\\"') + '"'


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (the tests read stderr)."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[str]:
    """Serve ``server`` (bound to 127.0.0.1) from a thread while the block runs; yields
    its base URL ``http://127.0.0.1:PORT``. Afterwards it is shut down, its port released
    and its thread joined."""
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _RedirectingHandler(QuietHandler):
    server: RedirectingServer

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self.server.authorized.append(self.headers.get("Authorization") is not None)
        body = self.server.files.get(self.path)
        if body is not None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)
            return
        self.send_response(302)
        same = self.path.startswith("/old/")
        self.send_header("Location", self.path[4:] if same else self.server.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()


class RedirectingServer(ThreadingHTTPServer):
    """Serve with :func:`serving`. A GET or HEAD for a path in ``files`` is answered
    with its bytes; one for ``/old/<path>`` is redirected to ``/<path>`` on this
    server (a relative Location); any other to ``target`` + the path. ``authorized``
    records, per request, whether it carried an Authorization header."""

    def __init__(self, target: str = "", files: Mapping[str, bytes] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _RedirectingHandler)
        self.target = target
        self.files = dict(files or {})
        self.authorized: list[bool] = []


def dead_pid() -> int:
    """The pid of a process that has ended (and been waited for)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def left_by_killed_run(root: Path, name: str) -> Path:
    """A run directory as ``kill -9`` leaves it: an environment half made."""
    left = root / name
    (left / "run" / "venv").mkdir(parents=True)
    (left / "run" / "venv" / "site.py").write_bytes(b"x" * 5000)
    return left
