"""Mutation testing of the safety checks: run mutmut over them, count its results, write the score.

:data:`SCOPE` is the one list of what is mutated: mutmut 3 mutant-name globs, each naming
one function that holds a safety check (issue 19) of a safety-critical module. mutmut names
a mutant ``<module>.x_<function>__mutmut_<n>``, or ``<module>.xǁ<Class>ǁ<method>__mutmut_<n>``
for a method. Whole modules are about 3,600 mutants, hours on two cores; the checks are
about a third of that. ``[tool.mutmut]`` in ``pyproject.toml`` names the files and tests.

Behind ``doit mutation`` (``doit_tasks.mutation_task``), a task of lockmirror's own
development: it exists only in lockmirror's repository (:func:`lockmirror_repository`), not
in a mirror repository whose ``dodo.py`` was copied from it. This module does not import doit.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

from .errors import LockmirrorError
from .fsutil import atomic_write


def _checks(module: str, *functions: str) -> tuple[str, ...]:
    """The globs of ``functions`` (``f`` or ``Class.method``) of ``lockmirror.<module>``."""
    names = (f"xǁ{f.replace('.', 'ǁ')}" if "." in f else f"x_{f}" for f in functions)
    return tuple(f"lockmirror.{module}.{name}__mutmut_*" for name in names)


# In the order they run: what keeps bad bytes out comes first.
SCOPE: tuple[str, ...] = (
    # fetch: sha256 and size of every byte, a longer body, truncation, resume, stall
    *_checks("net.download", "Downloader._download", "Downloader._transfer",
             "Downloader._rehash_prefix", "Downloader._stream"),
    # import: tar headers vetted, members hashed and written O_EXCL, the swap recovered
    *_checks("stages.import_plan", "member_problem", "_check_member", "_carried",
             "_index_manifest", "check_outer_hashes"),
    # every size a bundle's tar headers state, checked before it is read
    *_checks("formats.bundle_headers", "BundleTarInfo.frombuf"),
    *_checks("stages.import_extract", "_Members.feed", "_Members.check_complete",
             "_MemberWriter.__init__", "_MemberWriter.finish", "VolumeDigests.update",
             "VolumeDigests._close_volume", "VolumeDigests.check_complete"),
    *_checks("stages.import_swap", "recover_interrupted_import", "swap_into_place"),
    # the lockfile's URLs and the lock check (its fingerprint, the project pages)
    *_checks("formats.url_policy", "url_problem", "_is_under"),
    *_checks("stages.lock_check", "_package_mismatches"),
    *_checks("stages.lock_inputs", "input_hash"),
    *_checks("stages.lock", "stale_sets", "stale_reason"),
    # publish to a directory: a changed file copied again, prune, its own temporary files
    *_checks("publish.directory", "DirectoryPublisher.plan", "DirectoryPublisher._existing",
             "DirectoryPublisher._owned", "DirectoryPublisher._copy"),
    # the bundle's signature
    *_checks("formats.signing", "verify", "check_bundle_signature"),
    # credentials: only under their prefix, never in a message
    *_checks("redaction", "redact_url", "redact_text"),
    *_checks("net.http", "PrefixAuth.for_url", "PrefixAuth.__call__"),
    # serve: no path outside the tree
    *_checks("stages.serve_tree", "resolve"),
    # the policy's decisions
    *_checks("resolve.policy", "PolicyEngine.candidate_allowed", "PolicyEngine.min_age_finding",
             "PolicyEngine.yanked_finding", "PolicyEngine.vulnerability_findings",
             "PolicyEngine._waiver", "PolicyEngine.license_finding"),
    *_checks("resolve.policy_exceptions", "ExceptionRule.matches", "ExceptionRule.waives",
             "ExceptionRule.expired"),
)
MUTATION_SCORE = Path("build") / "mutation-score.txt"
_MODULE = re.compile(r"^lockmirror\.(.+?)\.x[_ǁ]")


def module_of(name: str) -> str:
    """``net.download`` for a mutant name or glob in ``lockmirror.net.download``."""
    match = _MODULE.match(name)
    return match.group(1) if match else ""


def modules() -> list[str]:
    """The modules :data:`SCOPE` reaches, in its order."""
    return list(dict.fromkeys(module_of(glob) for glob in SCOPE))


def in_scope(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in SCOPE)


def mutation_scores(results: str) -> dict[str, dict[str, int]]:
    """Per module, how many mutants in :data:`SCOPE` that ``mutmut results --all true``
    lists are in each state (``killed``, ``survived``, ``timeout``, ``not checked``...)."""
    scores: dict[str, dict[str, int]] = {}
    for line in results.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if not sep or not in_scope(name):
            continue
        counts = scores.setdefault(module_of(name), {})
        counts[status] = counts.get(status, 0) + 1
    return scores


def format_mutation_scores(scores: dict[str, dict[str, int]]) -> str:
    """One line per module: killed (and timed out) of the mutants checked, then the rest."""
    lines = []
    for module, counts in sorted(scores.items()):
        checked = sum(n for status, n in counts.items()
                      if status not in ("not checked", "skipped", "no tests"))
        caught = counts.get("killed", 0) + counts.get("timeout", 0)
        score = f"{100 * caught / checked:.0f}%" if checked else "-"
        rest = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        lines.append(f"{module}: {score} ({caught} of {checked} checked mutants caught; {rest})")
    return "\n".join(lines) + "\n"


def lockmirror_repository(directory: Path) -> bool:
    """Whether ``directory`` is lockmirror's own repository (its ``pyproject.toml``
    names the project lockmirror): where mutmut finds ``[tool.mutmut]``, the sources it
    mutates and the tests it runs."""
    try:
        with (directory / "pyproject.toml").open("rb") as file:
            project = tomllib.load(file).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return isinstance(project, dict) and project.get("name") == "lockmirror"


class MutationFailed(LockmirrorError):
    """A mutation run that cannot go on; the message is the one line to report."""


def chosen(wanted: Iterable[str]) -> list[str]:
    """The modules of :data:`SCOPE` named in ``wanted`` (full, ``net.download``, or last
    part, ``download``); all of them when ``wanted`` is empty. MutationFailed on another."""
    known = modules()
    picked: list[str] = []
    for name in wanted:
        hits = [m for m in known if name in (m, m.rsplit(".", 1)[-1])]
        if not hits:
            raise MutationFailed(f"no safety check in module {name!r} "
                                 f"(choose among {', '.join(known)})")
        picked += [m for m in hits if m not in picked]
    return picked or known


def run(modules_text: str, jobs: int) -> str:
    """Run mutmut over the globs of :data:`SCOPE` in the comma-separated modules
    ``modules_text`` (empty: all) in one mutmut run, ``jobs`` mutants in parallel;
    write the scores to MUTATION_SCORE and return them (one line per module). mutmut
    re-tests every mutant a glob names, so a re-run starts over. Raises MutationFailed
    on an unknown module or mutmut failing."""
    picked = chosen(m.strip() for m in modules_text.split(",") if m.strip())
    globs = [glob for glob in SCOPE if module_of(glob) in picked]
    if importlib.util.find_spec("mutmut") is None:  # its exit 1 would read as survivors
        raise MutationFailed("mutmut is not installed in this environment "
                             "(pip install -e '.[mutation]')")
    done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs),
                           *globs], check=False)
    if done.returncode not in (0, 1):  # 1: survivors, reported below
        raise MutationFailed(f"mutmut failed (exit {done.returncode})")
    results = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"],
                             capture_output=True, text=True, check=False)
    scores = {m: c for m, c in mutation_scores(results.stdout).items() if m in picked}
    text = format_mutation_scores(scores)
    atomic_write(MUTATION_SCORE, text)
    return text
