"""What an operator's file permissions do to import, fetch and serve.

Root ignores chmod, so where the tests run as root each command runs without the
capabilities that let it (``setpriv --bounding-set=-dac_override,...``): the owner of
its files, as an operator is, held to their permission bits. As another user the
commands run as they are. Skipped where neither works.
"""

from __future__ import annotations

import http.client
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtureindex import Catalogue, FixtureIndex
from helpers import subprocess_env
from test_bundle import bundle
from test_fetch import make_lockfile, write_mirror
from test_import import WHEEL

from lockmirror.formats.manifest import Manifest, scan_tree
from lockmirror.formats.store import Store
from lockmirror.stages.import_swap import old_dir
from lockmirror.stages.importer import import_bundle
from lockmirror.stages.verify import verify_mirror

# what lets root read, write and chmod what is not its to (capabilities(7))
OVERRIDES = "-dac_override,-dac_read_search,-fowner"
OTHER_USER = 65534  # nobody: owns a directory the commands may not change


@dataclass(frozen=True)
class Unprivileged:
    """Runs ``python -m lockmirror`` held to file permissions: ``prefix`` drops root's
    overrides (empty when the tests do not run as root)."""

    prefix: tuple[str, ...]

    def popen(self, *args: str | Path, **options: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "lockmirror", *map(str, args)],
            env=subprocess_env(**options.pop("env", {})), text=True, **options)

    def run(self, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
        with self.popen(*args, env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE) as process:
            out, err = process.communicate(timeout=120)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture
def unprivileged(tmp_path: Path) -> Unprivileged:
    root = os.geteuid() == 0
    if root and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv(1) to drop its file overrides")
    runner = Unprivileged(("setpriv", f"--bounding-set={OVERRIDES}", "--") if root else ())
    probe = tmp_path / "read-only"
    probe.mkdir(mode=0o555)
    done = subprocess.run([*runner.prefix, sys.executable, "-c",
                           f"open({str(probe / 'f')!r}, 'w')"], capture_output=True, check=False)
    probe.rmdir()
    if done.returncode == 0 or b"PermissionError" not in done.stderr:
        pytest.skip("cannot run a command held to file permissions here")
    return runner


def imported_mirror(runner: Unprivileged, tmp_path: Path) -> tuple[Path, Path, Path]:
    """``far/mirror`` imported from a first bundle (by ``runner``), and two full bundles
    of other trees: the first's, the second's."""
    first = bundle(tmp_path / "v1", tmp_path / "out1").path
    second = bundle(tmp_path / "v2", tmp_path / "out2").path
    mirror = tmp_path / "far" / "mirror"
    done = runner.run("import", first, "--into", mirror)
    assert done.returncode == 0, done.stderr
    return mirror, first, second


def test_an_import_into_a_read_only_root_keeps_its_mode_and_leaves_nothing(
        unprivileged: Unprivileged, tmp_path: Path) -> None:
    """The operator made the mirror's root (and directories in it) read-only: the
    previous tree is removed all the same, and the new root is read-only too (found by
    an outside tester: the old tree stayed beside the mirror, partly emptied, without a
    word, and the next import failed on it; the new root was 755)."""
    mirror, _first, second = imported_mirror(unprivileged, tmp_path)
    (mirror / "files").chmod(0o555)
    (mirror / "simple").chmod(0o000)  # not even listable: opened before it is emptied
    mirror.chmod(0o555)
    done = unprivileged.run("import", second, "--into", mirror)
    assert done.returncode == 0, done.stderr
    assert " is now " in done.stdout and "warning" not in done.stderr
    assert sorted(p.name for p in mirror.parent.iterdir()) == ["mirror"]
    assert stat.S_IMODE(mirror.stat().st_mode) == 0o555
    assert verify_mirror(mirror).ok
    assert scan_tree(mirror) == Manifest.read(tmp_path / "v2" / "dist-index" / "manifest.json")


def test_an_old_tree_that_cannot_be_removed_is_a_warning_then_a_clear_error(
        unprivileged: Unprivileged, tmp_path: Path) -> None:
    """A directory of another user in the previous tree: the import succeeds and says
    which tree is left and how to remove it; the next import names that tree in full as
    the old tree of an earlier import (it said "cannot clean up an interrupted import",
    of the relative name ``.lockmirror``)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    mirror, first, second = imported_mirror(unprivileged, tmp_path)
    (mirror / "theirs").mkdir()  # the import can neither empty it nor chmod it
    (mirror / "theirs" / "note").write_text("x")
    os.chown(mirror / "theirs", OTHER_USER, OTHER_USER)
    old = old_dir(mirror)
    command = f"`chmod -R u+rwX {old} && rm -rf {old}`"
    user = f"user {pwd.getpwuid(OTHER_USER).pw_name} (uid {OTHER_USER})"  # not "nobody"
    theirs = f"{old / 'theirs'} in it belongs to {user}"
    as_whom = f"as root, or after {user} removes {old / 'theirs'}"
    done = unprivileged.run("import", second, "--into", mirror)
    assert done.returncode == 0, done.stderr
    assert " is now " in done.stdout and verify_mirror(mirror).ok
    assert done.stderr.splitlines()[-1] == (
        "lockmirror: warning: the new mirror is in place, but its previous tree could not be "
        f"removed (Permission denied: {theirs}) and is left beside it: {old}; remove it before "
        f"the next import {as_whom} ({command})")
    assert (old / "theirs" / "note").is_file()

    again = unprivileged.run("import", first, "--into", mirror)
    assert again.returncode == 1
    assert again.stderr == (
        f"lockmirror: error: {old}: cannot remove the old tree an earlier import left after "
        f"swapping in {mirror}: Permission denied ({theirs}) (remove it by hand {as_whom} "
        f"with {command}, then import again)\n")
    shutil.rmtree(old)  # what the hint says, as root
    assert unprivileged.run("import", first, "--into", mirror).returncode == 0


def test_an_import_into_a_read_only_parent_names_the_parent(
        unprivileged: Unprivileged, tmp_path: Path) -> None:
    """The staging tree and the swap are made beside the mirror: a parent directory the
    import may not write is named as such, and why (found by an outside tester: the
    error named the mirror, "cannot write the new mirror")."""
    mirror, _first, second = imported_mirror(unprivileged, tmp_path)
    before = scan_tree(mirror)
    mirror.parent.chmod(0o555)
    try:
        done = unprivileged.run("import", second, "--into", mirror)
    finally:
        mirror.parent.chmod(0o755)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] + "\n" == (
        f"lockmirror: error: {mirror.parent}: cannot create the import's staging tree "
        ".mirror.lockmirror-staging here: Permission denied (an import builds the new mirror "
        f"beside {mirror} and swaps it in by renaming both, so it needs write permission on "
        f"{mirror.parent}; nothing was changed in {mirror})\n")
    assert sorted(p.name for p in mirror.parent.iterdir()) == ["mirror"]
    assert scan_tree(mirror) == before


def test_fetch_names_the_store_directory_it_cannot_write(
        unprivileged: Unprivileged, fixture_index: FixtureIndex, catalogue: Catalogue,
        tmp_path: Path) -> None:
    """A store directory made read-only: the error names it, not the temporary file
    in the (writable) ``tmp/`` (found by an outside tester)."""
    entry = catalogue.find("native", "1.0", wheel=False)
    config = write_mirror(tmp_path, fixture_index,
                          [make_lockfile(fixture_index, "core", [entry.filename])])
    store = Store(tmp_path / "store")
    blocked = store.path(entry.sha256).parent
    blocked.mkdir(parents=True, mode=0o555)
    done = unprivileged.run("fetch", "--config", config, LOCKMIRROR_STORE=str(store.root))
    assert done.returncode == 1, done.stderr
    assert (f"lockmirror: error: {blocked}: cannot write to the store: Permission denied"
            in done.stderr.splitlines()), done.stderr
    assert not store.has(entry.sha256)


def served_statuses(runner: Unprivileged, mirror: Path,
                    paths: tuple[str, ...]) -> tuple[dict[str, int], list[str]]:
    """The status ``runner``'s ``lockmirror serve`` of ``mirror`` answers a GET of each
    of ``paths`` with, and its log's lines once stopped."""
    server = runner.popen("serve", mirror, "--port", "0", stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    statuses = {}
    try:
        assert server.stdout is not None
        first_line = server.stdout.readline()
        match = re.search(r"at http://127\.0\.0\.1:(\d+)/ ", first_line)
        assert match, first_line
        for path in paths:
            connection = http.client.HTTPConnection("127.0.0.1", int(match.group(1)),
                                                    timeout=10)
            connection.request("GET", f"/{path}")
            statuses[path] = connection.getresponse().status
            connection.close()
    finally:
        os.kill(server.pid, signal.SIGINT)
        _, log = server.communicate(timeout=60)
    return statuses, log.splitlines()


def test_serve_answers_500_and_logs_a_file_it_cannot_read(
        unprivileged: Unprivileged, tmp_path: Path) -> None:
    """A file of the tree the server may not read is the server's fault: 500 and a log
    line naming it and why (it was a 404 that said nothing)."""
    mirror = tmp_path / "mirror"
    import_bundle([bundle(tmp_path / "v1", tmp_path / "out1").path], mirror)
    unreadable = mirror / WHEEL
    unreadable.chmod(0o000)
    statuses, log = served_statuses(unprivileged, mirror, (WHEEL, "manifest.json"))
    assert statuses == {WHEEL: 500, "manifest.json": 200}
    # logged before the answer is sent (the request's own line follows it, racing the stop)
    assert f"127.0.0.1 error: cannot read {unreadable}: Permission denied" in log


@pytest.mark.parametrize("directory, path", [
    ("simple/alpha", "simple/alpha/"),  # was no answer at all: a traceback in _simple
    ("files/alpha", WHEEL),  # was a 404 that said nothing
])
def test_serve_answers_500_and_logs_a_directory_it_cannot_read(
        unprivileged: Unprivileged, tmp_path: Path, directory: str, path: str) -> None:
    """A directory of the tree the server may not search, on the way to the page or
    file asked for: as for a file it may not read, 500 and a log line naming the
    directory and why (found by an outside tester); the rest is served."""
    mirror = tmp_path / "mirror"
    import_bundle([bundle(tmp_path / "v1", tmp_path / "out1").path], mirror)
    (mirror / directory).chmod(0o000)
    statuses, log = served_statuses(unprivileged, mirror, (path, "manifest.json"))
    assert statuses == {path: 500, "manifest.json": 200}, log
    assert f"127.0.0.1 error: cannot read {mirror / directory}: Permission denied" in log
    assert not any("Traceback" in line for line in log), log
