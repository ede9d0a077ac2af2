"""The sdist metadata source: its backend runs with the lock's sources passed to
its subprocesses, never written into this process's environment, and without
the environment's credentials."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex, build_sdist, build_wheel
from test_lock import write_mirror

from lockmirror.config import load_config
from lockmirror.net.index_client import IndexClient
from lockmirror.resolve.build_environ import build_environ
from lockmirror.resolve.sdist_metadata import SdistMetadataSource
from lockmirror.stages.lock import lock_sets


class _RecordingEnviron(dict[str, str]):
    """A stand-in for os.environ that remembers every name written into it."""

    def __init__(self, initial: dict[str, str]) -> None:
        super().__init__(initial)
        self.written: list[str] = []

    def __setitem__(self, key: str, value: str) -> None:
        self.written.append(key)
        super().__setitem__(key, value)

    def update(self, *args: object, **kwargs: str) -> None:  # type: ignore[override]
        for key, value in dict(*args, **kwargs).items():  # type: ignore[call-overload]
            self[key] = value

    def copy(self) -> dict[str, str]:  # type: ignore[override]
        return dict(self)


@pytest.fixture
def recorded_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[_RecordingEnviron]:
    recording = _RecordingEnviron({k: v for k, v in os.environ.items()
                                   if not k.startswith("PIP_")})
    monkeypatch.setattr(os, "environ", recording)
    yield recording


def test_backend_gets_the_sources_without_touching_os_environ(
        tmp_path: Path, fixture_index: FixtureIndex,
        recorded_environ: _RecordingEnviron) -> None:
    loaded = load_config(write_mirror(tmp_path, fixture_index,
                                      "  s:\n    requirements: [setupreq]\n"))
    with IndexClient(loaded.config.sources, cache_dir=tmp_path / "http") as client:
        sdist = next(f for f in client.project("setupreq").files if not f.is_wheel)
        source = SdistMetadataSource(client, tmp_path / "build", [fixture_index.url])
        # fixture-backend (the build requirement) exists only on the fixture index:
        # answering at all shows pip was told where to look
        assert source.backend_requirements(sdist) == ["setuphelper"]
    assert [name for name in recorded_environ.written if name.startswith("PIP_")] == []
    assert not any(name.startswith("PIP_") for name in recorded_environ)


def test_static_pkg_info_is_read_without_a_backend(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    loaded = load_config(write_mirror(tmp_path, fixture_index,
                                      "  s:\n    requirements: [setupreq]\n"))
    with IndexClient(loaded.config.sources, cache_dir=tmp_path / "http") as client:
        sdist = next(f for f in client.project("setupreq").files if not f.is_wheel)
        source = SdistMetadataSource(client, tmp_path / "build", [fixture_index.url])
        metadata = source.metadata(sdist)
        assert metadata.metadata_version == "2.2"
        assert metadata.raw["name"] == "setupreq"
    assert not (tmp_path / "build" / "metadata").exists()  # no backend was asked


def test_an_sdist_is_opened_once_however_many_targets_ask(
        tmp_path: Path, fixture_index: FixtureIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    from lockmirror.resolve import sdist_metadata

    opened: list[str] = []
    real = sdist_metadata.sdist_members

    def counting(archive: bytes, filename: str, names: tuple[str, ...]) -> dict[str, bytes]:
        opened.append(filename)
        return real(archive, filename, names)

    monkeypatch.setattr(sdist_metadata, "sdist_members", counting)
    loaded = load_config(write_mirror(tmp_path, fixture_index,
                                      "  s:\n    requirements: [setupreq]\n"))
    with IndexClient(loaded.config.sources, cache_dir=tmp_path / "http") as client:
        sdist = next(f for f in client.project("setupreq").files if not f.is_wheel)
        source = SdistMetadataSource(client, tmp_path / "build", [fixture_index.url])
        asked = [source.build_requirements(sdist) for _target in range(3)]
        assert source.metadata(sdist).raw["name"] == "setupreq"
    assert asked[0] == asked[1] == asked[2]
    assert opened == [sdist.filename]


# A backend that is fixture_backend, except that its metadata hook writes the
# environment it was given to {path} first.
_ENVIRON_DUMPING_BACKEND = """\
import json
import os

from fixture_backend import *  # noqa: F403
from fixture_backend import prepare_metadata_for_build_wheel as _prepare


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    with open({path!r}, "w", encoding="utf-8") as handle:
        json.dump(dict(os.environ), handle)
    return _prepare(metadata_directory, config_settings)
