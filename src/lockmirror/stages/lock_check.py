"""``lock --check``: prove the lockfiles themselves, not only the inputs they were made from.

The fingerprint (:func:`lockmirror.stages.lock.stale_sets`) says a lockfile was made
from the current mirror.yaml; it says nothing about what was written into it
afterwards. A pull request that edits only a lockfile could swap a file's
URL, sha256 and size. So, after the fingerprint:

1. :func:`read_lockfiles` (``validate`` reads them so too): every URL lies under a
   source mirror.yaml declares for its package (no network), and
   :func:`installer_parse_mismatches`: the standard library's TOML 1.0 parser
   (what pip reads ``-r pylock.toml`` with) reads the same values from each
   lockfile as lockmirror's rtoml, which also takes TOML 1.1 syntax and a
   byte-order mark, and keeps the carriage returns of multi-line strings;
   :func:`~lockmirror.stages.lock_merge.entry_problems`: each entry's marker is true
   exactly on the targets the lockfile records for it (what ``diff`` shows a reviewer
   is what installers take), one entry per release;
2. :func:`page_mismatches`: every entry against its source's project page,
   read through the same HTTP cache as ``lock`` (a revalidation per project;
   no distribution is downloaded): the page comes from the source the entry
   names, the version exists, each file name is listed (PEP 751 already ties
   a file name's version to its entry's), and
   the listed URL, sha256 and size (from the JSON API or a HEAD when the page
   has no size, as ``lock`` does) equal the lockfile's;
3. with ``resolve`` (:func:`resolve_mismatches`, like ``uv lock --locked``):
   resolve every set again into memory, exactly as ``lock`` would today
   (keeping the pins the lockfile has unless they must move), and compare the
   bytes with the committed lockfile.

The entry is :func:`check_lockfiles`. Each difference is one line:
``<lockfile>: <package> <version>: <file>: <what differs>``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import LoadedConfig
from ..errors import LockmirrorError, NotFoundError, StaleLockError
from ..formats.lockfile import RUNTIME_GROUP, LockedFile, LockedPackage, Lockfile
from ..formats.url_policy import normal_source_url, read_checked_documents
from .lock_merge import entry_problems

if TYPE_CHECKING:
    from ..config_schema import SourceConfig
    from ..net.index_client import DistFile, IndexClient, ProjectPage

SHOWN = 20  # difference lines in one error; the rest are counted
EDITED = "\n  (a lockfile is written by `doit lock` only; re-lock, or find out who edited it)"


@dataclass(frozen=True)
class CheckReport:
    """What a passing check looked at."""

    sets: tuple[str, ...]
    packages: int
    files: int
    resolved: bool  # the sets were re-resolved and matched byte for byte


def check_lockfiles(loaded: LoadedConfig, set_names: Sequence[str] | None = None, *,
                    resolve: bool = False, client: IndexClient | None = None) -> CheckReport:
    """Check the lockfiles of ``set_names`` (default: all) after their fingerprint.

    Raises UrlPolicyError (a URL outside its sources; before any request),
    StaleLockError listing the entries that differ from the index pages
    (or, with ``resolve``, from a fresh resolution), NetworkError when a
    source cannot be read. Costs one page revalidation per project, a JSON
    API request or HEAD per file whose size the page omits, and with
    ``resolve`` a whole lock run (from the HTTP cache) in memory.
    """
    names = list(set_names or loaded.config.sets)
    paths = [loaded.lockfile_path(name) for name in names]
    documents, lockfiles = read_lockfiles(paths, loaded.config.sources)
    problems = [f"{path}: {package.name} {package.version}: {text}"
                for path, lockfile in zip(paths, lockfiles, strict=True)
                for package, text in entry_problems(lockfile)]
    for path, document, lockfile in zip(paths, documents, lockfiles, strict=True):
        wanted = [RUNTIME_GROUP] if lockfile.build_groups else None  # as Lockfile.dumps writes
        if document.get("default-groups") != wanted:
            problems.append(f"{path}: default-groups {document.get('default-groups')!r}, where "
                            f"`lock` writes {wanted!r} (installers would take other groups "
                            "by default)")
    if problems:
        raise StaleLockError(_listing("lockfile entries `lock` never writes", problems)
                             + EDITED)
    if client is None:
        from ..net.index_client import IndexClient

        with IndexClient(loaded.config.sources_by_priority(),
                         cache_dir=loaded.cache_dir / "http") as own:
            return _check_read(loaded, names, dict(zip(paths, lockfiles, strict=True)),
                               resolve, own)
    return _check_read(loaded, names, dict(zip(paths, lockfiles, strict=True)), resolve, client)


def read_lockfiles(paths: Sequence[Path], sources: Sequence[SourceConfig], *,
                   misread: type[LockmirrorError] = StaleLockError, shown: int | None = SHOWN
                   ) -> tuple[list[dict[str, Any]], list[Lockfile]]:
    """(parsed TOML, PEP 751 lockfile) of each lockfile at ``paths``, read as ``lock
    --check`` and ``validate`` read them before they ask the sources: every URL under
    its source (UrlPolicyError), the bytes as installers' TOML parser reads them (a
    byte-order mark passes rtoml and fails tomllib: ``misread``, listing ``shown``
    lockfiles, None: all), then PEP 751 (InputError). Costs two TOML parses each."""
    documents = read_checked_documents(paths, sources)
    problems = installer_parse_mismatches(zip(paths, documents, strict=True))
    if problems:
        raise misread(_listing("lockfiles installers would read differently", problems, shown)
                      + EDITED)
    return documents, [Lockfile.from_toml(document, where=str(path))
                       for path, document in zip(paths, documents, strict=True)]


def _check_read(loaded: LoadedConfig, names: list[str], read: dict[Path, Lockfile],
                resolve: bool, client: IndexClient) -> CheckReport:
    """:func:`check_lockfiles` after the lockfiles at ``read``'s paths passed the URL rule."""
    lockfiles = list(read.values())
    problems = page_mismatches(read.items(), client)
    if problems:
        raise StaleLockError(_listing("lockfiles differ from what the index lists", problems)
                             + EDITED)
    if resolve:
        problems = resolve_mismatches(loaded, names, client)
        if problems:
            raise StaleLockError(_listing("lockfiles differ from what `lock` writes today",
                                          problems)
                                 + "\n  (run `doit lock` and commit the result)")
    return CheckReport(tuple(names), sum(len(lf.packages) for lf in lockfiles),
                       sum(1 for lf in lockfiles for _ in lf.iter_files()), resolve)


