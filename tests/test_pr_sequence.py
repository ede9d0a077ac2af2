"""What a pull request runs, run here: the `run:` steps of pr.yml on a fixture mirror.

The commands come out of ``.github/workflows/pr.yml`` itself (every `run:`
step of the ``check`` job, then of the ``diff`` job, but the install steps), so the
workflow and this test cannot drift apart. They run in order, as GitHub runs them (``bash -eo
pipefail``), with this environment's executables first on PATH, in a
temporary git repository whose mirror.yaml points at the fixture index and
whose lockfiles were written by ``lockmirror lock``:

* a pull request that edits mirror.yaml and re-locks passes every step (with the
  base commit checked out into pr-base/, as the diff job has it), and the job
  summary gets the lock diff, whose sha256 is the diff job's output;
* one that edits mirror.yaml without re-locking fails at ``lock --check``,
  with a message naming the set;
* one that edits a lockfile by hand fails at ``lock --check --resolve``,
  naming the entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtureindex import FixtureIndex
from helpers import ARM_TARGET, X86_TARGET, mirror_yaml, subprocess_env

from lockmirror.formats.lockfile import Lockfile

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PR_WORKFLOW = ROOT / ".github" / "workflows" / "pr.yml"
STEP_TIMEOUT = 300

# Every stage the pull-request steps exercise, and the doit tasks they name.
def _missing_tools() -> list[str]:
    """Outside tools the sequence runs; lockmirror's own modules are imported by the
    steps themselves, so a broken one fails the test instead of skipping it."""
    missing = [f"{tool} executable in {BIN}" for tool in ("lockmirror", "doit")
               if not (BIN / tool).is_file()]
    return missing + (["git"] if shutil.which("git") is None else [])


MISSING = _missing_tools()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason="a tool the pull-request sequence needs is "
                                             "missing: " + "; ".join(MISSING)),
]


@dataclass(frozen=True)
class Step:
    name: str
    script: str


def pr_steps() -> list[Step]:
    """The `run:` steps of pr.yml's check job, then its diff job's, in order, without
    the install steps."""
    workflow = yaml.safe_load(PR_WORKFLOW.read_text(encoding="utf-8"))
    steps: list[dict[str, Any]] = [*workflow["jobs"]["check"]["steps"],
                                   *workflow["jobs"]["diff"]["steps"]]
    out = []
    for step in steps:
        if "run" not in step or step.get("id") == "install":
            continue
        assert "${{" not in step["run"], f"step '{step['name']}' needs GitHub expressions"
        out.append(Step(step["name"], step["run"]))
    return out


@dataclass
class StepResult:
    step: Step
    returncode: int
    stdout: str
    stderr: str


def run_steps(repo: Path, env: dict[str, str]) -> list[StepResult]:
    """Run the steps in order until one fails, like a job does."""
    results = []
    for step in pr_steps():
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                               step.script], cwd=repo, env=env, capture_output=True, text=True,
                              timeout=STEP_TIMEOUT, check=False)
        results.append(StepResult(step, done.returncode, done.stdout, done.stderr))
        if done.returncode != 0:
            break
    return results


def _write_mirror(repo: Path, url: str, requirements: list[str]) -> None:
    (repo / "mirror.yaml").write_text(
        mirror_yaml(url, {"core": requirements}, targets=X86_TARGET | ARM_TARGET),
        encoding="utf-8")


@pytest.fixture
def mirror_repo(tmp_path: Path, fixture_index: FixtureIndex) -> tuple[Path, dict[str, str]]:
    """A mirror repository: main locked with two packages, branch `feature` adds two more."""
    repo = tmp_path / "mirror"
    repo.mkdir()
    env = subprocess_env(
        drop=["GITHUB_", "LOCKMIRROR_"], git_identity=True, home=tmp_path, venv_first=True,
        CI="true", GITHUB_ACTIONS="true", GITHUB_BASE_REF="main",
        GITHUB_STEP_SUMMARY=str(tmp_path / "step-summary.md"), SOURCE_DATE_EPOCH="1700000000",
        GITHUB_OUTPUT=str(tmp_path / "step-output.txt"),
        # the bundle's dependency wheels repacked from this environment: no package index
        LOCKMIRROR_TOOL_WHEELS="installed",
        # the verify step's installers (old pips): fetched once, shared with the other tests
        LOCKMIRROR_INSTALLER_CACHE=str(ROOT / ".cache" / "installers"))
    shutil.copy(ROOT / "dodo.py", repo / "dodo.py")
    shutil.copy(ROOT / ".gitattributes", repo / ".gitattributes")
    (repo / ".gitignore").write_text((ROOT / ".gitignore").read_text(encoding="utf-8"),
                                     encoding="utf-8")
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)

    def lock_and_commit(message: str) -> None:
        done = subprocess.run([str(BIN / "lockmirror"), "lock"], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False)
        assert done.returncode == 0, done.stderr
        subprocess.run(["git", "add", "-A"], cwd=repo, env=env, check=True)
        subprocess.run(["git", "commit", "-q", "-m", message], cwd=repo, env=env, check=True)

    _write_mirror(repo, fixture_index.url, ["speedup==1.0", "shared==1.0"])
    lock_and_commit("mirror: speedup and shared")
    # What actions/checkout with fetch-depth 0 gives: the base branch as origin/<base>.
    subprocess.run(["git", "update-ref", "refs/remotes/origin/main", "main"], cwd=repo,
                   env=env, check=True)
    subprocess.run(["git", "checkout", "-q", "-b", "feature"], cwd=repo, env=env, check=True)
    _write_mirror(repo, fixture_index.url, ["speedup==1.2", "beta==1.0", "marked==1.0"])
    lock_and_commit("mirror: upgrade speedup, add beta and marked, drop shared")
    # What the diff job's second checkout gives: the base commit in pr-base/, inside the
    # pull request's checkout (lockmirror is installed from there; the steps read the head)
    subprocess.run(["git", "clone", "-q", "--branch", "main", str(repo), str(repo / "pr-base")],
                   env=env, check=True)
    return repo, env


def test_the_pull_request_steps_pass_on_a_relocked_change(
        mirror_repo: tuple[Path, dict[str, str]]) -> None:
    repo, env = mirror_repo
    results = run_steps(repo, env)
    for result in results:
        assert result.returncode == 0, (
            f"step '{result.step.name}' failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}")
    assert [r.step.name for r in results] == [s.name for s in pr_steps()]
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8")
    assert "merge base with origin/main" in summary
    assert "| upgraded | `speedup` | 1.0 → 1.2 | core: speedup==1.2 |" in summary
    assert "| removed | `shared` |" in summary
    assert "core: beta==1.0 → alpha" in summary
    lock_diff = (repo / "lock-diff.md").read_bytes()
    assert Path(env["GITHUB_OUTPUT"]).read_text(encoding="utf-8").splitlines() == [
        f"lock-diff-sha256={hashlib.sha256(lock_diff).hexdigest()}"]
    bundles = sorted((repo / "dist").glob("*.tar"))
    assert bundles, "doit bundle made no bundle in dist/"


def test_a_stale_lockfile_fails_at_lock_check_naming_the_set(
        mirror_repo: tuple[Path, dict[str, str]], fixture_index: FixtureIndex) -> None:
    repo, env = mirror_repo
    _write_mirror(repo, fixture_index.url,
                  ["speedup==1.2", "beta==1.0", "marked==1.0", "native==1.0"])
    results = run_steps(repo, env)
    failed = results[-1]
    assert failed.returncode != 0
    assert failed.step.script.strip().startswith("lockmirror lock --check")
    assert all(r.returncode == 0 for r in results[:-1])
    assert "set 'core'" in failed.stderr


def test_a_hand_edited_lockfile_fails_at_lock_check_naming_the_entry(
        mirror_repo: tuple[Path, dict[str, str]]) -> None:
    """A lockfile-only change that keeps the fingerprint: a swapped sha256 and size on the
    source's own host (the URL rule lets it through; the project page does not)."""
    repo, env = mirror_repo
    lockfile = repo / "lockfiles" / "pylock.core.toml"
    lock = Lockfile.read(lockfile)
    packages = tuple(
        dataclasses.replace(p, wheels=tuple(dataclasses.replace(w, sha256="e" * 64,
                                                                size=w.size + 44)
                                            for w in p.wheels)) if p.name == "beta" else p
        for p in lock.packages)
    dataclasses.replace(lock, packages=packages).write(lockfile)
    results = run_steps(repo, env)
    failed = results[-1]
    assert failed.returncode != 0
    assert failed.step.script.strip() == "lockmirror lock --check --resolve"
    assert all(r.returncode == 0 for r in results[:-1])
    assert (f"pylock.core.toml: beta 1.0: beta-1.0-py3-none-any.whl: sha256 {'e' * 64} in "
            "the lockfile") in failed.stderr
