"""The license policy: SPDX lists in mirror.yaml, AND/OR evaluated, unknown licenses, exceptions.

How a lock and an audit apply it is tested with the lock and audit; here the
schema (every list entry must be SPDX, named with its line), the evaluation
of expressions against the lists and the engine's findings and waivers.
"""

from __future__ import annotations

import io
import shutil
import textwrap
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fixtureindex import Catalogue, FixtureIndex
from helpers import mirror_yaml
from packaging.utils import canonicalize_name
from packaging.version import Version

from lockmirror.config import load_config, parse_config
from lockmirror.config_schema import LicensePolicyConfig, PolicyConfig, PolicyException
from lockmirror.errors import ConfigError, LockmirrorError, PolicyError
from lockmirror.formats.licenses import DeclaredLicense, license_refusal
from lockmirror.formats.lockfile import Lockfile
from lockmirror.formats.store import Store
from lockmirror.resolve.policy import PolicyEngine
from lockmirror.stages.audit import audit_mirror
from lockmirror.stages.lock import lock_sets

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HEADER = textwrap.dedent("""\
    version: 1
    sources: [{name: pypi, url: "https://pypi.org/simple/"}]
    targets: {linux: {python: "3.11", platforms: [manylinux_2_28_x86_64]}}
    """)


def spdx(expression: str) -> DeclaredLicense:
    return DeclaredLicense(expression, None, "License-Expression")


@pytest.mark.parametrize(("expression", "allow", "deny", "refused"), [
    ("MIT", [], ["GPL-3.0-only"], False),
    ("GPL-3.0-only", [], ["GPL-3.0-only"], True),
    ("GPL-3.0-only OR MIT", [], ["GPL-3.0-only"], False),      # the MIT side is a choice
    ("GPL-3.0-only AND MIT", [], ["GPL-3.0-only"], True),      # both apply
    ("(GPL-3.0-only OR MIT) AND BSD-3-Clause", ["MIT", "BSD-3-Clause"], [], False),
    ("Apache-2.0", ["MIT", "BSD-3-Clause"], [], True),         # not on the allow list
    ("GPL-2.0-or-later WITH Classpath-exception-2.0", ["GPL-2.0-or-later"], [], False),
    ("MIT", ["MIT"], ["MIT"], True),                           # deny wins
])
def test_expressions_are_judged_with_and_or(expression: str, allow: list[str], deny: list[str],
                                            refused: bool) -> None:
    assert (license_refusal(spdx(expression), allow=allow, deny=deny) is not None) == refused


def test_list_entries_must_be_spdx_and_name_their_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(HEADER + textwrap.dedent("""\
            sets:
              core:
                requirements: [foo]
                policy:
                  licenses: {deny: [GPLv3]}
            policy:
              licenses:
                allow: [MIT, "Apache 2.0", "MIT, BSD-3-Clause"]
                unknown: maybe
            """))
    problems = "\n".join(caught.value.problems)
    assert "policy.licenses.allow[1]" in problems and "'Apache 2.0' is not an SPDX" in problems
    assert "policy.licenses.allow[2]: 'MIT, BSD-3-Clause' is not an SPDX" in problems
    assert "sets.core.policy.licenses.deny[0]" in problems and "'GPLv3'" in problems
    assert "policy.licenses.unknown" in problems
    assert all(line.startswith("mirror.yaml:") for line in caught.value.problems)


def test_a_set_override_replaces_the_global_license_rule() -> None:
    config = parse_config(HEADER + textwrap.dedent("""\
        sets:
          core: {requirements: [foo]}
          tools:
            requirements: [bar]
            policy: {licenses: {deny: [AGPL-3.0-only], unknown: deny}}
        policy:
          licenses: {deny: [GPL-3.0-only]}
        """))
    assert config.policy_for("core").licenses == LicensePolicyConfig(deny=["GPL-3.0-only"])
    tools = config.policy_for("tools").licenses
    assert tools is not None and tools.deny == ["AGPL-3.0-only"] and tools.unknown == "deny"


def engine(*exceptions: PolicyException, unknown: str = "warn") -> PolicyEngine:
    rule = LicensePolicyConfig(deny=["GPL-3.0-only"], unknown=unknown)
    return PolicyEngine(PolicyConfig(licenses=rule, exceptions=list(exceptions)), now=NOW)


