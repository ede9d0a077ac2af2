"""The audit stage, its three renderings, the CLI, and quarantine.

Hermetic: the fixture index on 127.0.0.1 answers project pages (yanked
state), the PyPI JSON API and the OSV API; the index tree that quarantine
edits is built by the real index stage from a store filled with the
catalogue's files. One test audits the mirror's own core set against the
bundled PyPA advisory subset (tests/data/advisories) as an offline database.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import textwrap
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import helpers
import pytest
import yaml
from fixtureindex import Catalogue, FixtureIndex
from helpers import tree_bytes
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from lockmirror import pipeline
from lockmirror.cli import main
from lockmirror.config import LoadedConfig, load_config, parse_config
from lockmirror.config_schema import SourceConfig
from lockmirror.formats.lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile
from lockmirror.formats.manifest import Manifest, check_tree
from lockmirror.formats.store import Store
from lockmirror.net.http import make_session
from lockmirror.net.index_client import IndexClient
from lockmirror.resolve.advisories import AdvisoryDB, OsvOfflineSource, PypiJsonSource
from lockmirror.stages.audit import AuditReport, audit, audit_mirror
from lockmirror.stages.audit_render import render_json, render_markdown, render_text
from lockmirror.stages.audit_row import AuditRow
from lockmirror.stages.index import build_index
from lockmirror.stages.quarantine import QuarantineList

REPO = Path(__file__).resolve().parent.parent
ADVISORIES = Path(__file__).parent / "data" / "advisories"
NOW = datetime(2024, 10, 10, 12, 0, tzinfo=UTC)
TARGET = LockedTarget(name="linux", python="3.11", implementation="cp",
                      platforms=("manylinux_2_17_x86_64",), marker='sys_platform == "linux"')
# The releases the audit tests lock: a vulnerable one (and its fix, as if a
# second target needed it), one to be yanked, one locked with its sdist, and
# two clean ones.
LOCKED = [("vulny", "1.0"), ("vulny", "1.1"), ("yanky", "1.0"), ("alpha", "1.1"),
          ("speedup", "1.2"), ("beta", "1.0")]


def lockfile_of(catalogue: Catalogue, index: FixtureIndex, set_name: str,
                releases: Sequence[tuple[str, str]]) -> Lockfile:
    """A lockfile of ``releases`` with every file the catalogue has for them."""
    packages = []
    for name, version in releases:
        files = [LockedFile(filename=f.filename, url=f"{index.base_url}/files/{f.normalized}/"
                            f"{f.filename}", size=f.size, sha256=f.sha256,
                            upload_time=f.upload_time,
                            metadata_sha256=f.metadata_sha256 if f.is_wheel else None)
                 for f in catalogue.project(name) if f.version == version]
        packages.append(LockedPackage(
            name=canonicalize_name(name), version=Version(version), targets=(TARGET.name,),
            index=index.url, wheels=tuple(f for f in files if f.is_wheel),
            sdist=next((f for f in files if not f.is_wheel), None),
            why={TARGET.name: (set_name,)}))
    return Lockfile(set_name=set_name, requirements=tuple(f"{n}=={v}" for n, v in releases),
                    targets=(TARGET,), packages=tuple(packages), input_hash="0" * 64)


def mirror_yaml(index: FixtureIndex, policy: str, sets: Sequence[str] = ("core",)) -> str:
    """helpers.mirror_yaml of ``sets`` (each locking vulny==1.0) with ``policy``."""
    return helpers.mirror_yaml(index.url, {name: ["vulny==1.0"] for name in sets},
                               targets={"linux": ("3.11", "manylinux_2_17_x86_64")},
                               extra="policy:\n" + textwrap.indent(textwrap.dedent(policy), "  "))


@pytest.fixture
def client(fixture_index: FixtureIndex) -> Iterator[IndexClient]:
    sources = [SourceConfig(name="fixture", url=fixture_index.url)]
    with IndexClient(sources, session=make_session(retries=0)) as index_client:
        yield index_client


def run_audit(catalogue: Catalogue, index: FixtureIndex, client: IndexClient | None,
              policy: str, sets: Sequence[str] = ("core",)) -> AuditReport:
    config = parse_config(mirror_yaml(index, policy, sets))
    db = AdvisoryDB([PypiJsonSource(index.json_api_url, make_session(retries=0))])
    lockfiles = [lockfile_of(catalogue, index, name, LOCKED) for name in sets]
    return audit(lockfiles, config, sources=db, now=NOW, client=client)


# --------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------


def test_audit_finds_new_advisories_new_yanks_and_denied_sdists(
        catalogue: Catalogue, fixture_index: FixtureIndex, client: IndexClient) -> None:
    fixture_index.yank(catalogue.find("yanky", "1.0").filename, "pulled: bad metadata")
    report = run_audit(catalogue, fixture_index, client, """\
        vulnerabilities: deny
        yanked: warn
        sdists: deny
        exceptions:
          - {package: alpha, version: "1.1", rules: [sdists], reason: no other way to build}
        """)
    assert [(r.level, r.release, r.rule) for r in report.rows] == [
        ("deny", "vulny==1.0", "vulnerabilities"),
        ("warn", "yanky==1.0", "yanked"),
        ("waived", "alpha==1.1", "sdists"),
    ]
    vuln, yank, waived = report.rows
    assert (vuln.advisory, vuln.aliases, vuln.fixed_in) == (
        "PYSEC-2023-0001", ("GHSA-fix7-ture-0001",), ("1.1",))
    assert yank.message == "yanky==1.0 is yanked: pulled: bad metadata"
    assert waived.exception == "policy.exceptions[0]"
    assert report.exit_code == 1
    assert report.quarantine_candidates() == {("vulny", "1.0"): [vuln.message]}
    assert report.releases == len(LOCKED) and report.yanked_checked


def test_audit_rechecks_each_run_and_passes_when_only_warnings(
        catalogue: Catalogue, fixture_index: FixtureIndex, client: IndexClient) -> None:
    clean = run_audit(catalogue, fixture_index, client, "vulnerabilities: warn\n")
    assert [(r.level, r.release) for r in clean.rows] == [("warn", "vulny==1.0")]
    assert clean.exit_code == 0
    # an advisory published after the lock shows up on the next run
    fixture_index.add_vulnerability("speedup", "1.2", "PYSEC-2024-0099",
                                    aliases=["CVE-2024-0099"], summary="new issue")
    later = run_audit(catalogue, fixture_index, None, "vulnerabilities: deny\n")
    assert [(r.level, r.release, r.advisory) for r in later.rows] == [
        ("deny", "speedup==1.2", "PYSEC-2024-0099"), ("deny", "vulny==1.0", "PYSEC-2023-0001")]
    assert later.rows[0].fixed_in == ()
    assert "yanked state taken from the lockfiles only" in later.notes[0]


def test_project_gone_from_every_source_is_noted(
        catalogue: Catalogue, fixture_index: FixtureIndex, client: IndexClient) -> None:
    config = parse_config(mirror_yaml(fixture_index, "yanked: deny\n"))
    lockfile = lockfile_of(catalogue, fixture_index, "core", [("alpha", "1.0")])
    ghost = LockedPackage(name=canonicalize_name("ghost"), version=Version("1.0"),
                          targets=(TARGET.name,), index=fixture_index.url)
    lockfile = Lockfile(lockfile.set_name, lockfile.requirements, lockfile.targets,
                        (*lockfile.packages, ghost), lockfile.input_hash)
    report = audit([lockfile], config, sources=None, now=NOW, client=client)
    assert report.notes == ("ghost: no configured source has this project any more",)
    # no advisory source: said as a finding at the policy's level (warn here), not a note
    assert [(r.level, r.release, r.message) for r in report.rows] == [
        ("warn", "-", "vulnerabilities were not checked: no advisory source is configured "
         "(policy.advisory_sources)")]
    assert report.exit_code == 0


def test_no_advisory_source_under_deny_says_not_checked_and_fails(
        catalogue: Catalogue, fixture_index: FixtureIndex) -> None:
    config = parse_config(mirror_yaml(fixture_index, "vulnerabilities: deny\n"))
    lockfile = lockfile_of(catalogue, fixture_index, "core", LOCKED)
    report = audit([lockfile], config, sources=None, now=NOW)
    assert report.exit_code == 1
    text = render_text(report)
    assert text.splitlines()[1].startswith(
        "deny   -        vulnerabilities  core  vulnerabilities were not checked: "
        "no advisory source is configured (policy.advisory_sources)")
    assert "no findings" not in text
    assert render_markdown(report).startswith("## lockmirror audit: ❌")
    # `ignore` asks for nothing, so nothing is missing
    ignored = parse_config(mirror_yaml(fixture_index, "vulnerabilities: ignore\n"))
    assert audit([lockfile], ignored, sources=None, now=NOW).rows == ()


def test_pypi_json_without_release_json_checks_the_latest_and_says_what_it_could_not(
        catalogue: Catalogue, fixture_index: FixtureIndex) -> None:
    """An index answering 404 for ``/pypi/<name>/<version>/json`` (as some mirrors and
    proxies do) must not make its releases pass as clean: the project JSON covers
    the latest release (yanky's is 1.0: 1.1 is yanked); the others are reported as not
    checked."""
    fixture_index.add_vulnerability("vulny", "1.1", "PYSEC-2024-0011", summary="also 1.1")
    for name, version in LOCKED:
        fixture_index.fail_next(1, 404, f"/pypi/{name}/{version}/json")
    report = run_audit(catalogue, fixture_index, None, "vulnerabilities: deny\n")
    assert [(r.level, r.release, r.advisory) for r in report.rows] == [
        ("deny", "-", ""), ("deny", "vulny==1.1", "PYSEC-2024-0011")]
    assert report.rows[0].message == (
        "vulnerabilities were not checked for 2 of 6 releases (alpha==1.1, vulny==1.0): "
        f"pypi-json:{fixture_index.json_api_url} answers no JSON for single "
        "releases, and its project JSON covers only the latest release")
    assert report.exit_code == 1 and report.quarantine_candidates() == {
        ("vulny", "1.1"): [report.rows[1].message]}


def test_pypi_json_without_a_vulnerabilities_list_is_not_checked(tmp_path: Path) -> None:
    """A JSON API answer that leaves ``vulnerabilities`` out (a proxy's) says nothing
    about advisories: the release is reported as not checked, never as clean."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    for version, body in (("1.0", {"info": {"name": "six", "version": "1.0"}, "urls": []}),
                          ("2.0", {"info": {}, "vulnerabilities": [None]}),
                          ("3.0", {"info": {}, "vulnerabilities": []})):
        page = tmp_path / "pypi" / "six" / version / "json"
        page.parent.mkdir(parents=True)
        page.write_text(json.dumps(body))
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    with helpers.serving(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as base:
        url = f"{base}/pypi/"
        source = PypiJsonSource(url, make_session(retries=0))
        for version in ("1.0", "2.0", "3.0"):
            assert source.advisories_for(canonicalize_name("six"), Version(version)) == []
    assert source.unchecked(canonicalize_name("six"), Version("1.0")) == (
        f"pypi-json:{url} answers JSON without a list of vulnerabilities")
    assert source.unchecked(canonicalize_name("six"), Version("2.0")) is not None
    assert source.unchecked(canonicalize_name("six"), Version("3.0")) is None  # clean


def test_expired_exception_is_a_denied_finding_and_stops_waiving(
        catalogue: Catalogue, fixture_index: FixtureIndex) -> None:
    report = run_audit(catalogue, fixture_index, None, """\
        vulnerabilities: deny
        exceptions:
          - {package: vulny, version: "1.0", reason: not reachable, expires: 2024-10-01}
        """, sets=("core", "misp"))
    assert [(r.level, r.rule, r.release, r.sets) for r in report.rows] == [
        ("deny", "exceptions", "vulny==1.0", ("core", "misp")),
        ("deny", "vulnerabilities", "vulny==1.0", ("core", "misp")),
    ]
    assert report.rows[0].message == (
        "mirror.yaml: policy.exceptions[0]: exception for vulny==1.0 expired on 2024-10-01; "
        "renew it with a new date and reason, or remove it")
    # the expiry finding names no release to quarantine; the advisory does
    assert list(report.quarantine_candidates()) == [("vulny", "1.0")]


def test_an_expired_exception_names_only_the_sets_that_lock_its_release(
        catalogue: Catalogue, fixture_index: FixtureIndex) -> None:
    """Found by an outside tester: `deny chardet==5.1.0 exceptions data,lockmirror-tool,
    tools,web` where only `data` locked chardet. An exception that matches nothing
    locked is named with every set whose policy holds it (lock refuses them all)."""
    config = parse_config(mirror_yaml(fixture_index, """\
        exceptions:
          - {package: vulny, version: "1.0", reason: not reachable, expires: 2024-10-01}
          - {package: gone, reason: no longer in any set, expires: 2024-10-01}
        """, sets=("core", "misp", "tools")))
    lockfiles = [lockfile_of(catalogue, fixture_index, "core", LOCKED),
                 lockfile_of(catalogue, fixture_index, "misp", LOCKED[2:]),
                 lockfile_of(catalogue, fixture_index, "tools", [("vulny", "1.1")])]
    report = audit(lockfiles, config, sources=None, now=NOW)
    assert [(r.release or r.package, r.sets) for r in report.rows if r.rule == "exceptions"] == [
        ("gone", ("core", "misp", "tools")), ("vulny==1.0", ("core",))]


def test_exception_a_bump_left_behind_is_noted(catalogue: Catalogue,
                                               fixture_index: FixtureIndex) -> None:
    """An exception matching no locked release (the pin moved past it) is
    named, so it can go before a later lock quietly starts using it; those
    that match a locked release (even one that waives nothing today) are not."""
    report = run_audit(catalogue, fixture_index, None, """\
        exceptions:
          - {package: vulny, version: "1.0", reason: not reachable}
          - {package: vulny, version: "0.9", reason: left behind by a bump}
          - {package: gone, reason: no longer in any set}
          - {package: yanky, version: ">=1", rules: [yanked], reason: vendor pin}
        """)
    assert [n for n in report.notes if "matches no locked release" in n] == [
        "policy.exceptions[1]: exception for vulny==0.9 matches no locked release; remove it",
        "policy.exceptions[2]: exception for gone matches no locked release; remove it",
    ]
    # a note, not a finding: the rows (and so the exit code) are those without them
    without = run_audit(catalogue, fixture_index, None, """\
        exceptions:
          - {package: vulny, version: "1.0", reason: not reachable}
          - {package: yanky, version: ">=1", rules: [yanked], reason: vendor pin}
        """)
    assert [r.release for r in report.rows] == [r.release for r in without.rows]
    assert report.exit_code == without.exit_code


def test_renderings(catalogue: Catalogue, fixture_index: FixtureIndex,
                    client: IndexClient) -> None:
    fixture_index.yank(catalogue.find("yanky", "1.0").filename, "broken | pipe")
    report = run_audit(catalogue, fixture_index, client, """\
        vulnerabilities: deny
        exceptions:
          - {package: yanky, rules: [yanked], reason: pinned by vendor}
        """)
    text = render_text(report)
    lines = text.splitlines()
    assert lines[0].split() == ["LEVEL", "RELEASE", "RULE", "SETS", "DETAIL"]
    assert lines[1].split()[:4] == ["deny", "vulny==1.0", "vulnerabilities", "core"]
    assert lines[1].endswith("PYSEC-2023-0001 (GHSA-fix7-ture-0001): fixed in 1.1")
    assert lines[2].endswith("[waived by policy.exceptions[0]]")
    assert lines[1].index("vulny") == lines[0].index("RELEASE")  # columns line up
    assert lines[-1] == ("6 releases in 1 set checked at 2024-10-10 12:00 UTC: 1 denied, "
                         "0 warnings, 1 waived")

    markdown = render_markdown(report)
    assert markdown.startswith("## lockmirror audit: ❌ denied findings\n")
    assert "| Level | Release | Rule | Sets | Detail |" in markdown
    assert ("| deny | `vulny==1.0` | vulnerabilities | core | "
            "[PYSEC-2023-0001](https://osv.dev/vulnerability/PYSEC-2023-0001) "
            "(GHSA-fix7-ture-0001): fixed in 1.1 |") in markdown
    assert "broken \\| pipe" in markdown  # a | in data does not break the table

    data = json.loads(render_json(report))
    assert data["format"] == "lockmirror-audit/1"
    assert data["checked_at"] == "2024-10-10T12:00:00Z"
    assert data["summary"] == {"deny": 1, "warn": 0, "waived": 1, "quarantined": 0}
    assert data["findings"][0] == {
        "package": "vulny", "version": "1.0", "rule": "vulnerabilities", "level": "deny",
        "message": report.rows[0].message, "sets": ["core"], "advisory": "PYSEC-2023-0001",
        "aliases": ["GHSA-fix7-ture-0001"], "fixed_in": ["1.1"],
        "url": "https://osv.dev/vulnerability/PYSEC-2023-0001",
        "source": f"pypi-json:{fixture_index.json_api_url}"}
    assert data["findings"][1]["exception"] == "policy.exceptions[0]"
    assert render_json(report) == render_json(report)  # stable bytes

    clean = AuditReport(checked_at=NOW, sets=("core",), releases=3, rows=(), sources=())
    assert render_text(clean).startswith("no findings\n")
    assert "✅ no denied findings" in render_markdown(clean)


# --------------------------------------------------------------------------
# Real advisories: the core set against the bundled PyPA subset
# --------------------------------------------------------------------------


def core_lockfiles() -> list[Lockfile]:
    """The committed lockfiles once the lock stage has produced them; until
    then, a lockfile of the core set's own pins from mirror.yaml."""
    committed = sorted((REPO / "lockfiles").glob("pylock.*.toml"))
    if committed:
        return [Lockfile.read(path) for path in committed]
    config = load_config(REPO / "mirror.yaml").config
    packages = []
    for text in config.sets["core"].requirements:
        requirement = Requirement(text)
        [pin] = list(requirement.specifier)
        packages.append(LockedPackage(name=canonicalize_name(requirement.name),
                                      version=Version(pin.version), targets=(TARGET.name,),
                                      index="https://pypi.org/simple/"))
    return [Lockfile(set_name="core", requirements=tuple(config.sets["core"].requirements),
                     targets=(TARGET,), packages=tuple(packages), input_hash="0" * 64)]


def lockfile_of_pins(releases: Sequence[tuple[str, str]]) -> Lockfile:
    packages = tuple(LockedPackage(name=canonicalize_name(name), version=Version(version),
                                   targets=(TARGET.name,), index="https://pypi.org/simple/")
                     for name, version in releases)
    return Lockfile(set_name="core", requirements=tuple(f"{n}=={v}" for n, v in releases),
                    targets=(TARGET,), packages=packages, input_hash="0" * 64)


def test_bundled_mirror_yaml_audits_vulnerabilities_and_pins_no_known_advisory() -> None:
    """Audit on by default: the bundled file names an advisory source that this
    network reaches (PyPI's JSON API), and its core set no longer pins urllib3 2.0.4
    or cryptography 41.0.4."""
    config = load_config(REPO / "mirror.yaml", environ={}).config
    assert [source.kind for source in config.policy.advisory_sources] == ["pypi-json"]
    core = Lockfile.read(REPO / "lockfiles" / "pylock.core.toml")
    locked = {(p.name, str(p.version)) for p in core.packages}
    assert not locked & {("urllib3", "2.0.4"), ("cryptography", "41.0.4")}


@pytest.mark.network
def test_bundled_advisory_source_vouches_for_the_moved_pins() -> None:
    """Live PyPI: the bundled source answers for the new urllib3 and cryptography pins:
    checked, no advisory."""
    from lockmirror.resolve.advisories import open_advisory_db

    loaded = load_config(REPO / "mirror.yaml", environ={})
    db = open_advisory_db(loaded.config.policy.advisory_sources, base_dir=loaded.root)
    for name, version in (("urllib3", "2.8.0"), ("cryptography", "51.0.1")):
        assert db.advisories_for(name, Version(version)) == []
        assert db.unchecked(name, Version(version)) is None


def expected_from_records(releases: set[tuple[str, Version]]) -> set[tuple[str, str, str]]:
    """(project, version, advisory id) straight from the YAML records' own
    ``versions`` lists, without lockmirror's evaluation."""
    found = set()
    for path in ADVISORIES.glob("vulns/*/*.yaml"):
        record = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        if record.get("withdrawn"):
            continue
        for affected in record["affected"]:
            name = canonicalize_name(affected["package"]["name"])
            for text in affected.get("versions", []):
                try:
                    version = Version(text)
                except InvalidVersion:
                    continue
                if (name, version) in releases:
                    found.add((name, str(version), record["id"]))
    return found


def test_core_set_against_the_pypa_advisory_database() -> None:
    lockfiles = core_lockfiles()
    config = load_config(REPO / "mirror.yaml").config
    db = AdvisoryDB([OsvOfflineSource(ADVISORIES)])
    report = audit(lockfiles, config, sources=db, now=NOW)
    found = {(r.package, r.version, r.advisory) for r in report.rows if r.advisory}
    locked = {(p.name, p.version) for lf in lockfiles for p in lf.packages}
    assert found == expected_from_records(locked)
    # what the records say about the pins the bundled file had (fixed in: from the records)
    old_pins = lockfile_of_pins([("urllib3", "2.0.4"), ("cryptography", "41.0.4")])
    by_release = {(r.package, r.version, r.advisory): r
                  for r in audit([old_pins], config, sources=db, now=NOW).rows}
    assert by_release[("urllib3", "2.0.4", "PYSEC-2023-192")].fixed_in == ("2.0.6",)
    assert by_release[("urllib3", "2.0.4", "PYSEC-2023-212")].fixed_in == ("2.0.7",)
    assert by_release[("urllib3", "2.0.4", "PYSEC-2023-212")].aliases == (
        "CVE-2023-45803", "GHSA-g4mx-q9vg-27p4")
    assert by_release[("cryptography", "41.0.4", "PYSEC-2023-254")].fixed_in == ("41.0.6",)
    # ... which the bundled file moved to releases no record affects
    assert ("urllib3", Version("2.8.0")) in locked and ("cryptography", Version("51.0.1")) in locked
    assert not [r for r in report.rows if r.package in ("urllib3", "cryptography")
                and (r.package, Version(r.version)) in locked and "core" in r.sets]
    # requests 2.31.0 is the fix for PYSEC-2023-74, not affected by it
    assert not [r for r in report.rows if r.package == "requests"]
    # mirror.yaml says `vulnerabilities: warn`: findings, but the audit passes
    assert {r.level for r in report.rows} == {"warn"} and report.exit_code == 0


# --------------------------------------------------------------------------
# The CLI, quarantine and its dry run
# --------------------------------------------------------------------------


@pytest.fixture
def mirror(tmp_path: Path, catalogue: Catalogue, fixture_index: FixtureIndex) -> LoadedConfig:
    """A mirror repository: mirror.yaml, a lockfile, a store, a built dist-index."""
    (tmp_path / "mirror.yaml").write_text(mirror_yaml(fixture_index, f"""\
        vulnerabilities: deny
        advisory_sources:
          - {{kind: pypi-json, url: "{fixture_index.json_api_url}"}}
        """))
    loaded = load_config(tmp_path / "mirror.yaml")
    lockfile = lockfile_of(catalogue, fixture_index, "core", LOCKED)
    lockfile.write(loaded.lockfile_path("core"))
    store = Store(loaded.store_dir)
    for item in catalogue:
        for data in (item.path.read_bytes(), item.metadata if item.is_wheel else None):
            if data is not None:
                staged = store.temp_dir() / "staged"
                staged.write_bytes(data)
                store.adopt(staged, hashlib.sha256(data).hexdigest())
    build_index([loaded.lockfile_path("core")], store, loaded.index_dir)
    return loaded


def test_cli_audit_formats_and_exit_codes(mirror: LoadedConfig, fixture_index: FixtureIndex,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = str(mirror.path)
    # offline, no configured source is left: under `vulnerabilities: deny` an audit
    # that could not look fails, saying so, instead of passing as clean
    assert main(["audit", "-c", config, "--now", "2024-10-10T12:00:00Z", "--offline",
                 "--format", "json"]) == 1
    offline = json.loads(capsys.readouterr().out)
    assert offline["sources"] == []
    assert [(f["level"], f["rule"], f["message"]) for f in offline["findings"]] == [
        ("deny", "vulnerabilities", "vulnerabilities were not checked: no advisory source is "
         "configured (policy.advisory_sources)")]
    assert main(["audit", "-c", config, "--now", "2024-10-10T12:00:00Z",
                 "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [f["advisory"] for f in data["findings"]] == ["PYSEC-2023-0001"]
    assert main(["audit", "-c", config, "--now", "2024-10-10", "--format", "markdown"]) == 1
    assert capsys.readouterr().out.startswith("## lockmirror audit: ❌")
    assert main(["audit", "-c", config, "--offline", "--quarantine"]) == 1
    assert capsys.readouterr().err == "quarantine: nothing to quarantine\n"  # names no release
    assert not mirror.quarantine_path.exists()  # no list until something is quarantined
    assert main(["audit", "-c", config, "--set", "nope"]) == 2
    assert "no set named 'nope'" in capsys.readouterr().err
    assert main(["audit", "-c", config, "--now", "yesterday"]) == 2  # bad input
    assert "'yesterday' is not an ISO date" in capsys.readouterr().err


def test_quarantine_dry_run_changes_nothing(mirror: LoadedConfig,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    before = tree_bytes(mirror.index_dir)
    assert main(["audit", "-c", str(mirror.path), "--now", "2024-10-10", "--quarantine",
                 "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert tree_bytes(mirror.index_dir) == before
    assert not mirror.quarantine_path.exists()
    assert f"quarantine: would add vulny==1.0 to {mirror.quarantine_path}" in err
    assert f"would remove {mirror.index_dir / 'files/vulny/vulny-1.0-py3-none-any.whl'}" in err
    assert f"would rewrite {mirror.index_dir / 'simple/vulny/index.json'}" in err


def test_quarantine_takes_releases_out_of_the_index(mirror: LoadedConfig, catalogue: Catalogue,
                                                    fixture_index: FixtureIndex) -> None:
    report = audit_mirror(mirror, now=NOW)
    dry = pipeline.quarantine(mirror, report, now=NOW, dry_run=True)
    result = pipeline.quarantine(mirror, report, now=NOW)
    assert (result.change.removed, result.change.rewritten) == (
        dry.change.removed, dry.change.rewritten)
    assert result.change.releases == ("vulny==1.0",)
    assert result.change.removed == ("files/vulny/vulny-1.0-py3-none-any.whl",
                                     "files/vulny/vulny-1.0-py3-none-any.whl.metadata")
    root = mirror.index_dir
    manifest = Manifest.read(root / "manifest.json")
    assert check_tree(root, manifest).ok
    page = json.loads((root / "simple/vulny/index.json").read_text())
    assert page["versions"] == ["1.1"]
    assert [f["filename"] for f in page["files"]] == ["vulny-1.1-py3-none-any.whl"]
    assert "vulny-1.0" not in (root / "simple/vulny/index.html").read_text()
    assert "vulny-1.1-py3-none-any.whl" in (root / "simple/vulny/index.html").read_text()
    # untouched projects keep their bytes
    assert (root / "simple/alpha/index.json").read_bytes() == snapshot_page(mirror, "alpha")
    listed = QuarantineList.read(mirror.quarantine_path)
    assert [r.release for r in listed.releases.values()] == ["vulny==1.0"]
    assert json.loads(mirror.quarantine_path.read_text())["releases"][0]["since"] == (
        "2024-10-10T12:00:00Z")
    # the current lock still pins it: still denied (installs of that lock fail until a
    # new lock moves it), the audit saying it is out of the index and what moves it
    pinned = audit_mirror(mirror, now=NOW.replace(day=11))
    assert pinned.exit_code == 1 and [r.release for r in pinned.denied] == ["vulny==1.0"]
    assert ("quarantined (out of the index) but still pinned by the current lock, so still "
            "denied: vulny==1.0 (core); installs of that lock fail until a new lock moves "
            "them: run `lockmirror bump --security`") in pinned.notes
    # running again changes nothing, and keeps the first date
    again = pipeline.quarantine(mirror, pinned, now=NOW.replace(day=11))
    assert again.change.removed == () and again.added == ()
    assert QuarantineList.read(mirror.quarantine_path) == listed
    # once the set is locked without it, audit says the entry can go
    lockfile_of(catalogue, fixture_index, "core", [r for r in LOCKED if r != ("vulny", "1.0")]
                ).write(mirror.lockfile_path("core"))
    later = audit_mirror(mirror, now=NOW)
    assert later.exit_code == 0
    assert later.notes[-1] == ("quarantine entries no longer locked (remove them from "
                               "quarantine.json): vulny==1.0")


def snapshot_page(mirror: LoadedConfig, project: str) -> bytes:
    """The page the index stage writes for ``project`` from the lockfile alone."""
    other = mirror.root / "reference-index"
    build_index([mirror.lockfile_path("core")], Store(mirror.store_dir), other,
                state_dir=mirror.root / "reference-state")
    return (other / f"simple/{project}/index.json").read_bytes()


def test_quarantine_empties_a_project_and_real_installers_see_it(
        mirror: LoadedConfig, fixture_index: FixtureIndex, catalogue: Catalogue) -> None:
    uv = shutil.which("uv", path=str(REPO / ".venv" / "bin"))
    assert uv is not None
    fixture_index.add_vulnerability("speedup", "1.2", "PYSEC-2024-0100", fixed_in=["1.3"])
    report = audit_mirror(mirror, now=NOW, sets=["core"])
    result = pipeline.quarantine(mirror, report, now=NOW)
    assert result.change.releases == ("speedup==1.2", "vulny==1.0")
    root = mirror.index_dir
    assert "simple/index.json" in result.change.rewritten
    projects = [p["name"] for p in json.loads((root / "simple/index.json").read_text())["projects"]]
    assert projects == ["alpha", "beta", "vulny", "yanky"]
    assert not (root / "simple/speedup").exists() and not (root / "files/speedup").exists()
    assert check_tree(root, Manifest.read(root / "manifest.json")).ok

    def install(requirement: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [uv, "pip", "install", "--dry-run", "--no-deps", "--no-cache",
             "--python-platform", "x86_64-manylinux_2_17", "--python-version", "3.11",
             "--target", str(mirror.root / "target"),
             "--index-url", (root / "simple").as_uri(), requirement],
            capture_output=True, text=True, timeout=120, check=False)

    for allowed in ("alpha==1.1", "vulny==1.1"):
        assert install(allowed).returncode == 0, install(allowed).stderr
    for refused in ("speedup==1.2", "vulny==1.0"):
        answer = install(refused)
        assert answer.returncode != 0 and "unsatisfiable" in answer.stderr, answer.stderr


def test_a_release_only_lockmirrors_own_set_locks_is_no_quarantine_candidate() -> None:
    """The index does not serve lockmirror's own set (the bundle's tool/), so
    quarantine could not take such a release out: it is reported, not a candidate."""
    rows = tuple(AuditRow(name, "1.0", "vulnerabilities", "deny", f"{name} bad", sets,
                          advisory="PYSEC-1")
                 for name, sets in (("tooly", ("lockmirror-tool",)),
                                    ("both", ("core", "lockmirror-tool")),
                                    ("kept", ("core@1234abcd",))))
    report = AuditReport(checked_at=NOW, sets=("core", "lockmirror-tool"), releases=3,
                         rows=rows, sources=())
    assert report.exit_code == 1
    assert report.quarantine_candidates() == {("both", "1.0"): ["both bad"],
                                              ("kept", "1.0"): ["kept bad"]}


def test_audit_of_a_mirror_directory_that_is_not_there_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``audit --mirror /srv/mirorr`` (mistyped) said the directory held "no mirror.yaml
    of its bundle (imported before lockmirror kept one)" and sent the user to ``-c``
    (found by an outside tester); verify and publish --from say no such directory."""
    from lockmirror.cli import main

    assert main(["audit", "--mirror", str(tmp_path / "mirorr")]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"lockmirror: error: {tmp_path / 'mirorr'}: no such directory ("), line
    assert "mirror.yaml" not in line
    assert not (tmp_path / "mirorr").exists()
