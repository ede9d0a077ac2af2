"""lockmirror's task graph: `doit` (= `doit build`) runs lock, fetch, index, verify, bundle.

Only wiring lives here; each stage is one function in src/lockmirror/.
"""

from lockmirror import doit_tasks as stages

DOIT_CONFIG = {"default_tasks": ["build"], "verbosity": 2, "backend": "sqlite3",
               "dep_file": ".doit.db"}

MIRROR = stages.load("mirror.yaml")


def task_lock():
    """Resolve every package set for every target into lockfiles/pylock.<set>.toml."""
    yield from stages.lock_tasks(MIRROR)


def task_build():
    """The pull-request pipeline: lock, fetch, index, verify, bundle."""
    return {"actions": None, "task_dep": ["lock"]}
