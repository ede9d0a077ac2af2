"""The two front doors, `doit` and `lockmirror`, reach each stage through one entry.

Two copies of one mirror.yaml (on the fixture index) are built, one through
the doit tasks' actions (``doit_tasks``, what ``dodo.py`` wires), one through
the CLI (``lockmirror.cli.main``): every stage writes the same bytes --
lockfiles, the ``dist-index/`` tree, the bundle. Also: ``doit verify`` is the
deprecated name of ``check-install`` and says so in one line, and a broken
mirror.yaml reaches doit as one failed task, not a printed exit from
``Project.loaded``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex
from helpers import mirror_yaml, tree_digests

from lockmirror import doit_tasks
from lockmirror.cli import main
from lockmirror.config import signing_key_stamp
from lockmirror.errors import ConfigError
from lockmirror.formats import signing
from lockmirror.stages.importer import import_bundle

SETS = {"core": ["speedup==1.2", "beta==1.0"], "extra": ["marked==1.0"]}


@pytest.fixture
def projects(tmp_path: Path, fixture_index: FixtureIndex,
             reproducible_build: None) -> tuple[Path, Path]:
    """Two project directories holding the same mirror.yaml."""
    roots = tmp_path / "doit", tmp_path / "cli"
    for root in roots:
        root.mkdir()
        (root / "mirror.yaml").write_text(mirror_yaml(fixture_index.url, SETS))
    return roots


def run_doit_stages(root: Path) -> None:
    """What `doit lock fetch index bundle` runs: each task's actions, in order."""
    project = doit_tasks.Project(str(root / "mirror.yaml"))
    tasks = [*doit_tasks.lock_tasks(project), doit_tasks.fetch_task(project),
             doit_tasks.index_task(project), doit_tasks.bundle_task(project)]
    for task in tasks:
        for action in task["actions"]:  # None, or the values doit keeps (bundle's files)
            assert isinstance(action() or {}, dict), \
                f"doit task {task.get('name', task['doc'])} failed"


def run_cli_stages(root: Path) -> None:
    config = str(root / "mirror.yaml")
    for command in ("lock", "fetch", "index", "bundle"):
        assert main([command, "--config", config]) == 0, command


