"""A hostile upstream index ends `lock` in one line: never a crash, a hang or
gigabytes in memory and on disk.

The upstream is real: the fixture index on 127.0.0.1. ``lock`` runs as the CLI in a
subprocess with a timeout and an address-space limit, so a regression fails instead
of hanging or swapping.
"""

from __future__ import annotations

import io
import resource
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex, build_wheel
from helpers import mirror_yaml, subprocess_env

from lockmirror.formats.core_metadata import (
    MAX_METADATA_BYTES,
    MetadataError,
    archive_metadata,
    read_metadata,
)

MakeIndex = Callable[..., FixtureIndex]
TIMEOUT = 120         # seconds; each refusal takes a few, a regression hangs
MEMORY = 3 << 30      # address space: the old code's gigabytes hit it instead of swapping
BOMB = "bomb-1.0-py3-none-any.whl"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def lock(project: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lockmirror", "lock", "--set", "s"],
                          cwd=project, env=subprocess_env(drop=["LOCKMIRROR_"], **environ),
                          capture_output=True, text=True, timeout=TIMEOUT,
                          preexec_fn=_limit_memory, check=False)


def project_for(tmp_path: Path, url: str, requirement: str) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "mirror.yaml").write_text(mirror_yaml(url, {"s": [requirement]}))
    return project


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed run (exit 1, no traceback)."""
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("lockmirror: error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


# --------------------------------------------------------------------------
# a zip bomb: METADATA inflating far past any real package's
# --------------------------------------------------------------------------


def zip_bomb(directory: Path) -> Path:
    """A wheel whose METADATA inflates to past MAX_METADATA_BYTES (a few KiB deflated)."""
    directory.mkdir()
    built = build_wheel(directory / "built", "bomb", "1.0")
    bomb = directory / BOMB
    with zipfile.ZipFile(built) as source, \
            zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith(".dist-info/METADATA"):
                data += b"\n" + b"a" * (MAX_METADATA_BYTES + 1)
            out.writestr(info.filename, data)
    built.unlink()
    return bomb


@pytest.mark.parametrize("pep658", [False], ids=["from-the-wheel"])
def test_lock_refuses_a_zip_bomb_wheels_metadata_and_keeps_nothing(
        tmp_path: Path, make_index: MakeIndex, pep658: bool) -> None:
    zip_bomb(tmp_path / "files")
    index = make_index(tmp_path / "files")
    index.no_metadata = not pep658  # without the PEP 658 file, METADATA is read by Range
    project = project_for(tmp_path, index.url, "bomb")
    line = error_line(lock(project))
    assert BOMB in line and "16.0 MiB" in line, line
    assert not (project / "lockfiles" / "pylock.s.toml").exists()
    kept = [p for p in (project / ".cache").rglob("*") if p.is_file()
            and p.stat().st_size > MAX_METADATA_BYTES]
    assert kept == []


def test_the_one_reader_refuses_core_metadata_past_the_cap_wherever_it_lies(
        tmp_path: Path) -> None:
    bomb = zip_bomb(tmp_path / "files")
    with pytest.raises(MetadataError, match=r"16\.0 MiB") as caught:
        archive_metadata(bomb.read_bytes(), bomb.name)
    assert str(caught.value).startswith(f"{BOMB}: bomb-1.0.dist-info/METADATA: ")
    sdist = io.BytesIO()
    with tarfile.open(fileobj=sdist, mode="w:gz") as out:
        info = tarfile.TarInfo("bomb-1.0/PKG-INFO")
        info.size = MAX_METADATA_BYTES + 1
        out.addfile(info, io.BytesIO(b"a" * info.size))
    with pytest.raises(MetadataError, match=r"^bomb-1\.0\.tar\.gz: bomb-1\.0/PKG-INFO: .*16\.0 MiB"):
        archive_metadata(sdist.getvalue(), "bomb-1.0.tar.gz")
    wheel = build_wheel(tmp_path / "beside", "fine", "1.0")  # a PEP 658 file beside it
    beside = wheel.with_name(wheel.name + ".metadata")
    beside.write_bytes(b"Name: fine\n" + b"a" * MAX_METADATA_BYTES)
    with pytest.raises(MetadataError, match=r"16\.0 MiB"):
        read_metadata(wheel)
