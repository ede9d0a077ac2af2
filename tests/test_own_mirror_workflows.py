"""The workflows copied into a mirror repository install lockmirror from what it pins.

README, "Your own mirror repository": a team's repository holds mirror.yaml, its
lockfiles and a copy of lockmirror's ``.github/``, but no lockmirror source. Every
workflow's install step (``.github/scripts/install_lockmirror.sh``) installs lockmirror's
dependencies as the hashed wheels of the tool lockfile, and lockmirror itself from this
checkout only in lockmirror's own repository; anywhere else from the one requirement
``.github/lockmirror.txt`` pins: a wheel by sha256, or a git commit (found by an outside
tester: every copied workflow ran ``pip install -e .``, which failed with "does not
appear to be a Python project").

The walk runs bump.yml's bump job, install step included, in a fresh clone of such a
repository, with a fresh Python first on PATH (setup-python's stand-in) and no package
index but a fixture one on 127.0.0.1, which serves this environment's own dependencies
repacked as wheels (the tool set is locked from it): lockmirror itself comes as its wheel
from a file URL, or from a commit of a git repository of its sources (built with this
environment's setuptools, pinned by hash in place of build-backend.txt's, which no
offline index serves). The other tests show what the script refuses, in one line,
before pip runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex, build_wheel
from helpers import mirror_yaml, subprocess_env
from packaging.tags import platform_tags
from test_bundle import TOOL_CACHE
from workflow_walk import Walk, commit_locked_mirror

from lockmirror.fsutil import sha256_file
from lockmirror.stages.toolwheels import installed_dependency_wheels, own_wheel, repack_installed

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
INSTALL_SCRIPT = ROOT / ".github" / "scripts" / "install_lockmirror.sh"
HASH = "0" * 64
COMMIT = "1" * 40
HOST = (f"{sys.version_info[0]}.{sys.version_info[1]}",
        next(tag for tag in platform_tags() if not tag.startswith("linux_")))


def _pins(form: str, tmp_path: Path, index: FixtureIndex, env: dict[str, str]
          ) -> dict[str, str]:
    """What the mirror repository pins, by file of its .github/: lockmirror (``form``:
    its wheel by sha256 at a file URL, or a commit of a git repository of its sources)
    and, to build from that commit with no network, build-backend.txt's setuptools
    (this environment's, repacked, served by ``index``)."""
    dist = metadata.distribution("lockmirror")
    if form == "wheel":
        release = own_wheel(dist)  # lockmirror's wheel, as a release would publish it
        wheel = tmp_path / "release" / release.filename
        wheel.parent.mkdir()
        wheel.write_bytes(release.data)
        return {"lockmirror.txt": f"lockmirror @ {wheel.as_uri()} --hash=sha256:{release.sha256}"}
    source = tmp_path / "lockmirror-source"
    shutil.copytree(ROOT / "src" / "lockmirror", source / "src" / "lockmirror",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, source / name)
    subprocess.run(["git", "init", "-q", str(source)], check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=source, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "lockmirror"], cwd=source, env=env, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, env=env, check=True,
                            capture_output=True, text=True).stdout.strip()
    backend = repack_installed(metadata.distribution("setuptools"), tmp_path / "backend")
    index.add_file(backend)
    return {"lockmirror.txt": f"lockmirror @ git+file://localhost{source}@{commit}",
            "scripts/build-backend.txt": f"setuptools=={metadata.version('setuptools')} "
                                         f"--hash=sha256:{sha256_file(backend)}"}


