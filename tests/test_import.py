"""The import stage: every way a bundle can be bad is refused, and the mirror stays as it was.

Each refusal test imports a good bundle first, then offers a bad one and
compares the mirror's whole tree (paths, sizes, sha256) and inode before and
after, and checks no staging or old tree is left beside it. Bad bundles are
made from good ones: bytes flipped or cut off in place (the ``.sha256`` file
left as it was, like damage in transit), or members re-packed with
``tarfile`` (with a fresh ``.sha256``, like a forger who knows the format).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_bundle import EPOCH, base_files, bundle, make_inputs, write_tree

from lockmirror.errors import BundleError, IntegrityError, LockmirrorError
from lockmirror.formats import signing
from lockmirror.formats.manifest import Entry, Manifest, check_tree, scan_tree
from lockmirror.stages.bundle import BundleResult
from lockmirror.stages.import_swap import (
    old_dir,
    recover_interrupted_import,
    removal_command,
    remove_tree,
    staging_dir,
)
from lockmirror.stages.importer import ImportResult, import_bundle
from lockmirror.stages.verify import verify_mirror

WHEEL = "files/alpha/alpha-1.0-py3-none-any.whl"


@dataclass
class Mirror:
    """A mirror imported from bundle ``first`` (of the tree in ``first_inputs``),
    and ``good``: a bundle of another tree (in ``inputs``), not imported yet."""

    root: Path
    first: BundleResult
    first_inputs: Path
    good: BundleResult
    inputs: Path

    def snapshot(self) -> tuple[str, int, list[str]]:
        """Everything that must not change: tree, inode, siblings."""
        tree = scan_tree(self.root, exclude=()).dumps()
        return tree, self.root.stat().st_ino, sorted(p.name for p in self.root.parent.iterdir())


@pytest.fixture
def mirror(tmp_path: Path) -> Mirror:
    first = bundle(tmp_path / "v1", tmp_path / "out1")
    root = tmp_path / "srv" / "mirror"
    root.parent.mkdir()
    assert import_bundle([first.path], root).changed
    good = bundle(tmp_path / "in", tmp_path / "out")  # fresh random wheels: other content
    return Mirror(root, first, tmp_path / "v1", good, tmp_path / "in")


def refused(mirror: Mirror, paths: list[Path], match: str, **kwargs: object) -> BundleError:
    """Import must raise BundleError matching ``match`` and change nothing."""
    before = mirror.snapshot()
    with pytest.raises(LockmirrorError, match=match) as caught:
        import_bundle(paths, mirror.root, **kwargs)  # type: ignore[arg-type]
    assert mirror.snapshot() == before
    assert verify_mirror(mirror.root).ok
    return caught.value  # type: ignore[return-value]


def copy_bundle(result: BundleResult, out: Path) -> Path:
    """A copy of a one-file bundle and its .sha256 in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / result.path.name
    target.write_bytes(result.path.read_bytes())
    (out / result.checksums.name).write_bytes(result.checksums.read_bytes())
    return target


def member_offset(bundle_path: Path, suffix: str) -> tuple[int, int]:
    with tarfile.open(bundle_path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(suffix))
        return member.offset_data, member.size


Edit = Callable[[list[tuple[tarfile.TarInfo, bytes]]], list[tuple[tarfile.TarInfo, bytes]]]


def repack(source: Path, target: Path, edit: Edit) -> Path:
    """Rewrite a bundle's members through ``edit`` and give it a matching .sha256."""
    with tarfile.open(source) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
                   for m in tar.getmembers()]
    members = edit(members)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w", format=tarfile.GNU_FORMAT) as out:
        for info, data in members:
            out.addfile(info, io.BytesIO(data) if info.isfile() else None)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    target.with_name(target.name + ".sha256").write_text(f"{digest}  {target.name}\n")
    return target


