"""lockmirror's task graph. `doit` (= `doit build`) runs lock, fetch, index, check-install,
bundle.

Only wiring lives here: each task is `doit_tasks.<stage>_task(MIRROR)`, whose action
calls the stage's one entry `lockmirror.pipeline.<stage>(loaded, ...)`, the same function
the `lockmirror <stage>` command calls.
"""

from lockmirror import doit_tasks as tasks

DOIT_CONFIG = {"default_tasks": ["build"], "verbosity": 2, "backend": "sqlite3",
               "dep_file": ".doit.db"}

MIRROR = tasks.Project("mirror.yaml")


def task_lock():
    """Resolve every package set for every target into lockfiles/pylock.<set>.toml."""
    yield from tasks.lock_tasks(MIRROR)


def task_fetch():
    """Download every locked file into the content-addressed store, verified by sha256."""
    return tasks.fetch_task(MIRROR)


def task_index():
    """Build the static index dist-index/ from the lockfiles and the store."""
    return tasks.index_task(MIRROR)


def task_check_install():
    """Install every set on every target from dist-index/ alone, with uv and pip."""
    return tasks.check_install_task(MIRROR)


def task_verify():
    """Deprecated name of check-install (prints one line saying so)."""
    return tasks.verify_alias_task()


def task_bundle():
    """Write the reproducible air-gap bundle into dist/."""
    return tasks.bundle_task(MIRROR)


def task_publish():
    """Publish dist-index/ to every destination in mirror.yaml (publish:<name> for one)."""
    yield from tasks.publish_tasks(MIRROR)


def task_audit():
    """Re-check the locked releases against the policy now (always runs)."""
    return tasks.audit_task(MIRROR)


def task_gc():
    """Remove what no current lockfile needs from the store and caches (not part of build)."""
    return tasks.gc_task(MIRROR)


def task_mutation():
    """lockmirror development: mutation testing of its safety checks (only in lockmirror's
    own repository; slow, not part of build)."""
    return tasks.mutation_task()


def task_build():
    """The pull-request pipeline: lock, fetch, index, check-install, bundle."""
    return {"actions": None,
            "task_dep": ["lock", "fetch", "index", "check-install", "bundle"]}