def test_doit_and_the_cli_write_the_same_bytes_at_every_stage(
        projects: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    by_doit, by_cli = projects
    monkeypatch.chdir(by_doit)
    run_doit_stages(by_doit)
    monkeypatch.chdir(by_cli)
    run_cli_stages(by_cli)
    capsys.readouterr()
    for part in ("lockfiles", "dist-index", "dist"):
        written = tree_digests(by_doit / part)
        assert written, f"{part}: nothing written"
        assert written == tree_digests(by_cli / part), f"{part} differs between doit and the CLI"
    # one tool-wheel cache layout for both doors
    assert [p.relative_to(by_doit) for p in sorted((by_doit / ".cache").rglob("pins.txt"))] == [
        p.relative_to(by_cli) for p in sorted((by_cli / ".cache").rglob("pins.txt"))]


def test_both_doors_word_the_index_result_the_same(
        projects: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: `lockmirror index` said `wrote 20 files (...), removed
    6` and `removed flask 2.3.2`, `doit index` `20 written, 6 removed` and `removed click
    8.1.3 (no lockfile needs it any more)`. Both print the same lines now."""
    said = []
    for root in projects:
        monkeypatch.chdir(root)
        config = root / "mirror.yaml"

        def index(root: Path = root) -> list[str]:
            if root.name == "doit":
                for action in doit_tasks.index_task(doit_tasks.Project("mirror.yaml"))["actions"]:
                    assert action() is None
            else:
                assert main(["index"]) == 0
            return capsys.readouterr().out.replace(str(root), "ROOT").splitlines()

        assert main(["lock"]) == 0 and main(["fetch"]) == 0
        capsys.readouterr()
        built = index()
        config.write_text(config.read_text().replace("extra: {requirements: [marked==1.0]}",
                                                     "extra: {requirements: [beta==1.0]}"))
        assert main(["lock"]) == 0
        capsys.readouterr()
        said.append((built, index(), index()))
    assert said[0] == said[1]
    built, shrunk, again = said[0]
    assert built[0].startswith("index: ROOT/dist-index: ") and " written (" in built[0]
    assert "  removed marked 1.0 (no lockfile needs it any more)" in shrunk[1:]
    assert all(line.endswith(" (no lockfile needs it any more)") for line in shrunk[1:])
    assert again == [shrunk[0].split("; ")[0].replace("dist-index: ", "dist-index: up to "
                                                      "date (") + ")"]


def test_both_doors_sign_with_the_key_the_environment_names(
        projects: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`doit bundle` takes no options: $LOCKMIRROR_SIGNING_KEY signs its bundle (and
    the CLI's without --key), so the far side's `import --pubkey` accepts it."""
    public = signing.generate_keypair(tmp_path / "keys" / "ops.key")
    monkeypatch.setenv("LOCKMIRROR_SIGNING_KEY", str(tmp_path / "keys" / "ops.key"))
    by_doit, by_cli = projects
    monkeypatch.chdir(by_doit)
    run_doit_stages(by_doit)
    monkeypatch.chdir(by_cli)
    run_cli_stages(by_cli)
    out = capsys.readouterr().out
    assert "unsigned" not in out and out.count("signed") == 2
    for root in projects:
        [tar] = (root / "dist").glob("*.tar")
        result = import_bundle([tar], tmp_path / "far" / root.name, pubkey=public)
        assert result.signed and result.changed


def test_doit_verify_is_the_deprecated_name_of_check_install(
        capsys: pytest.CaptureFixture[str]) -> None:
    task = doit_tasks.verify_alias_task()
    assert task["task_dep"] == ["check-install"]
    for action in task["actions"]:
        action()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "deprecated" in lines[0] and "doit check-install" in lines[0]


def test_a_broken_mirror_yaml_fails_the_doit_task_in_one_place(
        tmp_path: Path, projects: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    root = projects[0]
    project = doit_tasks.Project(str(root / "mirror.yaml"))
    (root / "mirror.yaml").write_text("version: 1\nsets: {core: {requirements: [1]}}\n")
    project.__dict__.pop("loaded", None)  # a task that runs after mirror.yaml broke
    with pytest.raises(ConfigError):
        _ = project.loaded  # raises; prints nothing
    assert capsys.readouterr() == ("", "")
    failed = doit_tasks._action(doit_tasks._index, project)()
    assert failed is not None
    assert "mirror.yaml" in capsys.readouterr().err


def test_dodo_reaches_each_stage_through_one_doit_tasks_function() -> None:
    """Every task of dodo.py is one call of a ``doit_tasks`` function."""
    source = (Path(__file__).resolve().parent.parent / "dodo.py").read_text()
    bodies = source.split("\ndef task_")[1:]
    assert len(bodies) >= 9
    for body in bodies:
        name = body.split("(", 1)[0]
        if name == "build":
            continue
        assert "tasks." in body and body.count("tasks.") == 1, name



def test_a_mistyped_option_shows_the_commands_own_usage() -> None:
    done = subprocess.run([sys.executable, "-m", "lockmirror", "index", "--fulll"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: lockmirror index ")
    assert done.stderr.rstrip().endswith("lockmirror index: error: unrecognized arguments: "
                                         "--fulll")
    # a mirror.yaml given as validate takes it: the way to name it
    done = subprocess.run([sys.executable, "-m", "lockmirror", "lock", "mirror.yaml"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stderr.rstrip().endswith(
        "unrecognized arguments: mirror.yaml (name the file with --config mirror.yaml)")


def test_a_key_in_the_signing_key_variable_is_refused_unshown(
        projects: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """$LOCKMIRROR_SIGNING_KEY names a file; given the key itself (a secret wired
    straight in), lockmirror says so without printing it."""
    secret = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END"
    monkeypatch.setenv("LOCKMIRROR_SIGNING_KEY", secret)
    root = projects[1]
    assert main(["bundle", "--config", str(root / "mirror.yaml")]) == 2
    said = capsys.readouterr()
    assert "holds a key, not the path of its file" in said.err
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in said.out + said.err
    # nor in doit's up-to-date stamp, which `doit info` prints and .doit.db keeps
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in repr(signing_key_stamp())