def _mirror_repo(tmp_path: Path, index: FixtureIndex, pins: dict[str, str],
                 env: dict[str, str]) -> Path:
    """A mirror repository as the README makes one: mirror.yaml and its lockfiles
    (lockmirror's own set's too, from ``index``), lockmirror's .github/ copied with
    ``pins`` written into it, and a .gitignore; no pyproject.toml and no src/."""
    repo = tmp_path / "our-mirror"
    repo.mkdir()
    # one target, this machine: the dependencies' wheels are this environment's
    (repo / "mirror.yaml").write_text(mirror_yaml(index.url, {"main": ["alpha"]},
                                                  targets={"runner": HOST}), encoding="utf-8")
    shutil.copytree(ROOT / ".github", repo / ".github")
    for name, pin in pins.items():
        (repo / ".github" / name).write_text(f"# for the workflows\n{pin}\n", encoding="utf-8")
    commit_locked_mirror(repo, env, ROOT, BIN)
    assert (repo / "lockfiles" / "pylock.lockmirror-tool.toml").is_file()
    return repo


@pytest.mark.slow
@pytest.mark.parametrize("form", ["wheel", "commit"])
def test_the_copied_bump_workflow_installs_the_pinned_lockmirror_and_bumps(
        tmp_path: Path, make_index: Callable[..., FixtureIndex], form: str) -> None:
    # the index serves the mirror's one package and lockmirror's dependencies (this
    # environment's, repacked): the tool set is locked from it, and pip installs from it
    files = tmp_path / "files"
    build_wheel(files, "alpha", "1.0")
    dist = metadata.distribution("lockmirror")
    for dependency in installed_dependency_wheels(dist, TOOL_CACHE).wheels:
        (files / dependency.filename).write_bytes(dependency.data)
    index = make_index(files)

    # setup-python's stand-in: a fresh Python first on PATH, this environment's
    # executables not on it at all
    runner_python = tmp_path / "runner-python"
    venv.create(runner_python, with_pip=True)
    path = [p for p in subprocess_env()["PATH"].split(":") if Path(p) != BIN]
    env = subprocess_env(drop=["GITHUB_", "LOCKMIRROR_"], installers=True, git_identity=True,
                         home=tmp_path, CI="true", GITHUB_ACTIONS="true",
                         PIP_INDEX_URL=index.url,
                         PATH=":".join([str(runner_python / "bin"), *path]))
    repo = _mirror_repo(tmp_path, index, _pins(form, tmp_path, index, env), env)
    index.add_file(build_wheel(tmp_path / "newer", "alpha", "2.0"),
                   upload_time=datetime(2024, 6, 1, tzinfo=UTC))

    walk = Walk(repo / ".github" / "workflows" / "bump.yml", repo, tmp_path / "run", env,
                conditions={"steps.bump.outputs.branch != ''": True},
                expressions={"github.event_name == 'workflow_run' || "
                             "inputs.security == true": "false"},
                install=True)
    bump = walk.run_job("bump")

    assert bump.steps[0] == "Install lockmirror (hashed wheels from its lockfile)"
    installed = [line for line in bump.output[0].splitlines()
                 if line.startswith("Successfully installed ")]
    assert f"lockmirror-{dist.version}" in installed[-1].split()
    assert bump.outputs["branch"] == "lockmirror/bump"
    patch = (walk.artifacts / "bump" / "bump.patch").read_text(encoding="utf-8")
    assert "lockfiles/pylock.main.toml" in patch and "alpha-2.0-py3-none-any.whl" in patch
    # the bump ran the pinned lockmirror installed into the fresh Python, not this checkout
    where = subprocess.run([str(runner_python / "bin" / "python"), "-c",
                            "import lockmirror; print(lockmirror.__file__)"],
                           capture_output=True, text=True, check=True, env=env).stdout
    assert Path(where).is_relative_to(runner_python), where


