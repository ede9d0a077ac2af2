"""A set's lock split by target: one CI job per (set, target), one gather job.

:func:`lock_shards` (``lockmirror lock --set S --target T --shard-dir DIR``)
resolves set S for target T alone and writes ``DIR/T/pylock.S.toml``: a valid
PEP 751 lockfile of that one target (installable there) that also keeps, per
package, the condition under which each dependency group needs it
(``[packages.tool.lockmirror] conditions``: group -> marker text, ``""`` for
always), the one thing a lockfile's markers fold away. Its ``input-hash`` is
the whole set's, so a shard made from another mirror.yaml is stale; its
``pins-from`` names the lockfile whose pins it kept (``sha256:<hex>`` of the
committed ``lockfiles/pylock.S.toml``, or ``none``).

:func:`gather_shards` (``lockmirror lock --set S --from-shards DIR``) reads
the shards of every target of S back into the
:class:`~lockmirror.stages.lock_merge.TargetPart` each came from and writes
``lockfiles/pylock.S.toml`` through the same merge and write as a plain
``lockmirror lock`` (:func:`~lockmirror.stages.lock.write_lockfile`), which
itself merges the parts it resolved in memory: the gathered lockfile is the
bytes a plain lock gives. The gather resolves nothing and uses no network. It
refuses, before writing anything, a missing shard, a shard of a target the set
does not have, a stale shard, and shards of one set that kept the pins of
different lockfiles (made from different commits: gathered, each target would
keep its own commit's versions).
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from ..config import LoadedConfig
from ..errors import InputError, LockmirrorError
from ..formats.lockfile import RUNTIME_GROUP, Lockfile, read_document
from ..fsutil import atomic_write, sha256_file
from .lock import LockResult, build_lockfile, resolve_parts, write_lockfile
from .lock_inputs import input_hash
from .lock_merge import TargetEntry, TargetPart
from .lock_watch import LocksFailed
from .shard import check_targets

if TYPE_CHECKING:
    from .lock_watch import LockProgress

__all__ = ["check_shard_options", "gather_shards", "lock_shards", "shard_path"]

ALWAYS = ""  # a condition that always holds, as a shard file writes it
NO_PINS = "none"  # pins-from of a shard that kept no lockfile's pins


def shard_path(shard_dir: Path, set_name: str, target: str) -> Path:
    """Where the shard of ``set_name`` for ``target`` lives: ``<target>/pylock.<set>.toml``,
    a name installers take (PEP 751 allows no dot in ``<set>``)."""
    return shard_dir / target / f"pylock.{set_name}.toml"


def check_shard_options(sets: Sequence[str] | None, targets: Sequence[str] | None,
                        shard_dir: Path | None, from_shards: Path | None, *,
                        upgrade: bool = False, check: bool = False,
                        upgrade_vulnerable: bool = False) -> None:
    """LockmirrorError unless the shard options come in a combination that means
    something: ``targets`` with ``shard_dir`` and named ``sets`` (one job per set
    and target), or ``from_shards`` alone (the gather: it resolves nothing)."""
    shard = "lockmirror lock --set NAME --target NAME --shard-dir DIR, one job per set and " \
            "target, then lockmirror lock --from-shards DIR"
    if from_shards is not None:
        others = [flag for flag, given in (
            ("--target", bool(targets)), ("--shard-dir", shard_dir is not None),
            ("--check", check), ("--upgrade", upgrade),
            ("--upgrade-vulnerable", upgrade_vulnerable)) if given]
        if others:
            raise LockmirrorError(f"--from-shards resolves nothing, so it takes no "
                                  f"{', '.join(others)}", hint=shard)
        return
    if targets and check:
        raise LockmirrorError("lock --check checks a set's whole lockfile, every target of it; "
                              "--target is refused there", hint="lockmirror lock --check --set "
                              "NAME")
    if targets and upgrade_vulnerable:
        raise LockmirrorError("--upgrade-vulnerable moves whole sets; --target is refused there",
                              hint="lockmirror lock --upgrade-vulnerable --set NAME")
    if targets and shard_dir is None:
        raise LockmirrorError("lock --target writes one target's shard of a set's lockfile, "
                              "so it needs --shard-dir DIR", hint=shard)
    if shard_dir is not None and not targets:
        raise LockmirrorError("--shard-dir goes with --target", hint=shard)
    if targets and not sets:
        raise LockmirrorError("lock --target shards named sets: add --set NAME", hint=shard)


def lock_shards(loaded: LoadedConfig, sets: Sequence[str], targets: Sequence[str],
                shard_dir: Path, *, now: datetime | None = None, upgrade: Iterable[str] = (),
                upgrade_all: bool = False, jobs: int = 6,
                progress: Callable[[LockProgress], None] | None = None,
                kept: list[LockResult] | None = None) -> list[LockResult]:
    """Resolve each of ``sets`` for each of ``targets`` alone and write one
    shard file per pair into ``shard_dir`` (only if its bytes changed); the
    results name the shard files (``kept`` gets each as it is written). Pins
    are kept as :func:`lock_sets` keeps them (from ``lockfiles/pylock.<set>.toml``).
    Raises LockmirrorError for an unknown set or target, a target a set does
    not have, or ``shard_dir`` being the lockfiles' directory, before any
    resolution; resolution errors as :func:`lock_sets`."""
    if shard_dir.resolve() == loaded.lockfile_dir.resolve():
        raise LockmirrorError("shards do not go beside the lockfiles: `diff` and the bundle "
                              "read every pylock.*.toml there", where=str(shard_dir),
                              hint="name a directory of their own, e.g. --shard-dir shards")
    names = loaded.chosen_sets(list(sets))
    check_targets(loaded, targets)
    for name in names:
        covered = loaded.config.set_targets(name)
        for target in targets:
            if target not in covered:
                raise LockmirrorError(
                    f"set '{name}' does not have target '{target}'", where=loaded.path.name,
                    hint=f"targets of set '{name}': {', '.join(covered)}")
    pins_from = {name: _pins_from(loaded, name, upgrade_all) for name in names}
    out: list[LockResult] = []

    def write(name: str, parts: dict[str, TargetPart], warnings: tuple[str, ...]) -> None:
        for target, part in parts.items():
            path = shard_path(shard_dir, name, target)
            lockfile, text = _shard_text(loaded, name, part, path, pins_from[name])
            written = atomic_write(path, text, only_if_changed=True)
            out.append(LockResult(name, path, lockfile, written, warnings))
            if kept is not None:
                kept.append(out[-1])

    try:  # each set's shards as it is resolved, as lock_sets writes its lockfile
        resolve_parts(loaded, {name: list(targets) for name in names}, now=now,
                      upgrade=upgrade, upgrade_all=upgrade_all, jobs=jobs,
                      progress=progress, on_set=write)
    except LocksFailed as failed:
        failed.results = out
        raise
    return out


def gather_shards(loaded: LoadedConfig, sets: Sequence[str] | None,
                  shard_dir: Path) -> list[LockResult]:
    """Write the lockfile of each of ``sets`` (default: every set of
    mirror.yaml; lockmirror's own set only when ``sets`` names it, as it is
    locked whole, not split by target) from its targets'
    shards in ``shard_dir``. Every shard of every set is read and checked
    first; InputError (exit 2, one line naming the file) for a missing shard, a
    shard of a target the set does not have, a stale shard (another input hash
    than mirror.yaml gives the set now), shards of a set that kept the pins of
    different lockfiles, or a file that is not a shard; then nothing is
    written. No network."""
    from .tool_set import TOOL_SET, lock_scopes

    scopes = [(scope, names) for scope, names in lock_scopes(loaded, sets)
              if scope is loaded or TOOL_SET in (sets or ())]
    gathered = [(scope, _read_shards(scope, names, shard_dir)) for scope, names in scopes]
    return [write_lockfile(scope, name, parts)
            for scope, sets_parts in gathered for name, parts in sets_parts.items()]


def _read_shards(loaded: LoadedConfig, sets: Sequence[str] | None,
                 shard_dir: Path) -> dict[str, dict[str, TargetPart]]:
    """Set -> target -> part, from every shard of ``sets`` (default: every set)
    in ``shard_dir``, all checked (the refusals of :func:`gather_shards`)."""
    names = loaded.chosen_sets(list(sets) if sets else None)
    return {name: _read_set(loaded, name, shard_dir) for name in names}


# -- writing a shard ---------------------------------------------------------


def _pins_from(loaded: LoadedConfig, set_name: str, upgrade_all: bool) -> str:
    """What a shard of ``set_name`` keeps its pins from, as it records it: the
    sha256 of the committed lockfile (which :func:`resolve_parts` reads), or
    ``none`` (no lockfile, or ``--upgrade-all``, which keeps no pin)."""
    path = loaded.lockfile_path(set_name)
    if upgrade_all or not path.is_file():
        return NO_PINS
    return f"sha256:{sha256_file(path)}"


def _shard_text(loaded: LoadedConfig, set_name: str, part: TargetPart, path: Path,
                pins_from: str) -> tuple[Lockfile, str]:
    """The shard's lockfile (checked as a lockfile is) and its text."""
    import tomli_w

    lockfile = build_lockfile(loaded, set_name, {part.target: part}, path)
    data = lockfile.to_pylock().to_dict()
    data["tool"]["lockmirror"]["pins-from"] = pins_from
    conditions = {(str(e.name), str(e.version)): e.conditions for e in part.entries}
    for package in data.get("packages", []):
        package["tool"]["lockmirror"]["conditions"] = {
            group: ALWAYS if condition is None else condition
            for group, condition in sorted(conditions[(package["name"], package["version"])]
                                           .items())}
    header = (f"# A shard of lockmirror's lock: set '{set_name}' on target '{part.target}' "
              "alone. Gather the set's lockfile with `lockmirror lock --from-shards`.\n")
    return lockfile, header + tomli_w.dumps(data)


