"""What a person sees of a lock while it runs and when it fails.

* :class:`LockProgress` events, handed to the edge's ``progress`` callback
  (the stage never prints): which set and target is being resolved, how
  many projects it has looked at, how many resolutions are done.
  :class:`Watch` makes them, counting the projects each resolution asks the
  candidate filter about (every project the resolver considers passes it).
* :func:`in_context`: a lock error, placed at the set, the target and the
  ``mirror.yaml`` line of the requirement it is about.
* :func:`check_upgrade`: ``--upgrade NAME`` refused for a name no set locks
  (with the nearest names) and for a package ``mirror.yaml`` pins with ``==``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..config import TOOL_SET, LoadedConfig
from ..errors import ConfigError, LockmirrorError, NotFoundError, UnknownNameError
from ..fsutil import plural
from ..resolve.requirement_check import pins_exactly
from ..spelling import did_you_mean, nearest

if TYPE_CHECKING:
    from ..formats.lockfile import Lockfile
    from ..resolve.candidates import Candidate, CandidateFilter, Refusal

__all__ = ["LockProgress", "LocksFailed", "Stopped", "Watch", "check_upgrade", "each_scope",
           "in_context"]

ScopeT = TypeVar("ScopeT")
ResultT = TypeVar("ResultT")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class LockProgress:
    """One moment of a lock: ``set_name`` on ``target`` has seen ``projects``
    projects; ``done`` of ``total`` resolutions have finished (``finished``:
    this event says that this one has). ``note``, when not empty, is a line
    to show as it is, not a state to overwrite (an sdist being built, or
    skipped because its build failed)."""

    set_name: str
    target: str
    projects: int
    done: int
    total: int
    finished: bool = False
    note: str = ""

    def describe(self) -> str:
        if self.note:
            return f"set '{self.set_name}': {self.note}"
        state = "resolved" if self.finished else "resolving"
        return (f"{state} set '{self.set_name}' for target '{self.target}': "
                f"{plural(self.projects, 'project')} seen "
                f"({self.done} of {self.total} resolutions done)")


class LocksFailed(LockmirrorError):
    """Some sets of a lock failed, the others were locked: ``failures`` (set ->
    its first error, in the lock's order) one line each (a conflict's chains
    indented under its line); ``results``, the lockfiles the others got (filled
    in by the stage that wrote them). Its exit status is the highest of the
    failures' (2 when one of them is bad input)."""

    def __init__(self, failures: Mapping[str, LockmirrorError], total: int) -> None:
        self.failures = dict(failures)
        self.results: list[Any] = []
        self.exit_code = max(error.exit_code for error in self.failures.values())
        lines: list[str] = []
        for error in self.failures.values():
            first, *rest = str(error).split("\n")
            lines += [first, *(f"  {line}" for line in rest)]
        super().__init__(f"{len(self.failures)} of {total} sets did not lock (each set's first "
                         "error; the others were locked):\n  " + "\n  ".join(lines))


def each_scope(scopes: Sequence[tuple[ScopeT, list[str]]],
               lock: Callable[[ScopeT, list[str]], list[ResultT]]) -> list[ResultT]:
    """``lock`` of each (scope, its set names) of ``scopes`` (mirror.yaml's sets, then
    lockmirror's own), the results together; one whose sets failed does not keep
    the next from its lock, and then LocksFailed names every failed set of all
    (its ``results``: what was locked). Any other error stops at once."""
    out: list[ResultT] = []
    failures: dict[str, LockmirrorError] = {}
    for scope, names in scopes:
        try:
            out += lock(scope, names)
        except LocksFailed as failed:
            out += failed.results
            failures.update(failed.failures)
        except LockmirrorError as error:
            if len(names) != 1 or not (failures or out):  # not a set's own, or all there is
                raise
            failures[names[0]] = error  # and what the scopes before it locked is said
    if failures:
        merged = LocksFailed(failures, sum(len(names) for _, names in scopes))
        merged.results = out
        raise merged
    return out


class Stopped(Exception):
    """A resolution given up because the lock stopped (Ctrl-C), or another target of its
    set failed."""


