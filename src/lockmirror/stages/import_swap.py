"""Where an import builds its tree, how it swaps it in, and how a killed import is resolved.

Every import (a bundle's, a refresh bundle's) first takes the one lock beside
the mirror and resolves what a killed import left (:func:`import_lock`), then
builds the new tree with :func:`replacing_tree`: it writes the new tree into
``.<into>.lockmirror-staging`` beside the mirror (same filesystem), then swaps
it in with two plain renames::

    into    -> .<into>.lockmirror-old
    staging -> into
    remove .<into>.lockmirror-old

Each rename is atomic. Between the two there is a window of a few
microseconds in which ``into`` does not exist (a reader then sees no mirror,
never a half-written one). A process killed at any point leaves one of
these states, which :func:`recover_interrupted_import` (run by every import
before it starts) resolves without losing the previous good mirror:

- staging only (killed while extracting): the staging tree is removed;
  ``into`` was never touched;
- old, no ``into`` (killed between the two renames): the old tree is renamed
  back to ``into``, which is the previous good mirror, byte for byte;
- old and ``into`` (killed after the swap): ``into`` is the new, fully
  checked mirror; the old tree is removed.

The new root takes the old root's permission bits (the operator's choice, such as
a read-only root). The old tree is ours to remove even where the operator made
directories read-only (:func:`remove_tree`); if it still cannot be removed the
import has succeeded all the same, and says which tree is left and how to remove it
(:attr:`StagedTree.leftover`).

The old and staging trees are found by name beside the mirror, where whoever may write
the mirror's parent could plant a symbolic link instead: such an entry is refused, never
followed (chmod and rmtree through it would change what lies outside the mirror,
:func:`own_tree`), and no directory is made writable through a link
(:func:`_open_directories`).
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from ..errors import LockmirrorError
from ..fsutil import SERVED_DIR_MODE, SERVED_FILE_MODE, one_at_a_time


def mirror_path(into: Path) -> Path:
    """The directory an import works on: ``into`` made absolute, or the directory
    it points to when it is a symbolic link (the swap renames a directory, never
    a link to one)."""
    into = Path(os.path.abspath(into))
    return into.resolve() if into.is_symlink() else into


def staging_dir(into: Path) -> Path:
    """Where an import builds the new tree: a hidden sibling of ``into``."""
    return into.parent / f".{into.name}.lockmirror-staging"


def old_dir(into: Path) -> Path:
    """Where the previous tree waits between the two renames of the swap."""
    return into.parent / f".{into.name}.lockmirror-old"


def make_parents(into: Path) -> list[Path]:
    """Create the missing parent directories of ``into`` (``/srv`` for
    ``/srv/mirror``), outermost first, and return the ones created.

    Raises LockmirrorError naming the directory that cannot be created (or
    the path in the way that is not a directory); what was created before
    the failure is removed again.
    """
    missing = [p for p in reversed(into.parents) if not p.is_dir()]
    made: list[Path] = []
    for parent in missing:
        try:
            parent.mkdir()
        except FileExistsError:
            remove_made_parents(made)
            raise LockmirrorError("is in the way of the mirror's directory and is not a "
                                  "directory", where=str(parent)) from None
        except OSError as exc:
            remove_made_parents(made)
            raise LockmirrorError(f"cannot create the mirror's parent directory: "
                                  f"{exc.strerror}", where=str(parent)) from None
        made.append(parent)
    return made


def remove_made_parents(made: list[Path]) -> None:
    """Remove the directories :func:`make_parents` created, innermost first,
    as far as they are still empty (a failed import leaves none behind)."""
    for parent in reversed(made):
        try:
            parent.rmdir()
        except OSError:
            return  # not empty (or gone): what holds something stays


@contextmanager
def import_lock(into: Path) -> Iterator[str | None]:
    """Hold the one import lock beside the mirror ``into`` and resolve what a killed
    import left (:func:`recover_interrupted_import`); yields what was done, or None.

    One import at a time beside a mirror: the staging and old trees live there,
    and recovery would otherwise remove a running import's staging. The kernel
    drops the lock when the process ends, even by SIGKILL. Raises
    LockmirrorError while another import holds it, or when recovery fails."""
    with one_at_a_time(into.parent, f"another lockmirror import is running here (into "
                                    f"{into.name} or a directory beside it)"):
        try:
            recovered = recover_interrupted_import(into)
        except OSError as exc:
            raise _cleanup_error(exc, into) from None
        yield recovered


def _cleanup_error(exc: OSError, into: Path) -> LockmirrorError:
    """What an import says when it cannot resolve what an earlier one left: the tree at
    fault by its full path (rmtree's error names a file relative to a directory it
    holds open), what that tree is, and what to do by hand."""
    old, staging = old_dir(into), staging_dir(into)
    if old.exists() and not into.exists():
        return LockmirrorError(
            f"cannot rename the previous tree back to {into} (an earlier import was stopped "
            f"between its two renames): {exc.strerror}", where=str(old),
            hint=f"rename it back by hand (`mv {shlex.quote(str(old))} "
                 f"{shlex.quote(str(into))}`), then import again")
    tree, what = ((old, f"the old tree an earlier import left after swapping in {into}")
                  if old.exists() else
                  (staging, "the unfinished staging tree an earlier import left"))
    owned = _owner_note(tree)
    return LockmirrorError(
        f"cannot remove {what}: {exc.strerror}{f' ({owned[0]})' if owned else ''}",
        where=str(tree), hint=removal_hint(tree, owned[1] if owned else ""))


def removal_hint(tree: Path, who: str = "") -> str:
    """How an operator removes a leftover tree of ours by hand (``who``: as whom,
    from :func:`_owner_note`)."""
    return f"remove it by hand{who} with `{removal_command(tree)}`, then import again"


def _owner_note(tree: Path) -> tuple[str, str] | None:
    """Why this user cannot remove ``tree``: the first directory in it (top down) that
    another user owns, which this user can neither empty nor open up. None when
    there is none; else what to say of it (``{dir} belongs to root``) and as whom to
    remove the tree (`` as root``, or `` as root, or after user nobody (uid 65534) removes
    {dir}``)."""
    import pwd

    if tree.is_symlink():  # os.walk would list what it points to: not the tree
        return None
    for directory, subdirectories, _files in os.walk(tree):
        subdirectories.sort()
        for path in [directory, *(os.path.join(directory, name) for name in subdirectories)]:
            try:
                uid = os.lstat(path).st_uid
            except OSError:
                continue
            if uid != os.geteuid():
                try:  # 'user nobody (uid 65534)': "after nobody removes" read as no one
                    owner = f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
                except KeyError:  # no name here: the uid says it
                    owner = f"uid {uid}"
                return f"{path} in it belongs to {owner}", (
                    " as root" if uid == 0 else f" as root, or after {owner} removes {path}")
    return None


def removal_command(tree: Path) -> str:
    """The shell command that removes a leftover tree of ours, read-only parts included,
    its path quoted for the shell (a mirror at ``/srv/my mirror``). ``tree`` is a
    directory, never a symbolic link: ``chmod -R`` changes the target of a link named on
    its command line (``-P``, which would not, is no POSIX chmod option)."""
    quoted = shlex.quote(str(tree))
    return f"chmod -R u+rwX {quoted} && rm -rf {quoted}"


def recover_interrupted_import(into: Path) -> str | None:
    """Finish or undo what a killed import left behind; say what was done.

    The previous mirror comes back if the kill fell between the two renames;
    a leftover old tree (kill after the swap) or staging tree (kill during
    extraction) is removed. Idempotent; None when there was nothing to do.
    Raises OSError if a rename or removal fails.
    """
    done = []
    old, staging = old_dir(into), staging_dir(into)
    has_old, has_staging = own_tree(old, into), own_tree(staging, into)  # before any change
    if has_old:
        if into.exists():
            remove_tree(old)
            done.append(f"removed the previous tree {old.name} left after a completed swap")
        else:
            os.rename(old, into)
            done.append(f"restored {into.name} from {old.name} (an import was interrupted "
                        "between its two renames)")
    if has_staging:
        remove_tree(staging)
        done.append(f"removed the unfinished staging tree {staging.name}")
    return "; ".join(done) or None


def own_tree(tree: Path, into: Path) -> bool:
    """Whether the old or staging tree ``tree`` of the mirror ``into`` is there: a
    directory (True) or nothing (False). Anything else, a symbolic link above all (a
    link planted there would lead the removal's chmod and rmtree out of the mirror), is
    refused with a LockmirrorError naming it, and left as it is: an import removes or
    renames only a directory. Raises OSError when ``tree`` cannot be looked at."""
    try:
        mode = os.lstat(tree).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(mode):
        return True
    what = "a symbolic link" if stat.S_ISLNK(mode) else "not a directory"
    role = "staging" if tree == staging_dir(into) else "old"
    raise LockmirrorError(
        f"is {what}, where an import of {into} keeps its {role} tree; an import removes or "
        "renames only a directory there, so nothing was changed", where=str(tree),
        hint=f"see what it is and who put it there, remove it (`rm {shlex.quote(str(tree))}`), "
             "then import again")


def swap_into_place(staging: Path, into: Path) -> str | None:
    """Make the checked tree ``staging`` the mirror ``into``, with the permission bits
    ``into`` had; remove the previous tree. None, or a warning naming the previous tree
    when it cannot be removed (the new mirror is in place all the same).

    ``into -> old``, ``staging -> into``, then the old tree is removed (see
    the module's docstring for what a kill in between leaves). If the second
    rename fails, the first is undone before the OSError propagates.
    """
    if not into.exists():
        os.rename(staging, into)
        return None
    os.chmod(staging, stat.S_IMODE(os.stat(into).st_mode))  # the operator's choice, kept
    old = old_dir(into)
    os.rename(into, old)
    try:
        os.rename(staging, into)
    except OSError:
        os.rename(old, into)
        raise
    try:
        remove_tree(old)
    except OSError as exc:
        owned = _owner_note(old)
        return (f"the new mirror is in place, but its previous tree could not be removed "
                f"({exc.strerror}{f': {owned[0]}' if owned else ''}) and is left beside it: "
                f"{old}; remove it before the next import{owned[1] if owned else ''} "
                f"(`{removal_command(old)}`)")
    return None


def remove_tree(tree: Path) -> None:
    """Remove ``tree``, one of the import's own (an old or a staging tree), directories
    the operator made read-only in it included: where rmtree fails, every directory is
    made readable, writable and searchable by its owner (:func:`_open_directories`) and
    rmtree runs again. Raises OSError for what still cannot be removed (a directory of
    another user)."""
    try:
        shutil.rmtree(tree)
    except OSError:
        _open_directories(tree)
        shutil.rmtree(tree)


def _open_directories(tree: Path) -> None:
    """Add the owner's rwx to every directory of ``tree``, each before it is listed (top
    down), never through a symbolic link: neither ``tree`` itself nor a directory in it
    is followed when it is one (:func:`os.fwalk`, :func:`_owner_rwx`). What cannot be
    changed is left for rmtree to report."""
    try:
        parent = os.open(tree.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        _owner_rwx(parent, tree.name)
        for _path, subdirectories, _files, directory in os.fwalk(tree.name, dir_fd=parent):
            for name in subdirectories:
                _owner_rwx(directory, name)
    finally:
        os.close(parent)


def _owner_rwx(parent: int, name: str) -> None:
    """Add the owner's rwx to the directory ``name`` in the open directory ``parent``;
    a symbolic link there is left alone, and so is what it points to, even when the name
    is swapped for a link between the look and the change: a chmod that does not follow
    links where the platform has one, else the directory opened without following links
    (``O_NOFOLLOW``) and changed through that descriptor, else (a directory its owner may
    not read) by name where nobody but this user may write ``parent``, so nobody can swap
    the name. Errors are ignored: rmtree reports what stays."""
    try:
        found = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISDIR(found.st_mode):
            return
        if os.chmod in os.supports_follow_symlinks and os.chmod in os.supports_dir_fd:
            os.chmod(name, stat.S_IMODE(found.st_mode) | stat.S_IRWXU, dir_fd=parent,
                     follow_symlinks=False)
            return
        try:
            opened = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_NONBLOCK,
                             dir_fd=parent)
        except PermissionError:
            if _only_mine(parent):
                os.chmod(name, stat.S_IMODE(found.st_mode) | stat.S_IRWXU, dir_fd=parent)
            return
        try:
            os.fchmod(opened, stat.S_IMODE(os.fstat(opened).st_mode) | stat.S_IRWXU)
        finally:
            os.close(opened)
    except OSError:
        pass


def _only_mine(directory: int) -> bool:
    """Whether only this user may write the open ``directory`` (rename or replace what
    is in it): it is this user's, and neither its group nor others may write it (an
    access list that lets another user write shows in the group bits)."""
    found = os.fstat(directory)
    return found.st_uid == os.geteuid() and not found.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


@dataclass
class StagedTree:
    """What :func:`replacing_tree` yields: the staging directory to fill and, once the
    block ended and the tree was swapped in, the warning of :func:`swap_into_place`."""

    path: Path
    leftover: str | None = None  # the previous tree could not be removed: where, and how


@contextmanager
def replacing_tree(into: Path) -> Iterator[StagedTree]:
    """Yield a new, empty staging directory beside ``into`` (:attr:`StagedTree.path`)
    for the block to fill and check; when the block ends without error, swap it in
    (:func:`swap_into_place`) and set :attr:`StagedTree.leftover`.

    On any failure (in the block or the swap) the staging tree is removed and
    ``into`` is as it was; an OSError becomes a LockmirrorError naming the file."""
    staging = staging_dir(into)
    staged = StagedTree(staging)
    try:
        staging.mkdir()
    except OSError as exc:  # the parent's fault, not the mirror's: say which and why
        why = (f"an import builds the new mirror beside {into} and swaps it in by renaming "
               f"both, so it needs write permission on {into.parent}; "
               if exc.errno in (errno.EACCES, errno.EPERM) else "")
        raise LockmirrorError(
            f"cannot create the import's staging tree {staging.name} here: {exc.strerror}",
            where=str(into.parent), hint=f"{why}nothing was changed in {into}") from None
    try:
        os.chmod(staging, SERVED_DIR_MODE)  # it becomes the mirror: served, whatever the umask
        yield staged
        staged.leftover = swap_into_place(staging, into)
    except BaseException as exc:
        with suppress(OSError):  # what is left, the next import removes
            remove_tree(staging)
        if isinstance(exc, OSError):
            named = str(exc.filename or staging)  # as the mirror will name it, not staging
            if named.startswith(str(staging)):
                named = str(into) + named[len(str(staging)):]
            raise LockmirrorError(f"cannot write the new mirror: {exc.strerror}", where=named,
                                  hint=f"nothing was changed in {into}") from None
        raise


def inside_mirror(mirror: Path, rel: str) -> bool:
    """Whether ``mirror/rel`` is that very path: no symlink on the way, neither
    the file nor a directory below ``mirror`` (which itself may be a link)."""
    return os.path.realpath(mirror / rel) == os.path.join(os.path.realpath(mirror), rel)


def state_line(mirror: Path, rel: str) -> str | None:
    """The one line a state file ``rel`` of ``mirror`` holds; None when there is none
    (an older lockmirror did not record it) or it does not read."""
    try:
        return (mirror / rel).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def link_or_copy(mirror: Path, rel: str, target: Path) -> None:
    """Place the unchanged file ``rel`` of the current ``mirror`` into a staging
    tree: a hard link, or a copy where the file system refuses one. Raises
    LockmirrorError when a symlink in the mirror leads ``rel`` elsewhere: a
    mirror holds regular files only, and an outside file must not be linked in."""
    source = mirror / rel
    if not inside_mirror(mirror, rel):
        raise LockmirrorError("is a symlink or lies below one; a mirror holds regular files "
                              "only", where=str(source),
                              hint="run `lockmirror verify`, then import a full bundle")
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        shutil.copyfile(source, target)
        os.chmod(target, SERVED_FILE_MODE)  # a link keeps the mirror file's mode; a copy too