# -- reading them back -------------------------------------------------------


def _read_set(loaded: LoadedConfig, set_name: str, shard_dir: Path) -> dict[str, TargetPart]:
    """Every target's part of ``set_name`` from its shard, all checked."""
    config = loaded.config
    covered = config.set_targets(set_name)
    for path in sorted(shard_dir.glob(f"*/{glob.escape(f'pylock.{set_name}.toml')}")):
        target = path.parent.name
        if target not in covered:
            raise InputError(f"a shard for target '{target}', which set '{set_name}' does not "
                             f"have in {loaded.path.name} (its targets: {', '.join(covered)})",
                             where=str(path), hint="remove the file, or add the target to the "
                             "set and lock that shard")
    parts, pins_from = {}, {}
    for target in covered:
        path = shard_path(shard_dir, set_name, target)
        if not path.is_file():
            raise InputError(f"the shard of set '{set_name}' for target '{target}' is missing",
                             where=str(path),
                             hint=f"run `{_lock_again(set_name, target, shard_dir)}`, "
                                  "one job per target")
        parts[target], pins_from[path] = _read_shard(loaded, set_name, target, path)
    _check_same_pins(set_name, covered, shard_dir, pins_from)
    return parts


def _check_same_pins(set_name: str, targets: Sequence[str], shard_dir: Path,
                     pins_from: dict[Path, str]) -> None:
    """InputError naming the shards unless all of ``pins_from`` (shard -> the
    lockfile whose pins it kept) are one: shards locked from different commits'
    lockfiles would each keep their own commit's versions, gathered side by side."""
    if len(set(pins_from.values())) <= 1:
        return
    kept = ", ".join(f"{path} from {_short(start)}" for path, start in pins_from.items())
    # "none": locked with --upgrade (every pin dropped), or with no committed lockfile
    why = (" or with --upgrade in some and not in others" if NO_PINS in pins_from.values()
           else "")
    raise InputError(f"the shards of set '{set_name}' kept the pins of different lockfiles "
                     f"(made from different commits{why}): {kept}", where=str(shard_dir),
                     hint=f"make every shard again from one commit, with --upgrade in all or "
                          f"none, one job per target: `{_lock_again(set_name, 'T', shard_dir)}` "
                          f"for T in "
                          f"{', '.join(targets)}")


