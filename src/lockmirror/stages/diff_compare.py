"""Comparing two lockfiles of one set: the rows of the lock diff's model.

- :func:`diff_set` — one set's :class:`~lockmirror.stages.diff_model.SetDiff`:
  per target, packages added, removed, upgraded, downgraded or changed (same
  version, other files), files added and removed with sizes, new sdists,
  policy findings (exceptions used, warn-level findings the lock recorded,
  yanked releases) and alarms (a file whose name stays while its sha256 or its
  URL's host changes, a file added from a host the old side does not use).
- :func:`why_chains` — why a package is locked: requirer entries walked up to the set.
- :func:`with_license_changes` — a "license changed: MIT -> BUSL-1.1" finding
  for each release change whose declared license differs (from the store's
  metadata, or an index client's PEP 658 files; never a distribution).

Else pure and in memory; linear in the number of packages and files.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..formats.lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile
from ..formats.url_policy import url_host
from ..fsutil import first_of
from ..redaction import redact_url
from ..targets import Target
from .diff_model import (
    Alarm,
    ChangeKind,
    FileRef,
    Finding,
    NewSdist,
    PackageChange,
    SetDiff,
    SetStatus,
    TargetDiff,
)

if TYPE_CHECKING:
    from ..formats.licenses import DeclaredLicense
    from ..net.s3_store import AnyStore
    from .diff_model import LockDiff

WHY_CHAIN_LIMIT = 3  # chains shown per package; the shortest ones, which say the most


def why_chains(lockfile: Lockfile, package: LockedPackage, target: str,
               limit: int = WHY_CHAIN_LIMIT, *,
               on_target: Mapping[tuple[str, Version], LockedPackage] | None = None,
               ) -> tuple[str, ...]:
    """The shortest requirement chains from the set down to ``package`` on ``target``.

    Requirers come from the lockfile (``LockedPackage.why``): a root entry
    (``"core: requests==2.31.0"``, or just ``"core"``) ends a chain; a parent
    entry (``"requests 2.31.0: urllib3<3"`` or ``"requests 2.31.0"``) continues
    it. Chains read ``core: requests==2.31.0 -> urllib3``. Breadth-first over
    the requirers reachable from ``package``; cycles are harmless. Pass
    ``on_target`` (:func:`packages_on_target`) when calling it for many
    packages, or each call costs O(packages) to build it.
    """
    if on_target is None:
        on_target = packages_on_target(lockfile, target)
    chains: list[tuple[int, str]] = []
    visited = {package.key}
    # Each queue item: a package and the names below it down to ``package``.
    queue: deque[tuple[LockedPackage, tuple[str, ...]]] = deque([(package, ())])
    while queue:
        node, below = queue.popleft()
        for entry in node.why.get(target, ()):
            parent = _parent_key(entry, on_target)
            if parent is None:
                who, _, requirement = entry.partition(": ")
                head = f"{who}: {requirement or f'{node.name}=={node.version}'}"
                chains.append((len(below), " -> ".join((head, *below))))
            elif parent not in visited:
                visited.add(parent)
                queue.append((on_target[parent], (node.name, *below)))
    unique = sorted(set(chains))
    return tuple(text for _, text in unique[:limit])


def packages_on_target(lockfile: Lockfile, target: str) -> dict[tuple[str, Version],
                                                                LockedPackage]:
    """(name, version) -> package, for the packages installed on ``target``."""
    return {p.key: p for p in lockfile.packages if target in p.targets}


def _parent_key(entry: str, packages: Mapping[tuple[str, Version], LockedPackage],
                ) -> tuple[str, Version] | None:
    """The (name, version) of a parent entry, or None for a root entry."""
    who = entry.partition(": ")[0]
    parts = who.split(" ")
    if len(parts) != 2:
        return None
    try:
        key = (canonicalize_name(parts[0]), Version(parts[1]))
    except InvalidVersion:
        return None
    return key if key in packages else None


def diff_set(name: str, old: Lockfile | None, new: Lockfile | None,
             old_path: str | None, new_path: str | None,
             old_hosts: frozenset[str]) -> SetDiff:
    """Compare one set's lockfiles (None: the side has no lockfile for the set).

    Targets come in the new lockfile's order, then those only the old one
    has; packages, files and sdists sorted. The set is "changed" when
    anything a reviewer must see differs (a new finding or alarm included).
    ``old_hosts``: the :func:`url_host` of every file of the old side, all its
    sets (empty: no file there to compare with, and no new-host alarm).
    """
    old_targets = {t.name: t for t in old.targets} if old else {}
    new_targets = {t.name: t for t in new.targets} if new else {}
    order = list(new_targets) + [t for t in old_targets if t not in new_targets]
    targets = tuple(_diff_target(t, old, new, old_targets.get(t), new_targets.get(t))
                    for t in order)

    old_files = _files(old)
    new_files = _files(new)
    added = tuple(sorted(new_files[k] for k in new_files.keys() - old_files.keys()))
    removed = tuple(sorted(old_files[k] for k in old_files.keys() - new_files.keys()))
    old_reqs = old.requirements if old else ()
    new_reqs = new.requirements if new else ()

    findings = _findings(old, new)
    alarms = _alarms(old, new) + _new_hosts({name for name, _ in old_files}, added, old_hosts)
    edits = _edits(old, new)
    if old is None:
        status: SetStatus = "added"
    elif new is None:
        status = "removed"
    elif (added or removed or any(t.status != "unchanged" for t in targets)
          or old_reqs != new_reqs or any(f.new for f in findings) or alarms or edits):
        status = "changed"
    else:
        status = "unchanged"
    return SetDiff(
        set_name=name, status=status, old_path=old_path, new_path=new_path,
        requirements_added=tuple(r for r in new_reqs if r not in old_reqs),
        requirements_removed=tuple(r for r in old_reqs if r not in new_reqs),
        targets=targets, files_added=added, files_removed=removed,
        old_size=sum(f.size for f in old_files.values()),
        new_size=sum(f.size for f in new_files.values()),
        new_sdists=_new_sdists(new, added), findings=findings, alarms=alarms, edits=edits)


def _new_sdists(new: Lockfile | None, added: tuple[FileRef, ...]) -> tuple[NewSdist, ...]:
    """The sdists among ``added``, each with the targets that have no wheel of its release."""
    if new is None:
        return ()
    targets = {t.name: t for t in new.targets}
    added_keys = {(f.filename, f.sha256) for f in added}
    sdists = []
    for package in new.packages:
        if package.sdist and (package.sdist.filename, package.sdist.sha256) in added_keys:
            builds_on = tuple(t for t in package.targets if t in targets
                              and not _wheels_for(package, targets[t]))
            sdists.append(NewSdist(FileRef.of(package, package.sdist), builds_on))
    return tuple(sorted(sdists, key=lambda s: s.file))


def _alarms(old: Lockfile | None, new: Lockfile | None) -> tuple[Alarm, ...]:
    """Files in both lockfiles under one name whose sha256 or URL host differ;
    releases in both whose index differs; the new lockfile's entries whose
    marker disagrees with their targets (what this diff shows per target is
    then not what installers take)."""
    from .lock_merge import entry_problems

    markers = tuple(Alarm("marker", "", package.name, str(package.version), package.marker or "",
                          text) for package, text in entry_problems(new)) if new else ()
    if old is None or new is None:
        return markers
    before = {f.filename: f for _, f in old.iter_files()}
    released = {package.key: package for package in old.packages}
    in_both = [(released[p.key], p) for p in sorted(new.packages, key=lambda p: p.key)
               if p.key in released]
    out = [Alarm("index", "", package.name, str(package.version), prior.index, package.index)
           for prior, package in in_both if prior.index != package.index]
    for package, file in sorted(new.iter_files(), key=lambda pf: pf[1].filename):
        was = before.get(file.filename)
        if was is None:
            continue
        if was.sha256.lower() != file.sha256.lower():
            out.append(Alarm("sha256", file.filename, package.name, str(package.version),
                             was.sha256.lower(), file.sha256.lower()))
        if url_host(was.url) != url_host(file.url):
            out.append(Alarm("host", file.filename, package.name, str(package.version),
                             url_host(was.url), url_host(file.url)))
    return (*out, *markers)


def _new_hosts(old_names: set[str], added: tuple[FileRef, ...], old_hosts: frozenset[str],
               ) -> tuple[Alarm, ...]:
    """Files added from a host no file of the old side comes from (a file whose name the
    set had, in ``old_names``, is the same-name alarms' case): a bump served from elsewhere."""
    return tuple(Alarm("new-host", f.filename, f.package, f.version, "", f.url) for f in added
                 if old_hosts and f.filename not in old_names
                 and url_host(f.url) not in old_hosts)


def _edits(old: Lockfile | None, new: Lockfile | None) -> tuple[str, ...]:
    """What changed in a release both lockfiles lock, beyond what the alarms
    name: a file added (its targets unchanged), a file's URL (same host), size
    or metadata hash; the entry's marker (its targets unchanged),
    Requires-Python, dependencies, build-only flag or groups; and
    which inputs of the lock changed. ``lock`` writes these the same for the
    same release and inputs, so a change here is one to understand."""
    if old is None or new is None:
        return ()
    out = []
    if old.input_hash != new.input_hash:  # the requirements' change shows on its own line
        parts = [_INPUTS.get(k.partition(".")[0], k).format(k.partition(".")[2])
                 for k in sorted(set(old.inputs) | set(new.inputs))
                 if old.inputs.get(k) != new.inputs.get(k) and k != "requirements"]
        if parts or not old.inputs or not new.inputs:
            out.append(f"the lock's inputs changed: {', '.join(parts) or 'its input-hash'}")
    same_targets = old.targets == new.targets  # else markers follow the new target list
    before = {p.key: p for p in old.packages}
    changed: dict[tuple[str, str, str], list[str]] = {}  # (field, from, to) -> releases
    for package in sorted(new.packages, key=lambda p: p.key):
        was = before.get(package.key)
        if was is None:
            continue
        head = f"{package.name} {package.version}"
        fields: list[tuple[str, object, object]] = [
            ("requires-python", was.requires_python, package.requires_python),
            ("dependencies", list(was.dependencies), list(package.dependencies)),
            ("build-only", was.build_only, package.build_only),
            ("groups", list(was.groups), list(package.groups))]
        if was.targets == package.targets and same_targets:
            fields.insert(0, ("marker", was.marker, package.marker))
        for label, a, b in fields:
            if a != b:
                changed.setdefault((label, _shown(a), _shown(b)), []).append(head)
        prior = {f.filename: f for f in was.files}
        for file in package.files:
            then = prior.get(file.filename)
            if then is None and was.targets == package.targets:  # no new target explains it
                out.append(f"{head}: a file added to a release locked before: {file.filename} "
                           f"from {redact_url(file.url)} sha256 {file.sha256}")
            if then is None or then.sha256 != file.sha256:
                continue  # a new file, or the sha256 alarm
            fields = [("size", then.size, file.size),
                      ("metadata sha256", then.metadata_sha256, file.metadata_sha256)]
            if url_host(then.url) == url_host(file.url):  # else the host alarm
                fields.insert(0, ("URL", redact_url(then.url), redact_url(file.url)))
            out += [f"{head}: {file.filename}: {label} changed from {_shown(a)} to "
                    f"{_shown(b)}" for label, a, b in fields if a != b]
    # one line for a change many releases share (a lock that gained dependency groups
    # gives every runtime entry the same new marker and groups)
    for (label, a, b), heads in changed.items():
        out += ([f"{len(heads)} releases: {label} changed from {a} to {b}: "
                 f"{first_of(heads, 6)}"] if len(heads) > 2 else
                [f"{head}: {label} changed from {a} to {b}" for head in heads])
    return tuple(out)


# how an input of the lock (lock_inputs.input_parts' keys) is named in an edited line
_INPUTS = {"set": "the set's options", "policy": "the policy", "target": "target {}",
           "source": "source {}", "format": "the lock format"}


def _shown(value: object) -> str:
    """A field's value for a reader: ``none``, ``yes``/``no``, a list joined."""
    if value is None or value == []:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _files(lockfile: Lockfile | None) -> dict[tuple[str, str], FileRef]:
    if lockfile is None:
        return {}
    return {(f.filename, f.sha256): FileRef.of(p, f) for p, f in lockfile.iter_files()}


def describe_target(target: LockedTarget) -> str:
    """``cp3.11 manylinux_2_28_x86_64``: what a target installs, in one phrase."""
    return f"{target.implementation}{target.python} {', '.join(target.platforms)}"


@functools.lru_cache(maxsize=64)
def _as_target(target: LockedTarget) -> Target:
    # Cached: a Target computes its (long) tag list once, on first use.
    return Target.of_locked(target)


def _wheels_for(package: LockedPackage, target: LockedTarget) -> tuple[LockedFile, ...]:
    model = _as_target(target)
    return tuple(w for w in package.wheels if model.wheel_rank(w.filename) is not None)


def _target_files(package: LockedPackage, target: LockedTarget) -> dict[tuple[str, str], FileRef]:
    """The files of ``package`` an installer on ``target`` takes: its wheels for the
    target, else the sdist (an sdist added for another target changes nothing here)."""
    files = list(_wheels_for(package, target))
    if package.sdist and not files:
        files.append(package.sdist)
    return {(f.filename, f.sha256): FileRef.of(package, f) for f in files}


def _on_target(lockfile: Lockfile | None, target: str) -> dict[str, LockedPackage]:
    if lockfile is None:
        return {}
    found: dict[str, LockedPackage] = {}
    # One release per project and target is the contract; should a lockfile
    # break it, the highest version stands for the project.
    for package in sorted(lockfile.packages_for(target), key=lambda p: p.version):
        found[package.name] = package
    return found


def _diff_target(name: str, old: Lockfile | None, new: Lockfile | None,
                 old_target: LockedTarget | None, new_target: LockedTarget | None) -> TargetDiff:
    before = _on_target(old, name) if old_target else {}
    after = _on_target(new, name) if new_target else {}
    index = {"old": packages_on_target(old, name) if old else {},
             "new": packages_on_target(new, name) if new else {}}
    changes: list[PackageChange] = []
    for project in sorted(set(before) | set(after)):
        was, now = before.get(project), after.get(project)
        old_files = _target_files(was, old_target) if was and old_target else {}
        new_files = _target_files(now, new_target) if now and new_target else {}
        if was is not None and now is not None:
            if was.version == now.version and old_files.keys() == new_files.keys():
                continue
            kind: ChangeKind = ("upgraded" if now.version > was.version else
                                "downgraded" if now.version < was.version else "changed")
        else:
            kind = "added" if now is not None else "removed"
        shown, lockfile, side = (now, new, "new") if now is not None else (was, old, "old")
        assert shown is not None and lockfile is not None
        changes.append(PackageChange(
            name=project, change=kind,
            old_version=str(was.version) if was else None,
            new_version=str(now.version) if now else None,
            why=why_chains(lockfile, shown, name, on_target=index[side]),
            requirers=tuple(shown.why.get(name, ())),
            build_only=shown.build_only,
            files_added=tuple(sorted(new_files[k] for k in new_files.keys() - old_files.keys())),
            files_removed=tuple(sorted(old_files[k] for k in old_files.keys() - new_files.keys())),
        ))
    old_def = describe_target(old_target) if old_target else None
    new_def = describe_target(new_target) if new_target else None
    if old_target is None:
        status: SetStatus = "added"
    elif new_target is None:
        status = "removed"
    elif changes or old_def != new_def:
        status = "changed"
    else:
        status = "unchanged"
    return TargetDiff(name, status, tuple(changes), old_def, new_def)


def exception_text(record: Mapping[str, str]) -> str:
    """One sentence for a lockfile's exceptions-used record (which rule, which release, why)."""
    label = record.get("exception", "an exception")
    release = record.get("release") or f"{record.get('package', '?')}=={record.get('version', '*')}"
    text = f"{label} waives {record.get('rule', 'a rule')} for {release}"
    if record.get("advisory"):
        text += f" ({record['advisory']})"
    text += f": {record.get('reason', '')}".rstrip(": ")
    if record.get("expires"):
        text += f" (expires {record['expires']})"
    return text


def _findings(old: Lockfile | None, new: Lockfile | None) -> tuple[Finding, ...]:
    if new is None:
        return ()
    out: list[Finding] = []
    old_records = {tuple(sorted(r.items())) for r in (old.exceptions_used if old else ())}
    for record in new.exceptions_used:
        release = record.get("release", "")
        name, _, version = release.partition("==")
        out.append(Finding("exception-used", "warn", name or record.get("package"),
                           version or None, exception_text(record),
                           new=tuple(sorted(record.items())) not in old_records))
    old_found = {tuple(sorted(r.items())) for r in (old.policy_findings if old else ())}
    for record in new.policy_findings:
        if record.get("rule") == "yanked":
            continue  # said below, from the package's own yanked mark
        name, _, version = record.get("release", "").partition("==")
        out.append(Finding("policy-finding", "warn", name or None, version or None,
                           f"{record.get('rule', 'a rule')}: {record.get('message', '')}",
                           new=tuple(sorted(record.items())) not in old_found))
    old_yanked = {p.key for p in (old.packages if old else ()) if p.yanked is not None}
    for package in sorted(new.packages, key=lambda p: p.key):
        if package.yanked is None:
            continue
        reason = f": {package.yanked}" if package.yanked else ""
        out.append(Finding("yanked", "warn", package.name, str(package.version),
                           f"{package.name} {package.version} is yanked upstream{reason}",
                           new=package.key not in old_yanked))
    return tuple(out)


def with_license_changes(diff: LockDiff, lockfiles: Sequence[Lockfile],
                         store: AnyStore, client: Any = None) -> tuple[LockDiff, list[str]]:
    """``diff`` with a ``license`` finding for each upgraded or downgraded project whose two
    releases declare different licenses (not one written two ways: ``licenses.same_license``),
    where the store (or, given ``client``, an IndexClient, the index's PEP 658 file of a locked
    wheel, else its METADATA as lock read it) has both releases' core metadata (``lockfiles``:
    both sides' lockfiles); and the moves it could not compare (``name old -> new``), for a
    warning. Reads per release a metadata file or a wheel's METADATA (by ranges, else whole)."""
    from .release_licenses import release_licenses

    pairs = {(canonicalize_name(p.name), Version(p.old_version), Version(p.new_version))
             for s in diff.sets for t in s.targets for p in t.packages
             if p.change in ("upgraded", "downgraded") and p.old_version and p.new_version}
    if not pairs:
        return diff, []
    wanted = {(n, v) for n, old, new in pairs for v in (old, new)}
    known = release_licenses(lockfiles, store, client, only=wanted, wheel_metadata=True)
    unknown = sorted(f"{name} {old} -> {new}" for name, old, new in pairs
                     if (name, old) not in known or (name, new) not in known)
    sets = []
    for set_diff in diff.sets:
        found = [_license_change(p.name, p.old_version, p.new_version, known)
                 for t in set_diff.targets for p in t.packages
                 if p.change in ("upgraded", "downgraded")]
        unique = tuple(sorted({f for f in found if f is not None}, key=lambda f: f.message))
        sets.append(dataclasses.replace(set_diff, findings=set_diff.findings + unique)
                    if unique else set_diff)
    return dataclasses.replace(diff, sets=tuple(sets)), unknown


def _license_change(name: str, old: str | None, new: str | None,
                    known: Mapping[tuple[str, Version], DeclaredLicense]) -> Finding | None:
    from ..formats.licenses import same_license

    if old is None or new is None:
        return None
    before = known.get((canonicalize_name(name), Version(old)))
    after = known.get((canonicalize_name(name), Version(new)))
    if before is None or after is None or same_license(before, after):
        return None
    return Finding("license", "warn", name, new,
                   f"{name} {old} -> {new}: license changed: {before} -> {after}", new=True)
