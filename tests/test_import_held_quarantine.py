"""The far side's quarantine list holds for every bundle that brings no newer advisories.

A refresh bundle takes releases out of an imported mirror and leaves its list in
``.lockmirror/quarantine.json``. A delta carries no advisories, so the rule that
refuses a bundle whose advisories are older than the mirror's never applied to one:
a delta built before the refresh and delivered after it put the quarantined release
back, signed and "every file verified" (found by an outside tester). The import now
takes the listed releases out of the tree it is about to swap in, as the refresh
does; only a full bundle whose advisories were taken after the mirror's lifts the list.

Hermetic, with real bundles: the build side is the fixture mirror of
``test_audit`` (its advisory source is the fixture index's JSON API), each lock
state indexed and bundled by the CLI; the far side is imported into and served
to real pip over ``file://``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fixtureindex import Catalogue, FixtureIndex
from fixtureindex.catalogue import VULNERABILITIES
from helpers import tree_bytes
from test_audit import LOCKED, lockfile_of, mirror  # noqa: F401 - the build side
from test_refresh_bundle import VULNY_10, bundle, keys, pip_download  # noqa: F401

from lockmirror.cli import main
from lockmirror.config import LoadedConfig

QUARANTINE = ".lockmirror/quarantine.json"
PAGES = ("simple/vulny/index.json", "simple/vulny/index.html", "simple/index.json",
         "simple/index.html", "index.html", "landing.json")


def served(root: Path) -> dict[str, Any]:
    """The pages and the manifest's entries, but for the SBOMs: the build side's
    leave a quarantined release out; a far side keeps the SBOMs its last full or
    delta bundle brought until the next one (README: "Far-side SBOMs")."""
    files = json.loads((root / "manifest.json").read_bytes())["files"]
    return {**{page: (root / page).read_bytes() for page in PAGES},
            "manifest.json": {rel: e for rel, e in files.items()
                              if not rel.startswith("sbom/")}}


def relock(mirror: LoadedConfig, catalogue: Catalogue, index: FixtureIndex,  # noqa: F811
           releases: Sequence[tuple[str, str]]) -> None:
    """Lock the core set to ``releases`` and build the index from it (``doit index``)."""
    lockfile_of(catalogue, index, "core", releases).write(mirror.lockfile_path("core"))
    assert main(["index", "--config", str(mirror.path)]) == 0


def test_a_delta_built_before_a_refresh_does_not_bring_back_what_it_quarantined(
        mirror: LoadedConfig, fixture_index: FixtureIndex, catalogue: Catalogue,  # noqa: F811
        keys: tuple[Path, Path], tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    private, public = keys
    signed = ("--key", str(private))
    fixture_index.set_vulnerabilities("vulny", "1.0", [])  # no advisory yet

    # the build side: F (no vulny 1.0), then D (a delta bringing it), D2 (a delta onto
    # D, beta dropped) and E (a full bundle of D2's lock whose advisories are dated as
    # the refresh's, built before the quarantine); back to D's lock, the advisory
    # arrives: quarantined, refresh R, and A (a delta onto F built after R, whose index
    # already leaves vulny 1.0 out)
    relock(mirror, catalogue, fixture_index, [r for r in LOCKED if r != ("vulny", "1.0")])
    full = bundle(mirror, tmp_path / "dist-f", "2024-10-10T12:00:00Z", *signed)
    relock(mirror, catalogue, fixture_index, LOCKED)
    delta = bundle(mirror, tmp_path / "dist-d", "2024-10-10T12:00:00Z", "--since", str(full),
                   *signed)
    relock(mirror, catalogue, fixture_index, [r for r in LOCKED if r != ("beta", "1.0")])
    delta2 = bundle(mirror, tmp_path / "dist-d2", "2024-10-10T12:00:00Z", "--since",
                    str(delta), *signed)
    same_time = bundle(mirror, tmp_path / "dist-e", "2024-10-11T12:00:00Z", *signed)
    relock(mirror, catalogue, fixture_index, LOCKED)
    fixture_index.set_vulnerabilities("vulny", "1.0", VULNERABILITIES[("vulny", "1.0")])
    assert main(["audit", "-c", str(mirror.path), "--now", "2024-10-11", "--quarantine"]) == 1
    refresh = bundle(mirror, tmp_path / "dist-r", "2024-10-11T12:00:00Z", "--advisories-only",
                     *signed)
    after = bundle(mirror, tmp_path / "dist-a", "2024-10-10T12:00:00Z", "--since", str(full),
                   *signed)
    built = served(mirror.index_dir)

    def imported(path: Path, far: Path) -> str:
        capsys.readouterr()
        code = main(["import", str(path), "--into", str(far), "--pubkey", str(public)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert main(["verify", str(far)]) == 0  # manifest, pages and files agree
        return captured.out

    # the far side: F, then R (vulny 1.0 is not there yet: only listed)
    far = tmp_path / "far" / "mirror"
    imported(full, far)
    out = imported(refresh, far)
    assert "quarantined now: none" in out and "quarantine list: 1 release (vulny==1.0)" in out

    # a list that does not read fails closed: D is refused in one line, nothing changed
    listed = (far / QUARANTINE).read_bytes()
    (far / QUARANTINE).write_bytes(listed[:-20])
    before = tree_bytes(far)
    capsys.readouterr()
    assert main(["import", str(delta), "--into", str(far), "--pubkey", str(public)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"lockmirror: error: {far / QUARANTINE}: the mirror's quarantine "
                          "list does not read (")
    assert "import the newest refresh bundle again" in err
    assert tree_bytes(far) == before and not list((tmp_path / "far").glob(".*lockmirror-*"))
    (far / QUARANTINE).write_bytes(listed)

    # D, delivered late: it goes in without vulny 1.0, pages and landing page consistent
    out = imported(delta, far)
    assert "every file verified" in out
    # one wheel left out, its .metadata with it and not counted (found by review: it read
    # "2 files left out")
    assert ("import: kept out vulny==1.0: on the mirror's quarantine list (from its last "
            "refresh bundle); 1 file left out, 4 pages rewritten") in out, out
    assert not (far / VULNY_10).exists() and not (far / f"{VULNY_10}.metadata").exists()
    assert (far / QUARANTINE).is_file()  # the list holds for the next bundle too
    assert '<span class="tag yanked">quarantined</span>' in (far / "index.html").read_text()
    assert pip_download(far, "vulny==1.0", tmp_path / "dl-d").returncode != 0
    assert pip_download(far, "vulny==1.1", tmp_path / "dl-d11").returncode == 0
    # the bytes the build side's index has with vulny 1.0 quarantined
    assert served(far) == built
    capsys.readouterr()
    assert main(["audit", "--mirror", str(far), "--now", "2024-10-11", "--format", "json"]) == 1
    captured = capsys.readouterr()
    assert captured.out, captured.err
    [finding] = json.loads(captured.out)["findings"]
    assert (finding["package"], finding["version"]) == ("vulny", "1.0")

    # D2, made against D before the refresh, needs D's vulny page, which the list
    # rewrote: refused in one line, nothing changed (not vulny 1.0's files: not needed)
    before = tree_bytes(far)
    assert main(["import", str(delta2), "--into", str(far), "--pubkey", str(public)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"lockmirror: error: {delta2.name.removesuffix('.delta.tar')}: delta neither carries "
        "simple/vulny/index.html nor finds it in the base mirror (the mirror's quarantine "
        "list (its last refresh bundle) rewrote that page, and this delta was made against "
        "the tree before: import a delta made after the refresh bundle, or a full bundle; "
        "nothing was changed)"], err
    assert tree_bytes(far) == before

    # a full bundle whose advisories are no newer than the refresh's: the list holds too
    out = imported(same_time, far)
    assert "kept out vulny==1.0" in out and not (far / VULNY_10).exists()
    assert (far / QUARANTINE).is_file()
    assert pip_download(far, "vulny==1.0", tmp_path / "dl-e").returncode != 0

    # A, the delta built after the refresh, onto F and R: it goes in cleanly
    other = tmp_path / "other" / "mirror"
    imported(full, other)
    imported(refresh, other)
    out = imported(after, other)
    assert "kept out" not in out and not (other / VULNY_10).exists()
    assert served(other) == built
    assert (other / QUARANTINE).is_file()

    # a newer full bundle resets the list (the build side lifted the quarantine)
    mirror.quarantine_path.unlink()
    assert main(["index", "--config", str(mirror.path)]) == 0
    newer = bundle(mirror, tmp_path / "dist-n", "2024-10-12T12:00:00Z", *signed)
    for mirror_dir in (far, other):
        out = imported(newer, mirror_dir)
        assert "kept out" not in out
        assert (mirror_dir / VULNY_10).is_file() and not (mirror_dir / QUARANTINE).exists()
        assert pip_download(mirror_dir, "vulny==1.0",
                            tmp_path / f"dl-{mirror_dir.parent.name}").returncode == 0