def _short(pins_from: str) -> str:
    """A recorded pins-from as the refusal prints it (a lockfile's hash cut to 12)."""
    return "no lockfile" if pins_from == NO_PINS else f"lockfile {pins_from[:19]}"


def _read_shard(loaded: LoadedConfig, set_name: str, target: str,
                path: Path) -> tuple[TargetPart, str]:
    """The part a shard file holds and its pins-from; InputError if it is not
    that shard (damaged, cut short), or stale, each hint naming the command
    that makes the shard again (a lockfile's hint, `doit lock`, makes none)."""
    again = f"lock it again: {_lock_again(set_name, target, path.parent.parent)}"
    try:
        data = read_document(path)
        conditions = _pop_conditions(data, path)
        lockfile = Lockfile.from_toml(data, where=str(path))
    except InputError as error:
        raise InputError(error.message, where=error.where, hint=again) from None
    if lockfile.set_name != set_name or [t.name for t in lockfile.targets] != [target]:
        held = ", ".join(t.name for t in lockfile.targets)
        raise InputError(f"holds set '{lockfile.set_name}' on target(s) {held}, not set "
                         f"'{set_name}' on target '{target}'", where=str(path), hint=again)
    if lockfile.input_hash != input_hash(loaded, set_name):
        raise InputError(f"stale shard: locked from other inputs than {loaded.path.name} gives "
                         f"set '{set_name}' now", where=str(path), hint=again)
    pins_from = _pins_from_of(data["tool"]["lockmirror"], path, again)
    entries = []
    groups = {RUNTIME_GROUP, *lockfile.build_groups}
    for package in sorted(lockfile.packages, key=lambda p: (p.name, p.version)):
        key = (str(package.name), str(package.version))
        if key not in conditions:
            raise InputError(f"{package.name} {package.version} has no conditions: not a "
                             "shard written by `lockmirror lock --shard-dir`", where=str(path),
                             hint=again)
        _check_conditions(conditions[key], groups, f"{package.name} {package.version}", path,
                          again)
        entries.append(TargetEntry(
            name=package.name, version=package.version,
            conditions={g: None if c == ALWAYS else c for g, c in conditions[key].items()},
            files=tuple(sorted(package.files)), why=package.why.get(target, ()),
            dependencies=package.dependencies, requires_python=package.requires_python,
            index=package.index, yanked=package.yanked))
    return TargetPart(target, tuple(entries), lockfile.build_groups,
                      lockfile.backend_not_asked.get(target),
                      tuple((r["package"], r["version"], r["reason"])
                            for r in lockfile.skipped_builds),
                      lockfile.exceptions_used, lockfile.policy_findings), pins_from


