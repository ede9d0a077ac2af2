"""Mutation testing of the safety modules: run mutmut, count its results, write the score.

Behind ``doit mutation`` (``doit_tasks.mutation_task``); this module does not import doit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .fsutil import atomic_write

# The modules whose checks keep bad bytes out or secrets in (issue 19), by their
# path under lockmirror; `stages.lock` holds the lock check (the input fingerprint),
# `net.http` the redaction.
SAFETY_MODULES = ("formats.signing", "stages.serve", "stages.serve_handler", "net.http",
                  "stages.fetch", "net.download", "stages.importer", "stages.import_plan",
                  "stages.import_extract", "stages.import_swap", "resolve.policy",
                  "stages.lock", "publish.directory")
MUTATION_SCORE = Path("build") / "mutation-score.txt"


def mutation_scores(results: str) -> dict[str, dict[str, int]]:
    """Per module, how many mutants ``mutmut results --all true`` lists in each
    state (``killed``, ``survived``, ``timeout``, ``not checked``...)."""
    scores: dict[str, dict[str, int]] = {}
    for line in results.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if not sep or "__mutmut_" not in name:
            continue
        module = name.rsplit(".", 1)[0].removeprefix("lockmirror.")
        counts = scores.setdefault(module, {})
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


class MutationFailed(Exception):
    """A mutation run that cannot go on; the message is the one line to report."""


def run(modules: str, jobs: int) -> str:
    """Run mutmut over the comma-separated safety ``modules`` (``jobs`` mutants in
    parallel), write the scores to MUTATION_SCORE and return them (one line per
    module). Raises MutationFailed on an unknown module or mutmut failing."""
    wanted = [m.strip() for m in modules.split(",") if m.strip()]
    unknown = sorted(set(wanted) - set(SAFETY_MODULES))
    if unknown:
        raise MutationFailed(f"lockmirror: error: not a safety module: {', '.join(unknown)} "
                             f"(choose among {', '.join(SAFETY_MODULES)})")
    for module in wanted:  # mutmut keeps its results in mutants/: a rerun resumes
        done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children",
                               str(jobs), f"lockmirror.{module}.*"], check=False)
        if done.returncode not in (0, 1):  # 1: survivors, reported below
            raise MutationFailed(f"lockmirror: error: mutmut failed on {module} "
                                 f"(exit {done.returncode})")
    results = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"],
                             capture_output=True, text=True, check=False)
    scores = {m: c for m, c in mutation_scores(results.stdout).items() if m in wanted}
    text = format_mutation_scores(scores)
    atomic_write(MUTATION_SCORE, text)
    return text