# --------------------------------------------------------------------------
# Against the project pages
# --------------------------------------------------------------------------


def installer_parse_mismatches(read: Iterable[tuple[Path, dict[str, Any]]]) -> list[str]:
    """One line per lockfile that Python's ``tomllib`` refuses or reads other
    values from than lockmirror did (``read``: path and the document
    :func:`~lockmirror.formats.bounded.load_toml` gave). Costs a read and a
    ``tomllib`` parse of each."""
    import tomllib

    problems = []
    for path, document in read:
        try:
            theirs = tomllib.loads(path.read_bytes().decode("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{path}: not TOML 1.0, which installers read: {exc}")
            continue
        if theirs != document:
            problems.append(f"{path}: installers read other values from it than lockmirror")
    return problems


def page_mismatches(lockfiles: Iterable[tuple[Path, Lockfile]], client: IndexClient) -> list[str]:
    """One line per entry whose page says otherwise, in lockfile order."""
    pairs = list(lockfiles)
    client.prefetch_projects(sorted({p.name for _, lf in pairs for p in lf.packages}))
    sources = {s.name: s.url for s in client.sources}  # without user info
    out: list[str] = []
    unsized: list[tuple[str, LockedFile, DistFile]] = []
    for path, lockfile in pairs:
        for package in lockfile.packages:
            head = f"{path}: {package.name} {package.version}"
            try:
                page = client.project(package.name)
            except NotFoundError as error:
                out.append(f"{head}: no source lists the project ({error.message})")
                continue
            found, lacking = _package_mismatches(package, page, sources, client)
            out += [f"{head}: {line}" for line in found]
            unsized += [(head, locked, listed) for locked, listed in lacking]
    if unsized:
        from ..net.file_details import complete

        sizes = complete(client, [listed for _, _, listed in unsized])
        for head, locked, listed in unsized:
            size = sizes[listed.url].size
            if size != locked.size:
                stated = "no size" if size is None else f"size {size}"
                out.append(f"{head}: {locked.filename}: size {locked.size} in the lockfile, "
                           f"the index states {stated}")
    return out


def _metadata_mismatch(file: LockedFile, entry: DistFile, client: IndexClient) -> list[str]:
    """A page without PEP 658 hashes: the wheel's own METADATA (as ``lock`` read it:
    the HTTP cache, else ranged reads of the wheel) against the lockfile's hash,
    which otherwise nothing checks (fetch keeps one store file per hash, so a hash
    another wheel's metadata has would be taken as it)."""
    from ..errors import LockmirrorError
    from ..fsutil import sha256_bytes

    try:
        actual = sha256_bytes(client.metadata(entry))
    except LockmirrorError as error:
        return [f"{file.filename}: its metadata cannot be read to check the lockfile's "
                f"hash ({error.message})"]
    if actual != (file.metadata_sha256 or "").lower():
        return [f"{file.filename}: metadata sha256 {file.metadata_sha256} in the lockfile, "
                f"the wheel's METADATA has {actual}"]
    return []


def _package_mismatches(package: LockedPackage, page: ProjectPage, sources: Mapping[str, str],
                        client: IndexClient) -> tuple[list[str], list[tuple[LockedFile, DistFile]]]:
    """(lines, files whose size the page leaves out) for one entry."""
    lines: list[str] = []
    source_url = sources.get(page.source, "")
    if package.index and normal_source_url(package.index) != normal_source_url(source_url):
        lines.append(f"the lockfile says index {package.index}, but the project now comes "
                     f"from source '{page.source}' ({source_url})")
    if package.version not in page.versions:
        shown = ", ".join(str(v) for v in page.versions[-5:]) or "none"
        return lines + [(f"version {package.version} is not on the project page "
                         f"(latest listed: {shown})")], []
    listed = {f.filename: f for f in page.files}
    lacking = []
    for file in package.files:
        entry = listed.get(file.filename)
        if entry is None:
            lines.append(f"{file.filename}: not listed on the project page")
            continue
        if (entry.sha256 or "") != file.sha256.lower():
            lines.append(f"{file.filename}: sha256 {file.sha256} in the lockfile, "
                         f"{entry.sha256 or 'none'} on the project page")
        if _defrag(entry.url) != _defrag(file.url):
            lines.append(f"{file.filename}: URL {file.url} in the lockfile, "
                         f"{entry.url} on the project page")
        if entry.metadata_sha256 and file.metadata_sha256 \
                and entry.metadata_sha256 != file.metadata_sha256.lower():
            lines.append(f"{file.filename}: metadata sha256 {file.metadata_sha256} in the "
                         f"lockfile, {entry.metadata_sha256} on the project page")
        elif file.metadata_sha256 and file.is_wheel and not entry.metadata_sha256:
            lines += _metadata_mismatch(file, entry, client)
        if entry.size is None:
            lacking.append((file, entry))
        elif entry.size != file.size:
            lines.append(f"{file.filename}: size {file.size} in the lockfile, "
                         f"{entry.size} on the project page")
    return lines, lacking


# --------------------------------------------------------------------------
# Against a fresh resolution
# --------------------------------------------------------------------------


def resolve_mismatches(loaded: LoadedConfig, names: Sequence[str],
                       client: IndexClient) -> list[str]:
    """Lock ``names`` again into a scratch directory, as ``lock`` would now;
    one line per entry of the committed lockfiles that differs."""
    from .lock import lock_sets

    with tempfile.TemporaryDirectory(prefix="lockmirror-check-") as scratch:
        for name in names:  # the pins `lock` would keep
            (Path(scratch) / loaded.lockfile_path(name).name).write_bytes(
                loaded.lockfile_path(name).read_bytes())
        config = loaded.config
        paths = config.paths.model_copy(update={"lockfiles": scratch})
        shadow = LoadedConfig(config.model_copy(update={"paths": paths}), loaded.path,
                              loaded.text)
        results = lock_sets(shadow, names, client=client)
    out: list[str] = []
    for result in results:
        path = loaded.lockfile_path(result.set_name)
        committed = path.read_text(encoding="utf-8")
        fresh = result.lockfile.dumps()
        if committed != fresh:
            # both as read back from their text (a Requires-Python's clause order, ...)
            out += [f"{path}: {line}" for line in
                    describe_differences(Lockfile.loads(committed, where=str(path)),
                                         Lockfile.loads(fresh, where="the fresh lock"),
                                         committed, fresh)]
    return out


def describe_differences(committed: Lockfile, fresh: Lockfile, committed_text: str,
                         fresh_text: str) -> list[str]:
    """How ``committed`` differs from ``fresh`` (what ``lock`` writes), entry by entry."""
    lines: list[str] = []
    for label, ours, theirs in (
            ("requirements", committed.requirements, fresh.requirements),
            ("targets", committed.targets, fresh.targets),
            ("input hash", committed.input_hash, fresh.input_hash),
            ("exceptions used", committed.exceptions_used, fresh.exceptions_used),
            ("policy findings", committed.policy_findings, fresh.policy_findings)):
        if ours != theirs:
            lines.append(f"{label} differ from what `lock` writes")
    old = {p.key: p for p in committed.packages}
    new = {p.key: p for p in fresh.packages}
    for key in sorted(old.keys() | new.keys()):
        name, version = key
        if key not in new:
            lines.append(f"{name} {version}: in the lockfile, but `lock` does not lock it")
        elif key not in old:
            lines.append(f"{name} {version}: `lock` locks it, the lockfile does not have it")
        else:
            lines += [f"{name} {version}: {line}" for line in _package_changes(old[key], new[key])]
    if not lines:  # same content, other bytes: an edited comment, spacing or order
        old_lines, new_lines = committed_text.splitlines(), fresh_text.splitlines()
        at = next((i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=False))
                   if a != b), min(len(old_lines), len(new_lines)))
        shown = old_lines[at][:80] if at < len(old_lines) else "(end of file)"
        lines.append(f"line {at + 1} differs from what `lock` writes (same entries, other "
                     f"text: {shown!r})")
    return lines


