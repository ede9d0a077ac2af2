"""Run a workflow's jobs here, each in a fresh clone, handing artifacts on as GitHub does.

A small stand-in for GitHub's runners, for tests that walk a workflow from job to job
(tests/test_publish_sequence.py): enough to show that what a job uploads is all the
jobs after it need. Per step:

* ``actions/checkout``: a fresh ``git clone`` of the repository (full history), the
  job's workspace;
* ``actions/upload-artifact`` / ``download-artifact``: the ``path`` copied into and out
  of ``<artifacts>/<name>/``; hidden files are left out (upload-artifact's default),
  a name is uploaded once per run, and ``pattern`` with ``merge-multiple`` merges;
* ``run:``: ``bash -eo pipefail`` in the workspace with the job's own
  ``GITHUB_ENV``, ``GITHUB_OUTPUT``, ``GITHUB_STEP_SUMMARY`` and ``RUNNER_TEMP``; what a
  step writes to ``GITHUB_ENV`` reaches the later steps;
* the AWS credentials action: the caller's ``aws_env`` (an S3 server's keys) joins the
  job's environment from there on, so only a job that takes the role can use S3;
* skipped: setup-python and the install steps (named ``Install lockmirror...``: this
  environment's lockmirror runs) and the cache (an empty store); with ``install`` the
  install steps run too, into the Python the caller put first on PATH (setup-python's
  stand-in).

``${{ secrets.X }}`` and ``${{ vars.X }}`` (from the caller's tables; absent: empty),
``${{ matrix.X }}``, ``${{ runner.temp }}`` and ``${{ needs.JOB.outputs.X }}`` (a job's
``outputs:`` of ``${{ steps.ID.outputs.X }}``, from the last run of JOB) are filled in;
any other ``${{ }}`` is looked up whole in the caller's ``expressions``; an ``if:`` is
looked up in the caller's ``conditions``, and one missing from either fails the walk.
A step without ``name:`` is called as GitHub shows it (``Run`` and its ``uses:`` or the
first line of its ``run:``), after its place in the job: ``step 2: Run echo hi``.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SKIPPED_ACTIONS = ("actions/setup-python", "actions/cache")
INSTALL = "Install lockmirror"  # how the install steps' names start
EXPRESSION = re.compile(r"\$\{\{\s*(secrets|vars|matrix|runner|needs)\.([\w.-]+)\s*\}\}")
ANY_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
STEP_OUTPUT = re.compile(r"^\$\{\{\s*steps\.[\w-]+\.outputs\.([\w-]+)\s*\}\}$")


@dataclass
class JobRun:
    """What one job did: its workspace, the run steps' names and output in order, and
    its step outputs (what they wrote to ``GITHUB_OUTPUT``)."""

    workspace: Path
    steps: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


class StepFailed(AssertionError):
    pass


@dataclass
class Walk:
    """One workflow run: ``repo`` is what actions/checkout clones, ``work`` holds each
    job's workspace and temporary directory and the run's artifacts."""

    workflow: Path
    repo: Path
    work: Path
    env: Mapping[str, str]
    conditions: Mapping[str, bool]
    secrets: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    aws_env: Mapping[str, str] = field(default_factory=dict)
    expressions: Mapping[str, str] = field(default_factory=dict)
    install: bool = False
    step_timeout: float = 600

    def __post_init__(self) -> None:
        data = yaml.safe_load(self.workflow.read_text(encoding="utf-8"))
        self.jobs: dict[str, Any] = data["jobs"]
        self.workflow_env: dict[str, str] = data.get("env", {})
        self.artifacts = self.work / "artifacts"
        self.artifacts.mkdir(parents=True)
        self.job_outputs: dict[str, dict[str, str]] = {}  # job -> its `outputs:`, filled in

    def run_job(self, name: str, matrix: Mapping[str, str] | None = None) -> JobRun:
        """Run job ``name`` (one ``matrix`` entry) in a workspace of its own; raise
        StepFailed naming the step that failed, with its output."""
        label = "-".join([name, *(matrix or {}).values()])
        temp = self.work / label / "runner-temp"
        temp.mkdir(parents=True)
        files = {key: temp.parent / key.lower() for key in
                 ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
        for path in files.values():
            path.touch()
        run = JobRun(self.work / label / "workspace")
        context = {"runner": {"temp": str(temp)}, "matrix": dict(matrix or {}),
                   "needs": {f"{job}.outputs.{key}": value
                             for job, outputs in self.job_outputs.items()
                             for key, value in outputs.items()}}
        job = self.jobs[name]
        env = {**self.env, **{k: str(v) for k, v in files.items()}, "RUNNER_TEMP": str(temp),
               **self._expand_all({**self.workflow_env, **job.get("env", {})}, context)}
        for number, step in enumerate(job["steps"], 1):
            if "if" in step and not self.conditions[step["if"]]:
                continue
            step_name = _step_name(step, number)
            uses = step.get("uses", "").partition("@")[0]
            if uses.startswith(SKIPPED_ACTIONS) or (step_name.startswith(INSTALL)
                                                    and not self.install):
                continue
            if uses == "actions/checkout":
                subprocess.run(["git", "clone", "-q", str(self.repo), str(run.workspace)],
                               check=True, env=self.env)
            elif uses == "aws-actions/configure-aws-credentials":
                env.update(self.aws_env)
            elif uses == "actions/upload-artifact":
                self._upload(step["with"], run.workspace, context)
            elif uses == "actions/download-artifact":
                self._download(step["with"], run.workspace, context)
            elif "run" in step:
                step_env = {**env, **self._expand_all(step.get("env", {}), context)}
                env.update(self._run(step_name, step["run"], run, step_env))
            else:
                raise AssertionError(f"job {name}: no stand-in for step {step_name!r}")
        run.outputs = _key_values(files["GITHUB_OUTPUT"].read_text(encoding="utf-8"))
        self.job_outputs[name] = {key: run.outputs[match.group(1)]
                                  for key, value in job.get("outputs", {}).items()
                                  if (match := STEP_OUTPUT.match(value))}
        return run

    def _run(self, step_name: str, script: str, run: JobRun, env: dict[str, str]
             ) -> dict[str, str]:
        """Run one ``run:`` step; return what it added to ``GITHUB_ENV`` (KEY=VALUE lines)."""
        github_env = Path(env["GITHUB_ENV"])
        before = github_env.read_text(encoding="utf-8")
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                              cwd=run.workspace, env=env, capture_output=True, text=True,
                              timeout=self.step_timeout, check=False)
        run.steps.append(step_name)
        run.output.append(done.stdout + done.stderr)
        if done.returncode != 0:
            raise StepFailed(f"step {step_name!r} failed ({done.returncode}):\n"
                             f"{done.stdout}\n{done.stderr}")
        return _key_values(github_env.read_text(encoding="utf-8")[len(before):])

    def _upload(self, given: dict[str, Any], workspace: Path, context: dict[str, Any]) -> None:
        name = self._expand(given["name"], context)
        source = workspace / self._expand(given["path"], context)
        target = self.artifacts / name
        assert not target.exists(), f"artifact {name} uploaded twice in one run"
        files = [p for p in source.rglob("*") if p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(source).parts)]
        assert files or given.get("if-no-files-found") != "error", f"{source}: no files"
        for path in files:
            copy = target / path.relative_to(source)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)

    def _download(self, given: dict[str, Any], workspace: Path,
                  context: dict[str, Any]) -> None:
        into = workspace / self._expand(given["path"], context)
        if "name" in given:
            names = [self._expand(given["name"], context)]
            assert (self.artifacts / names[0]).is_dir(), f"no artifact {names[0]}"
        else:
            assert given.get("merge-multiple"), "pattern without merge-multiple: not here"
            names = [p.name for p in self.artifacts.iterdir()
                     if fnmatch.fnmatch(p.name, given["pattern"])]
        for name in names:
            shutil.copytree(self.artifacts / name, into, dirs_exist_ok=True)

    def _expand_all(self, values: Mapping[str, Any], context: dict[str, Any]
                    ) -> dict[str, str]:
        return {key: self._expand(str(value), context) for key, value in values.items()}

    def _expand(self, text: str, context: dict[str, Any]) -> str:
        def value(match: re.Match[str]) -> str:
            kind, key = match.groups()
            if kind in ("secrets", "vars"):
                return (self.secrets if kind == "secrets" else self.variables).get(key, "")
            return str(context[kind][key])

        expanded = ANY_EXPRESSION.sub(
            lambda match: self.expressions.get(match.group(1), match.group(0)),
            EXPRESSION.sub(value, text))
        assert "${{" not in expanded, f"no stand-in for the expression in {text!r}"
        return expanded


def _step_name(step: Mapping[str, Any], number: int) -> str:
    """The step's ``name:``, else what GitHub shows for it: ``Run`` and its ``uses:`` or
    the first line of its ``run:``, with its place in the job (1 is the first)."""
    if "name" in step:
        return str(step["name"])
    what = step.get("uses") or str(step.get("run", "")).strip().partition("\n")[0]
    return f"step {number}: Run {what}"


def _key_values(text: str) -> dict[str, str]:
    """The KEY=VALUE lines of a GITHUB_ENV or GITHUB_OUTPUT file (no heredoc form here)."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def commit_locked_mirror(repo: Path, env: Mapping[str, str], root: Path, bin_dir: Path) -> None:
    """Make ``repo`` (holding its mirror.yaml) a mirror repository as a user keeps one:
    lockmirror's ``.gitignore`` (from ``root``), ``git init``, ``lockmirror lock``
    (from ``bin_dir``), one commit of it all."""
    (repo / ".gitignore").write_text((root / ".gitignore").read_text(encoding="utf-8"),
                                     encoding="utf-8")
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    done = subprocess.run([str(bin_dir / "lockmirror"), "lock"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    subprocess.run(["git", "add", "-A"], cwd=repo, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "mirror"], cwd=repo, env=env, check=True)
