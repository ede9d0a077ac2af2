"""Sdists whose metadata cannot be prepared: the backend's own error kept in the
message. On the fixture index, hermetic (the sdists are built here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtureindex import FixtureIndex
from fixtureindex.fixture_backend import core_metadata, write_sdist
from test_lock import X86, lock

from lockmirror.errors import ResolutionError

# an in-tree backend that fails as a setup.py does: chatter, then a traceback
FAILING_BACKEND = '''\
def get_requires_for_build_wheel(config_settings=None):
    print("running egg_info")
    print("writing {name}.egg-info/PKG-INFO")
    raise AttributeError("cython_sources")
'''


def failing_sdist(out_dir: Path, name: str, version: str) -> Path:
    """An sdist whose metadata only its backend knows (Metadata-Version 2.1), and
    whose backend fails in ``get_requires_for_build_wheel`` after printing."""
    pyproject = ('[build-system]\nrequires = []\nbuild-backend = "failing_backend"\n'
                 'backend-path = ["."]\n')
    files = {"PKG-INFO": core_metadata(name, version, metadata_version="2.1").encode(),
             "pyproject.toml": pyproject.encode(),
             "failing_backend.py": FAILING_BACKEND.format(name=name).encode()}
    return out_dir / write_sdist(out_dir, name, version, files)


def test_a_failed_build_keeps_the_backends_own_error(tmp_path: Path,
                                                    fixture_index: FixtureIndex) -> None:
    fixture_index.add_file(failing_sdist(tmp_path / "files", "nobuild", "5.4.1"))
    with pytest.raises(ResolutionError) as info:
        lock(tmp_path, fixture_index, "  n:\n    requirements: [nobuild]\n")
    text = str(info.value)
    assert ("no candidate of nobuild for 'nobuild' is left: preparing the metadata of "
            "nobuild-5.4.1.tar.gz failed: Backend subprocess exited when trying to invoke "
            "get_requires_for_build_wheel: ") in text, text
    assert text.count("AttributeError: cython_sources") == 1, text  # the build's last line
    assert "failed for" not in text and "File \"" not in text and "\n" not in text, text
    assert f"target '{X86}'" in text, text
