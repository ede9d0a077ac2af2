"""What a merge (publish.yml) and a matrix run (matrix.yml) run, run here, job by job.

The jobs that can reach a credential (an OIDC token, the `publish` environment's
secrets, the signing key) run no code from the index; the jobs that do run it hand
their results on as artifacts (tests/test_workflows.py holds the rule). These tests
show the hand-over works: each job runs in a fresh clone of a fixture mirror
repository (tests/workflow_walk.py stands in for GitHub's runners and artifacts),
with the bundle signing secret set and a directory publish destination; or, for the
matrix, the store and the destination on S3 (moto), whose credentials only the jobs
that take a role get. Each walk ends with the destination holding the index the index
(or gather) job built, and a signed bundle the far side imports with ``--pubkey``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex
from helpers import mirror_yaml, subprocess_env
from servers import S3Server
from workflow_walk import JobRun, Walk, commit_locked_mirror

from lockmirror.formats import signing

pytest_plugins = ["servers"]  # the S3 server fixtures
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKFLOWS = ROOT / ".github" / "workflows"


def _conditions(s3: bool) -> dict[str, bool]:
    """Every `if:` of the two workflows, for a run with the `bundle` input ticked,
    no AWS publish role, and the store on S3 or not."""
    return {
        "${{ !cancelled() }}": True,
        "${{ !cancelled() && steps.bundle.outcome == 'success' }}": True,
        "${{ inputs.bundle }}": True,
        "${{ vars.LOCKMIRROR_AWS_ROLE_ARN != '' }}": False,
        "${{ vars.LOCKMIRROR_AWS_ROLE_ARN != '' || startsWith(vars.LOCKMIRROR_STORE, "
        "'s3://') }}": s3,
        "${{ startsWith(vars.LOCKMIRROR_STORE, 's3://') }}": s3,
        "${{ !startsWith(vars.LOCKMIRROR_STORE, 's3://') }}": not s3,
        "${{ vars.LOCKMIRROR_STORE == '' }}": not s3,
    }


def _mirror_repo(tmp_path: Path, url: str, destination: str, env: Mapping[str, str]) -> Path:
    """A mirror repository on main: one small set locked and committed, publishing to
    ``destination`` (YAML flow mapping) as `mirrored` (one set, one target: check-install
    runs every installer on each)."""
    repo = tmp_path / "origin"
    repo.mkdir()
    (repo / "mirror.yaml").write_text(
        mirror_yaml(url, {"core": ["beta==1.0"]},
                    extra=f"publish:\n  mirrored: {destination}\n"), encoding="utf-8")
    shutil.copy(ROOT / "dodo.py", repo / "dodo.py")
    commit_locked_mirror(repo, env, ROOT, BIN)
    return repo


def _walk(tmp_path: Path, fixture_index: FixtureIndex, workflow: str, *,
          s3: S3Server | None = None) -> tuple[Walk, Callable[[], bytes]]:
    """The walk, and how to read the destination's manifest.json once it ran."""
    env = subprocess_env(
        drop=["GITHUB_", "LOCKMIRROR_", "AWS_"], git_identity=True, home=tmp_path,
        venv_first=True, CI="true", GITHUB_ACTIONS="true",
        # the bundle's dependency wheels repacked from this environment: no package index
        LOCKMIRROR_TOOL_WHEELS="installed",
        LOCKMIRROR_INSTALLER_CACHE=str(ROOT / ".cache" / "installers"),
        # boto3 finds no credentials of the machine's: a job has the S3 server's keys only
        # once it took the role
        AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        **({"AWS_ENDPOINT_URL": s3.endpoint_url} if s3 else {}))
    if s3:
        bucket = s3.new_bucket(public=False)
        destination = (f"{{kind: s3, bucket: {bucket}, prefix: pypi, "
                       f"endpoint_url: '{s3.endpoint_url}'}}")
        published = partial(s3.get, bucket, "pypi/manifest.json")
    else:
        destination = f"{{kind: directory, path: {tmp_path / 'published'}, layout: tree}}"
        published = (tmp_path / "published" / "manifest.json").read_bytes
    repo = _mirror_repo(tmp_path, fixture_index.url, destination, env)
    (tmp_path / "keys").mkdir()
    signing.generate_keypair(tmp_path / "keys" / "ops.key")
    variables = {"LOCKMIRROR_STORE": f"s3://{bucket}/store",
                 "LOCKMIRROR_STORE_ROLE_ARN": "arn:aws:iam::1:role/store"} if s3 else {}
    walk = Walk(WORKFLOWS / workflow, repo, tmp_path / "run", env, _conditions(s3 is not None),
                secrets={"LOCKMIRROR_BUNDLE_KEY":
                         (tmp_path / "keys" / "ops.key").read_text(encoding="utf-8")},
                variables=variables, aws_env=s3.env() if s3 else {})
    return walk, published


def _check_the_result(walk: Walk, publish: JobRun, built: Path,
                      published: Callable[[], bytes], tmp_path: Path) -> None:
    """The destination holds the index ``built`` (a job's workspace) holds; the bundle
    attached to the run is signed by the secret's key; the publish job ran none of doit's
    other tasks (doit prints a line per task it runs)."""
    manifest = (built / "dist-index" / "manifest.json").read_bytes()
    assert published() == manifest
    assert publish.output[publish.steps.index("Publish")].startswith(".  publish\n")
    bundle = next((walk.artifacts / "lockmirror-bundle").glob("*.tar"))
    done = subprocess.run([str(BIN / "lockmirror"), "import", str(bundle), "--into",
                           str(tmp_path / "far-side"), "--pubkey",
                           str(tmp_path / "keys" / "ops.key.pub")],
                          env=walk.env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout
    assert (tmp_path / "far-side" / "manifest.json").read_bytes() == manifest


def test_publish_hands_the_index_from_job_to_job(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    walk, published = _walk(tmp_path, fixture_index, "publish.yml")
    index = walk.run_job("index")
    check = walk.run_job("check")
    publish = walk.run_job("publish")
    assert check.steps == ["Lockfiles are current and exactly what lock writes",
                           "Check install"]
    assert "re-resolved: identical" in check.output[0]
    _check_the_result(walk, publish, index.workspace, published, tmp_path)


def test_matrix_with_the_store_on_s3_hands_the_index_and_its_bundle_from_job_to_job(
        tmp_path: Path, fixture_index: FixtureIndex, moto_s3: S3Server) -> None:
    """The S3 store's own path: the gather job bundles the index it streamed from the
    store for the check job, which has no credentials (a local store goes as publish.yml's
    test shows, the shards' stores handed to the gather job as before)."""
    walk, published = _walk(tmp_path, fixture_index, "matrix.yml", s3=moto_s3)
    for entry in json.loads(walk.run_job("sets").outputs["matrix"])["include"]:
        walk.run_job("resolve", {"set": entry["set"]})
        walk.run_job("shard", {"set": entry["set"]})
    gather = walk.run_job("gather")
    check = walk.run_job("check")
    publish = walk.run_job("publish")
    handed = sorted(path.name for path in walk.artifacts.iterdir())
    assert handed == ["check-bundle", "dist-index", "lockmirror-bundle"]
    assert check.steps[-1] == "Check install (S3 store, from the imported bundle)"
    _check_the_result(walk, publish, gather.workspace, published, tmp_path)
