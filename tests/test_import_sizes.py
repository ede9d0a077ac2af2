"""Every size a bundle states is checked before it is read.

Found by an outside tester (a carrier): a valid signed full bundle with a 512 MiB pax
extended header in front of its first member took 1.6 GB of memory and 45 s before its
``.sha256`` was found wrong (and with a recomputed ``.sha256`` it imported); a 1 GB
``bundle.json`` member was read whole before the 256 MiB JSON cap refused it; a 130 MB
unsigned ``bundle.json`` was parsed (1.65 GB) before ``--pubkey`` found no signature; a
256 MiB GNU long-name header took 0.84 GB. Each bundle here states more than it holds,
so a refusal that names the stated size and the cap was made without reading: a check
that read first would run out of data and say so instead. The CLI runs in a subprocess
with an address-space limit (``test_hostile_input.run_cli``), and the mirror stays as
it was.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tarfile
from pathlib import Path

import pytest
import test_import
from test_bundle import EPOCH, bundle, make_inputs
from test_hostile_input import HOSTILE, assert_one_line, run_cli, write_bundle
from test_import import Mirror, refused

from lockmirror.cli import main
from lockmirror.formats import signing
from lockmirror.formats.bounded import MAX_JSON_BYTES
from lockmirror.formats.bundle_format import INDEX_MANIFEST, BundleInfo
from lockmirror.formats.bundle_headers import MAX_LONG_NAME
from lockmirror.formats.manifest import Entry
from lockmirror.stages.importer import import_bundle

mirror = test_import.mirror  # the fixture: a mirror imported from one bundle, and another

STATED = 512 << 20  # what the tester's header stated; each bundle here is far smaller


def signed_bundle(mirror: Mirror, tmp_path: Path) -> tuple[Path, Path]:
    """A valid full bundle of ``mirror.inputs`` signed by a new key; (bundle, public key)."""
    public = signing.generate_keypair(tmp_path / "keys" / "release")
    made = bundle(mirror.inputs, tmp_path / "signed", key=tmp_path / "keys" / "release",
                  source_date_epoch=EPOCH + 1)
    return made.path, public


def header(name: str, kind: bytes, size: int) -> bytes:
    """One 512-byte GNU tar header of typeflag ``kind`` stating ``size`` bytes."""
    member = tarfile.TarInfo(name)
    member.type, member.size = kind, size
    return member.tobuf(tarfile.GNU_FORMAT)


def members_of(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def write_forged(source: Path, out: Path, data: bytes) -> Path:
    """``data`` as a bundle named like ``source`` in ``out``, with a recomputed .sha256
    (the carrier rewrites it: only the signature is out of his reach)."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / source.name
    target.write_bytes(data)
    write_sha256(target)
    return target


def write_sha256(path: Path) -> None:
    """The bundle's ``.sha256`` listing, made again for its bytes as they are now."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


HEADERS = [  # typeflag, header name, what the refusal says
    (tarfile.XHDTYPE, "././@PaxHeader", r"a pax extended header \('././@PaxHeader', "
                                        rf"{STATED} bytes\): lockmirror writes plain GNU "
                                        r"headers only"),
    (tarfile.XGLTYPE, "././@PaxHeader", r"a pax global header"),
    (tarfile.GNUTYPE_SPARSE, "sparse", r"a GNU sparse member"),
    (tarfile.GNUTYPE_LONGNAME, "././@LongLink",
     rf"a GNU long-name header \('././@LongLink'\) stating {STATED} bytes, more than the "
     r"64.0 KiB lockmirror reads for a name"),
    (tarfile.GNUTYPE_LONGLINK, "././@LongLink", r"a GNU long-link header .* 64.0 KiB"),
]


@pytest.mark.parametrize(("kind", "name", "says"), HEADERS,
                         ids=["pax", "pax-global", "gnu-sparse", "long-name", "long-link"])
def test_a_huge_extended_header_in_front_of_a_signed_bundle_is_refused_unread(
        mirror: Mirror, tmp_path: Path, kind: bytes, name: str, says: str) -> None:
    """The tester's bundle: a header stating 512 MiB put in front of a valid signed
    bundle's first member, the ``.sha256`` recomputed, imported with ``--pubkey``."""
    signed, public = signed_bundle(mirror, tmp_path)
    forged = write_forged(signed, tmp_path / "forged",
                          header(name, kind, STATED) + signed.read_bytes())
    assert forged.stat().st_size < STATED
    error = refused(mirror, [forged], f"^{forged.name}: the member at byte 0 has {says}",
                    pubkey=public)
    assert error.message.endswith("; refused before reading it")
    assert error.hint == ("lockmirror never writes such a header: the bundle was altered "
                          "after it was written")