def test_a_refusal_names_the_denied_ids_only_inside_a_longer_expression() -> None:
    assert license_refusal(spdx("GPL-3.0-only"), allow=[], deny=["GPL-3.0-only"]) == (
        "license GPL-3.0-only is denied")
    assert license_refusal(spdx("GPL-3.0-only AND MIT"), allow=[], deny=["GPL-3.0-only"]) == (
        "license GPL-3.0-only AND MIT is denied (GPL-3.0-only)")


def test_a_denied_license_is_a_deny_finding_an_exception_with_a_reason_waives() -> None:
    name, version = canonicalize_name("copyleft"), Version("1.0")
    finding = engine().license_finding(name, version, spdx("GPL-3.0-only"))
    assert finding is not None and finding.blocking and finding.rule == "licenses"
    assert finding.message == "copyleft==1.0: license GPL-3.0-only is denied"
    waived = engine(PolicyException(package="copyleft", version="1.0", rules=["licenses"],
                                    reason="linked at arm's length, reviewed by legal"))
    finding = waived.license_finding(name, version, spdx("GPL-3.0-only"))
    assert finding is not None and not finding.blocking and finding.waived_by is not None
    other_rule = engine(PolicyException(package="copyleft", rules=["yanked"], reason="x"))
    finding = other_rule.license_finding(name, version, spdx("GPL-3.0-only"))
    assert finding is not None and finding.blocking


def test_an_expired_license_exception_is_an_error() -> None:
    with pytest.raises(PolicyError, match="exception for copyleft.*expired on 2026-12-01"):
        engine(PolicyException(package="copyleft", rules=["licenses"], reason="until review",
                               expires=date(2026, 12, 1)))


@pytest.mark.parametrize(("unknown", "level"), [("allow", None), ("warn", "warn"),
                                                ("deny", "deny")])
def test_unknown_licenses_follow_their_own_level(unknown: str, level: str | None) -> None:
    name, version = canonicalize_name("mystery"), Version("0.1")
    for declared in (DeclaredLicense(None, None, "none"),
                     DeclaredLicense(None, "BSD License", "classifiers")):
        finding = engine(unknown=unknown).license_finding(name, version, declared)
        assert (finding.level if finding else None) == level
    finding = engine(unknown="deny").license_finding(
        name, version, DeclaredLicense(None, "BSD License", "classifiers"))
    assert finding is not None and "'BSD License', not an SPDX expression" in finding.message


def test_no_license_rule_no_finding() -> None:
    plain = PolicyEngine(PolicyConfig(), now=NOW)
    assert plain.license_finding(canonicalize_name("x"), Version("1"), spdx("GPL-3.0-only")) \
        is None


# --------------------------------------------------------------------------
# The rule applied: lock, audit and diff on the fixture index (copyleft 1.0
# declares License-Expression MIT, 2.0 GPL-3.0-only)
# --------------------------------------------------------------------------

def write_mirror(tmp: Path, index: FixtureIndex, requirement: str, policy: str = "") -> Path:
    path = tmp / "mirror.yaml"
    path.write_text(mirror_yaml(
        index.url, {"core": [requirement]}, name="licensed",
        extra=f'paths: {{cache: "{tmp / "cache"}", store: "{tmp / "store"}"}}\n' + policy))
    return path


DENY = "policy:\n  licenses: {deny: [GPL-3.0-only]}\n"


def locked_version(path: Path) -> str:
    (result,) = lock_sets(load_config(path), now=NOW)
    return str(next(p.version for p in result.lockfile.packages if p.name == "copyleft"))