def _package_changes(ours: LockedPackage, theirs: LockedPackage) -> list[str]:
    lines = []
    files_ours = {f.filename: f for f in ours.files}
    files_theirs = {f.filename: f for f in theirs.files}
    for filename in sorted(files_ours.keys() - files_theirs.keys()):
        lines.append(f"{filename}: in the lockfile, `lock` does not pick it")
    for filename in sorted(files_theirs.keys() - files_ours.keys()):
        lines.append(f"{filename}: `lock` picks it, the lockfile does not have it")
    for filename in sorted(files_ours.keys() & files_theirs.keys()):
        a, b = files_ours[filename], files_theirs[filename]
        for field in ("url", "sha256", "size", "upload_time", "metadata_sha256"):
            if getattr(a, field) != getattr(b, field):
                lines.append(f"{filename}: {field} {getattr(a, field)} in the lockfile, "
                             f"`lock` writes {getattr(b, field)}")
    for field in ("targets", "index", "marker", "requires_python", "dependencies", "why",
                  "build_only", "yanked"):
        if getattr(ours, field) != getattr(theirs, field):
            lines.append(f"{field} {getattr(ours, field)!r} in the lockfile, `lock` writes "
                         f"{getattr(theirs, field)!r}")
    return lines


def _listing(title: str, problems: Sequence[str], most: int | None = SHOWN) -> str:
    shown = [f"  {line}" for line in problems[:most]]
    if len(shown) < len(problems):
        shown.append(f"  ... and {len(problems) - len(shown)} more")
    return f"{title}:\n" + "\n".join(shown)


def _defrag(url: str) -> str:
    return url.split("#", 1)[0]
