"""Advisories across the gap (issue 22, point 4): the snapshot in every full bundle,
the far side's offline audit, and refresh bundles (``bundle --advisories-only``).

Hermetic: the build side is a mirror of the fixture catalogue whose advisory
source is the fixture index's PyPI JSON API (``set_vulnerabilities`` publishes a
new advisory); the far side is a directory the bundles are imported into, which
real pip then installs from over ``file://``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fixtureindex import Catalogue, FixtureIndex
from fixtureindex.catalogue import VULNERABILITIES
from helpers import subprocess_env, tree_bytes
from test_audit import mirror  # noqa: F401 - the build side: lockfile, store, index

from lockmirror.cli import main
from lockmirror.config import LoadedConfig
from lockmirror.formats.manifest import Entry, Manifest
from lockmirror.formats.signing import generate_keypair

VULNY_10 = "files/vulny/vulny-1.0-py3-none-any.whl"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private = tmp_path / "ops.key"
    return private, generate_keypair(private)


def bundle(loaded: LoadedConfig, out: Path, now: str, *extra: str) -> Path:
    """Run ``lockmirror bundle`` into ``out``; the bundle it wrote."""
    assert main(["bundle", "--config", str(loaded.path), "--out", str(out), "--no-tool",
                 "--source-date-epoch", "1700000000", "--now", now, *extra]) == 0
    [written] = [p for p in out.glob("*.tar")]
    return written


def pip_download(mirror_dir: Path, requirement: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "download", "--isolated", "--no-cache-dir", "--no-deps",
         "--disable-pip-version-check", "--index-url", (mirror_dir / "simple").as_uri() + "/",
         "-d", str(dest), requirement],
        env=subprocess_env(installers=True), capture_output=True, text=True,
        timeout=300, check=False)


def test_refresh_bundle_quarantines_on_the_far_side(
        mirror: LoadedConfig, fixture_index: FixtureIndex, catalogue: Catalogue,  # noqa: F811
        keys: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private, public = keys
    far = tmp_path / "far" / "mirror"
    fixture_index.set_vulnerabilities("vulny", "1.0", [])  # no advisory yet

    # the index as `doit index` builds it (the quarantine below rebuilds it so)
    assert main(["index", "--config", str(mirror.path)]) == 0
    # 1. a full bundle carries the snapshot it was audited with; the far side audits with it
    full = bundle(mirror, tmp_path / "dist1", "2024-10-10T12:00:00Z", "--key", str(private))
    assert main(["import", str(full), "--into", str(far), "--pubkey", str(public)]) == 0
    held = json.loads((far / ".lockmirror/advisories.json").read_text())
    assert (held["taken"], held["advisories"]) == ("2024-10-10T12:00:00Z", [])
    assert (far / ".lockmirror/mirror.yaml").read_bytes() == mirror.path.read_bytes()
    assert main(["verify", str(far)]) == 0
    capsys.readouterr()
    assert main(["audit", "--mirror", str(far), "--now", "2024-10-10", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []
    assert pip_download(far, "vulny==1.0", tmp_path / "dl0").returncode == 0
    # the same index with newer advisories is not a no-op: the snapshot is replaced
    newer = bundle(mirror, tmp_path / "dist1b", "2024-10-10T13:00:00Z", "--key", str(private))
    # (a mirror whose bundle's signature was checked takes no import that checks none)
    assert main(["import", str(newer), "--into", str(far)]) == 1
    assert main(["import", str(newer), "--into", str(far), "--pubkey", str(public)]) == 0
    held = json.loads((far / ".lockmirror/advisories.json").read_text())
    assert held["taken"] == "2024-10-10T13:00:00Z"

    # 2. a new advisory: the build side quarantines and writes a refresh bundle
    fixture_index.set_vulnerabilities("vulny", "1.0", VULNERABILITIES[("vulny", "1.0")])
    assert main(["audit", "-c", str(mirror.path), "--now", "2024-10-11", "--quarantine"]) == 1
    refresh = bundle(mirror, tmp_path / "dist2", "2024-10-11T12:00:00Z", "--advisories-only",
                     "--key", str(private))
    again = bundle(mirror, tmp_path / "dist3", "2024-10-11T12:00:00Z", "--advisories-only",
                   "--key", str(private))
    assert refresh.name.endswith(".advisories.tar") and refresh.name == again.name
    assert refresh.read_bytes() == again.read_bytes()  # byte-reproducible
    assert refresh.stat().st_size < 64 * 1024  # no packages
    capsys.readouterr()
    assert bundle(mirror, tmp_path / "dist3", "2024-10-11T12:00:00Z", "--advisories-only",
                  "--key", str(private)) == again  # the same bundle again: left alone, said so
    assert "already current" in capsys.readouterr().out

    # a mirror whose file and manifest entry were altered after the import takes no
    # refresh: recording its edited manifest as imported would make `verify` pass it
    tampered = tmp_path / "tampered" / "mirror"
    shutil.copytree(far, tampered)
    manifest = Manifest.read(tampered / "manifest.json")
    wheel = next(rel for rel in sorted(manifest.files)
                 if rel.endswith(".whl") and rel != VULNY_10)
    (tampered / wheel).unlink()  # a copy: not the imported mirror's inode
    (tampered / wheel).write_bytes(b"altered")
    manifest.files[wheel] = Entry(hashlib.sha256(b"altered").hexdigest(), len(b"altered"))
    (tampered / "manifest.json").write_text(manifest.dumps())
    before = tree_bytes(tampered)
    capsys.readouterr()
    assert main(["import", str(refresh), "--into", str(tampered), "--pubkey", str(public)]) == 1
    assert "it was changed after the import" in capsys.readouterr().err
    assert tree_bytes(tampered) == before
    assert main(["verify", str(tampered)]) == 1

    # 3. imported on the far side (signature required): vulny 1.0 leaves the index
    assert main(["import", str(refresh), "--into", str(far), "--pubkey", str(public)]) == 0
    out = capsys.readouterr().out
    assert "new advisories: PYSEC-2023-0001" in out
    assert "quarantined now (out of the index): vulny==1.0 (2 files removed" in out
    assert "audit: deny vulny==1.0: PYSEC-2023-0001" in out
    assert not (far / VULNY_10).exists()
    for page in ("simple/vulny/index.json", "simple/vulny/index.html", "simple/index.json",
                 "index.html", "landing.json"):
        # the far side's edit writes the bytes the build side's index stage wrote
        assert (far / page).read_bytes() == (mirror.index_dir / page).read_bytes(), page
    assert '<span class="tag yanked">quarantined</span>' in (far / "index.html").read_text()
    # the refresh rewrote manifest.json and the record verify holds it to, in step; the
    # last bundle's manifest stays recorded as the base a delta applies onto
    edited = hashlib.sha256((far / "manifest.json").read_bytes()).hexdigest()
    assert (far / ".lockmirror/manifest.sha256").read_text() == f"{edited}\n"
    assert (far / ".lockmirror/bundle-manifest.sha256").read_text() != f"{edited}\n"
    assert main(["verify", str(far)]) == 0
    before = tree_bytes(far)  # the same refresh bundle again: said so, nothing changes
    assert main(["import", str(refresh), "--into", str(far), "--pubkey", str(public)]) == 0
    again = capsys.readouterr().out
    assert "advisories taken 2024-10-11 12:00:00 UTC, the same this mirror holds" in again, again
    assert tree_bytes(far) == before
    denied = pip_download(far, "vulny==1.0", tmp_path / "dl1")
    assert denied.returncode != 0 and "vulny==1.0" in denied.stderr
    assert pip_download(far, "vulny==1.1", tmp_path / "dl2").returncode == 0
    capsys.readouterr()
    # the text says when the advisories were taken, not only the clock it checked by
    # (found by an outside tester: a nine-month-old snapshot read as current)
    assert main(["audit", "--mirror", str(far), "--now", "2025-07-01"]) == 1
    text = capsys.readouterr().out
    assert "advisory sources: snapshot:" in text and "(taken 2024-10-11 12:00 UTC)" in text
    assert main(["audit", "--mirror", str(far), "--now", "2024-10-11", "--format", "json"]) == 1
    captured = capsys.readouterr()
    assert captured.out, captured.err
    [finding] = json.loads(captured.out)["findings"]
    assert (finding["package"], finding["version"], finding["advisory"]) == (
        "vulny", "1.0", "PYSEC-2023-0001")

    # the full bundle imported before the refresh, replayed: its lock time is the
    # mirror's, but its advisories are older, so it would put vulny 1.0 back
    before = tree_bytes(far)
    assert main(["import", str(newer), "--into", str(far), "--pubkey", str(public)]) == 1
    err = capsys.readouterr().err
    assert ("advisories were taken 2024-10-10 13:00:00 UTC, before those the mirror holds "
            "(2024-10-11 12:00:00 UTC" in err and "--allow-older" in err), err
    assert len(err.splitlines()) <= 2 and tree_bytes(far) == before

    # a delta made --since the mirror directory itself, whose manifest.json the refresh
    # edited: its base is the manifest the mirror's last bundle pinned, which the import
    # checks (it took manifest.json's sha256, and the import refused the delta)
    pinned = (far / ".lockmirror/bundle-manifest.sha256").read_text().strip()
    assert hashlib.sha256((far / "manifest.json").read_bytes()).hexdigest() != pinned
    far_copy = tmp_path / "far-copy" / "mirror"
    shutil.copytree(far, far_copy)
    assert main(["bundle", "--config", str(mirror.path), "--out", str(tmp_path / "dist8"),
                 "--since", str(far_copy), "--source-date-epoch", "1700000000",
                 "--now", "2024-10-11T12:00:00Z", "--key", str(private)]) == 0
    [by_dir] = (tmp_path / "dist8").glob("*.tar")
    # what bundle says of the base and README.txt's check of it hold on this mirror
    # (its manifest.json's sha256 is not the base: they said "whose manifest.json has")
    assert ("  applies onto the mirror whose last full or delta bundle's manifest.json had "
            f"sha256 {pinned}\n") in capsys.readouterr().out
    with tarfile.open(by_dir) as tar:
        [readme] = [m for m in tar.getmembers() if m.name.endswith("/README.txt")]
        text = tar.extractfile(readme).read().decode()  # type: ignore[union-attr]
    assert ("This is a DELTA bundle: it applies only onto the mirror whose last full or "
            f"delta\nbundle's manifest.json had sha256 {pinned}\n") in text
    assert "cat /srv/mirror/.lockmirror/bundle-manifest.sha256" in text
    assert main(["import", str(by_dir), "--into", str(far_copy), "--pubkey", str(public)]) == 0
    assert main(["verify", str(far_copy)]) == 0 and not (far_copy / VULNY_10).exists()
    # a delta made against the edited manifest.json alone is refused by the manifest the
    # refusal names (it said "its manifest.json has sha256 <the pinned one's>")
    lone = tmp_path / "lone" / "manifest.json"
    lone.parent.mkdir()
    shutil.copyfile(far / "manifest.json", lone)
    assert main(["bundle", "--config", str(mirror.path), "--out", str(tmp_path / "dist9"),
                 "--since", str(lone), "--source-date-epoch", "1700000000",
                 "--now", "2024-10-11T12:00:00Z", "--key", str(private)]) == 0
    [by_lone] = (tmp_path / "dist9").glob("*.tar")
    capsys.readouterr()
    assert main(["import", str(by_lone), "--into", str(far), "--pubkey", str(public)]) == 1
    refusal = capsys.readouterr().err
    assert ("this delta applies only onto the mirror whose last full or delta bundle's "
            "manifest.json had sha256 ") in refusal
    assert (f"but its last bundle's manifest.json had sha256 {pinned} (a refresh edited "
            "manifest.json since)") in refusal

    # a delta made against the last full bundle still applies onto the edited mirror
    delta = tmp_path / "dist7"
    assert main(["bundle", "--config", str(mirror.path), "--out", str(delta),
                 "--since", str(newer), "--source-date-epoch", "1700000000",
                 "--now", "2024-10-11T12:00:00Z", "--key", str(private)]) == 0
    [delta_tar] = delta.glob("*.tar")
    assert main(["import", str(delta_tar), "--into", str(far), "--pubkey", str(public)]) == 0
    assert main(["verify", str(far)]) == 0 and not (far / VULNY_10).exists()
    capsys.readouterr()

    # 4. an older refresh bundle is refused in one line; nothing changes
    older = bundle(mirror, tmp_path / "dist4", "2024-10-10T18:00:00Z", "--advisories-only",
                   "--key", str(private))
    before = (far / "manifest.json").read_bytes()
    # (this mirror's bundles had their signature checked: a refresh that checks none is
    # refused before anything else, so a carrier's unsigned refresh cannot hide advisories)
    assert main(["import", str(older), "--into", str(far)]) == 1
    assert "this import checks none" in capsys.readouterr().err
    assert main(["import", str(older), "--into", str(far), "--pubkey", str(public)]) == 1
    err = capsys.readouterr().err
    assert "taken 2024-10-10 18:00:00 UTC, before those" in err and len(err.splitlines()) <= 2
    assert (far / "manifest.json").read_bytes() == before

    # an unsigned refresh is refused where a key is required
    unsigned = bundle(mirror, tmp_path / "dist5", "2024-10-12T12:00:00Z", "--advisories-only")
    assert main(["import", str(unsigned), "--into", str(far), "--pubkey", str(public)]) == 1
    assert "not signed" in capsys.readouterr().err

    # 5. a newer full bundle brings vulny 1.0 back (the build side lifted the quarantine):
    # the refresh taken before it can no longer take it out
    mirror.quarantine_path.unlink()
    assert main(["index", "--config", str(mirror.path)]) == 0
    back = bundle(mirror, tmp_path / "dist6", "2024-10-12T12:00:00Z", "--key", str(private))
    assert main(["import", str(back), "--into", str(far), "--pubkey", str(public)]) == 0
    assert (far / VULNY_10).is_file()
    assert not (far / ".lockmirror/quarantine.json").exists()
    capsys.readouterr()
    assert main(["import", str(refresh), "--into", str(far), "--pubkey", str(public)]) == 1
    assert "before those" in capsys.readouterr().err
    assert (far / VULNY_10).is_file()
    # going back on purpose: the older full bundle is taken, and said so
    assert main(["import", str(newer), "--into", str(far), "--pubkey", str(public),
                 "--allow-older"]) == 0
    assert "before those the mirror holds" in capsys.readouterr().err
    held = json.loads((far / ".lockmirror/advisories.json").read_text())
    assert held["taken"] == "2024-10-10T13:00:00Z"


def test_a_damaged_refresh_is_refused_and_an_old_mirror_is_refreshed_unaudited(
        mirror: LoadedConfig, fixture_index: FixtureIndex,  # noqa: F811
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    far = tmp_path / "far"
    full = bundle(mirror, tmp_path / "dist1", "2024-10-10T12:00:00Z")
    assert main(["import", str(full), "--into", str(far)]) == 0
    assert main(["audit", "-c", str(mirror.path), "--now", "2024-10-11", "--quarantine"]) == 1
    refresh = bundle(mirror, tmp_path / "dist2", "2024-10-11T12:00:00Z", "--advisories-only")
    # a byte changed inside advisories.json, the .sha256 made to match: bundle.json catches it
    data = bytearray(refresh.read_bytes())
    at = data.index(b'"taken": "2024-10-11')
    data[at + 10:at + 14] = b"2099"
    forged = tmp_path / "forged" / refresh.name
    forged.parent.mkdir()
    forged.write_bytes(bytes(data))
    digest = hashlib.sha256(bytes(data)).hexdigest()
    Path(f"{forged}.sha256").write_text(f"{digest}  {forged.name}\n")
    before = (far / "manifest.json").read_bytes()
    capsys.readouterr()
    assert main(["import", str(forged), "--into", str(far)]) == 1
    assert "advisories.json: sha256 does not match bundle.json" in capsys.readouterr().err
    assert (far / "manifest.json").read_bytes() == before and (far / VULNY_10).is_file()
    # the far side's landing.json changed by hand: refused in one line, nothing changed
    landing = (far / "landing.json").read_bytes()
    (far / "landing.json").write_bytes(landing.replace(b'"title":"', b'"title":"X', 1))
    assert main(["import", str(refresh), "--into", str(far)]) == 1
    err = capsys.readouterr().err
    assert ("landing.json: not the index's own landing data (its sha256 differs from "
            "manifest.json's)") in err and "Traceback" not in err
    assert (far / "manifest.json").read_bytes() == before and (far / VULNY_10).is_file()
    # malformed, but vouched for by the manifest (as a hostile bundle's import would
    # leave it, the manifest recorded as imported): one line too
    record = (far / ".lockmirror/manifest.sha256").read_bytes()

    def vouched(files: dict[str, Entry]) -> None:
        Manifest(files).write(far / "manifest.json")
        digest = hashlib.sha256((far / "manifest.json").read_bytes()).hexdigest()
        (far / ".lockmirror/manifest.sha256").write_text(f"{digest}\n")

    (far / "landing.json").write_bytes(b"[]\n")
    files = dict(Manifest.read(far / "manifest.json").files)
    files["landing.json"] = Entry(hashlib.sha256(b"[]\n").hexdigest(), 3)
    vouched(files)
    assert main(["import", str(refresh), "--into", str(far)]) == 1
    err = capsys.readouterr().err
    assert "not the index's own landing data (AttributeError)" in err and "Traceback" not in err
    deep = b"[" * 100_000 + b"]" * 100_000  # past the recursion limit: the bounded reader's
    (far / "landing.json").write_bytes(deep)
    files["landing.json"] = Entry(hashlib.sha256(deep).hexdigest(), len(deep))
    vouched(files)
    assert main(["import", str(refresh), "--into", str(far)]) == 1
    err = capsys.readouterr().err
    assert "not the index's own landing data (" in err and "Traceback" not in err
    assert (far / VULNY_10).is_file()
    (far / "landing.json").write_bytes(landing)
    (far / "manifest.json").write_bytes(before)
    (far / ".lockmirror/manifest.sha256").write_bytes(record)
    # a mirror imported before lockmirror kept its bundle's mirror.yaml: quarantined, not audited
    (far / ".lockmirror/mirror.yaml").unlink()
    assert main(["import", str(refresh), "--into", str(far)]) == 0
    out = capsys.readouterr().out
    assert "quarantined now (out of the index): vulny==1.0" in out
    assert "not re-audited: the mirror holds no mirror.yaml" in out
    assert not (far / VULNY_10).exists() and main(["verify", str(far)]) == 0


def test_a_signed_refresh_records_its_signer_in_a_mirror_imported_unsigned(
        mirror: LoadedConfig, keys: tuple[Path, Path],  # noqa: F811
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A refresh checked against --pubkey records the signer as a full bundle's import
    does: from then on an import that checks no signature is refused."""
    private, public = keys
    far = tmp_path / "far"
    full = bundle(mirror, tmp_path / "dist1", "2024-10-10T12:00:00Z")
    assert main(["import", str(full), "--into", str(far)]) == 0
    refresh = bundle(mirror, tmp_path / "dist2", "2024-10-11T12:00:00Z", "--advisories-only",
                     "--key", str(private))
    assert main(["import", str(refresh), "--into", str(far), "--pubkey", str(public)]) == 0
    assert (far / ".lockmirror/signer").read_text().startswith("SHA256:")
    capsys.readouterr()
    assert main(["import", str(full), "--into", str(far)]) == 1
    assert "this import checks none" in capsys.readouterr().err


