"""``lockmirror verify DIR``'s check: a mirror tree against its ``manifest.json``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import IntegrityError, LockmirrorError
from ..formats.directory_receipt import published_tree, receipt_path
from ..formats.manifest import (
    DIRECTORY_RECEIPT,
    IMPORT_BUNDLE_MANIFEST,
    IMPORT_MANIFEST,
    IMPORT_QUARANTINE,
    MANIFEST_NAME,
    STATE_DIR,
    Manifest,
    TreeReport,
    check_tree,
)
from ..fsutil import locked_unless_held, sha256_file
from .import_swap import inside_mirror, mirror_path, old_dir, staging_dir, state_line

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def verify_mirror(root: Path, *, hash_files: bool = True) -> TreeReport:
    """Compare a mirror tree with its ``manifest.json`` (missing, altered, unexpected).

    Raises LockmirrorError if there is no tree or no manifest (with a hint
    when an interrupted import left the previous tree aside), IntegrityError
    when an imported mirror's manifest is not the one its last import wrote
    (:func:`check_manifest_record`). Costs one sha256 pass over the tree (a
    stat per file with ``hash_files=False``).
    """
    refuse_while_changing(root)
    if not root.is_dir():
        raise not_a_mirror(root, MANIFEST_NAME)
    if not (root / MANIFEST_NAME).exists():
        raise _no_manifest(root)
    check_manifest_record(root)
    return check_tree(root, Manifest.read(root / MANIFEST_NAME), hash_files=hash_files)


def refuse_while_changing(root: Path) -> None:
    """Refuse to verify ``root`` while a run that changes it holds its lock: an index
    build (the lock on its state directory, :func:`lockmirror.stages.index.build_index`)
    or an import into it (the lock beside it, with its staging or old tree there,
    :func:`lockmirror.stages.import_swap.import_lock`). Its new files would be
    reported as unexpected, and the repair hint would say to run it again (found by
    an outside tester). Raises LockmirrorError, one line. Costs a try of each lock,
    released at once."""
    from .index import state_dir_for

    if _held(state_dir_for(root)):
        raise LockmirrorError(f"an index build is running on {root}; verify again when it ends")
    mirror = mirror_path(root)
    if (os.path.lexists(staging_dir(mirror)) or os.path.lexists(old_dir(mirror))) and _held(
            mirror.parent):
        raise LockmirrorError(f"an import into {root} is running; verify again when it ends")


def _held(directory: Path) -> bool:
    """Whether another process holds ``directory``'s lock (:func:`locked_unless_held`)."""
    try:
        with locked_unless_held(directory) as free:
            return not free
    except OSError:  # no such directory, or not ours to open: no run holds it
        return False


def check_manifest_record(root: Path, actual: str | None = None) -> None:
    """Refuse an imported mirror whose ``manifest.json`` is not the one its last
    import or refresh bundle wrote, as ``.lockmirror/manifest.sha256`` records it
    (found by an outside tester: a wheel altered and its entry rewritten to match
    passed verify; publish from the mirror sent it on too). ``actual``: the
    sha256 of the manifest bytes the caller read (publish), else it is hashed
    here. A mirror imported before that record was kept is held to the
    manifest its last bundle pinned (``bundle-manifest.sha256``), unless a refresh
    bundle edited it since (it left ``quarantine.json``); a tree with neither
    record (``dist-index/``, a directory publish) is not checked. A record that
    does not read, or is a symlink, fails closed. This catches an edit by hand or
    by a tool that does not know the record, not one that rewrites the record too:
    importing the signed bundle again is the repair.

    Raises IntegrityError naming both sha256s. Costs one sha256 of the manifest
    (nothing with ``actual``)."""
    rel = _manifest_record(root)
    if rel is None:
        return
    recorded = _recorded_sha256(root, rel)
    actual = actual or sha256_file(root / MANIFEST_NAME)
    if recorded == actual:
        return
    said = (f"not the {recorded} the last import recorded ({rel})" if recorded
            else f"and the last import's record of it ({rel}) does not read")
    raise IntegrityError(
        f"{MANIFEST_NAME} has sha256 {actual}, {said}: it was changed after the import",
        where=str(root),
        hint=f"import its signed bundle again (`lockmirror import BUNDLE.tar --into {root} "
             "--pubkey KEY`; after a refresh bundle, with --allow-older, then the refresh "
             "bundle): that puts back the manifest and every file it lists")