def _lock_again(set_name: str, target: str, shard_dir: Path) -> str:
    """The command that makes the shard of ``set_name`` for ``target`` again."""
    return f"lockmirror lock --set {set_name} --target {target} --shard-dir {shard_dir}"


def _check_conditions(conditions: dict[str, str], groups: set[str], release: str,
                      path: Path, again: str) -> None:
    """InputError (its hint ``again``) unless every group is one the shard
    declares and every condition is empty (always) or a PEP 508 marker."""
    from packaging.markers import InvalidMarker, Marker

    for group, condition in conditions.items():
        if group not in groups:
            raise InputError(f"{release}: conditions name group {group!r}, which the shard "
                             "does not declare", where=str(path),
                             hint=again)
        try:
            if condition != ALWAYS:
                Marker(condition)
        except InvalidMarker:
            raise InputError(f"{release}: the condition for group {group!r} is not a marker: "
                             f"{condition!r}", where=str(path),
                             hint=again) from None
    if not conditions:
        raise InputError(f"{release}: its conditions table is empty", where=str(path),
                         hint=again)


def _pins_from_of(tool: dict[str, Any], path: Path, again: str) -> str:
    """The ``pins-from`` of a shard's ``[tool.lockmirror]`` table, checked
    (``again``: the hint naming the command that makes the shard again)."""
    pins_from = tool.get("pins-from")
    if pins_from is None:
        raise InputError("records no pins-from (the lockfile whose pins it kept): not a shard "
                         "written by this lockmirror", where=str(path),
                         hint=again)
    if not isinstance(pins_from, str) or not re.fullmatch(r"none|sha256:[0-9a-f]{64}",
                                                          pins_from):
        raise InputError(f"tool.lockmirror.pins-from is not 'none' or 'sha256:<hex>': "
                         f"{pins_from!r}", where=str(path), hint=again)
    return pins_from


def _pop_conditions(data: dict[str, Any], path: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(name, version) -> group -> condition, taken out of the parsed shard."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for package in data.get("packages", []) if isinstance(data.get("packages"), list) else ():
        tool = package.get("tool") if isinstance(package, dict) else None
        own = tool.get("lockmirror") if isinstance(tool, dict) else None
        if not isinstance(own, dict) or "conditions" not in own:
            continue
        conditions = own.pop("conditions")
        if not isinstance(conditions, dict) or not all(
                isinstance(v, str) for v in conditions.values()):
            raise InputError(f"packages.{package.get('name')}.tool.lockmirror.conditions is not "
                             "a table of strings", where=str(path))
        found[(canonicalize_name(str(package.get("name"))), str(package.get("version")))] = \
            conditions
    return found
