"""The workflow walker of tests/workflow_walk.py names a step without ``name:`` as GitHub
shows it, instead of failing with a KeyError."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from workflow_walk import StepFailed, Walk

WORKFLOW = """\
jobs:
  unnamed:
    steps:
      - uses: actions/checkout@v4
      - run: |
          echo first line
          echo second line
  failing:
    steps:
      - uses: actions/checkout@v4
      - run: exit 3
  unknown:
    steps:
      - uses: someone/some-action@v1
"""


@pytest.fixture
def walk(tmp_path: Path) -> Walk:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    workflow = tmp_path / "workflow.yml"
    workflow.write_text(WORKFLOW, encoding="utf-8")
    return Walk(workflow, repo, tmp_path / "run", dict(os.environ), conditions={})


def test_a_step_without_a_name_is_named_by_its_place_and_what_it_runs(walk: Walk) -> None:
    assert walk.run_job("unnamed").steps == ["step 2: Run echo first line"]
    with pytest.raises(StepFailed, match=r"^step 'step 2: Run exit 3' failed \(3\)"):
        walk.run_job("failing")
    with pytest.raises(AssertionError, match="no stand-in for step "
                                             "'step 1: Run someone/some-action@v1'"):
        walk.run_job("unknown")
