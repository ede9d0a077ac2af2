"""lockmirror's task graph. `doit` (= `doit build`) runs lock, fetch, index, verify, bundle.

Only wiring lives here; each stage is one function in src/lockmirror/ and
src/lockmirror/doit_tasks.py turns it into a task.
"""

from lockmirror import doit_tasks as stages

DOIT_CONFIG = {"default_tasks": ["build"], "verbosity": 2, "backend": "sqlite3",
               "dep_file": ".doit.db"}

MIRROR = stages.load("mirror.yaml")


def task_lock():
    """Resolve every package set for every target into lockfiles/pylock.<set>.toml."""
    yield from stages.lock_tasks(MIRROR)


def task_fetch():
    """Download every locked file into the content-addressed store, verified by sha256."""
    return stages.fetch_task(MIRROR)


def task_index():
    """Build the static index dist-index/ from the lockfiles and the store."""
    return stages.index_task(MIRROR)


def task_verify():
    """Install every set on every target from dist-index/ alone, with uv and pip."""
    return stages.verify_task(MIRROR)


def task_bundle():
    """Write the reproducible air-gap bundle into dist/."""
    return stages.bundle_task(MIRROR)


def task_publish():
    """Publish dist-index/ to every destination in mirror.yaml (publish:<name> for one)."""
    yield from stages.publish_tasks(MIRROR)


def task_audit():
    """Re-check the locked releases against the policy now (always runs)."""
    return stages.audit_task(MIRROR)


def task_mutation():
    """Mutation testing of the safety-critical modules (slow; not part of build)."""
    return stages.mutation_task()


def task_build():
    """The pull-request pipeline: lock, fetch, index, verify, bundle."""
    return {"actions": None, "task_dep": ["lock", "fetch", "index", "verify", "bundle"]}
