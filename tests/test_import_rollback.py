"""No rollback on the far side: a bundle dated before the last one imported is refused.

Every bundle's ``bundle.json`` carries its source date epoch (``mtime``: the
lockfiles' last commit, or ``SOURCE_DATE_EPOCH``), under the signature. The
mirror records the epoch and content id of its last full or delta bundle in
``.lockmirror/bundle-time``; an older one is refused in one line before anything
changes, unless ``--allow-older``. The bundles here are real ones, written by the
bundle stage with an explicit epoch, and imported for real; each refusal compares
the mirror's every byte (its state included), inode and siblings before and after.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pytest
from helpers import tree_bytes
from test_bundle import bundle
from test_import import WHEEL, _next_version, copy_bundle, member_offset, repack
from test_import_guards import _forged

from lockmirror.errors import BundleError
from lockmirror.formats.bundle_format import BundleInfo
from lockmirror.resolve.advisory_snapshot import Snapshot
from lockmirror.stages.bundle import BundleResult
from lockmirror.stages.importer import import_bundle
from lockmirror.stages.verify import verify_mirror

OLD = 1_600_000_000     # 2020-09-13 12:26:40 UTC
NEW = 1_700_000_000     # 2023-11-14 22:13:20 UTC
NEWER = 1_750_000_000   # 2025-06-15 15:06:40 UTC
OLD_UTC, NEW_UTC = "2020-09-13 12:26:40 UTC", "2023-11-14 22:13:20 UTC"
HINT = "to go back on purpose, import it with --allow-older"


@dataclass
class Far:
    """A mirror imported from ``held`` (dated NEW)."""

    root: Path
    held: BundleResult

    def snapshot(self) -> tuple[dict[str, bytes], int, list[str]]:
        """Everything that must not change: every byte (the state too), inode, siblings."""
        return (tree_bytes(self.root), self.root.stat().st_ino,
                sorted(p.name for p in self.root.parent.iterdir()))

    def record(self) -> str:
        return (self.root / ".lockmirror" / "bundle-time").read_text()


@pytest.fixture
def far(tmp_path: Path) -> Far:
    held = bundle(tmp_path / "held", tmp_path / "out-held", source_date_epoch=NEW)
    root = tmp_path / "srv" / "mirror"
    root.parent.mkdir()
    assert import_bundle([held.path], root).changed
    return Far(root, held)


def refused(far: Far, result: BundleResult | Path, match: str) -> BundleError:
    """Importing ``result`` raises BundleError matching ``match``; not a byte changes."""
    before = far.snapshot()
    with pytest.raises(BundleError, match=match) as caught:
        import_bundle([result if isinstance(result, Path) else result.path], far.root)
    assert far.snapshot() == before
    assert verify_mirror(far.root).ok
    return caught.value


def _bundle_json(path: Path) -> bytes:
    with tarfile.open(path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/bundle.json"))
        return tar.extractfile(member).read()  # type: ignore[union-attr]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lockmirror", "import", *args],
                          capture_output=True, text=True, check=False)


def test_a_bundle_dated_before_the_last_one_is_refused(far: Far, tmp_path: Path) -> None:
    """A carrier's older bundle, another index or the same index dated earlier (which
    would otherwise be a no-op): refused naming both times in UTC and both content ids,
    exit 1, one line, nothing changed."""
    older = bundle(tmp_path / "older", tmp_path / "out-older", source_date_epoch=OLD)
    error = refused(far, older, "is dated .* before the bundle")
    assert error.where == str(far.root)
    assert error.message == (
        f"this full bundle {older.content_id} is dated {OLD_UTC}, before the bundle "
        f"{far.held.content_id} the mirror holds (dated {NEW_UTC}); refusing it, nothing "
        "was changed")
    assert HINT in (error.hint or "")
    same_index = bundle(tmp_path / "held", tmp_path / "out-same", source_date_epoch=OLD)
    assert same_index.content_id != far.held.content_id
    refused(far, same_index, f"{same_index.content_id} is dated {OLD_UTC}")

    before = far.snapshot()
    done = _cli(str(older.path), "--into", str(far.root))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"lockmirror: error: {far.root}: this full bundle "
                                  f"{older.content_id} is dated {OLD_UTC}, before the bundle "
                                  f"{far.held.content_id}")
    assert "--allow-older" in done.stderr
    assert far.snapshot() == before
    assert far.record() == f"{NEW} {far.held.content_id}\n"


def test_allow_older_goes_back_on_purpose_and_records_that_bundle(far: Far,
                                                                   tmp_path: Path) -> None:
    """--allow-older imports the older bundle, says so, and its time is the mirror's
    record from then on: a bundle dated between the two is then newer."""
    older = bundle(tmp_path / "older", tmp_path / "out-older", source_date_epoch=OLD)
    said: list[str] = []
    result = import_bundle([older.path], far.root, allow_older=True, progress=said.append)
    assert result.changed and result.content_id == older.content_id
    assert said[0].endswith("; imported as --allow-older asks")
    assert f"dated {OLD_UTC}, before the bundle {far.held.content_id}" in said[0]
    assert far.record() == f"{OLD} {older.content_id}\n"
    assert verify_mirror(far.root).ok
    between = bundle(tmp_path / "between", tmp_path / "out-between",
                     source_date_epoch=(OLD + NEW) // 2)
    assert import_bundle([between.path], far.root).changed
    # the command line: refused without the flag, taken with it
    assert _cli(str(older.path), "--into", str(far.root)).returncode == 1
    done = _cli(str(older.path), "--into", str(far.root), "--allow-older")
    assert done.returncode == 0, done.stderr
    assert "every file verified" in done.stdout and "--allow-older asks" in done.stderr
    assert far.record() == f"{OLD} {older.content_id}\n"


def test_a_bundle_of_the_same_time_is_taken(far: Far, tmp_path: Path) -> None:
    """Equal epochs: the same lock rebuilt (other index bytes, a re-signed copy) or the
    same bundle again; neither is older."""
    rebuilt = bundle(tmp_path / "rebuilt", tmp_path / "out-rebuilt", source_date_epoch=NEW)
    assert import_bundle([rebuilt.path], far.root).changed
    assert far.record() == f"{NEW} {rebuilt.content_id}\n"
    assert not import_bundle([rebuilt.path], far.root).changed
    newer = bundle(tmp_path / "newer", tmp_path / "out-newer", source_date_epoch=NEWER)
    assert import_bundle([newer.path], far.root).changed
    assert far.record() == f"{NEWER} {newer.content_id}\n"


def test_a_newer_bundle_that_fails_leaves_the_record(far: Far, tmp_path: Path) -> None:
    """The time is recorded in the staged tree, swapped in with everything else: a newer
    bundle refused midway (a member damaged in transit) leaves the record as it was."""
    newer = bundle(tmp_path / "newer", tmp_path / "out-newer", source_date_epoch=NEWER)
    damaged = copy_bundle(newer, tmp_path / "damaged")
    offset, size = member_offset(damaged, WHEEL)
    data = bytearray(damaged.read_bytes())
    data[offset + size - 1] ^= 0x01
    damaged.write_bytes(bytes(data))
    refused(far, damaged, "does not match bundle.json")
    assert far.record() == f"{NEW} {far.held.content_id}\n"
    assert import_bundle([newer.path], far.root).changed
    assert far.record() == f"{NEWER} {newer.content_id}\n"


def test_a_bundle_whose_time_is_unknown(far: Far, tmp_path: Path) -> None:
    """Epoch 0 (no SOURCE_DATE_EPOCH, lockfiles not committed), or a bundle.json of
    format /1 (which records none): refused onto a mirror whose bundle was dated,
    taken with --allow-older; onto a mirror whose time is unknown, any bundle goes."""
    unknown = bundle(tmp_path / "unknown", tmp_path / "out-unknown", source_date_epoch=0)
    error = refused(far, unknown, "its lock time is unknown")
    assert error.message == (
        f"this full bundle {unknown.content_id}: its lock time is unknown, and the bundle "
        f"{far.held.content_id} the mirror holds is dated {NEW_UTC}; refusing it, nothing "
        "was changed")
    assert error.hint == ("bundle it again with the lockfiles committed or SOURCE_DATE_EPOCH "
                          "set, or, to take it as it is, import it with --allow-older")
    format_1 = repack(far.held.path, tmp_path / "v1" / "old.tar", _forged(
        lambda info: replace(info, mtime=None, format_read=None)))
    with pytest.raises(BundleError, match="its lock time is unknown"):
        import_bundle([format_1], far.root)
    assert import_bundle([unknown.path], far.root, allow_older=True).changed
    assert far.record() == f"0 {unknown.content_id}\n"
    again = bundle(tmp_path / "again", tmp_path / "out-again", source_date_epoch=0)
    assert import_bundle([again.path], far.root).changed  # unknown onto unknown
    assert import_bundle([format_1], far.root).changed  # the held index again, undated
    assert far.record() == f"0 {BundleInfo.loads(_bundle_json(format_1), where='').content_id}\n"
    assert not import_bundle([far.held.path], far.root).changed  # that index, dated: recorded
    assert far.record() == f"{NEW} {far.held.content_id}\n"


def test_a_delta_is_held_to_the_same_rule(tmp_path: Path) -> None:
    """A delta dated before the mirror's bundle is refused as such (not as a delta onto
    another base), before anything is read from the mirror; --allow-older takes it; a
    delta's time is recorded as a full bundle's is."""
    v1 = bundle(tmp_path / "v1", tmp_path / "out-v1", source_date_epoch=NEW)
    root = tmp_path / "mirror"
    assert import_bundle([v1.path], root).changed
    _next_version(tmp_path / "v1" / "dist-index", tmp_path / "v2")
    old_delta = bundle(tmp_path / "v2", tmp_path / "out-old", since=v1.path,
                       source_date_epoch=OLD)
    far = Far(root, v1)
    error = refused(far, old_delta, f"this delta bundle {old_delta.content_id} is dated "
                                    f"{OLD_UTC}, before the bundle {v1.content_id}")
    assert HINT in (error.hint or "")
    new_delta = bundle(tmp_path / "v2", tmp_path / "out-new", since=v1.path,
                       source_date_epoch=NEWER)
    assert import_bundle([new_delta.path], root).kind == "delta"
    assert far.record() == f"{NEWER} {new_delta.content_id}\n"
    refused(far, v1, f"is dated {NEW_UTC}, before the bundle {new_delta.content_id}")
    assert import_bundle([v1.path], root, allow_older=True).changed  # back to v1
    assert import_bundle([old_delta.path], root, allow_older=True).kind == "delta"
    assert far.record() == f"{OLD} {old_delta.content_id}\n"


def test_a_mirror_without_a_record_takes_a_bundle_and_starts_recording(
        far: Far, tmp_path: Path) -> None:
    """A mirror imported by a lockmirror that kept no bundle-time takes any bundle and
    records its time, also when that import finds nothing to do; a record that does not
    read is refused (the guard fails closed) until --allow-older writes it anew."""
    record = far.root / ".lockmirror" / "bundle-time"
    record.unlink()
    assert not import_bundle([far.held.path], far.root).changed  # a no-op: recorded
    assert far.record() == f"{NEW} {far.held.content_id}\n"
    record.unlink()
    older = bundle(tmp_path / "older", tmp_path / "out-older", source_date_epoch=OLD)
    assert import_bundle([older.path], far.root).changed
    assert far.record() == f"{OLD} {older.content_id}\n"
    oldest = bundle(tmp_path / "oldest", tmp_path / "out-oldest", source_date_epoch=OLD - 1)
    refused(far, oldest, "is dated 2020-09-13 12:26:39 UTC, before the bundle")
    record.write_text("last Tuesday\n")
    refused(far, oldest, r"the time of the last bundle imported \(.lockmirror/bundle-time\) "
                         "does not read")
    assert import_bundle([oldest.path], far.root, allow_older=True).changed
    assert far.record() == f"{OLD - 1} {oldest.content_id}\n"
    assert WHEEL in tree_bytes(far.root)


def _snapshot(taken: str) -> bytes:
    """The bytes of an advisory snapshot taken at ``taken`` (ISO 8601, UTC)."""
    return Snapshot(datetime.fromisoformat(taken), ("pypi-json:test",), frozenset(),
                    ()).dumps().encode()


def test_older_advisories_are_refused_before_a_byte_is_extracted(far: Far,
                                                                 tmp_path: Path) -> None:
    """A bundle whose advisories were taken before those the mirror holds is refused
    from its small advisories.json, read while planning, not after the whole bundle
    was extracted into staging (a multi-GB bundle cost its extraction first, found by
    a reviewer): the damaged wheel behind it is never reached, the mirror and its
    siblings are as they were (no staging tree left), and --allow-older still
    takes the bundle, saying so."""
    newer = bundle(tmp_path / "newer", tmp_path / "out-newer", source_date_epoch=NEW,
                   extra=[("advisories.json", _snapshot("2024-10-11T12:00:00+00:00"))])
    assert import_bundle([newer.path], far.root).changed
    older = bundle(tmp_path / "older", tmp_path / "out-older", source_date_epoch=NEW,
                   extra=[("advisories.json", _snapshot("2024-10-10T12:00:00+00:00"))])
    damaged = copy_bundle(older, tmp_path / "damaged")
    offset, size = member_offset(damaged, WHEEL)
    data = bytearray(damaged.read_bytes())
    data[offset + size // 2] ^= 0x01  # in transit: the .sha256 left as it was
    damaged.write_bytes(bytes(data))
    error = refused(far, damaged, "advisories were taken")  # not "does not match bundle.json"
    assert error.where == str(far.root)
    assert error.message == (
        "this full bundle's advisories were taken 2024-10-10 12:00:00 UTC, before those the "
        "mirror holds (2024-10-11 12:00:00 UTC, from a refresh bundle or a newer bundle); "
        "refusing it, nothing was changed")
    assert HINT in (error.hint or "")
    with pytest.raises(BundleError, match="does not match bundle.json"):  # damaged: no way in
        import_bundle([damaged], far.root, allow_older=True)
    said: list[str] = []
    assert import_bundle([older.path], far.root, allow_older=True, progress=said.append).changed
    assert said[0].endswith("; imported as --allow-older asks")
    assert (far.root / ".lockmirror" / "advisories.json").read_bytes() == _snapshot(
        "2024-10-10T12:00:00+00:00")
