"""``lockmirror validate [PATH]``: check mirror.yaml and report every problem; then
read the existing lockfiles (lockmirror's own set's too): every file URL under a
declared source (:mod:`lockmirror.formats.url_policy`), then PEP 751 as ``lock``
writes it (no network).

``--online`` also asks the sources for each requirement's project page
(:mod:`lockmirror.resolve.requirement_check`): unknown projects with the nearest
existing names, exact pins to releases that do not exist or are yanked, with the
nearest versions that do.
"""

from __future__ import annotations

import argparse
import sys

from ..config import LoadedConfig, load_config
from ..errors import InputError
from ..fsutil import plural
from .lock import before_lock

NAME = "validate"
HELP = ("check mirror.yaml and report every problem, one line each, and the lockfiles' URLs "
        "(exit 2 on errors); --online: also each requirement against the sources")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", default="mirror.yaml", help="default: mirror.yaml")
    parser.add_argument("--online", action="store_true",
                        help="also ask the sources: unknown projects (with the nearest "
                             "existing names), pins to missing or yanked releases")


def run(args: argparse.Namespace) -> int:
    from ..stages.lock_check import read_lockfiles
    from ..stages.tool_set import tool_lockfile_paths

    loaded = load_config(args.path)
    config = loaded.config
    before_lock(loaded, args.path, asks_sources=False)  # lock's warnings (credentials below)
    # a set not locked yet is `lock --check`'s to report; a lockfile that exists must be
    # sound: its URLs under their sources, then PEP 751 as `lock` writes it (a path-like
    # file name passed here and failed later; found by an outside tester)
    paths = [loaded.lockfile_path(name) for name in config.sets] + tool_lockfile_paths(loaded)
    read_lockfiles([path for path in paths if path.exists()], config.sources,
                   misread=InputError, shown=None)  # as `lock --check` reads them
    from datetime import UTC, datetime

    from ..resolve.policy_exceptions import expired_exceptions

    expired = expired_exceptions(config, config.sets, datetime.now(UTC).date())
    if expired:  # lock refuses to run with them
        raise loaded.problems_at(expired, args.path)
    problem = loaded.unset_credentials(args.path)
    if problem is not None:
        if args.online:  # the sources are asked now
            raise problem
        for line in problem.problems:  # a CI job without the secret: a warning
            print(f"lockmirror: warning: {line}", file=sys.stderr)
    checked = ""
    if args.online:
        projects = _check_online(loaded, args.path)
        checked = f"; {plural(projects, 'project')} found on the sources"
    print(f"{args.path}: ok: {plural(len(config.sets), 'set')}, "
          f"{plural(len(config.targets), 'target')}, "
          f"{plural(len(config.sources), 'source')}{checked}")
    return 0


def _check_online(loaded: LoadedConfig, filename: str) -> int:
    """Raise ConfigError listing every requirement the sources contradict, each with
    its mirror.yaml line; return the number of projects asked for."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from ..net.index_client import IndexClient
    from ..resolve.requirement_check import check_requirements

    config = loaded.config
    with IndexClient(config.sources_by_priority(),
                     cache_dir=loaded.cache_dir / "http") as client:
        problems = check_requirements(loaded, client)
    if problems:
        raise loaded.problems_at(problems, filename)
    return len({canonicalize_name(Requirement(r).name) for spec in config.sets.values()
                for r in spec.requirements})