def _manifest_record(root: Path) -> str | None:
    """The state file :func:`check_manifest_record` holds ``root``'s manifest to; None
    when there is none (then the manifest itself is not checked)."""
    if os.path.lexists(root / IMPORT_MANIFEST):
        return IMPORT_MANIFEST
    if (os.path.lexists(root / IMPORT_BUNDLE_MANIFEST)
            and not os.path.lexists(root / IMPORT_QUARANTINE)):
        return IMPORT_BUNDLE_MANIFEST
    return None


# How a build-side index copy's manifest.json is held to the one its index step wrote:
# what publish.yml's and matrix.yml's publish jobs do before they publish (README:
# manifest-sha256)
BUILD_SIDE_CHECK = "compare its sha256 with the build's, as publish.yml does"


def unchecked_manifest(root: Path, *, project_index: bool = False) -> str | None:
    """What ``lockmirror verify`` adds to its "every file matches" about a tree whose
    ``manifest.json`` nothing recorded, in under 200 characters: that the manifest
    itself was not checked, why, and the one remedy that fits. With ``.lockmirror/``
    there, an older lockmirror imported or refreshed it: import its bundle again. With
    none, and ``project_index`` (the tree is the index directory of the mirror.yaml in
    use: the build side, a copy of ``dist-index/`` without its index state, as a CI
    publish job holds), by its sha256 taken where it was built
    (:data:`BUILD_SIDE_CHECK`); with none otherwise, most likely such a copy, else a
    far-side mirror whose records were deleted: both remedies, the copy's first. None
    for a mirror with the record, a built index, a directory publish (none is kept)
    and a tree without a manifest."""
    if (_manifest_record(root) is not None or not (root / MANIFEST_NAME).is_file()
            or _made_by(root) != "import"):
        return None
    if os.path.lexists(root / STATE_DIR):
        return (f"{MANIFEST_NAME} itself not checked: no {IMPORT_MANIFEST} (an older "
                "lockmirror imported this mirror); import its bundle again to start the record")
    if project_index:
        return (f"{MANIFEST_NAME} itself not checked (the project's index without its index "
                f"state, as a CI job holds it): {BUILD_SIDE_CHECK}")
    return (f"{MANIFEST_NAME} itself not checked (no {STATE_DIR}/, as in a copy of a built "
            f"index): {BUILD_SIDE_CHECK}, or on a far side import a bundle into it")


def _recorded_sha256(root: Path, rel: str) -> str | None:
    """The sha256 the state file ``rel`` of ``root`` holds; None when it does not
    read as one, or is a symlink or lies below one."""
    line = state_line(root, rel) if inside_mirror(root, rel) else None
    return line if line is not None and _SHA256_HEX.fullmatch(line) else None


def not_a_mirror(root: Path, missing: str) -> LockmirrorError:
    """The error for a ``root`` that is no mirror (it lacks ``missing``), from
    ``serve`` and ``verify``: one that does not exist is said to be no such directory
    (the hint: rerun an interrupted import that left the previous mirror aside, else
    the directories to give, or an import into it); where an import could go (an empty
    directory, or a mirror lacking a part) the hint imports a bundle into it; a file, or
    a directory holding other things, is said to be no lockmirror index or mirror,
    and the hint names the mirror directories inside it, if any (an import would
    replace the whole tree, so it is never suggested there). Costs a listing of
    ``root`` and a stat per entry."""
    importable = f"lockmirror import BUNDLE.tar --into {root}"
    if not root.exists():
        return LockmirrorError(
            "no such directory", where=str(root),
            hint="an import was interrupted; run `lockmirror import` again, which restores "
                 "the previous mirror first" if old_dir(root).is_dir() else
                 "give the directory of a built index (dist-index/) or of an imported "
                 f"mirror, or import a bundle there: {importable}")
    if not root.is_dir():
        return LockmirrorError("is a file, not a mirror directory", where=str(root),
                               hint="give the directory of a built index (dist-index/) or "
                                    "of an imported mirror, the one holding manifest.json")
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        return LockmirrorError(f"cannot be read: {exc.strerror or exc}", where=str(root))
    if not entries or (root / MANIFEST_NAME).is_file():
        return LockmirrorError(f"is not a mirror (no {missing})", where=str(root),
                               hint=f"import a bundle into it first: {importable}")
    inside = [str(p) for p in entries if (p / MANIFEST_NAME).is_file()]
    hint = (f"the mirror is {' or '.join(inside[:3])}: give that" if inside else
            "give the directory of a built index (dist-index/) or of an imported "
            "mirror, the one holding manifest.json and simple/")
    return LockmirrorError(f"is not a lockmirror index or mirror (no {MANIFEST_NAME}, and "
                           "it holds other files)", where=str(root), hint=hint)