def top_of(members: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    return members[0][0].name.rstrip("/")


# --------------------------------------------------------------------------
# The good path
# --------------------------------------------------------------------------


def test_import_verifies_everything_and_a_second_import_is_a_no_op(mirror: Mirror) -> None:
    result = import_bundle([mirror.good.path], mirror.root)
    assert result.changed and result.extracted == 7 and result.files == 7
    assert result.data_filter == hasattr(tarfile, "data_filter")
    assert scan_tree(mirror.root) == Manifest.read(mirror.inputs / "dist-index/manifest.json")
    assert (mirror.root / "manifest.json").read_bytes() == \
        (mirror.inputs / "dist-index/manifest.json").read_bytes()
    assert sorted(p.name for p in mirror.root.parent.iterdir()) == ["mirror"]
    before = mirror.snapshot()
    again = import_bundle([mirror.good.path], mirror.root)
    assert not again.changed and again.content_id == mirror.good.content_id
    assert mirror.snapshot() == before


def test_importing_the_bundle_again_repairs_a_file_altered_in_place(mirror: Mirror) -> None:
    """What `lockmirror verify` tells the operator: a byte changed in a wheel (same
    size) is not "already held"; the import extracts it again (found by an outside
    tester: "nothing to do" compared sizes only and the file stayed altered)."""
    wheel = mirror.first_inputs / "dist-index" / WHEEL
    target = mirror.root / WHEEL
    flip_a_byte(target)
    report = verify_mirror(mirror.root)
    assert not report.ok and report.altered == (WHEEL,)
    again = import_bundle([mirror.first.path], mirror.root)
    assert again.changed and again.extracted == again.files
    assert target.read_bytes() == wheel.read_bytes() and verify_mirror(mirror.root).ok
    assert not import_bundle([mirror.first.path], mirror.root).changed


def _rewrite_entry(root: Path, rel: str) -> None:
    """Make ``manifest.json``'s entry of ``rel`` match the file as it is now (what a
    tamperer who knows the format does after altering it)."""
    manifest = Manifest.read(root / "manifest.json")
    data = (root / rel).read_bytes()
    entry = Entry(hashlib.sha256(data).hexdigest(), len(data))
    Manifest({**manifest.files, rel: entry}).write(root / "manifest.json")


def test_verify_refuses_a_manifest_changed_after_the_import(mirror: Mirror) -> None:
    """A byte of a wheel flipped and its manifest entry rewritten to match passed
    verify: the tree matched its manifest, and nothing held the manifest to the one
    the import wrote (found by an outside tester). Importing the bundle again repairs
    the mirror; a no-op import of a mirror without the record starts it."""
    record = mirror.root / ".lockmirror/manifest.sha256"
    bundled = hashlib.sha256((mirror.root / "manifest.json").read_bytes()).hexdigest()
    assert record.read_text() == f"{bundled}\n"
    flip_a_byte(mirror.root / WHEEL)
    _rewrite_entry(mirror.root, WHEEL)
    changed = hashlib.sha256((mirror.root / "manifest.json").read_bytes()).hexdigest()
    assert check_tree(mirror.root, Manifest.read(mirror.root / "manifest.json")).ok
    with pytest.raises(IntegrityError) as caught:
        verify_mirror(mirror.root, hash_files=False)
    assert caught.value.message == (
        f"manifest.json has sha256 {changed}, not the {bundled} the last import recorded "
        "(.lockmirror/manifest.sha256): it was changed after the import")
    assert caught.value.where == str(mirror.root) and "lockmirror import" in str(caught.value)
    done = _cli("verify", str(mirror.root))
    assert done.returncode == 1 and "every file matches" not in done.stdout
    [line] = done.stderr.splitlines()
    assert line.startswith("lockmirror: error: ") and bundled in line and changed in line
    # a mirror imported before the record was kept: held to its last bundle's manifest
    record.unlink()
    with pytest.raises(IntegrityError, match=f"not the {bundled} the last import recorded "
                                             r"\(.lockmirror/bundle-manifest.sha256\)"):
        verify_mirror(mirror.root)
    assert import_bundle([mirror.first.path], mirror.root).changed  # the repair
    assert verify_mirror(mirror.root).ok and record.read_text() == f"{bundled}\n"
    record.unlink()
    assert not import_bundle([mirror.first.path], mirror.root).changed
    assert record.read_text() == f"{bundled}\n"
    record.write_text("not a sha256\n")  # a record that does not read fails closed
    with pytest.raises(IntegrityError, match="the last import's record of it "
                                             r"\(.lockmirror/manifest.sha256\) does not read"):
        verify_mirror(mirror.root)


def test_a_mirror_an_older_lockmirror_refreshed_is_not_held_to_its_bundle(
        mirror: Mirror) -> None:
    """Before manifest.sha256 was kept, a refresh bundle edited manifest.json and left
    bundle-manifest.sha256 (a delta's base) as it was, and quarantine.json says so: such
    a mirror is not failed for differing from its bundle (it is checked from its next
    import or refresh on)."""
    state = mirror.root / ".lockmirror"
    (state / "manifest.sha256").unlink()
    (mirror.root / WHEEL).unlink()  # as a quarantine takes a release out
    manifest = Manifest.read(mirror.root / "manifest.json")
    Manifest({rel: entry for rel, entry in manifest.files.items() if rel != WHEEL}).write(
        mirror.root / "manifest.json")
    (state / "quarantine.json").write_text("{}\n")
    assert verify_mirror(mirror.root).ok


def test_the_bundles_state_is_kept_and_a_bundle_without_a_snapshot_keeps_the_last(
        mirror: Mirror, tmp_path: Path) -> None:
    """advisories.json and mirror.yaml land in .lockmirror/ (not counted as extracted
    index files); a later bundle without a snapshot keeps the one the mirror holds."""
    snapshot = b'{"taken": "2024-01-02T03:04:05Z"}\n'
    with_snapshot = bundle(tmp_path / "snap", tmp_path / "out-snap",
                           extra=[("advisories.json", snapshot)])
    result = import_bundle([with_snapshot.path], mirror.root)
    index = Manifest.read(tmp_path / "snap/dist-index/manifest.json")
    assert result.extracted == 7 and result.bytes_extracted == sum(
        entry.size for entry in index.files.values())
    state = mirror.root / ".lockmirror"
    assert (state / "advisories.json").read_bytes() == snapshot
    assert (state / "mirror.yaml").read_bytes() == (tmp_path / "snap/mirror.yaml").read_bytes()
    later = import_bundle([mirror.good.path], mirror.root)  # carries no snapshot
    assert later.changed and (state / "advisories.json").read_bytes() == snapshot
    assert (state / "bundle-manifest.sha256").read_text() == f"{later.index_manifest_sha256}\n"
    assert verify_mirror(mirror.root).ok


@pytest.mark.parametrize("linked", ["the state file", "the state directory"])
def test_a_symlinked_state_is_not_carried_into_the_new_tree(mirror: Mirror, tmp_path: Path,
                                                            linked: str) -> None:
    """The state a bundle without a snapshot keeps is the mirror's own file: a
    symlink (to a file, or of .lockmirror/ itself) out of the mirror is not
    followed, so nothing from outside is hard-linked into the new tree."""
    import_bundle([mirror.good.path], mirror.root)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "advisories.json").write_text("SECRET")
    state = mirror.root / ".lockmirror"
    if linked == "the state file":
        (state / "advisories.json").symlink_to(outside / "advisories.json")
    else:
        shutil.rmtree(state)
        state.symlink_to(outside)
    other = bundle(tmp_path / "other", tmp_path / "out-other")  # other wheels: not a no-op
    assert import_bundle([other.path], mirror.root).changed
    kept = mirror.root / ".lockmirror" / "advisories.json"
    assert not kept.exists() and not kept.is_symlink()
    assert (outside / "advisories.json").read_text() == "SECRET"


