"""The sdist metadata source: its backend runs with the lock's sources passed to
its subprocesses, never written into this process's environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex
from test_lock import write_mirror

from lockmirror.config import load_config
from lockmirror.net.index_client import IndexClient
from lockmirror.resolve.sdist_metadata import SdistMetadataSource


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