def test_the_cli_refuses_a_pax_header_in_one_line(mirror: Mirror, tmp_path: Path) -> None:
    """The same through ``lockmirror import`` (which first asks whether the bundle is a
    refresh bundle), under an address-space limit: one line, exit 2, nothing changed."""
    signed, public = signed_bundle(mirror, tmp_path)
    forged = write_forged(signed, tmp_path / "forged", header(
        "././@PaxHeader", tarfile.XHDTYPE, STATED) + signed.read_bytes())
    before = mirror.snapshot()
    done = run_cli("import", forged, "--into", mirror.root, "--pubkey", public, cwd=tmp_path)
    assert_one_line(done, f"{forged.name}: the member at byte 0 has ", HEADERS[0][2])
    assert mirror.snapshot() == before


def test_a_long_name_just_over_the_cap_is_refused_by_its_stated_size(
        mirror: Mirror, tmp_path: Path) -> None:
    """A GNU long-name header in front of a later member stating one byte more than the
    cap, and the bundle ends right after it: refused for the size it states, naming the
    byte it starts at and the cap, not for the data it does not have. One stating the cap
    itself is read, and the bundle is refused for ending there instead."""
    signed, public = signed_bundle(mirror, tmp_path)
    manifest = next(m for m in members_of(signed) if m.name.endswith(f"/{INDEX_MANIFEST}"))
    cut = signed.read_bytes()[:manifest.offset]
    forged = write_forged(signed, tmp_path / "over", cut + header(
        "././@LongLink", tarfile.GNUTYPE_LONGNAME, MAX_LONG_NAME + 1))
    error = refused(mirror, [forged], f"the member at byte {manifest.offset} has a GNU "
                                      f"long-name header .* stating {MAX_LONG_NAME + 1} "
                                      "bytes, more than the 64.0 KiB lockmirror reads for a "
                                      "name; refused before reading it", pubkey=public)
    assert error.where == forged.name
    at_cap = write_forged(signed, tmp_path / "at", cut + header(
        "././@LongLink", tarfile.GNUTYPE_LONGNAME, MAX_LONG_NAME))
    error = refused(mirror, [at_cap], "damaged or truncated tar", pubkey=public)
    assert "64.0 KiB" not in str(error)


def test_long_member_names_within_the_cap_still_import(mirror: Mirror, tmp_path: Path) -> None:
    """A name past the 100 bytes of a tar header goes in a GNU long-name header: what
    lockmirror writes for a long file name, read as before."""
    name = f"files/alpha/alpha-1.0-{'x' * 150}-py3-none-any.whl"
    make_inputs(tmp_path / "long", {"index.html": b"<html>mirror</html>\n", name: b"wheel"})
    made = bundle(tmp_path / "long", tmp_path / "out")
    assert any(len(m.name) > 100 for m in members_of(made.path))
    result = import_bundle([made.path], mirror.root)
    assert result.changed and (mirror.root / name).read_bytes() == b"wheel"


def test_a_bundle_json_stated_past_the_json_cap_is_refused_unread(
        mirror: Mirror, tmp_path: Path) -> None:
    """``bundle.json``'s header states one byte more than JSON's cap; the bundle holds a
    few hundred KiB. Refused for the stated size (the member named, the cap given), not
    for running out of data."""
    signed, public = signed_bundle(mirror, tmp_path)
    info = members_of(signed)[1]
    assert info.name.endswith("/bundle.json")
    data = signed.read_bytes()
    stated = header(info.name, tarfile.REGTYPE, MAX_JSON_BYTES + 1)
    forged = write_forged(signed, tmp_path / "forged",
                          data[:info.offset] + stated + data[info.offset_data:])
    before = mirror.snapshot()
    done = run_cli("import", forged, "--into", mirror.root, "--pubkey", public, cwd=tmp_path)
    assert_one_line(done, f"{forged.name}:{info.name}: ",
                    f"^lockmirror: error: [^ ]+: {MAX_JSON_BYTES + 1} bytes is more than the "
                    "256 MiB lockmirror reads as JSON$")
    assert mirror.snapshot() == before