def test_lock_skips_a_denied_release_of_an_unpinned_dependency(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    assert locked_version(write_mirror(tmp_path, fixture_index, "copyleft")) == "2.0"
    assert locked_version(write_mirror(tmp_path, fixture_index, "copyleft", DENY)) == "1.0"


def test_a_pinned_denied_release_fails_the_lock_at_its_line(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    path = write_mirror(tmp_path, fixture_index, "copyleft==2.0", DENY)
    with pytest.raises(LockmirrorError) as caught:
        lock_sets(load_config(path), now=NOW)
    message = str(caught.value)
    assert message.startswith("mirror.yaml:7: set 'core'"), message
    # the release named once, and the remedy the README documents
    assert ("'copyleft==2.0': excluded by policy: copyleft==2.0: license GPL-3.0-only is "
            "denied (pin another version, or add to mirror.yaml's policy.exceptions an entry "
            "{package: copyleft, version: '2.0', rules: [licenses], reason: <why it is "
            "acceptable>})") in message, message
    assert not (tmp_path / "lockfiles" / "pylock.core.toml").exists()  # no partial file


def test_the_remedy_names_the_rules_that_refused_the_newest_release_only(
        tmp_path: Path, fixture_index: FixtureIndex, catalogue: Catalogue) -> None:
    """copyleft 2.0 is too young, 1.0 (MIT) denied by its license: the exception that
    would unblock 2.0 waives min_age_days; 1.0's license rule is not its remedy."""
    newest = next(t for f, t in catalogue.upload_times.items() if f.startswith("copyleft-2.0"))
    policy = "policy:\n  min_age_days: 1\n  licenses: {deny: [MIT]}\n"
    path = write_mirror(tmp_path, fixture_index, "copyleft", policy)
    with pytest.raises(LockmirrorError) as caught:
        lock_sets(load_config(path), now=newest + timedelta(hours=12))
    message = str(caught.value)
    assert "copyleft==2.0 was uploaded" in message and "license MIT is denied" in message
    assert ("{package: copyleft, version: '2.0', rules: [min_age_days], reason: <why it is "
            "acceptable>}") in message, message


def test_an_exception_with_a_reason_admits_the_pin_and_is_recorded(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    waived = DENY + ("  exceptions:\n    - {package: copyleft, version: '2.0', rules: [licenses],"
                     " reason: reviewed by legal, expires: 2027-06-30}\n")
    path = write_mirror(tmp_path, fixture_index, "copyleft==2.0", waived)
    (result,) = lock_sets(load_config(path), now=NOW)
    assert [str(p.version) for p in result.lockfile.packages if p.name == "copyleft"] == ["2.0"]
    assert Lockfile.read(result.path).exceptions_used == ({
        "exception": "policy.exceptions[0]", "package": "copyleft", "version": "2.0",
        "release": "copyleft==2.0", "rule": "licenses", "reason": "reviewed by legal",
        "expires": "2027-06-30"},)


def test_an_expired_license_exception_fails_the_lock(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    expired = DENY + ("  exceptions:\n    - {package: copyleft, version: '2.0', "
                      "rules: [licenses], reason: until the review, expires: 2026-12-01}\n")
    path = write_mirror(tmp_path, fixture_index, "copyleft==2.0", expired)
    # a mistake in mirror.yaml now: named with its line, as validate names it
    with pytest.raises(ConfigError, match=r"^mirror.yaml:\d+:\d+: policy.exceptions\[0\]: "
                                          r"exception for copyleft==2.0 expired on 2026-12-01"):
        lock_sets(load_config(path), now=NOW)


def test_unknown_licenses_warn_while_locking(tmp_path: Path,
                                             fixture_index: FixtureIndex) -> None:
    path = write_mirror(tmp_path, fixture_index, "speedup",
                        "policy:\n  licenses: {deny: [GPL-3.0-only], unknown: warn}\n")
    (result,) = lock_sets(load_config(path), now=NOW)
    assert result.warnings == ("speedup==1.2 declares no SPDX license (none; "
                               "licenses.unknown: warn)",)


def store_metadata(store_dir: Path, catalogue: Catalogue, name: str, version: str) -> None:
    """The PEP 658 file of the release's wheel, where fetch puts it."""
    wheel = catalogue.find(name, version, wheel=True)
    Store(store_dir).write(wheel.metadata_sha256, wheel.metadata)


def test_audit_reports_license_findings_from_the_store_or_the_index(
        tmp_path: Path, fixture_index: FixtureIndex, catalogue: Catalogue) -> None:
    path = write_mirror(tmp_path, fixture_index, "copyleft")
    lock_sets(load_config(path), now=NOW)
    path = write_mirror(tmp_path, fixture_index, "copyleft", DENY)  # the policy tightens later
    offline = audit_mirror(load_config(path), now=NOW, offline=True)
    assert not [r for r in offline.rows if r.rule == "licenses"]
    assert any("licenses not checked for 1 release (no core" in n for n in offline.notes)

    store_metadata(tmp_path / "store", catalogue, "copyleft", "2.0")
    report = audit_mirror(load_config(path), now=NOW, offline=True)  # the store alone
    (row,) = [r for r in report.rows if r.rule == "licenses"]
    assert (row.level, row.release, row.sets) == ("deny", "copyleft==2.0", ("core",))
    assert row.message == "copyleft==2.0: license GPL-3.0-only is denied"
    assert report.exit_code == 1

    shutil.rmtree(tmp_path / "store")  # the index's PEP 658 file (HTTP-cached), no wheel
    fixture_index.reset_counts()
    online = audit_mirror(load_config(path), now=NOW)
    assert [r.message for r in online.rows if r.rule == "licenses"] == [row.message]
    assert not [r.path for r in fixture_index.requests if r.path.endswith(".whl")]


def test_diff_shows_a_license_change_between_versions(
        tmp_path: Path, fixture_index: FixtureIndex, catalogue: Catalogue) -> None:
    from lockmirror.stages.diff import run
    from lockmirror.stages.diff_render import render_text

    path = write_mirror(tmp_path, fixture_index, "copyleft==1.0")
    (old,) = lock_sets(load_config(path), now=NOW)
    shutil.copy(old.path, tmp_path / "old.toml")
    path = write_mirror(tmp_path, fixture_index, "copyleft==2.0")
    (new,) = lock_sets(load_config(path), now=NOW)
    without = run(str(tmp_path / "old.toml"), str(new.path), config=path, branches=[])
    assert not [f for s in without.sets for f in s.findings if f.kind == "license"]
    # and it says so, in what the PR comment posts too, however it is shortened: a
    # reviewer must not read "no license line" as "no license change"
    assert without.notes == ("licenses not compared for 1 release move (copyleft 1.0 -> "
                             "2.0): the store lacks their metadata; run lockmirror fetch first",)
    from lockmirror.stages.diff_render import render_markdown
    assert "> [!NOTE]\n> licenses not compared for 1 release move" in render_markdown(
        without, max_chars=10)

    for version in ("1.0", "2.0"):
        store_metadata(tmp_path / "store", catalogue, "copyleft", version)
    result = run(str(tmp_path / "old.toml"), str(new.path), config=path, branches=[])
    (finding,) = [f for s in result.sets for f in s.findings if f.kind == "license"]
    assert result.notes == ()
    assert finding.message == "copyleft 1.0 -> 2.0: license changed: MIT -> GPL-3.0-only"
    assert "license: copyleft 1.0 -> 2.0: license changed: MIT -> GPL-3.0-only" in \
        render_text(result)


def test_diff_reads_no_license_from_store_bytes_that_do_not_match_their_name(
        tmp_path: Path, fixture_index: FixtureIndex, catalogue: Catalogue) -> None:
    """pr.yml's diff job restores the store from a cache entry, which a build backend in
    the check job can write: a metadata file or an archive whose bytes are not its name's
    is not read, so the diff says the licenses were not compared instead of showing a
    forged change (found by an outside tester)."""
    from lockmirror.stages.diff import run

    path = write_mirror(tmp_path, fixture_index, "copyleft==1.0")
    (old,) = lock_sets(load_config(path), now=NOW)
    shutil.copy(old.path, tmp_path / "old.toml")
    path = write_mirror(tmp_path, fixture_index, "copyleft==2.0")
    (new,) = lock_sets(load_config(path), now=NOW)
    store = Store(tmp_path / "store")
    store_metadata(tmp_path / "store", catalogue, "copyleft", "1.0")
    forged = catalogue.find("copyleft", "1.0", wheel=True).metadata  # says MIT
    metadata_file = store.path(catalogue.find("copyleft", "2.0", wheel=True).metadata_sha256)
    metadata_file.parent.mkdir(parents=True, exist_ok=True)
    metadata_file.write_bytes(forged.replace(b"Version: 1.0", b"Version: 2.0"))
    result = run(str(tmp_path / "old.toml"), str(new.path), config=path, branches=[])
    assert not [f for s in result.sets for f in s.findings if f.kind == "license"]
    assert result.notes == ("licenses not compared for 1 release move (copyleft 1.0 -> "
                            "2.0): the store lacks their metadata; run lockmirror fetch first",)

    # the wheel itself, rewritten to declare MIT and padded to its size: not read either
    metadata_file.unlink()
    wheel = catalogue.find("copyleft", "2.0", wheel=True)
    archive = store.path(wheel.sha256)
    archive.parent.mkdir(parents=True, exist_ok=True)

    def rewritten(comment: bytes) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(wheel.path) as real, zipfile.ZipFile(out, "w") as fake:
            for info in real.infolist():
                data = real.read(info)
                if info.filename.endswith(".dist-info/METADATA"):
                    data = data.replace(b"GPL-3.0-only", b"MIT")
                fake.writestr(info, data)
            fake.comment = comment
        return out.getvalue()

    archive.write_bytes(rewritten(b"x" * (wheel.size - len(rewritten(b"")))))
    assert archive.stat().st_size == wheel.size
    result = run(str(tmp_path / "old.toml"), str(new.path), config=path, branches=[])
    assert not [f for s in result.sets for f in s.findings if f.kind == "license"]
    assert "licenses not compared for 1 release move" in result.notes[0]


def test_an_exception_for_the_license_rule_waives_an_unknown_license_of_its_release_only() -> None:
    name, version = canonicalize_name("mystery"), Version("0.1")
    waived = engine(PolicyException(package="mystery", version="0.1", rules=["licenses"],
                                    reason="license text read by legal"), unknown="deny")
    unknown = DeclaredLicense(None, None, "none")
    finding = waived.license_finding(name, version, unknown)
    assert finding is not None and finding.rule == "licenses" and not finding.blocking
    assert finding.waived_by is not None and finding.release == "mystery==0.1"
    for other in ((canonicalize_name("other"), version), (name, Version("0.2"))):
        finding = waived.license_finding(*other, unknown)
        assert finding is not None and finding.blocking and finding.waived_by is None


def test_the_far_sides_audit_reads_licenses_from_the_imported_mirror(
        tmp_path: Path, fixture_index: FixtureIndex, reproducible_build: None) -> None:
    """No store and no index behind the gap: the imported mirror's own files (each
    verified at import) say each release's license, so the far side's audit denies
    what the build side's does."""
    from lockmirror import pipeline
    from lockmirror.stages.import_state import audit_imported
    from lockmirror.stages.importer import import_bundle

    path = write_mirror(tmp_path, fixture_index, "copyleft")
    loaded = load_config(path)
    lock_sets(loaded, now=NOW)
    pipeline.fetch(loaded)
    pipeline.index(loaded)
    bundle = pipeline.bundle(loaded, tool=False, source_date_epoch=0)
    far = tmp_path / "far" / "mirror"
    import_bundle(list(bundle.parts), far)
    (tmp_path / "tight.yaml").write_text(path.read_text() + DENY)  # the policy tightens later
    report = audit_imported(far, now=NOW, config=tmp_path / "tight.yaml")
    (row,) = [r for r in report.rows if r.rule == "licenses"]
    assert (row.level, row.release) == ("deny", "copyleft==2.0")
    assert not any("licenses not checked" in note for note in report.notes)
    assert report.exit_code == 1


def test_validate_names_an_expired_exception_with_its_line(
        tmp_path: Path, fixture_index: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    """lock refuses to run with one, so validate (no network) says so first."""
    from lockmirror.cli import main

    expired = DENY + ("  exceptions:\n    - {package: copyleft, version: '2.0', "
                      "rules: [licenses], reason: until the review, expires: 2020-01-01}\n")
    path = write_mirror(tmp_path, fixture_index, "copyleft==2.0", expired)
    assert main(["validate", str(path)]) == 2
    said = capsys.readouterr().err
    assert f"{path}:" in said and ": policy.exceptions[0]: exception for copyleft==2.0 " \
        "expired on 2020-01-01; renew it" in said


# --------------------------------------------------------------------------
# A license change, not a change of how the license is written (found by an
# outside tester: every bump flagged "Apache Software License -> Apache-2.0")
# --------------------------------------------------------------------------

APACHE = "Classifier: License :: OSI Approved :: Apache Software License"
BSD = "Classifier: License :: OSI Approved :: BSD License"
MIT = "Classifier: License :: OSI Approved :: MIT License"
LGPL2_PLUS = ("Classifier: License :: OSI Approved :: GNU Lesser General Public License v2 or "
              "later (LGPLv2+)")
GPL3 = "Classifier: License :: OSI Approved :: GNU General Public License v3 (GPLv3)"


def declared(*headers: str) -> DeclaredLicense:
    from lockmirror.formats.core_metadata import parse_metadata
    from lockmirror.formats.licenses import declared_license

    text = "\n".join(["Metadata-Version: 2.4", "Name: x", "Version: 1", *headers]) + "\n\n"
    return declared_license(parse_metadata(text.encode()))


@pytest.mark.parametrize(("before", "after", "same"), [
    # requests 2.31.0 -> 2.34.2: a classifier, then PEP 639's expression
    ([APACHE, "License: Apache 2.0"], ["License-Expression: Apache-2.0"], True),
    # click, flask, jinja2: the expression, then only the less specific classifier
    (["License-Expression: BSD-3-Clause"], [BSD], True),
    ([BSD, MIT], ["License-Expression: BSD-3-Clause OR MIT"], True),
    ([GPL3], ["License-Expression: GPL-3.0-or-later"], True),
    (["License-Expression: MIT OR Apache-2.0"], ["License-Expression: Apache-2.0 OR MIT"], True),
    # real changes stay changes
    ([LGPL2_PLUS], ["License-Expression: 0BSD"], False),      # chardet 5.1.0 -> 7.7.0
    ([BSD], ["License-Expression: MIT"], False),
    ([BSD, MIT], ["License-Expression: MIT"], False),          # the BSD choice is gone
    ([APACHE], ["License-Expression: Apache-2.0 OR MIT"], False),
    ([GPL3], ["License-Expression: GPL-2.0-only"], False),
    (["License-Expression: MIT OR Apache-2.0"], ["License-Expression: MIT AND Apache-2.0"],
     False),
    (["Classifier: License :: Other/Proprietary License"], ["License-Expression: MIT"], False),
    ([], ["License-Expression: MIT"], False),                  # unknown -> MIT
    (["License: Apache Software License"], ["License-Expression: Apache-2.0"], False),  # prose
])
def test_a_classifier_and_a_consistent_spdx_expression_are_the_same_license(
        before: list[str], after: list[str], same: bool) -> None:
    from lockmirror.formats.licenses import same_license

    old, new = declared(*before), declared(*after)
    assert same_license(old, new) == same and same_license(new, old) == same, (old, new)


def test_diff_flags_license_changes_not_how_a_license_is_written(
        tmp_path: Path, make_index: Callable[..., FixtureIndex]) -> None:
    """The moves of a bump, their licenses from the index's PEP 658 files as the bump
    reads them: only chardet's license changed."""
    from fixtureindex import build_wheel

    from lockmirror.net.index_client import IndexClient
    from lockmirror.stages.diff import run

    releases = {("requests", "2.31.0"): [APACHE, "License: Apache 2.0"],
                ("requests", "2.34.2"): ["License-Expression: Apache-2.0"],
                ("click", "8.1.7"): ["License-Expression: BSD-3-Clause"],
                ("click", "8.2.1"): [BSD],
                ("chardet", "5.1.0"): [LGPL2_PLUS],
                ("chardet", "7.7.0"): ["License-Expression: 0BSD"]}
    files = tmp_path / "files"
    files.mkdir()
    for (name, version), headers in releases.items():
        build_wheel(files, name, version, metadata_version="2.4",
                    extra_metadata=[tuple(h.split(": ", 1)) for h in headers])
    index = make_index(files, upload_times={}, yanked={})
    sides = []
    for pins in (["requests==2.31.0", "click==8.1.7", "chardet==5.1.0"],
                 ["requests==2.34.2", "click==8.2.1", "chardet==7.7.0"]):
        path = tmp_path / "mirror.yaml"
        path.write_text(mirror_yaml(index.url, {"core": pins}, name="licensed",
                                    extra=f'paths: {{cache: "{tmp_path / "cache"}"}}\n'))
        (result,) = lock_sets(load_config(path), now=NOW)
        sides.append(tmp_path / f"side{len(sides)}.toml")
        shutil.copy(result.path, sides[-1])
    loaded = load_config(path)
    with IndexClient(loaded.config.sources_by_priority(),
                     cache_dir=loaded.cache_dir / "http") as client:
        diff = run(str(sides[0]), str(sides[1]), config=path, branches=[], client=client)
    assert diff.notes == ()
    assert [f.message for s in diff.sets for f in s.findings if f.kind == "license"] == [
        "chardet 5.1.0 -> 7.7.0: license changed: LGPL-2.0-or-later -> 0BSD"]