def test_a_bundle_of_another_mirror_does_not_replace_this_one(mirror: Mirror,
                                                               tmp_path: Path) -> None:
    """Two mirrors from one signing key: the far side's 'demo' mirror is not
    silently replaced by the 'other' mirror's bundle; --renamed lets a renamed
    mirror's bundle in, and its name is then the one held."""
    other = bundle(mirror.inputs, tmp_path / "other", name="other")
    error = refused(mirror, [other.path], "holds the mirror 'demo'; this bundle is of the "
                                          "mirror 'other'")
    assert error.where == str(mirror.root) and "--renamed" in str(error)
    assert import_bundle([other.path], mirror.root, renamed=True).changed
    assert import_bundle([other.path], mirror.root).changed is False  # 'other' now
    done = _cli("import", str(mirror.good.path), "--into", str(mirror.root))
    assert done.returncode == 1 and done.stderr.startswith("lockmirror: error: ")
    assert _cli("import", str(mirror.good.path), "--into", str(mirror.root),
                "--renamed").returncode == 0


def test_a_no_op_import_still_checks_every_member(mirror: Mirror, tmp_path: Path) -> None:
    """The mirror already holds this content: a damaged copy is still refused, not
    answered with "nothing to do", as a full import names it (the damaged member),
    and so is one whose .sha256 was made again after the damage."""
    assert import_bundle([mirror.good.path], mirror.root).changed
    bad = copy_bundle(mirror.good, tmp_path / "bad")
    offset, size = member_offset(bad, WHEEL)
    data = bytearray(bad.read_bytes())
    data[offset + size // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    error = refused(mirror, [bad], "sha256 .* does not match bundle.json")
    assert error.where == f"{bad.name}:{mirror.good.path.name.removesuffix('.tar')}/index/{WHEEL}"
    assert error.hint == "damaged in transit or tampered; nothing was changed"
    done = _cli("import", str(bad), "--into", str(mirror.root))
    assert done.returncode == 1 and "nothing to do" not in done.stdout
    assert "does not match bundle.json" in done.stderr
    (bad.parent / mirror.good.checksums.name).write_text(
        f"{hashlib.sha256(bad.read_bytes()).hexdigest()}  {bad.name}\n")
    refused(mirror, [bad], "sha256 .* does not match bundle.json")


def test_import_repairs_a_damaged_mirror(mirror: Mirror) -> None:
    (mirror.root / WHEEL).write_bytes(b"rot")
    (mirror.root / "stray.txt").write_text("x")
    assert not verify_mirror(mirror.root).ok
    result = import_bundle([mirror.first.path], mirror.root)
    assert result.changed and verify_mirror(mirror.root).ok
    assert not (mirror.root / "stray.txt").exists()


def test_a_full_bundle_repairs_a_mirror_whose_manifest_is_damaged(mirror: Mirror) -> None:
    (mirror.root / "manifest.json").write_text("{not json")
    result = import_bundle([mirror.first.path], mirror.root)
    assert result.changed and verify_mirror(mirror.root).ok
    assert result.removed_releases == ()  # nothing known to compare with


def test_refuses_to_replace_a_directory_that_is_not_a_mirror(tmp_path: Path) -> None:
    good = bundle(tmp_path / "in", tmp_path / "out")
    home = tmp_path / "home"
    write_tree(home, {"notes.txt": b"mine"})
    (home / "manifest.json").unlink()
    with pytest.raises(LockmirrorError, match="holds no manifest.json; refusing"):
        import_bundle([good.path], home)
    assert (home / "notes.txt").read_bytes() == b"mine"


# --------------------------------------------------------------------------
# Damage in transit
# --------------------------------------------------------------------------


def test_flipped_byte_in_a_member_names_the_member(mirror: Mirror, tmp_path: Path) -> None:
    bad = copy_bundle(mirror.good, tmp_path / "bad")
    offset, size = member_offset(bad, WHEEL)
    data = bytearray(bad.read_bytes())
    data[offset + size // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    error = refused(mirror, [bad], "does not match bundle.json")
    assert WHEEL in str(error) and "nothing was changed" in str(error)


def test_flipped_byte_outside_any_member_fails_the_outer_hash(mirror: Mirror,
                                                              tmp_path: Path) -> None:
    bad = copy_bundle(mirror.good, tmp_path / "bad")
    data = bytearray(bad.read_bytes())
    data[-10] ^= 0x01  # end-of-archive padding: only the .sha256 covers it
    bad.write_bytes(bytes(data))
    error = refused(mirror, [bad], r"sha256 does not match .*\.tar\.sha256")
    assert str(bad) in str(error)


def test_truncated_bundle_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    bad = copy_bundle(mirror.good, tmp_path / "bad")
    offset, size = member_offset(bad, WHEEL)
    data = bad.read_bytes()
    bad.write_bytes(data[:offset + size // 2])
    error = refused(mirror, [bad], "truncated")
    assert WHEEL in str(error)
    with tarfile.open(copy_bundle(mirror.good, tmp_path / "cut")) as tar:
        cut_at = tar.getmembers()[4].offset  # a header boundary: tar itself sees no damage
    cut = tmp_path / "cut" / mirror.good.path.name
    cut.write_bytes(data[:cut_at])
    error = refused(mirror, [cut], "bundle is damaged: its sha256 differs from the "
                                   r".*\.tar\.sha256 listing \(truncated or incomplete")
    assert error.hint is not None and "copy it again" in error.hint
    cut.write_bytes(data[:1000])  # inside bundle.json's header: not "not a lockmirror bundle"
    refused(mirror, [cut], "bundle is truncated: it ends before bundle.json")
    # inside bundle.json's data (found by an outside tester: "damaged tar header")
    info_offset, _ = member_offset(mirror.good.path, "/bundle.json")
    cut.write_bytes(data[:info_offset + 100])
    error = refused(mirror, [cut], "bundle is truncated: it ends inside this member")
    assert error.where.endswith("/bundle.json") and error.hint == "copy it again"


def test_a_damaged_member_header_says_the_copy_is_damaged(mirror: Mirror,
                                                          tmp_path: Path) -> None:
    """A header whose checksum no longer matches makes tarfile stop listing members
    there, as if the bundle ended: with the .sha256 as it came, the import says the
    copy is damaged (found by an outside tester: only "truncated or incomplete")."""
    bad = copy_bundle(mirror.good, tmp_path / "bad")
    with tarfile.open(bad) as tar:
        header = next(m for m in tar.getmembers() if m.name.endswith(WHEEL)).offset
    data = bytearray(bad.read_bytes())
    data[header + 148:header + 156] = b"0000000\0"  # the header's checksum field
    bad.write_bytes(bytes(data))
    error = refused(mirror, [bad], r"bundle is damaged: its sha256 differs from the "
                                   r".*\.tar\.sha256 listing \(truncated or incomplete: "
                                   r"\d+ member\(s\) listed in bundle.json are missing")
    assert error.hint is not None and "copy it again" in error.hint
    assert error.where == str(bad)
    # with a .sha256 made again (a forger): what tar shows, nothing said of the copy
    digest = hashlib.sha256(bytes(data)).hexdigest()
    bad.with_name(bad.name + ".sha256").write_text(f"{digest}  {bad.name}\n")
    error = refused(mirror, [bad], "truncated or incomplete: ")
    assert error.message.startswith("bundle is truncated or incomplete: ")
    assert error.hint == "refusing the whole bundle; nothing was changed"


def test_missing_checksum_file_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    bad = copy_bundle(mirror.good, tmp_path / "bad")
    bad.with_name(bad.name + ".sha256").unlink()
    refused(mirror, [bad], "checksum file is missing")


def test_not_a_tar_at_all(mirror: Mirror, tmp_path: Path) -> None:
    bad = tmp_path / "junk.tar"
    bad.write_bytes(os.urandom(4096))
    digest = hashlib.sha256(bad.read_bytes()).hexdigest()
    bad.with_name("junk.tar.sha256").write_text(f"{digest}  junk.tar\n")
    refused(mirror, [bad], "not a tar archive|not a lockmirror bundle")


# --------------------------------------------------------------------------
# Hostile members
# --------------------------------------------------------------------------


def _evil(kind: str, top: str) -> tarfile.TarInfo:
    if kind == "dotdot":
        info = tarfile.TarInfo(f"{top}/index/../../escape.txt")
    elif kind == "absolute":
        info = tarfile.TarInfo("/tmp/lockmirror-escape.txt")
    else:
        info = tarfile.TarInfo(f"{top}/index/files/{kind}")
    info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                 "device": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}.get(kind, tarfile.REGTYPE)
    if kind == "symlink":
        info.linkname = "/etc/passwd"
    if kind == "hardlink":
        info.linkname = f"{top}/mirror.yaml"
    if kind == "device":
        info.devmajor, info.devminor = 1, 3
    return info


@pytest.mark.parametrize("filter_available", [True, False], ids=["data-filter", "own-checks"])
@pytest.mark.parametrize(("kind", "message"), [
    ("dotdot", "unsafe member name"),
    ("absolute", "unsafe member name"),
    ("symlink", "is a symbolic link"),
    ("hardlink", "is a hard link"),
    ("device", "is a device node"),
    ("fifo", "is a FIFO"),
])
def test_hostile_member_is_refused(mirror: Mirror, tmp_path: Path, kind: str, message: str,
                                   filter_available: bool,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Our own checks refuse these even without tarfile.data_filter (as on
    Debian's Python 3.11.2), before anything is extracted."""
    if not filter_available:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)

    def add_evil(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[
            tuple[tarfile.TarInfo, bytes]]:
        evil = _evil(kind, top_of(members))
        payload = b"owned\n" if evil.isfile() else b""
        evil.size = len(payload)
        return [*members[:3], (evil, payload), *members[3:]]

    bad = repack(mirror.good.path, tmp_path / "bad" / mirror.good.path.name, add_evil)
    error = refused(mirror, [bad], message)
    assert error.where == f"{bad.name}:{_evil(kind, f'lockmirror-demo-{mirror.good.content_id}').name}"
    assert error.hint == "refusing the whole bundle; nothing was changed"
    assert not Path("/tmp/lockmirror-escape.txt").exists()
    assert not (mirror.root.parent.parent / "escape.txt").exists()


def test_member_not_in_bundle_json_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    def smuggle(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[
            tuple[tarfile.TarInfo, bytes]]:
        extra = tarfile.TarInfo(f"{top_of(members)}/index/files/alpha/extra.whl")
        extra.size = 5
        return [*members, (extra, b"extra")]

    bad = repack(mirror.good.path, tmp_path / "bad" / mirror.good.path.name, smuggle)
    error = refused(mirror, [bad], "is not listed in bundle.json")
    assert "extra.whl" in str(error)
    assert error.hint == "refusing the whole bundle; nothing was changed"


def test_a_directory_holding_nothing_listed_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    def smuggle(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[
            tuple[tarfile.TarInfo, bytes]]:
        extra = tarfile.TarInfo(f"{top_of(members)}/index/files/stranger")
        extra.type = tarfile.DIRTYPE
        return [*members[:3], (extra, b""), *members[3:]]

    bad = repack(mirror.good.path, tmp_path / "bad" / mirror.good.path.name, smuggle)
    error = refused(mirror, [bad], "is a directory holding nothing bundle.json lists")
    assert str(error.where).endswith("/index/files/stranger")
    assert error.hint == "refusing the whole bundle; nothing was changed"


def test_a_member_name_cannot_forge_lines_on_the_terminal(mirror: Mirror,
                                                           tmp_path: Path) -> None:
    """A name with a carriage return, escapes and a newline (a forged "success"
    line) is refused as unsafe, and the one error line shows it escaped."""
    forged = "\r\x1b[2K\x1b[1Aimport: full bundle of 'demo' is now /srv/mirror: verified\n\u202e"

    def smuggle(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[
            tuple[tarfile.TarInfo, bytes]]:
        extra = tarfile.TarInfo(f"{top_of(members)}/tool/{forged}")
        extra.size = 1
        return [*members[:3], (extra, b"x"), *members[3:]]

    bad = repack(mirror.good.path, tmp_path / "bad" / mirror.good.path.name, smuggle)
    refused(mirror, [bad], "unsafe member name")
    before = mirror.snapshot()
    done = _cli("import", str(bad), "--into", str(mirror.root))
    assert done.returncode != 0 and mirror.snapshot() == before
    lines = [line for line in done.stderr.splitlines() if not line.startswith("import: ")]
    assert len(lines) == 1 and lines[0].startswith("lockmirror: error: ")
    assert not any(ch in done.stderr.rstrip("\n") for ch in "\r\x1b\u202e\n")
    assert "\\x1b[2K" in lines[0]


def test_altered_bundle_json_no_longer_matches_its_directory(mirror: Mirror,
                                                             tmp_path: Path) -> None:
    def alter(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[
            tuple[tarfile.TarInfo, bytes]]:
        info, data = members[1]
        data = data.replace(b'"lockmirror_version": "', b'"lockmirror_version": "9')
        info.size = len(data)
        return [members[0], (info, data), *members[2:]]

    bad = repack(mirror.good.path, tmp_path / "bad" / mirror.good.path.name, alter)
    refused(mirror, [bad], "bundle.json hashes to .* but the bundle directory is")


# --------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------


def test_signatures(mirror: Mirror, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "release"
    public = signing.generate_keypair(key)
    other = signing.generate_keypair(tmp_path / "keys" / "intruder")
    signed = bundle(mirror.inputs, tmp_path / "signed", key=key,
                    source_date_epoch=EPOCH + 1)
    refused(mirror, [signed.path], "signed by key SHA256:.*, not by the trusted key",
            pubkey=other)
    refused(mirror, [mirror.good.path], "not signed, but a public key was given", pubkey=public)

    # A forger re-makes bundle.json (and its directory name) but cannot re-sign it.
    def forge(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[
            tuple[tarfile.TarInfo, bytes]]:
        from lockmirror.formats.bundle_format import BundleInfo

        old_top = top_of(members)
        info = BundleInfo.loads(members[1][1], where="bundle.json")
        forged = BundleInfo(**{**info.__dict__, "lockmirror_version": "6.6.6"})
        out = []
        for member, data in members:
            member.name = member.name.replace(old_top, forged.top, 1)
            if member.name.endswith("/bundle.json"):
                data = forged.dumps()
                member.size = len(data)
            out.append((member, data))
        return out

    forged = repack(signed.path, tmp_path / "forged" / "lockmirror-demo-forged.tar", forge)
    refused(mirror, [forged], "signature does not match the signed data", pubkey=public)

    result = import_bundle([signed.path], mirror.root, pubkey=public)
    assert result.signed and result.signer == signing.fingerprint(
        signing.load_public_key(public))

    # once a signature was checked, an import that checks none is refused: a carrier
    # swapping in an unsigned bundle gains nothing from a forgotten --pubkey
    error = refused(mirror, [mirror.good.path], f"whose signature was checked against the "
                                               f"key {re.escape(result.signer)}")
    assert "--pubkey" in str(error)
    refused(mirror, [signed.path], "this import checks none")  # the same bundle too
    assert not import_bundle([signed.path], mirror.root, pubkey=public).changed
    # another key's bundle with that key as --pubkey: refused, both keys named (found by
    # an outside tester: it went in and silently replaced the recorded signer)
    rotated = bundle(mirror.inputs, tmp_path / "rotated", key=tmp_path / "keys" / "intruder",
                     source_date_epoch=EPOCH + 2)
    theirs = signing.fingerprint(signing.load_public_key(other))
    error = refused(mirror, [rotated.path], f"checked against the key {re.escape(result.signer)}"
                                            f"; --pubkey is the key {re.escape(theirs)}",
                    pubkey=other)
    record = mirror.root / ".lockmirror" / "signer"
    assert f"delete {record} and import again" in str(error)
    assert "\n" not in str(error)
    # a record that cannot be read still requires a check: the guard fails closed
    record.write_bytes(b"\xff\xfe")
    refused(mirror, [mirror.good.path], "this import checks none")
    refused(mirror, [signed.path], "unreadable.*--pubkey is the key", pubkey=public)
    # a deliberate key rotation: the record deleted, the new key's bundle goes in
    record.unlink()
    assert import_bundle([rotated.path], mirror.root, pubkey=other).signer == theirs
    assert record.read_text() == f"{theirs}\n"


def test_a_signed_copy_of_what_the_mirror_holds_records_its_signer(
        mirror: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The bundle the mirror holds, now signed (bundle.json and its id unchanged), with
    --pubkey: nothing to extract, but the signer is recorded, so a carrier's unsigned
    bundle is refused afterwards (found by an outside tester: "nothing to do" returned
    before the signer was written, and a forged unsigned bundle went in)."""
    from lockmirror.cli import main

    public = signing.generate_keypair(tmp_path / "keys" / "release")
    assert import_bundle([mirror.good.path], mirror.root).changed  # unsigned, no --pubkey
    signed = bundle(mirror.inputs, tmp_path / "signed", key=tmp_path / "keys" / "release")
    assert signed.content_id == mirror.good.content_id
    capsys.readouterr()
    assert main(["import", str(signed.path), "--into", str(mirror.root),
                 "--pubkey", str(public)]) == 0
    fingerprint = signing.fingerprint(signing.load_public_key(public))
    out = capsys.readouterr().out
    assert "nothing to do" in out and f"signature by {fingerprint} verified" in out
    assert (mirror.root / ".lockmirror" / "signer").read_text() == f"{fingerprint}\n"
    assert not list((mirror.root / ".lockmirror").glob(".*.tmp"))
    refused(mirror, [mirror.first.path], "this import checks none")
    assert not import_bundle([signed.path], mirror.root, pubkey=public).changed


# --------------------------------------------------------------------------
# Deltas
# --------------------------------------------------------------------------


def flip_a_byte(path: Path) -> None:
    """Alter ``path`` in place, keeping its size: one bit of its middle byte flipped."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _next_version(old_index: Path, root: Path) -> Path:
    """A new index: alpha kept, beta dropped, gamma added, pages changed."""
    files = base_files()
    files[WHEEL] = (old_index / WHEEL).read_bytes()
    del files["files/beta/beta-2.0.tar.gz"]
    files["files/gamma/gamma-3.0-py3-none-any.whl"] = os.urandom(30_000)
    files["simple/index.html"] = b"<a href='alpha/'>alpha</a><a href='gamma/'>gamma</a>\n"
    make_inputs(root, files)
    return root / "dist-index"


def test_delta_applies_onto_its_base_and_links_unchanged_files(mirror: Mirror,
                                                               tmp_path: Path) -> None:
    new_index = _next_version(mirror.first_inputs / "dist-index", tmp_path / "v2")
    delta = bundle(tmp_path / "v2", tmp_path / "delta", since=mirror.first.path)
    assert delta.size < mirror.first.size
    result: ImportResult = import_bundle([delta.path], mirror.root)
    assert result.changed and result.kind == "delta"
    # from the old mirror: the alpha wheel, its .metadata and the three unchanged pages
    assert result.linked == 5 and result.extracted == 2  # gamma, simple/index.html
    assert scan_tree(mirror.root) == Manifest.read(new_index / "manifest.json")
    assert not (mirror.root / "files/beta").exists()
    assert verify_mirror(mirror.root).ok
    assert not import_bundle([delta.path], mirror.root).changed  # twice: a no-op


@pytest.mark.parametrize("delta_imported", [False, True])
def test_a_delta_onto_a_mirror_with_a_file_altered_says_the_mirror_is_damaged(
        mirror: Mirror, tmp_path: Path, delta_imported: bool) -> None:
    """A base file altered in place with its size kept is found by its sha256: the
    delta is refused instead of reporting "every file verified". Imported once already,
    the delta cannot repair it either (it applies onto its base), and says so, naming
    the file, rather than "applies only onto the mirror whose last full or delta
    bundle's manifest.json had sha256 ..." (found by a reviewer)."""
    _next_version(mirror.first_inputs / "dist-index", tmp_path / "v2")
    delta = bundle(tmp_path / "v2", tmp_path / "delta", since=mirror.first.path)
    if delta_imported:
        import_bundle([delta.path], mirror.root)
    altered = mirror.root / WHEEL
    flip_a_byte(altered)
    before = mirror.snapshot()
    with pytest.raises(BundleError, match="current mirror is damaged") as caught:
        import_bundle([delta.path], mirror.root)
    assert caught.value.where == str(altered)
    assert "import a full bundle" in (caught.value.hint or "")
    assert (caught.value.hint or "").endswith("; nothing was changed")
    assert mirror.snapshot() == before
    assert sorted(p.name for p in mirror.root.parent.iterdir()) == ["mirror"]


def test_delta_onto_the_wrong_base_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    other = tmp_path / "other"
    make_inputs(other)  # a different v1 (fresh random wheels)
    _next_version(other / "dist-index", tmp_path / "v2")
    delta = bundle(tmp_path / "v2", tmp_path / "delta",
                   since=other / "dist-index" / "manifest.json")
    current = hashlib.sha256((mirror.root / "manifest.json").read_bytes()).hexdigest()
    # the opening says what the delta is held to: the manifest the last bundle pinned
    error = refused(mirror, [delta.path], "applies only onto the mirror whose last full or "
                    "delta bundle's manifest.json had sha256")
    assert str(error).startswith(
        f"{mirror.root}: this delta applies only onto the mirror whose last full or delta "
        f"bundle's manifest.json had sha256 {delta.base_manifest_sha256} (.lockmirror/"
        "bundle-manifest.sha256; on a mirror without that record, its manifest.json's), "
        f"but its manifest.json has sha256 {current}")
    assert len(str(error).splitlines()) == 1
    empty = tmp_path / "empty"
    with pytest.raises(BundleError, match="it holds no mirror"):
        import_bundle([delta.path], empty)
    assert not empty.exists()


# --------------------------------------------------------------------------
# Volumes
# --------------------------------------------------------------------------


def test_volumes_are_checked_and_reassembled(mirror: Mirror, tmp_path: Path) -> None:
    new_index = _next_version(mirror.first_inputs / "dist-index", tmp_path / "v2")
    split = bundle(tmp_path / "v2", tmp_path / "split", split="64K")
    assert len(split.parts) > 3
    missing = split.parts[2]
    hidden = missing.rename(tmp_path / "elsewhere.tar")
    refused(mirror, list(split.parts[:2]), f"{missing.name} is missing")
    hidden.rename(missing)

    data = bytearray(split.parts[-1].read_bytes())
    data[-3] ^= 0x01  # in the end padding: only the volume's hash notices
    original = split.parts[-1].read_bytes()
    split.parts[-1].write_bytes(bytes(data))
    error = refused(mirror, list(reversed(split.parts)), "sha256 does not match")
    assert error.where == str(split.parts[-1])
    assert error.hint == "damaged in transit; copy it again. Nothing was changed"
    split.parts[-1].write_bytes(original)

    result = import_bundle(list(reversed(split.parts)), mirror.root)
    assert result.changed and scan_tree(mirror.root) == Manifest.read(new_index / "manifest.json")


# --------------------------------------------------------------------------
# Interruption
# --------------------------------------------------------------------------


def test_import_killed_midway_leaves_the_mirror_and_the_next_run_recovers(
        mirror: Mirror, tmp_path: Path) -> None:
    files = base_files()
    files["files/huge/huge-1.0-py3-none-any.whl"] = b""
    make_inputs(tmp_path / "v2", files)
    huge = tmp_path / "v2" / "dist-index" / "files/huge/huge-1.0-py3-none-any.whl"
    size = 256 << 20
    with open(huge, "r+b") as handle:
        handle.truncate(size)  # sparse: cheap to make, real bytes in the bundle
    scan_tree(tmp_path / "v2" / "dist-index").write(tmp_path / "v2" / "dist-index/manifest.json")
    big = bundle(tmp_path / "v2", tmp_path / "big")
    before = mirror.snapshot()
    partial = staging_dir(mirror.root) / "files/huge/huge-1.0-py3-none-any.whl"

    process = subprocess.Popen([sys.executable, "-m", "lockmirror", "import", str(big.path),
                                "--into", str(mirror.root)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if 0 < partial.stat().st_size < size:
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.0005)
        assert process.poll() is None, "the import finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert staging_dir(mirror.root).is_dir()  # killed during extraction
    staging_name = staging_dir(mirror.root).name
    assert mirror.snapshot()[:2] == before[:2]  # tree and inode untouched
    assert verify_mirror(mirror.root).ok

    result = import_bundle([big.path], mirror.root)
    assert result.recovered is not None and staging_name in result.recovered
    assert result.changed and verify_mirror(mirror.root).ok
    assert (mirror.root / "files/huge/huge-1.0-py3-none-any.whl").stat().st_size == size
    assert sorted(p.name for p in mirror.root.parent.iterdir()) == ["mirror"]


def test_write_failure_midway_leaves_the_mirror(mirror: Mirror) -> None:
    """A full disk, simulated with RLIMIT_FSIZE: the 300 kB wheel cannot be written."""
    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    before = mirror.snapshot()
    done = subprocess.run([sys.executable, "-m", "lockmirror", "import", str(mirror.good.path),
                           "--into", str(mirror.root)], preexec_fn=small_files,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "cannot write the new mirror: File too large" in done.stderr
    assert WHEEL in done.stderr and "Traceback" not in done.stderr
    assert "staging" not in done.stderr  # the file as the mirror names it
    assert mirror.snapshot() == before


def test_one_import_at_a_time(mirror: Mirror) -> None:
    import fcntl

    fd = os.open(mirror.root.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        before = mirror.snapshot()
        with pytest.raises(LockmirrorError, match="another lockmirror import is running"):
            import_bundle([mirror.good.path], mirror.root)
        assert mirror.snapshot() == before
    finally:
        os.close(fd)
    assert import_bundle([mirror.good.path], mirror.root).changed


def test_swap_by_the_rename_dance(mirror: Mirror) -> None:
    """into -> old, staging -> into, old removed: nothing left beside the mirror."""
    result = import_bundle([mirror.good.path], mirror.root)
    assert result.changed and verify_mirror(mirror.root).ok
    assert sorted(p.name for p in mirror.root.parent.iterdir()) == ["mirror"]


def test_a_failed_second_rename_puts_the_mirror_back(mirror: Mirror,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """If staging -> mirror fails after mirror -> old, the old tree is renamed back."""
    real_rename = os.rename

    def refuse_staging(source: str | Path, target: str | Path) -> None:
        if Path(source) == staging_dir(mirror.root):
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(target))
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", refuse_staging)
    refused(mirror, [mirror.good.path], "cannot write the new mirror: Invalid cross-device")


def test_interrupted_swap_is_undone_or_finished(mirror: Mirror) -> None:
    before = mirror.snapshot()
    # killed between "mirror -> old" and "staging -> mirror": the old tree comes back
    mirror.root.rename(old_dir(mirror.root))
    staging_dir(mirror.root).mkdir()
    with pytest.raises(LockmirrorError, match="an import was interrupted"):
        verify_mirror(mirror.root)
    message = recover_interrupted_import(mirror.root)
    assert message is not None and "restored" in message
    assert mirror.snapshot() == before
    # killed after the swap, before the old tree was removed: it is removed
    old_dir(mirror.root).mkdir()
    (old_dir(mirror.root) / "leftover").write_text("x")
    assert "removed" in (recover_interrupted_import(mirror.root) or "")
    assert mirror.snapshot() == before
    assert recover_interrupted_import(mirror.root) is None


def outside_directories(tmp_path: Path) -> Path:
    """A tree outside any mirror whose directories are all read-only (0o500)."""
    outside = tmp_path / "outside"
    (outside / "a" / "b").mkdir(parents=True)
    for directory in (outside / "a" / "b", outside / "a", outside):
        directory.chmod(0o500)
    return outside


def modes(tree: Path) -> dict[str, int]:
    return {str(path): stat.S_IMODE(path.lstat().st_mode) for path in [tree, *tree.rglob("*")]}


@pytest.mark.parametrize("role", ["old", "staging"])
def test_a_symlink_planted_as_the_old_or_staging_tree_is_refused_and_not_followed(
        mirror: Mirror, tmp_path: Path, role: str) -> None:
    """Whoever may write the mirror's parent can put a symbolic link where an import keeps
    its old or staging tree: the next import (often as root) made every directory it led
    to u+rwx while removing it (found by a security review: 500 became 700 outside the
    mirror). It is refused, naming it, and what it points to is left as it was."""
    outside = outside_directories(tmp_path)
    before = modes(outside)
    planted = (old_dir if role == "old" else staging_dir)(mirror.root)
    planted.symlink_to(outside)
    mirrored = mirror.snapshot()
    with pytest.raises(LockmirrorError) as caught:
        import_bundle([mirror.good.path], mirror.root)
    assert modes(outside) == before and planted.is_symlink()
    assert str(caught.value) == (
        f"{planted}: is a symbolic link, where an import of {mirror.root} keeps its {role} "
        "tree; an import removes or renames only a directory there, so nothing was changed "
        f"(see what it is and who put it there, remove it (`rm {planted}`), then import again)")
    assert mirror.snapshot() == mirrored and verify_mirror(mirror.root).ok


def test_a_symlink_planted_as_the_old_tree_of_a_missing_mirror_is_not_made_the_mirror(
        mirror: Mirror, tmp_path: Path) -> None:
    """No mirror and an old tree beside it is a swap killed between its renames: the old
    tree was renamed back even where it was a link, which the import then swapped out and
    removed, following it."""
    outside = outside_directories(tmp_path)
    before = modes(outside)
    shutil.rmtree(mirror.root)
    old_dir(mirror.root).symlink_to(outside)
    with pytest.raises(LockmirrorError, match="is a symbolic link, where an import of"):
        import_bundle([mirror.good.path], mirror.root)
    assert not os.path.lexists(mirror.root) and old_dir(mirror.root).is_symlink()
    assert modes(outside) == before


def test_removing_a_tree_that_is_a_symlink_changes_nothing_it_leads_to(tmp_path: Path) -> None:
    """rmtree refuses a link, and the directories were then opened up by walking it, the
    link followed."""
    outside = outside_directories(tmp_path)
    before = modes(outside)
    link = tmp_path / "srv" / ".mirror.lockmirror-old"
    link.parent.mkdir()
    link.symlink_to(outside)
    with pytest.raises(OSError):
        remove_tree(link)
    assert modes(outside) == before


def test_the_command_printed_to_remove_a_leftover_tree_removes_that_tree_alone(
        tmp_path: Path) -> None:
    """A mirror at `/srv/my mirror`: the command said `rm -rf /srv/.my mirror.lockmirror-old`
    unquoted, which removes /srv/.my and ./mirror.lockmirror-old instead (found by a
    security review)."""
    srv, elsewhere = tmp_path / "srv", tmp_path / "cwd"
    old = old_dir(srv / "my mirror")
    (old / "files").mkdir(parents=True)
    (old / "files").chmod(0o555)
    (srv / ".my").mkdir()  # what the words of the path unquoted name
    (elsewhere / "mirror.lockmirror-old").mkdir(parents=True)
    subprocess.run(["sh", "-c", removal_command(old)], cwd=elsewhere, check=True)
    assert not os.path.lexists(old)
    assert (srv / ".my").is_dir() and (elsewhere / "mirror.lockmirror-old").is_dir()


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lockmirror", *args], capture_output=True,
                          text=True, check=False)


def test_cli_import_and_verify(mirror: Mirror, tmp_path: Path) -> None:
    target = tmp_path / "cli-mirror"
    done = _cli("import", str(mirror.good.path), "--into", str(target))
    assert done.returncode == 0, done.stderr
    assert "every file verified" in done.stdout and "unsigned" in done.stdout
    done = _cli("import", str(mirror.good.path), "--into", str(target))
    assert "nothing to do" in done.stdout
    assert _cli("verify", str(target)).returncode == 0

    (target / WHEEL).write_bytes(b"rot")
    (target / "files/beta/beta-2.0.tar.gz").unlink()
    (target / "simple/extra.html").write_text("x")
    done = _cli("verify", str(target))
    assert done.returncode == 1
    assert f"altered: {target / WHEEL}" in done.stdout
    assert "missing: " in done.stdout and "unexpected: " in done.stdout
    assert "1 missing, 1 altered, 1 unexpected" in done.stdout
    assert "import its bundle again" in done.stdout  # the way out


def test_cli_refusal_is_one_line_naming_the_member(mirror: Mirror, tmp_path: Path) -> None:
    bad = copy_bundle(mirror.good, tmp_path / "bad")
    offset, _size = member_offset(bad, WHEEL)
    data = bytearray(bad.read_bytes())
    data[offset + 7] ^= 0x80
    bad.write_bytes(bytes(data))
    before = mirror.snapshot()
    done = _cli("import", str(bad), "--into", str(mirror.root))
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if not line.startswith("import: ")]
    assert len(lines) == 1 and lines[0].startswith("lockmirror: error: ")
    assert WHEEL in lines[0] and "Traceback" not in done.stderr
    assert mirror.snapshot() == before


def test_a_bundle_renamed_after_it_was_written_is_said(tmp_path: Path) -> None:
    """A bundle renamed to another's id (and its .sha256 made again) imported with no
    word of it; the two names only disagreed across lines (found by an outside tester)."""
    made = bundle(tmp_path / "in", tmp_path / "out")
    renamed = tmp_path / "lockmirror-demo-0123456789abcdef.tar"
    shutil.copy(made.path, renamed)
    digest = hashlib.sha256(renamed.read_bytes()).hexdigest()
    renamed.with_name(renamed.name + ".sha256").write_text(f"{digest}  {renamed.name}\n")
    said: list[str] = []
    import_bundle([renamed], tmp_path / "far", progress=said.append)
    assert (f"note: {renamed.name} is not named as bundle.json says: it holds "
            f"{made.path.name} (renamed after it was written)") in said
    said.clear()
    import_bundle([made.path], tmp_path / "far2", progress=said.append)
    assert not [line for line in said if line.startswith("note:")]


def test_verify_during_an_import_says_one_is_running(
        mirror: Mirror, capsys: pytest.CaptureFixture[str]) -> None:
    """While an import into the mirror runs (it holds the lock beside the mirror, its
    staging tree there; between its renames the mirror is missing), verify says so in
    one line and exits 1 (it hashed a tree being swapped, and for the missing mirror
    said an import was interrupted); an import into a directory beside it is no matter."""
    from lockmirror.cli import main
    from lockmirror.fsutil import one_at_a_time

    running = (f"lockmirror: error: an import into {mirror.root} is running; verify again "
               "when it ends\n")
    with one_at_a_time(mirror.root.parent, "an import, as import_lock"):
        assert main(["verify", str(mirror.root)]) == 0  # into a directory beside it
        staging_dir(mirror.root).mkdir()
        capsys.readouterr()
        assert main(["verify", str(mirror.root)]) == 1
        assert capsys.readouterr() == ("", running)
        mirror.root.rename(old_dir(mirror.root))  # between the two renames
        assert main(["verify", str(mirror.root)]) == 1
        assert capsys.readouterr() == ("", running)
        old_dir(mirror.root).rename(mirror.root)
        staging_dir(mirror.root).rmdir()
    assert main(["verify", str(mirror.root)]) == 0