def _install(cwd: Path, pinned: str | None, pyproject: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    """install_lockmirror.sh in ``cwd`` with ``pinned`` as .github/lockmirror.txt (None:
    no such file) and no tool lockfile: what it says before it installs anything."""
    if pinned is not None:
        (cwd / ".github").mkdir(exist_ok=True)
        (cwd / ".github" / "lockmirror.txt").write_text(pinned, encoding="utf-8")
    if pyproject is not None:
        (cwd / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    return subprocess.run(["bash", str(INSTALL_SCRIPT)], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False,
                          env=subprocess_env(installers=True, venv_first=True))


@pytest.mark.parametrize(("pinned", "refusal"), [
    (None, ".github/lockmirror.txt: missing: outside lockmirror's own repository"),
    ("lockmirror>=0.1\n", "'lockmirror>=0.1' pins no lockmirror wheel by sha256 and no git"),
    ("lockmirror==0.1.0\n", "'lockmirror==0.1.0' pins no lockmirror wheel"),
    ("lockmirror @ https://example.org/lockmirror-0.1.0-py3-none-any.whl\n", "pins no"),
    ("lockmirror @ git+https://github.com/o/lockmirror@main\n", "pins no"),
    (f"lockmirror @ git+https://github.com/o/lockmirror@v0.1.0 --hash=sha256:{HASH}\n",
     "pins no"),
    (f"evil==1.0 --hash=sha256:{HASH}\n", "'evil==1.0 --hash=sha256:"),
    (f"lockmirror==0.1.0 --hash=sha256:{HASH}\ntwine==6.0 --hash=sha256:{HASH}\n",
     ".github/lockmirror.txt: 2 requirements: state exactly one, lockmirror's"),
    (f"lockmirror==0.1.0 --hash=sha256:{HASH} --index-url https://evil.example/\n", "pins no"),
    ("# nothing yet\n\n", ".github/lockmirror.txt: 0 requirements"),
    # a wheel URL with a login and no hash: refused without the token in the job's log
    ("lockmirror @ https://ci:S3CRET@nexus.example/lockmirror-0.1.0-py3-none-any.whl\n",
     "'lockmirror @ https://***@nexus.example/lockmirror-0.1.0-py3-none-any.whl' pins no"),
])
def test_the_install_script_refuses_what_pins_no_lockmirror(
        tmp_path: Path, pinned: str | None, refusal: str) -> None:
    """Outside lockmirror's repository (here with a pyproject.toml of another project
    too) the script installs only a lockmirror wheel by sha256 or a git commit, and
    refuses anything else in one line, before pip runs."""
    done = _install(tmp_path, pinned, pyproject='[project]\nname = "our-tools"\n')
    assert done.returncode == 1
    assert done.stderr.startswith("install_lockmirror: ") and refusal in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == "" and "S3CRET" not in done.stderr


def _readme_pins() -> list[str]:
    """The lines README's "Your own mirror repository" shows for .github/lockmirror.txt,
    their placeholders filled in."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("commit as `.github/lockmirror.txt`", 1)[1].split("```")[1]
    pins = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(pins) == 3, block
    return [re.sub(r"<[^>]*sha256[^>]*>", HASH, pin).replace("<owner>", "o")
            .replace("<the commit's 40 hex digits>", COMMIT) for pin in pins]


@pytest.mark.parametrize("pinned", [
    *_readme_pins(),
    f"  lockmirror==0.1.0   --hash=sha256:{HASH} --hash=sha256:{'a' * 64}  # two builds",
    f"lockmirror @ git+ssh://git@github.com/o/lockmirror@{COMMIT}",
])
def test_the_install_script_takes_a_pinned_wheel_or_commit(tmp_path: Path, pinned: str) -> None:
    """Each accepted form gets past the pin's check (here to the missing tool lockfile,
    so nothing is installed)."""
    done = _install(tmp_path, f"# lockmirror for the workflows\n\n{pinned}\n")
    assert done.returncode == 1
    assert done.stderr == ("install_lockmirror: lockfiles/pylock.lockmirror-tool.toml: missing: "
                           "lock lockmirror's own set with the others and commit its lockfile "
                           "(README, \"lockmirror's own set\")\n")


def test_lockmirrors_own_repository_needs_no_pin(tmp_path: Path) -> None:
    """Where pyproject.toml names lockmirror, its checkout is what the workflows install."""
    done = _install(tmp_path, None, pyproject=(ROOT / "pyproject.toml").read_text(
        encoding="utf-8"))
    assert done.returncode == 1
    assert "lockmirror.txt" not in done.stderr
    assert "pylock.lockmirror-tool.toml: missing" in done.stderr
