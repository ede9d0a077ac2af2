"""Shared fixtures: the synthetic catalogue and the fixture index serving it.

* ``catalogue`` (session): every file of ``fixtureindex.catalogue`` built once.
* ``catalogue_index`` (session): one server over the catalogue; prefer
  ``fixture_index``, which hands it out reset (switches off, counters zero).
* ``fixture_index`` (function): that server, reset before the test.
* ``make_index`` (function): factory ``make_index(files_dir, **kwargs)`` for a
  server over another directory; every server it made is stopped afterwards.
* ``own_paths`` (function): no ``LOCKMIRROR_STORE`` or ``LOCKMIRROR_CACHE``, so each
  mirror.yaml's own paths (or the defaults beside it) hold.
* ``reproducible_build`` (function): ``own_paths``, ``SOURCE_DATE_EPOCH`` and the tool
  wheels repacked from this environment: a whole build (lock to bundle) in this process.
* ``own_temp_dir`` (session, every test): ``$TMPDIR`` (and ``tempfile``'s) is the session's own
  directory, so what gc removes from there (killed check-install runs) is never
  another process's in /tmp; it must be empty again when the session ends (a
  temporary file or directory left there by lockmirror or a test fails the run).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtureindex import Catalogue, FixtureIndex, build_catalogue

# Bundles carry lockmirror's dependency wheels; the suite repacks the installed
# distributions instead of downloading them, so it never needs the package index.
# Set before any test runs, so subprocesses (the CLI, doit) inherit it.
os.environ.setdefault("LOCKMIRROR_TOOL_WHEELS", "installed")
# The installers `doit verify` runs (old pips) come from the package index once and are
# shared by every test from here (issue 14).
os.environ.setdefault("LOCKMIRROR_INSTALLER_CACHE",
                      str(Path(__file__).resolve().parent.parent / ".cache" / "installers"))


@pytest.fixture(autouse=True, scope="session")
def own_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    root = tmp_path_factory.mktemp("tmpdir")  # first of all: module fixtures run check-install
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(root))  # subprocesses: the CLI, doit
        patch.setattr(tempfile, "tempdir", str(root))
        yield
    left = sorted(path.name for path in root.iterdir())
    if left:
        pytest.fail(f"left in the tests' $TMPDIR {root}: {', '.join(left[:10])}", pytrace=False)


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    return build_catalogue(tmp_path_factory.mktemp("catalogue"))


@pytest.fixture(scope="session")
def catalogue_index(catalogue: Catalogue) -> Iterator[FixtureIndex]:
    server = FixtureIndex(catalogue.root, upload_times=catalogue.upload_times,
                          yanked=catalogue.yanked, vulnerabilities=catalogue.vulnerabilities)
    yield server
    server.stop()


@pytest.fixture
def fixture_index(catalogue_index: FixtureIndex) -> Iterator[FixtureIndex]:
    catalogue_index.reset()
    yield catalogue_index
    catalogue_index.reset()


@pytest.fixture
def own_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOCKMIRROR_STORE", "LOCKMIRROR_CACHE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def reproducible_build(own_paths: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    # the bundle's dependency wheels repacked from this environment: no package index
    monkeypatch.setenv("LOCKMIRROR_TOOL_WHEELS", "installed")


@pytest.fixture
def make_index() -> Iterator[Callable[..., FixtureIndex]]:
    started: list[FixtureIndex] = []

    def factory(files_dir: Path, **kwargs: Any) -> FixtureIndex:
        server = FixtureIndex(files_dir, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