class Watch:
    """Counts, per set and target, the projects the resolver considers, and
    reports each change to ``progress`` (calls are serialized). After
    :meth:`stop`, a resolution that looks at another candidate raises
    :class:`Stopped` (the resolver asks the filter about every one)."""

    def __init__(self, progress: Callable[[LockProgress], None] | None, total: int) -> None:
        self._progress = progress
        self._total = total
        self._done = 0
        self._seen: dict[tuple[str, str], set[str]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._stopped_sets: set[str] = set()

    def stop(self, set_name: str | None = None) -> None:
        """Make the running resolutions (of ``set_name`` only, when given: a target
        of it failed) give up at the next candidate they look at, and those not
        started give up as they start."""
        if set_name is None:
            self._stopped.set()
        else:
            with self._lock:
                self._stopped_sets.add(set_name)

    def _check(self, key: tuple[str, str]) -> None:
        if self._stopped.is_set() or key[0] in self._stopped_sets:
            raise Stopped(f"{key[0]} on {key[1]}")

    def filter(self, key: tuple[str, str], inner: CandidateFilter | None) -> CandidateFilter:
        """``inner`` (may be None), also counting each new project for ``key``."""
        seen = self._seen.setdefault(key, set())

        def counting(candidate: Candidate, pinned: bool) -> Refusal | None:
            self._check(key)
            if candidate.name not in seen:
                with self._lock:
                    seen.add(candidate.name)
                    self._emit(key, finished=False)
            return inner(candidate, pinned) if inner is not None else None

        return counting

    def noter(self, key: tuple[str, str]) -> Callable[[str], None]:
        """What hands ``key``'s notes (sdists built and skipped) to ``progress``."""

        def note(text: str) -> None:
            with self._lock:
                self._emit(key, finished=False, note=text)

        return note

    def started(self, key: tuple[str, str]) -> None:
        """Announce ``key``'s resolution; :class:`Stopped` when it was stopped already."""
        self._check(key)
        with self._lock:
            self._emit(key, finished=False)

    def finished(self, key: tuple[str, str]) -> None:
        """Count ``key`` resolved; :class:`Stopped` instead after :meth:`stop` (the lock
        drops it: a resolution whose last candidate came before the stop is not reported
        as resolved while the command says it was interrupted)."""
        self._check(key)
        with self._lock:
            self._done += 1
            self._emit(key, finished=True)

    def _emit(self, key: tuple[str, str], *, finished: bool, note: str = "") -> None:
        if self._progress is not None:
            self._progress(LockProgress(key[0], key[1], len(self._seen.get(key, ())),
                                        self._done, self._total, finished, note))


TOOL_SOURCES_HINT = ("lockmirror's own set takes lockmirror's dependencies from mirror.yaml's "
                     "sources as well: add a source that serves them (e.g. "
                     "https://pypi.org/simple/ with a higher priority number than yours), or "
                     "set LOCKMIRROR_TOOL_WHEELS=installed to carry this installation's")


def in_context(error: LockmirrorError, loaded: LoadedConfig, set_name: str,
               target: str) -> LockmirrorError:
    """``error`` placed where it comes from: ``mirror.yaml:LINE: set 'S', target
    'T'`` (the line of the set's requirement the message names, else of the
    set's requirement list), keeping what the error said of where it was. A
    copy: one error can reach several targets (a missing project's page is
    asked once), and each places it anew."""
    if isinstance(error, ConfigError):
        return error
    if set_name == TOOL_SET and isinstance(error, NotFoundError):
        # not in mirror.yaml, whose sources' owner may not know it needs these projects
        named = re.match(r"no source has a project named '([^']+)'", error.message)
        said = f"no source has {named[1]}, which lockmirror itself needs" if named else \
            error.message  # not "the URL looks wrong": the sources' sets locked from it
        return NotFoundError(said, hint=TOOL_SOURCES_HINT, where=(
            f"{loaded.path.name}: lockmirror's own set (the bundle's tool/), target '{target}'"))
    spec = loaded.config.sets[set_name]
    words = {canonicalize_name(w) for w in _WORD.findall(error.message + " " + (error.where or ""))}
    index = next((i for i, name in enumerate(_names(spec.requirements)) if name in words), None)
    path: tuple[str | int, ...] = ("sets", set_name, "requirements")
    line = _line(loaded, path if index is None else (*path, index))
    place = f"{loaded.path.name}:{line}: set '{set_name}', target '{target}'"
    generic = {f"{set_name} on target {target}", f"{set_name} on {target}"}
    if error.where and error.where not in generic:
        place += f": {error.where}"
    # the same class and fields, only ``where`` differs (no __init__: its arguments vary)
    placed = type(error).__new__(type(error))
    placed.__dict__.update(vars(error), where=place)
    placed.args = (str(placed),)
    return placed


def check_upgrade(loaded: LoadedConfig, names: Iterable[str], set_names: Sequence[str],
                  locked: dict[str, Lockfile | None]) -> None:
    """Refuse ``--upgrade`` names that cannot move anything.

    Raises UnknownNameError (exit 2) for a name that no set of ``set_names``
    requires or locks (``locked``: each set's current lockfile), naming the
    nearest locked name when one is close, and LockmirrorError for a package a set
    pins with ``==`` in mirror.yaml, naming the set and the line: that pin, not
    ``--upgrade``, decides its version. Every unknown name is named (in one line)
    before any pin is looked at; then each name, in order.
    """
    known: set[str] = set()
    for set_name in set_names:
        known.update(_names(loaded.config.sets[set_name].requirements))
        lockfile = locked.get(set_name)
        if lockfile is not None:
            known.update(str(p.name) for p in lockfile.packages)
    unknown = [f"no set locks a package named '{name}'"
               f"{did_you_mean(nearest(canonicalize_name(name), sorted(known)))}"
               for name in names if canonicalize_name(name) not in known]
    if unknown:  # the nearest locked name, if one is close (not the sets)
        raise UnknownNameError("; ".join(unknown), where="--upgrade")
    for name in names:
        wanted = canonicalize_name(name)
        for set_name in set_names:
            index = _pin(loaded, set_name, wanted)
            if index is not None:
                text = loaded.config.sets[set_name].requirements[index]
                line = _line(loaded, ("sets", set_name, "requirements", index))
                raise LockmirrorError(f"{name} cannot move: set '{set_name}' pins it ({text})",
                                      where=f"{loaded.path.name}:{line}",
                                      hint="change the pin in mirror.yaml to move it")


def _pin(loaded: LoadedConfig, set_name: str, name: str) -> int | None:
    """The index of the set's requirement pinning ``name`` with ``==``/``===``."""
    for index, text in enumerate(loaded.config.sets[set_name].requirements):
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) == name and pins_exactly(requirement):
            return index
    return None


def _names(requirements: Iterable[str]) -> list[str]:
    out: list[str] = []
    for text in requirements:
        try:
            out.append(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            out.append("")
    return out


def _line(loaded: LoadedConfig, path: tuple[str | int, ...]) -> int:
    """The line of ``path`` in mirror.yaml (positions are read again only here,
    on the way to an error message)."""
    from ..config_yaml import PositionedYaml

    doc = PositionedYaml(loaded.text, loaded.path.name, {})
    while path and path not in doc.marks:
        path = path[:-1]
    return doc.marks.get(path, (1, 1))[0]