def test_a_refresh_keeps_the_time_of_the_mirrors_last_bundle(
        mirror: LoadedConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """A refresh bundle is ordered by its advisories' time, not by its own date (this one
    is dated before the mirror's bundle and goes in); it keeps the mirror's record of its
    last full bundle's time, so a full bundle dated before that is still refused after it."""
    far = tmp_path / "far"
    full = bundle(mirror, tmp_path / "dist1", "2024-10-10T12:00:00Z")  # dated 1700000000
    assert main(["import", str(full), "--into", str(far)]) == 0
    held_id = full.name.removesuffix(".tar").rsplit("-", 1)[1]
    refresh = bundle(mirror, tmp_path / "dist2", "2024-10-11T12:00:00Z", "--advisories-only",
                     "--source-date-epoch", "1600000000")
    assert main(["import", str(refresh), "--into", str(far)]) == 0
    older = bundle(mirror, tmp_path / "dist3", "2024-10-12T12:00:00Z",
                   "--source-date-epoch", "1600000000")
    before = tree_bytes(far)
    capsys.readouterr()
    assert main(["import", str(older), "--into", str(far)]) == 1
    err = capsys.readouterr().err
    assert ("is dated 2020-09-13 12:26:40 UTC, before the bundle "
            f"{held_id} the mirror holds (dated 2023-11-14 22:13:20 UTC)") in err
    assert tree_bytes(far) == before
    record = far / ".lockmirror/bundle-time"
    assert record.read_text() == f"1700000000 {held_id}\n"
    assert main(["import", str(older), "--into", str(far), "--allow-older"]) == 0
    assert record.read_bytes().startswith(b"1600000000 ")


def test_older_advisories_are_refused_in_one_wording_whatever_the_bundle(
        mirror: LoadedConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """A full bundle and a refresh bundle whose advisories are older than the mirror's
    meet one rule, said in one wording with one time format (found by a reviewer: the
    refresh said "12:00 UTC, before those DIR holds", the full bundle "12:00:00 UTC,
    before those the mirror holds ..."; within a minute the refresh's two times read
    the same); --allow-older takes either, and says so."""
    far = tmp_path / "far"
    full = bundle(mirror, tmp_path / "dist1", "2024-10-10T12:00:10Z")
    refresh = bundle(mirror, tmp_path / "dist2", "2024-10-10T12:00:20Z", "--advisories-only")
    newest = bundle(mirror, tmp_path / "dist3", "2024-10-10T12:00:30Z")
    assert main(["import", str(newest), "--into", str(far)]) == 0
    held = "2024-10-10 12:00:30 UTC, from a refresh bundle or a newer bundle"
    for kind, older, taken in (("full", full, "12:00:10"), ("refresh", refresh, "12:00:20")):
        before = tree_bytes(far)
        capsys.readouterr()
        assert main(["import", str(older), "--into", str(far)]) == 1
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"lockmirror: error: {far}: this {kind} bundle's advisories were taken 2024-10-10 "
            f"{taken} UTC, before those the mirror holds ({held}); refusing it, nothing was "
            "changed (an older bundle takes the mirror back to older releases, vulnerable "
            "ones perhaps; to go back on purpose, import it with --allow-older)")
        assert tree_bytes(far) == before
    assert main(["import", str(refresh), "--into", str(far), "--allow-older"]) == 0
    assert (f"import: this refresh bundle's advisories were taken 2024-10-10 12:00:20 UTC, "
            f"before those the mirror holds ({held}); imported as --allow-older asks"
            ) in capsys.readouterr().out
    taken = json.loads((far / ".lockmirror/advisories.json").read_text())["taken"]
    assert taken == "2024-10-10T12:00:20Z"


def test_a_refresh_refuses_a_mirror_holding_state_it_does_not_know(
        mirror: LoadedConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """A refresh rebuilds the tree as an import does: a newer lockmirror's record in
    ``.lockmirror/`` was dropped by it too (an outside tester). Refused, unchanged."""
    far = tmp_path / "far"
    full = bundle(mirror, tmp_path / "dist1", "2024-10-10T12:00:00Z")
    refresh = bundle(mirror, tmp_path / "dist2", "2024-10-11T12:00:00Z", "--advisories-only")
    assert main(["import", str(full), "--into", str(far)]) == 0
    (far / ".lockmirror/future-record").write_text("v9 something\n")
    before = tree_bytes(far)
    capsys.readouterr()
    assert main(["import", str(refresh), "--into", str(far)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"lockmirror: error: {far}: .lockmirror/ holds future-record, which "
                          "this lockmirror does not know (written by a newer lockmirror?)")
    assert err.count("\n") == 1 and "refusing the whole bundle; nothing was changed" in err
    assert tree_bytes(far) == before


def test_source_date_epoch_dates_the_members_never_when_the_advisories_were_taken(
        mirror: LoadedConfig, fixture_index: FixtureIndex, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --now the advisories are taken when the sources are asked, whatever
    SOURCE_DATE_EPOCH (or --source-date-epoch) says: it stamps the tar members only. A
    snapshot dated back to it (a day before) made the far side refuse a newer bundle as a
    rollback of the one it had imported (found by a security team)."""
    far = tmp_path / "far"

    def plain_bundle(out: Path, *extra: str) -> tuple[Path, str]:
        """``lockmirror bundle`` with no --now: the bundle, and what it printed."""
        capsys.readouterr()
        assert main(["bundle", "--config", str(mirror.path), "--out", str(out), "--no-tool",
                     *extra]) == 0
        [written] = out.glob("*.tar")
        return written, capsys.readouterr().out

    def held() -> datetime:
        taken = json.loads((far / ".lockmirror/advisories.json").read_text())["taken"]
        return datetime.fromisoformat(taken)

    first, _ = plain_bundle(tmp_path / "dist1")  # no SOURCE_DATE_EPOCH: taken now
    assert main(["import", str(first), "--into", str(far)]) == 0
    imported = held()
    day_before = int((imported - timedelta(days=1)).timestamp())
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(day_before))
    newer, said = plain_bundle(tmp_path / "dist2")
    assert f"mtime {day_before} from SOURCE_DATE_EPOCH" in said  # the members: the epoch
    capsys.readouterr()
    assert main(["import", str(newer), "--into", str(far)]) == 0, capsys.readouterr().err
    assert held() >= imported  # the advisories: when they were asked, not the epoch
    # a refresh bundle alike, by --source-date-epoch or $SOURCE_DATE_EPOCH
    refresh, said = plain_bundle(tmp_path / "dist3", "--advisories-only",
                                 "--source-date-epoch", "1700000000")
    assert "advisories taken 2023-11-14" not in said, said
    assert main(["import", str(refresh), "--into", str(far)]) == 0, capsys.readouterr().err
    assert held() >= imported


def test_a_refresh_through_a_symlinked_mirror_edits_the_directory_it_names(
        mirror: LoadedConfig, fixture_index: FixtureIndex,  # noqa: F811
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--into`` a symlink to the mirror: the refresh swaps the directory it points to,
    as a full import does; the link stays a link and the next import runs."""
    real = tmp_path / "srv" / "mirror"
    full = bundle(mirror, tmp_path / "dist1", "2024-10-10T12:00:00Z")
    assert main(["import", str(full), "--into", str(real)]) == 0
    link = tmp_path / "mirror"
    link.symlink_to(real, target_is_directory=True)
    assert main(["audit", "-c", str(mirror.path), "--now", "2024-10-11", "--quarantine"]) == 1
    refresh = bundle(mirror, tmp_path / "dist2", "2024-10-11T12:00:00Z", "--advisories-only")
    capsys.readouterr()
    assert main(["import", str(refresh), "--into", str(link)]) == 0
    assert "quarantined now (out of the index): vulny==1.0" in capsys.readouterr().out
    assert link.is_symlink() and link.resolve() == real
    # no old tree, no staging tree: beside the link, nor beside the directory it names
    assert not [p for d in (tmp_path, real.parent) for p in d.iterdir() if "lockmirror-" in p.name]
    assert not (real / VULNY_10).exists() and main(["verify", str(real)]) == 0
    newer = bundle(mirror, tmp_path / "dist3", "2024-10-12T12:00:00Z")
    assert main(["import", str(newer), "--into", str(link)]) == 0
    assert link.is_symlink() and main(["verify", str(real)]) == 0


def test_check_install_after_a_quarantine_names_the_quarantine(
        mirror: LoadedConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After a refresh bundle quarantined vulny 1.0, check-install of its set fails (the
    lockfile and constraints still pin it); the hint said "import the mirror's latest
    bundle into it again", which does not help (found by an outside tester). It names
    the quarantined release, read from the landing.json that marks it: on the far side,
    on the deployed mirror, and on the build side's own index."""
    far = tmp_path / "srv" / "mirror"
    assert main(["index", "--config", str(mirror.path)]) == 0
    full = bundle(mirror, tmp_path / "dist1", "2024-10-10T12:00:00Z")
    assert main(["import", str(full), "--into", str(far)]) == 0
    assert main(["audit", "-c", str(mirror.path), "--now", "2024-10-11", "--quarantine"]) == 1
    refresh = bundle(mirror, tmp_path / "dist2", "2024-10-11T12:00:00Z", "--advisories-only")
    assert main(["import", str(refresh), "--into", str(far)]) == 0
    monkeypatch.chdir(tmp_path)  # no mirror.yaml here: the far side
    deployed = (far / "simple").as_uri() + "/"
    for where in ([str(far), "--file"], ["--index-url", deployed],
                  [str(mirror.index_dir), "--file"]):
        capsys.readouterr()
        assert main(["check-install", *where, "--no-install"]) == 1
        err = capsys.readouterr().err
        assert "(the mirror quarantined vulny==1.0 (set 'core'): its index leaves it out" \
            in err, (where, err)
        assert "import the mirror's latest bundle" not in err and "doit fetch" not in err


def test_a_check_install_hint_says_a_quarantine_may_be_the_cause_when_it_cannot_tell(
        tmp_path: Path) -> None:
    """With no landing.json to read (a deployed mirror that serves none), the hint says
    that a quarantined release fails this way too; with one that marks none, it does not."""
    from lockmirror.errors import ResolutionError
    from lockmirror.stages.check_install_report import VerifyReport, quarantined_locks
    from lockmirror.stages.install_runs import Check

    failed = (Check("core", "linux", "uv pip compile (given)", ok=False),)
    for landing, said in ((None, True), (b"{}", True), (b'{"format": 1, "title": "m", '
                          b'"sbom": false, "provenance": {"sources": []}, "sets": []}', False)):
        report = VerifyReport(tmp_path, (), failed, deployed="http://mirror/simple/",
                              quarantined=quarantined_locks(landing, ["core"]))
        with pytest.raises(ResolutionError) as caught:
            report.raise_for_failures()
        assert caught.value.hint is not None
        assert caught.value.hint.startswith("the deployed mirror lacks what")
        assert ("or the mirror quarantined a release these sets lock" in caught.value.hint) \
            is said, landing


def test_a_refresh_does_not_link_files_from_outside_the_mirror(
        mirror: LoadedConfig, fixture_index: FixtureIndex,  # noqa: F811
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A project directory of the far-side mirror replaced by a symlink to one
    outside it: the refresh refuses in one line instead of hard-linking the
    outside files into the next tree, and the mirror stays as it was."""
    far = tmp_path / "far"
    full = bundle(mirror, tmp_path / "dist1", "2024-10-10T12:00:00Z")
    assert main(["import", str(full), "--into", str(far)]) == 0
    project = far / "files" / "vulny"
    outside = tmp_path / "outside"
    project.rename(outside)
    project.symlink_to(outside, target_is_directory=True)
    assert main(["audit", "-c", str(mirror.path), "--now", "2024-10-11", "--quarantine"]) == 1
    refresh = bundle(mirror, tmp_path / "dist2", "2024-10-11T12:00:00Z", "--advisories-only")
    before = (far / "manifest.json").read_bytes()
    capsys.readouterr()
    assert main(["import", str(refresh), "--into", str(far)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "is a symlink or lies below one; a mirror holds regular files only" in err
    assert project.is_symlink() and (far / "manifest.json").read_bytes() == before
    assert all(f.stat().st_nlink == 1 for f in outside.iterdir())
    assert not [p for p in tmp_path.iterdir() if "lockmirror-" in p.name]


def test_a_release_no_source_could_check_stays_not_checked_on_the_far_side(
        mirror: LoadedConfig, fixture_index: FixtureIndex, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    """The index answers no JSON for vulny 1.0 (only its project JSON, whose latest is
    1.1): the build side says not checked, and so must the far side. The snapshot
    recorded the release as asked about with no advisory, and the far side's audit
    called it clean (found by an outside tester)."""
    far = tmp_path / "far" / "mirror"
    assert main(["index", "--config", str(mirror.path)]) == 0
    fixture_index.fail_next(50, 404, "/pypi/vulny/1.0/json")
    full = bundle(mirror, tmp_path / "dist", "2024-10-10T12:00:00Z")
    assert main(["import", str(full), "--into", str(far)]) == 0
    held = json.loads((far / ".lockmirror/advisories.json").read_text())
    assert list(held["unchecked"]) == ["vulny"] and "1.0" in held["unchecked"]["vulny"]
    capsys.readouterr()
    assert main(["audit", "--mirror", str(far), "--now", "2024-10-10", "--format", "json"]) == 1
    [row] = json.loads(capsys.readouterr().out)["findings"]
    assert row["level"] == "deny" and "vulny==1.0" in row["message"]
    assert "not checked when the snapshot was taken" in row["message"]


def test_a_refresh_import_keeps_what_its_snapshot_could_not_check_not_checked() -> None:
    """The refresh import audits through a source that also answers for releases the
    snapshot was not asked about; it called every covered release checked, the ones
    its snapshot records as unchecked too (found by a reviewer)."""
    from datetime import UTC, datetime

    from packaging.utils import canonicalize_name
    from packaging.version import Version

    from lockmirror.resolve.advisory_snapshot import Snapshot
    from lockmirror.stages.import_refresh import CoveringSnapshotSource

    vulny, beta = (canonicalize_name("vulny"), Version("1.0")), (canonicalize_name("beta"),
                                                                  Version("1.0"))
    snapshot = Snapshot(datetime(2024, 10, 10, tzinfo=UTC), ("pypi-json:x",),
                        frozenset({vulny, beta}), (), {vulny: "no JSON for single releases"})
    source = CoveringSnapshotSource(snapshot, where="advisories.json")
    assert source.unchecked(*vulny) == ("not checked when the snapshot was taken: no JSON "
                                        "for single releases")
    assert source.unchecked(*beta) is None
    assert source.unchecked(canonicalize_name("alpha"), Version("1.0")) == (
        "the refresh bundle's advisory snapshot does not cover it")


def test_a_snapshot_from_before_unchecked_was_recorded_says_it_cannot_tell(
        mirror: LoadedConfig, fixture_index: FixtureIndex, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    """A mirror imported from an earlier bundle holds a snapshot with no `unchecked`:
    its releases with no advisory may not have been checked, which the far side's audit
    now says instead of passing them quietly (found by an outside tester)."""
    far = tmp_path / "far" / "mirror"
    fixture_index.set_vulnerabilities("vulny", "1.0", [])  # no advisory: a clean audit
    assert main(["index", "--config", str(mirror.path)]) == 0
    full = bundle(mirror, tmp_path / "dist", "2024-10-10T12:00:00Z")
    assert main(["import", str(full), "--into", str(far)]) == 0
    held = far / ".lockmirror/advisories.json"
    data = json.loads(held.read_text())
    assert data["unchecked"] == {}  # written even when empty: its absence marks an old one
    capsys.readouterr()
    assert main(["audit", "--mirror", str(far), "--now", "2024-10-10", "--format", "json"]) == 0
    assert not [n for n in json.loads(capsys.readouterr().out)["notes"] if "predates" in n]
    del data["unchecked"]
    held.write_text(json.dumps(data))
    assert main(["audit", "--mirror", str(far), "--now", "2024-10-10", "--format", "json"]) == 0
    assert [n for n in json.loads(capsys.readouterr().out)["notes"]
            if n.startswith("the advisory snapshot predates")]


def test_a_bundle_refuses_an_index_built_from_other_lockfiles(
        mirror: LoadedConfig, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: after a lock with no index run since, the bundle
    carried lockfiles/ and mirror.yaml of one lock and index/ of another, imported
    cleanly, and the far side served what its lockfiles did not describe."""
    lockfile = mirror.lockfile_path("core")
    text = lockfile.read_text()
    lockfile.write_text(text.replace('version = "1.0"', 'version = "1.0.0"', 1))
    out = tmp_path / "dist"
    assert main(["bundle", "--config", str(mirror.path), "--out", str(out), "--no-tool",
                 "--source-date-epoch", "1700000000"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"lockmirror: error: {mirror.index_dir}: the index was not built from today's "
        "lockfiles (pylock.core.toml) (run `doit index` (or `lockmirror index`) first)")
    assert not out.exists() or not list(out.iterdir())
    lockfile.write_text(text)  # the index's own lockfiles again: bundled
    assert main(["bundle", "--config", str(mirror.path), "--out", str(out), "--no-tool",
                 "--source-date-epoch", "1700000000"]) == 0


@pytest.mark.parametrize("extra", [(), ("--advisories-only",)])
def test_a_now_later_than_the_clock_is_refused_and_nothing_is_written(
        mirror: LoadedConfig, fixture_index: FixtureIndex, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str], extra: tuple[str, ...]) -> None:
    """A snapshot dated in the future (a mistyped year) would make the far side refuse
    every real bundle after it as older, until that date (found by an outside re-test):
    ``bundle --now`` later than the clock is refused in one line, before anything is
    written, for full and refresh bundles alike."""
    out = tmp_path / "dist"
    capsys.readouterr()
    assert main(["bundle", "--config", str(mirror.path), "--out", str(out), "--no-tool",
                 "--now", "2999-01-01T00:00:00Z", *extra]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--now 2999-01-01 00:00:00 UTC is later than the clock" in err
    assert not out.exists() or not any(out.iterdir())


def test_an_import_with_nothing_kept_out_leaves_the_bundles_pages_as_they_came(
        mirror: LoadedConfig, fixture_index: FixtureIndex,  # noqa: F811
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bundle whose landing page another lockmirror version rendered (it differs from
    what this one renders from landing.json): an import that keeps nothing out rewrote it
    with its own template, printing an empty 'kept out' line, so a newer importer's page
    linked requirements files an older bundle lacks (404) and an older importer dropped a
    newer bundle's links (found by an outside tester upgrading one side)."""
    from test_bundle import write_tree

    fixture_index.set_vulnerabilities("vulny", "1.0", [])  # nothing to keep out
    assert main(["index", "--config", str(mirror.path)]) == 0
    page = mirror.index_dir / "index.html"
    page.write_bytes(page.read_bytes().replace(b"</body>", b"<!-- another version -->\n</body>"))
    write_tree(mirror.index_dir, {})  # manifest.json again, as that version wrote it
    full = bundle(mirror, tmp_path / "dist", "2024-10-10T12:00:00Z")
    far = tmp_path / "far" / "mirror"
    capsys.readouterr()
    assert main(["import", str(full), "--into", str(far)]) == 0
    assert "kept out" not in capsys.readouterr().out
    assert (far / "index.html").read_bytes() == page.read_bytes()
    assert main(["verify", str(far)]) == 0