"""


def test_the_backend_sees_no_credentials(tmp_path: Path, fixture_index: FixtureIndex,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by an outside tester: the backend (code from the index) saw the whole
    environment, a GitHub job's OIDC request token and publish credentials included."""
    seen = tmp_path / "environ.json"
    files = tmp_path / "files"
    fixture_index.add_file(build_wheel(files, "dump-backend", "1.0", files={
        "dump_backend.py": _ENVIRON_DUMPING_BACKEND.format(path=str(seen))}))
    # Metadata-Version 2.1: only the backend's metadata hook can say what it needs
    fixture_index.add_file(build_sdist(files, "envprobe", "1.0", metadata_version="2.1",
                                       build_requires=("fixture-backend", "dump-backend"),
                                       build_backend="dump_backend"))
    planted = {"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc", "ACTIONS_ID_TOKEN_REQUEST_URL":
               "https://token.actions.example/", "AWS_SECRET_ACCESS_KEY": "aws",
               "TWINE_PASSWORD": "twine", "GITHUB_TOKEN": "gh",
               # named by mirror.yaml as credentials, under names the allow-list keeps
               "PIP_MIRROR_AUTH": "source", "LC_UPLOAD_AUTH": "upload",
               # a credential in a URL pip would otherwise be handed
               "PIP_FIND_LINKS": "https://user:secret@links.example/"}
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    mirror = write_mirror(tmp_path, fixture_index, "  s:\n    requirements: [envprobe]\n",
                          "publish:\n  up: {kind: upload, url: 'https://upload.example/', "
                          "password_env: LC_UPLOAD_AUTH}\n")
    mirror.write_text(mirror.read_text().replace(
        f"url: {fixture_index.url}\n", f"url: {fixture_index.url}\n    password_env: PIP_MIRROR_AUTH\n"))
    [result] = lock_sets(load_config(mirror))
    assert not result.lockfile.skipped_builds, result.lockfile.skipped_builds
    environ = json.loads(seen.read_text(encoding="utf-8"))
    assert sorted(set(planted) & set(environ)) == []
    assert environ["PATH"] and environ["SOURCE_DATE_EPOCH"] == "1700000000"
    assert environ["PIP_INDEX_URL"] == fixture_index.url  # the lock's own sources


def test_build_environ_keeps_what_a_build_needs() -> None:
    kept = build_environ({"PATH": "/bin", "LC_ALL": "C", "PIP_NO_CACHE_DIR": "1",
                          "https_proxy": "http://user:pw@proxy:3128", "CC": "gcc",
                          "PIP_INDEX_URL": "https://user:pw@private.example/simple/",
                          "SSH_AUTH_SOCK": "/tmp/agent", "SYSTEM_ACCESSTOKEN": "azure",
                          "PIP_CLIENT_KEY": "k", "XDG_SECRET_DIR": "s", "MY_CRED": "c"},
                         secret_names=["my_cred"])
    # proxies keep their password: pip reaches the build requirements through them
    assert kept == {"PATH": "/bin", "LC_ALL": "C", "PIP_NO_CACHE_DIR": "1",
                    "https_proxy": "http://user:pw@proxy:3128", "CC": "gcc"}


def test_check_install_runs_its_installers_without_credentials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """check-install's pip and uv build the mirror's sdists (code from the index): they
    get the build backends' environment, without pip/uv settings or proxies (the
    mirror is all there is). Found by a fixer: only lock's backends were covered."""
    from lockmirror.stages.install_runs import clean_environment

    for name, value in {"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc", "AWS_SECRET_ACCESS_KEY":
                        "aws", "TWINE_PASSWORD": "twine", "GITHUB_TOKEN": "gh",
                        "PIP_INDEX_URL": "https://pypi.example/simple/", "UV_INDEX": "x",
                        "HTTPS_PROXY": "http://proxy:3128", "VIRTUAL_ENV": "/venv"}.items():
        monkeypatch.setenv(name, value)
    env = clean_environment((("UV_CACHE_DIR", "/cache"),))
    assert env["PATH"] == os.environ["PATH"] and env["PIP_CONFIG_FILE"] == os.devnull
    assert env["UV_CACHE_DIR"] == "/cache"
    assert not {"ACTIONS_ID_TOKEN_REQUEST_TOKEN", "AWS_SECRET_ACCESS_KEY", "TWINE_PASSWORD",
                "GITHUB_TOKEN", "PIP_INDEX_URL", "UV_INDEX", "HTTPS_PROXY",
                "VIRTUAL_ENV"} & set(env)