def _no_manifest(root: Path) -> LockmirrorError:
    """The error for a tree without a manifest, by what it is: a directory publish
    (its receipt says which layout; the flat one, pypiserver's package directory,
    has no manifest to verify against: found by an outside tester, verify told to
    import a bundle into it) or no mirror at all."""
    if not receipt_path(root).is_file():
        return not_a_mirror(root, MANIFEST_NAME)
    tree = published_tree(root)
    if tree is None:
        return LockmirrorError(
            f"is a directory publish whose receipt ({DIRECTORY_RECEIPT}) does not read or "
            f"names no file, and it has no {MANIFEST_NAME}", where=str(root),
            hint="publish to it again, then verify it (a --layout tree publish verifies)")
    if tree:
        return LockmirrorError(
            f"is a directory publish (tree layout) without its {MANIFEST_NAME}: a publish "
            "writes it last, so the one before was interrupted", where=str(root),
            hint="publish to it again, then verify it")
    return LockmirrorError(
        f"is a flat directory publish (artifacts only, as pypiserver serves them): it has "
        f"no {MANIFEST_NAME}, which verify checks a tree against", where=str(root),
        hint=f"compare it with its index: lockmirror publish --from DIST-INDEX-OR-BUNDLE "
             f"--to {root} --dry-run ('upload total: 0': every file is there as published; a "
             "file missing or changed since the publish is counted to upload); a --layout tree "
             "publish verifies")


def repair_hint(root: Path) -> str:
    """How to repair ``root``, by what made it (found by an outside tester: after
    an interrupted index run or publish, verify sent the operator after disk rot)."""
    made_by = _made_by(root)
    if made_by == "publish":
        return ("a published directory: publish to it again (an interrupted publish leaves "
                "new files the manifest does not list yet)")
    if made_by == "index":
        return ("a built index: run `lockmirror index` again (an interrupted run leaves "
                "this); if it stays, `lockmirror index --full` names a store file damaged "
                "through a hard link")
    return "an imported mirror: import its bundle again"


def _made_by(root: Path) -> str:
    """What made the tree ``root``: ``publish`` (a directory publish's receipt is in it),
    ``index`` (the index stage's state is beside it), else ``import``."""
    from .index import STATE_NAME, state_dir_for

    if receipt_path(root).is_file():
        return "publish"
    return "index" if (state_dir_for(root) / STATE_NAME).is_file() else "import"


def require_local_files(root: Path) -> None:
    """Refuse an index built from an S3 store before anything is served or
    installed from it: its ``manifest.json`` names the ``files/`` and the store
    keeps them, so none is in the tree and pip would get 404 for each.

    Raises LockmirrorError when the manifest lists ``files/`` entries and not one
    of them is in ``root``. A tree lacking only some (a damaged mirror) passes:
    check-install names each missing file by the install that needs it, and
    ``lockmirror verify`` lists them. A tree without a manifest is not checked.
    Costs a read of the manifest and at most a stat per file (one, usually)."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return
    listed = sorted(rel for rel in Manifest.read(path).files if rel.startswith("files/"))
    if listed and not any(os.path.isfile(os.path.join(root, rel)) for rel in listed):
        raise LockmirrorError(
            f"this command needs the index's files here, and none of the {len(listed)} "
            f"files manifest.json lists is (e.g. {listed[0]}): an index built from an S3 "
            "store leaves them in the store", where=str(root),
            hint="bundle the index and import the bundle (`lockmirror import BUNDLE.tar "
                 "--into DIR`), then run this against DIR; or build the index with "
                 "LOCKMIRROR_STORE=<a local store>")