def test_with_a_key_an_unsigned_bundle_json_is_refused_before_it_is_parsed(
        mirror: Mirror, tmp_path: Path) -> None:
    """A ``bundle.json`` nested past the parser's limit and no signature: with ``--pubkey``
    the missing signature is what is said (the JSON is never parsed); without a key the
    JSON is parsed and refused, as before."""
    _signed, public = signed_bundle(mirror, tmp_path)
    unsigned = write_bundle(tmp_path, (HOSTILE / "bundle-deep-nesting.json").read_bytes(),
                            b"{}", "lockmirror-demo-0123456789abcdef")
    refused(mirror, [unsigned], "^lockmirror-demo-0123456789abcdef.tar: bundle is not signed",
            pubkey=public)
    before = mirror.snapshot()
    done = run_cli("import", unsigned, "--into", mirror.root, "--pubkey", public, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith(
        f"lockmirror: error: {unsigned.name}: bundle is not signed, but a public key was "
        "given; refusing it"), done.stderr[-2000:]
    assert done.stderr.count("\n") == 1
    done = run_cli("import", unsigned, "--into", mirror.root, cwd=tmp_path)
    assert_one_line(done, f"{unsigned.name}:lockmirror-demo-0123456789abcdef/bundle.json",
                    "nested too deeply")
    assert mirror.snapshot() == before


def test_with_a_key_a_signed_bundle_json_is_verified_before_it_is_parsed(
        mirror: Mirror, tmp_path: Path) -> None:
    """The signed bundle's ``bundle.json`` swapped for JSON nested past the parser's
    limit, same length, signature kept: the signature fails, the JSON is never parsed."""
    signed, public = signed_bundle(mirror, tmp_path)
    info = members_of(signed)[1]
    data = bytearray(signed.read_bytes())
    data[info.offset_data:info.offset_data + info.size] = b"[" * info.size
    forged = write_forged(signed, tmp_path / "forged", bytes(data))
    refused(mirror, [forged], "signature does not match the signed data", pubkey=public)
    before = mirror.snapshot()
    done = run_cli("import", forged, "--into", mirror.root, "--pubkey", public, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr == (
        f"lockmirror: error: {forged.name}:{info.name}.sig: signature does not match the "
        "signed data (tampered?)\n"), done.stderr[-2000:]
    assert mirror.snapshot() == before


def test_the_signature_is_checked_under_the_import_lock(
        mirror: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``lockmirror import`` checks the signature once, with the import lock held (found
    by review: it was checked first outside the lock, to tell a refresh bundle, then
    again inside). While another import holds the lock, a forged bundle is refused
    for the lock, its signature not yet read; once the lock is free, for the signature."""
    signed, public = signed_bundle(mirror, tmp_path)
    info = members_of(signed)[1]
    data = bytearray(signed.read_bytes())
    data[info.offset_data:info.offset_data + info.size] = b"[" * info.size
    forged = write_forged(signed, tmp_path / "forged", bytes(data))
    before = mirror.snapshot()
    command = ["import", str(forged), "--into", str(mirror.root), "--pubkey", str(public)]
    fd = os.open(mirror.root.parent, os.O_RDONLY)  # the lock another import would hold
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        capsys.readouterr()
        assert main(command) == 1
        assert capsys.readouterr().err == (
            f"lockmirror: error: {mirror.root.parent}: another lockmirror import is running "
            f"here (into {mirror.root.name} or a directory beside it) (wait for it to finish)\n")
    finally:
        os.close(fd)
    assert main(command) == 1
    assert capsys.readouterr().err == (f"lockmirror: error: {forged.name}:{info.name}.sig: "
                                       "signature does not match the signed data (tampered?)\n")
    assert mirror.snapshot() == before


def test_an_index_manifest_stated_past_the_json_cap_is_refused_unread(
        mirror: Mirror, tmp_path: Path) -> None:
    """An unsigned bundle whose ``bundle.json`` lists an index manifest of one byte more
    than JSON's cap, and carries it (a sparse file: cheap to make, real bytes in the
    bundle): refused by the size stated, before its bytes are read and hashed (their
    sha256 is not the one listed, which a check that read first would report)."""
    size = MAX_JSON_BYTES + 1
    listed = Entry("0" * 64, size)
    info = BundleInfo(name="demo", kind="full", index_manifest_sha256=listed.sha256,
                      base_manifest_sha256=None, lockmirror_version="0.1.0", tool_python=None,
                      files={INDEX_MANIFEST: listed})
    (tmp_path / "huge").mkdir()
    path = write_bundle(tmp_path / "huge", info.dumps(), b"", info.top)
    manifest = members_of(path)[2]
    with path.open("r+b") as handle:  # the manifest member grows to ``size`` zero bytes
        handle.seek(manifest.offset)
        handle.write(header(manifest.name, tarfile.REGTYPE, size))
        handle.truncate(manifest.offset_data + size + (-size % 512) + 1024)
    write_sha256(path)
    error = refused(mirror, [path], f"{size} bytes is more than the 256 MiB lockmirror reads "
                                    "as JSON")
    assert error.where == f"{path.name}:{manifest.name}"


def test_a_member_is_vetted_as_its_header_is_read(mirror: Mirror, tmp_path: Path) -> None:
    """Headers appended to a signed bundle (a carrier's million of them would be held in
    memory, 0.66 GB for 488 MiB, if all were read first): the first unlisted one is
    refused before the next header is read, so the pax header behind it, which reading
    would refuse too, is not what is said."""
    signed, public = signed_bundle(mirror, tmp_path)
    members = members_of(signed)
    last = members[-1]
    end = last.offset_data + last.size + (-(last.offset_data + last.size) % 512)
    junk = f"{members[0].name}/index/junk"
    forged = write_forged(signed, tmp_path / "forged", signed.read_bytes()[:end] + header(
        junk, tarfile.REGTYPE, 0) + header("././@PaxHeader", tarfile.XHDTYPE, STATED))
    error = refused(mirror, [forged], "is not listed in bundle.json", pubkey=public)
    assert error.where == f"{forged.name}:{junk}"
