"""The import's header checks, each against a bundle forged to break only it.

``tests/test_import.py`` covers damage in transit, hostile member types and
names, signatures and the swap; these are the checks of
:mod:`lockmirror.stages.import_plan` that a mutation run found unguarded: a
member beside the bundle directory, a member listed twice, a member of
another size than ``bundle.json`` says, an index manifest that disagrees with
``bundle.json``. Each bundle is re-packed with a fresh ``.sha256`` (a forger
who knows the format), and each refusal leaves the mirror as it was.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import test_import
from test_bundle import EPOCH, bundle
from test_import import WHEEL, Mirror, refused, repack, top_of

from lockmirror.formats import signing
from lockmirror.formats.bundle_format import INDEX_MANIFEST, BundleInfo
from lockmirror.formats.manifest import Entry
from lockmirror.fsutil import sha256_bytes
from lockmirror.stages.import_extract import _MemberWriter
from lockmirror.stages.importer import import_bundle

Members = list[tuple[tarfile.TarInfo, bytes]]


mirror = test_import.mirror  # the fixture: a mirror imported from one bundle, and another

CARRIED_WHEEL = f"index/{WHEEL}"  # its path in bundle.json
# every refusal of a member says the mirror was left as it was (found by an outside
# tester: "appears twice", "lies outside ...", "has N bytes ...", "truncated or
# incomplete" and "is not listed in bundle.json" said nothing of it)
REFUSED = "refusing the whole bundle; nothing was changed"


def _forged(change: Callable[[BundleInfo], BundleInfo]) -> Callable[[Members], Members]:
    """An edit that rewrites ``bundle.json`` through ``change`` and renames the bundle
    directory to match (what :func:`read_head` checks), members otherwise as they were."""
    def edit(members: Members) -> Members:
        old_top = top_of(members)
        info = change(BundleInfo.loads(members[1][1], where="bundle.json"))
        out = []
        for member, data in members:
            member.name = member.name.replace(old_top, info.top, 1)
            if member.name == f"{info.top}/bundle.json":
                data = info.dumps()
                member.size = len(data)
            out.append((member, data))
        return out
    return edit


def test_a_member_beside_the_bundle_directory_is_refused(mirror: Mirror,
                                                         tmp_path: Path) -> None:
    def beside(members: Members) -> Members:
        evil = tarfile.TarInfo(f"{top_of(members)}-evil/index/files/x.whl")  # same prefix
        evil.size = 5
        return [*members, (evil, b"owned")]

    bad = repack(mirror.good.path, tmp_path / "bad" / mirror.good.path.name, beside)
    error = refused(mirror, [bad], "lies outside the bundle directory")
    assert error.where is not None and error.where.endswith("-evil/index/files/x.whl")
    assert error.hint == REFUSED


def test_a_member_listed_twice_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    def twice(members: Members) -> Members:
        wheel = next(m for m in members if m[0].name.endswith(WHEEL))
        return [*members, wheel]

    bad = repack(mirror.good.path, tmp_path / "bad" / mirror.good.path.name, twice)
    error = refused(mirror, [bad], "appears twice")
    assert error.where is not None and error.where.endswith(WHEEL)
    assert error.hint == REFUSED


def test_a_member_of_another_size_than_bundle_json_says_is_refused(mirror: Mirror,
                                                                   tmp_path: Path) -> None:
    def longer(members: Members) -> Members:
        out = []
        for member, data in members:
            if member.name.endswith(WHEEL):
                data += b"\0"
                member.size = len(data)
            out.append((member, data))
        return out

    bad = repack(mirror.good.path, tmp_path / "bad" / mirror.good.path.name, longer)
    size = (mirror.inputs / "dist-index" / WHEEL).stat().st_size
    error = refused(mirror, [bad], rf"has {size + 1} bytes, bundle.json says {size}")
    assert error.where is not None and error.where.endswith(WHEEL)
    assert error.hint == REFUSED


def test_bundle_json_and_the_index_manifest_must_agree(mirror: Mirror, tmp_path: Path) -> None:
    def other_hash(info: BundleInfo) -> BundleInfo:
        entry = info.files[CARRIED_WHEEL]
        return replace(info, files={**info.files, CARRIED_WHEEL: replace(entry, sha256="0" * 64)})

    bad = repack(mirror.good.path, tmp_path / "bad" / mirror.good.path.name,
                 _forged(other_hash))
    error = refused(mirror, [bad], "bundle.json and the index manifest disagree about it")
    assert error.where is not None and error.where.endswith(WHEEL)
    assert error.hint == REFUSED


def test_the_index_manifest_must_be_the_one_bundle_json_pins(mirror: Mirror,
                                                             tmp_path: Path) -> None:
    bad = repack(mirror.good.path, tmp_path / "bad" / mirror.good.path.name,
                 _forged(lambda info: replace(info, index_manifest_sha256="0" * 64)))
    error = refused(mirror, [bad], "sha256 does not match bundle.json")
    assert error.where is not None and error.where.endswith(INDEX_MANIFEST)
    assert error.hint == "damaged in transit or tampered; nothing was changed"


def test_a_malformed_index_manifest_that_bundle_json_pins_is_refused_naming_it(
        mirror: Mirror, tmp_path: Path) -> None:
    junk = b"{not json\n"
    pinned = Entry(sha256=sha256_bytes(junk), size=len(junk))

    def pin(info: BundleInfo) -> BundleInfo:
        return replace(info, index_manifest_sha256=pinned.sha256,
                       files={**info.files, INDEX_MANIFEST: pinned})

    def edit(members: Members) -> Members:
        out = []
        for member, data in members:
            if member.name.endswith(f"/{INDEX_MANIFEST}"):
                data = junk
                member.size = len(junk)
            out.append((member, data))
        return _forged(pin)(out)

    bad = repack(mirror.good.path, tmp_path / "bad" / mirror.good.path.name, edit)
    error = refused(mirror, [bad], "not valid JSON|not a")
    assert error.where == f"{bad.name}:{top_of_bundle(bad)}/{INDEX_MANIFEST}:1:2"  # line, column
    assert error.hint == REFUSED and error.exit_code == 2  # bad input, as a bundle.json's


def top_of_bundle(path: Path) -> str:
    with tarfile.open(path) as tar:
        return tar.getmembers()[0].name


def test_a_bundle_cut_inside_its_last_member_is_refused_naming_it(mirror: Mirror,
                                                                   tmp_path: Path) -> None:
    """No tar header follows the cut, so tar itself sees a short archive, not an error:
    the header check finds the member that runs past the end."""
    bad = tmp_path / "bad" / mirror.good.path.name
    bad.parent.mkdir()
    data = mirror.good.path.read_bytes()
    with tarfile.open(mirror.good.path) as tar:
        last = [m for m in tar.getmembers() if m.isfile()][-1]
    bad.write_bytes(data[:last.offset_data + last.size // 2])
    (bad.parent / mirror.good.checksums.name).write_bytes(mirror.good.checksums.read_bytes())
    error = refused(mirror, [bad], "bundle is truncated: it ends inside this member")
    assert error.where == f"{bad.name}:{last.name}"


def test_an_unsigned_bundle_with_a_key_is_refused_naming_the_bundle(
        mirror: Mirror, tmp_path: Path) -> None:
    public = signing.generate_keypair(tmp_path / "keys" / "release")
    error = refused(mirror, [mirror.good.path], "bundle is not signed, but a public key was "
                                                "given; refusing it", pubkey=public)
    assert error.where == mirror.good.path.name
    # the far side is told what to ask of the build side, not a build-side command
    assert error.hint == ("the build side must sign it (its signing key matching your "
                          "--pubkey); nothing was changed")


def test_missing_members_are_counted_and_the_first_named(mirror: Mirror, tmp_path: Path) -> None:
    dropped: list[str] = []

    def drop_two(members: Members) -> Members:
        files = [m for m, _ in members if m.isfile() and "/index/files/" in m.name]
        dropped.extend(sorted(m.name for m in files[:2]))
        return [(m, d) for m, d in members if m.name not in dropped]

    bad = repack(mirror.good.path, tmp_path / "bad" / mirror.good.path.name, drop_two)
    error = refused(mirror, [bad], "bundle is truncated or incomplete: 2 member")
    assert error.message.endswith(f"are missing, first {dropped[0]}")
    assert error.where == bad.name and error.hint == REFUSED


def test_a_bundle_without_an_index_manifest_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    def without(info: BundleInfo) -> BundleInfo:
        return replace(info, files={k: v for k, v in info.files.items() if k != INDEX_MANIFEST})

    def edit(members: Members) -> Members:
        kept = [(m, d) for m, d in members if not m.name.endswith(f"/{INDEX_MANIFEST}")]
        return _forged(without)(kept)

    bad = repack(mirror.good.path, tmp_path / "bad" / mirror.good.path.name, edit)
    error = refused(mirror, [bad], f"carries no {INDEX_MANIFEST}")
    assert error.where == bad.name and error.hint == REFUSED


def test_a_signature_by_another_key_names_the_signature(mirror: Mirror, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "release"
    signing.generate_keypair(key)
    other = signing.generate_keypair(tmp_path / "keys" / "intruder")
    signed = bundle(mirror.inputs, tmp_path / "signed", key=key, source_date_epoch=EPOCH + 1)
    error = refused(mirror, [signed.path], "not by the trusted key", pubkey=other)
    top = f"lockmirror-demo-{signed.content_id}"  # as test_import names it
    assert error.where == f"{signed.path.name}:{top}/bundle.json.sig"


def test_imported_files_are_plain_readable_files(mirror: Mirror) -> None:
    """Index members are written 0o644 (under the usual umask 022): never executable."""
    old = os.umask(0o022)
    try:
        assert import_bundle([mirror.good.path], mirror.root).changed
    finally:
        os.umask(old)
    modes = {p.stat().st_mode & 0o777 for p in mirror.root.rglob("*") if p.is_file()}
    assert modes == {0o644}


def test_an_imported_mirror_is_readable_by_a_web_server_whatever_the_umask(
        mirror: Mirror, tmp_path: Path) -> None:
    """Found by an outside tester (of the build side's index): under umask 077 the
    files written were 0600 and the directories 0700, so a web server running as
    another user could not serve the mirror. Every file 0644, every directory 0755;
    a second bundle's import (files taken from the current mirror) keeps them."""
    old = os.umask(0o077)
    try:
        assert import_bundle([mirror.good.path], mirror.root).changed
        found = [mirror.root, *mirror.root.rglob("*")]
        assert {p.stat().st_mode & 0o777 for p in found if p.is_file()} == {0o644}
        assert {p.stat().st_mode & 0o777 for p in found if p.is_dir()} == {0o755}
        test_import._next_version(mirror.inputs / "dist-index", tmp_path / "v3")  # gamma/ new
        delta = bundle(tmp_path / "v3", tmp_path / "delta", since=mirror.good.path)
        assert import_bundle([delta.path], mirror.root).changed
        assert (mirror.root / "files" / "gamma").is_dir()
        found = [mirror.root, *mirror.root.rglob("*")]
        assert {p.stat().st_mode & 0o777 for p in found if p.is_file()} == {0o644}
        assert {p.stat().st_mode & 0o777 for p in found if p.is_dir()} == {0o755}
    finally:
        os.umask(old)


@pytest.mark.parametrize("occupant", ["symlink", "file"])
def test_a_member_is_never_written_through_a_link_or_over_a_file(tmp_path: Path,
                                                                 occupant: str) -> None:
    """What staging holds is created by the writer alone (O_EXCL, O_NOFOLLOW): a name
    already taken, by a link or a file, is an error and the other file stays as it was."""
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    target = tmp_path / "staging" / "simple" / "index.html"
    target.parent.mkdir(parents=True)
    if occupant == "symlink":
        target.symlink_to(outside)
    else:
        target.write_text("keep me\n")
    with pytest.raises(OSError):
        _MemberWriter(target, "bundle.tar:index/simple/index.html")
    assert outside.read_text() == "keep me\n"
    assert target.read_text() == "keep me\n"
