"""The policy engine, the policy schema and the advisory sources.

Time is always a parameter: every test hands the engine a fixed ``now``.
Advisory sources are real: OSV records written to disk (directory and zip),
the bundled PyPA advisory subset, and the fixture index's PyPI JSON and OSV
APIs on 127.0.0.1.
"""

from __future__ import annotations

import json
import textwrap
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from fixtureindex import FixtureIndex
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from lockmirror.config import parse_config
from lockmirror.config_schema import AdvisorySourceConfig, PolicyConfig, PolicyException
from lockmirror.errors import ConfigError, LockmirrorError, NetworkError, PolicyError
from lockmirror.formats.lockfile import LockedTarget, Lockfile
from lockmirror.net.osv import OsvRecord, range_affects
from lockmirror.resolve.advisories import (
    AdvisoryDB,
    OsvApiSource,
    OsvOfflineSource,
    PypiJsonSource,
    open_advisory_db,
)
from lockmirror.resolve.policy import PolicyEngine, policy_records

ADVISORIES = Path(__file__).parent / "data" / "advisories"
NOW = datetime(2024, 10, 10, 12, 0, tzinfo=UTC)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def exception(package: str, version: str = "*", *, rules: list[str] | None = None,
              expires: date | None = None, reason: str = "reviewed") -> PolicyException:
    return PolicyException(package=package, version=version, reason=reason, expires=expires,
                           rules=rules or [])


def osv_record(ident: str, name: str, events: list[dict[str, str]], *,
               versions: list[str] | None = None, aliases: list[str] | None = None,
               withdrawn: str | None = None, ecosystem: str = "PyPI") -> dict[str, object]:
    record: dict[str, object] = {
        "id": ident, "modified": "2024-01-01T00:00:00Z", "aliases": aliases or [],
        "details": f"{ident} in {name}",
        "affected": [{"package": {"ecosystem": ecosystem, "name": name},
                      "ranges": [{"type": "ECOSYSTEM", "events": events}],
                      "versions": versions or []}],
        "references": [{"type": "ADVISORY", "url": f"https://osv.dev/vulnerability/{ident}"}],
    }
    if withdrawn:
        record["withdrawn"] = withdrawn
    return record


@pytest.fixture
def offline_db(tmp_path: Path) -> AdvisoryDB:
    """foo 1.0 .. <1.2 and 2.0 .. <2.1 are affected by TEST-2024-1 (alias CVE-2024-1)."""
    root = tmp_path / "osv" / "foo"
    root.mkdir(parents=True)
    (root / "TEST-2024-1.yaml").write_text(yaml.safe_dump(osv_record(
        "TEST-2024-1", "foo", [{"introduced": "1.0"}, {"fixed": "1.2"},
                               {"introduced": "2.0"}, {"fixed": "2.1"}],
        aliases=["CVE-2024-1"])))
    (root / "TEST-2024-2.json").write_text(json.dumps(osv_record(
        "TEST-2024-2", "foo", [{"introduced": "0"}, {"last_affected": "1.0"}])))
    return AdvisoryDB([OsvOfflineSource(tmp_path / "osv")])


# --------------------------------------------------------------------------
# min_age_days
# --------------------------------------------------------------------------


def test_min_age_excludes_releases_newer_than_the_window_for_unpinned_requirements() -> None:
    engine = PolicyEngine(PolicyConfig(min_age_days=7), now=NOW)
    fresh = engine.candidate_allowed("Foo", "2.0", [days_ago(3)])
    assert not fresh.allowed
    assert fresh.reasons == (("foo==2.0 was uploaded 2024-10-07 12:00 UTC, 3.0 days before "
                             "2024-10-10 12:00 UTC (min_age_days: 7)"),)
    assert engine.candidate_allowed("foo", "1.0", [days_ago(30)]).allowed


def test_min_age_boundary_and_earliest_file_counts() -> None:
    engine = PolicyEngine(PolicyConfig(min_age_days=7), now=NOW)
    assert engine.candidate_allowed("foo", "1.0", [days_ago(7)]).allowed
    assert not engine.candidate_allowed("foo", "1.1", [days_ago(7) + timedelta(seconds=1)]).allowed
    # a wheel uploaded yesterday to an old release does not make the release new
    mixed = {"foo-1.2.tar.gz": days_ago(100), "foo-1.2-py3-none-any.whl": days_ago(1)}
    assert engine.candidate_allowed("foo", "1.2", mixed).allowed


def test_min_age_without_upload_time_fails_closed() -> None:
    engine = PolicyEngine(PolicyConfig(min_age_days=7), now=NOW)
    decision = engine.candidate_allowed("foo", "1.0", [None, None])
    assert not decision.allowed
    assert "has no upload time" in decision.reasons[0]
    # one file with a time is enough
    assert engine.candidate_allowed("foo", "1.1", [None, days_ago(8)]).allowed
    # the finding is the min_age_days rule's: an exception for that rule admits the release
    waived = PolicyEngine(PolicyConfig(min_age_days=7, exceptions=[
        exception("foo", "1.0", rules=["min_age_days"], reason="an index without times")]),
        now=NOW).candidate_allowed("foo", "1.0", [None], pinned=True)
    assert waived.allowed and [use.rule for use in waived.exceptions_used] == ["min_age_days"]


def test_min_age_off_by_default() -> None:
    engine = PolicyEngine(PolicyConfig(), now=NOW)
    assert engine.candidate_allowed("foo", "1.0", [NOW]).allowed
    assert engine.candidate_allowed("foo", "1.0", []).findings == ()


def test_pin_to_a_too_new_release_is_an_error_unless_an_exception_covers_it() -> None:
    engine = PolicyEngine(PolicyConfig(min_age_days=7), now=NOW)
    decision = engine.candidate_allowed("foo", "2.0", [days_ago(1)], pinned=True)
    assert not decision.allowed
    error = decision.error(where="sets.core.requirements[0]")
    assert isinstance(error, PolicyError)
    assert str(error).startswith("sets.core.requirements[0]: foo==2.0 is pinned but foo==2.0 "
                                 "was uploaded 2024-10-09 12:00 UTC")
    assert "add a policy exception with a reason" in str(error)

    waived = PolicyEngine(PolicyConfig(min_age_days=7, exceptions=[
        exception("foo", "2.0", rules=["min_age_days"], reason="hotfix for CVE-2024-9")]),
        now=NOW).candidate_allowed("foo", "2.0", [days_ago(1)], pinned=True)
    assert waived.allowed
    assert [use.as_record() for use in waived.exceptions_used] == [{
        "exception": "policy.exceptions[0]", "package": "foo", "version": "2.0",
        "release": "foo==2.0", "rule": "min_age_days", "reason": "hotfix for CVE-2024-9"}]
    assert waived.findings[0].waived_by is not None and not waived.findings[0].blocking


# --------------------------------------------------------------------------
# yanked
# --------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["deny", "warn"])
def test_yanked_releases_are_never_chosen_for_unpinned_requirements(setting: str) -> None:
    engine = PolicyEngine(PolicyConfig(yanked=setting), now=NOW)  # type: ignore[arg-type]
    decision = engine.candidate_allowed("yanky", "1.1", [days_ago(400)], "broken build")
    assert not decision.allowed
    assert decision.reasons == (("yanky==1.1 is yanked: broken build (yanked releases are only "
                                "used when pinned with ==)"),)


def test_yanked_pin_is_an_error_under_deny_and_a_warning_under_warn() -> None:
    deny = PolicyEngine(PolicyConfig(yanked="deny"), now=NOW)
    pinned = deny.candidate_allowed("yanky", "1.1", [days_ago(400)], "", pinned=True)
    assert not pinned.allowed and pinned.reasons == ("yanky==1.1 is yanked: no reason given",)

    warn = PolicyEngine(PolicyConfig(yanked="warn"), now=NOW)
    allowed = warn.candidate_allowed("yanky", "1.1", [days_ago(400)], True, pinned=True)
    assert allowed.allowed
    assert [(f.rule, f.level) for f in allowed.warnings] == [("yanked", "warn")]
    assert warn.candidate_allowed("yanky", "1.0", [days_ago(400)], None).findings == ()


def test_an_exception_for_the_yanked_rule_admits_that_yanked_pin_only() -> None:
    engine = PolicyEngine(PolicyConfig(yanked="deny", exceptions=[
        exception("yanky", "1.1", rules=["yanked"], reason="the fix we need")]), now=NOW)
    waived = engine.candidate_allowed("yanky", "1.1", [days_ago(400)], "bad", pinned=True)
    assert waived.allowed and [use.release for use in waived.exceptions_used] == ["yanky==1.1"]
    assert not engine.candidate_allowed("yanky", "1.0", [days_ago(400)], "bad",
                                        pinned=True).allowed


def test_exception_for_one_rule_does_not_waive_another() -> None:
    engine = PolicyEngine(PolicyConfig(min_age_days=7, exceptions=[
        exception("yanky", "1.1", rules=["min_age_days"])]), now=NOW)
    decision = engine.candidate_allowed("yanky", "1.1", [days_ago(1)], "bad", pinned=True)
    assert [(f.rule, f.blocking) for f in decision.findings] == [
        ("min_age_days", False), ("yanked", True)]


# --------------------------------------------------------------------------
# vulnerabilities
# --------------------------------------------------------------------------


def test_vulnerabilities_deny_excludes_affected_releases(offline_db: AdvisoryDB) -> None:
    engine = PolicyEngine(PolicyConfig(vulnerabilities="deny"), now=NOW, advisories=offline_db)
    affected = engine.candidate_allowed("foo", "1.1", [days_ago(100)])
    assert not affected.allowed
    assert affected.reasons == ("TEST-2024-1 (CVE-2024-1): TEST-2024-1 in foo; fixed in 1.2, 2.1",)
    assert engine.candidate_allowed("foo", "1.2", [days_ago(100)]).allowed
    assert not engine.candidate_allowed("foo", "2.0.5", [days_ago(100)]).allowed
    assert not engine.candidate_allowed("foo", "2.0", [days_ago(9)], pinned=True).allowed


def test_vulnerabilities_warn_and_ignore(offline_db: AdvisoryDB) -> None:
    warn = PolicyEngine(PolicyConfig(vulnerabilities="warn"), now=NOW, advisories=offline_db)
    decision = warn.candidate_allowed("foo", "1.0", [days_ago(100)])
    assert decision.allowed
    assert sorted(f.advisory.id for f in decision.warnings if f.advisory) == [
        "TEST-2024-1", "TEST-2024-2"]
    ignore = PolicyEngine(PolicyConfig(vulnerabilities="ignore"), now=NOW, advisories=offline_db)
    assert ignore.candidate_allowed("foo", "1.0", [days_ago(100)]).findings == ()


def test_exception_can_waive_one_advisory_by_id_or_alias(offline_db: AdvisoryDB) -> None:
    engine = PolicyEngine(PolicyConfig(vulnerabilities="deny", exceptions=[
        exception("foo", "<2", rules=["CVE-2024-1"], reason="not reachable from our code")]),
        now=NOW, advisories=offline_db)
    only_first = engine.candidate_allowed("foo", "1.1", [days_ago(100)])
    assert only_first.allowed
    assert [use.detail for use in only_first.exceptions_used] == ["TEST-2024-1"]
    both = engine.candidate_allowed("foo", "1.0", [days_ago(100)])  # TEST-2024-2 too
    assert both.reasons == ("TEST-2024-2: TEST-2024-2 in foo; no fixed version",)
    assert not engine.candidate_allowed("foo", "2.0", [days_ago(100)]).allowed  # outside <2


def test_an_exception_for_the_vulnerabilities_rule_waives_each_advisory(
        offline_db: AdvisoryDB) -> None:
    engine = PolicyEngine(PolicyConfig(vulnerabilities="deny", exceptions=[
        exception("foo", "1.0", rules=["vulnerabilities"], reason="patched in our build")]),
        now=NOW, advisories=offline_db)
    waived = engine.candidate_allowed("foo", "1.0", [days_ago(100)])
    assert waived.allowed and sorted(use.detail for use in waived.exceptions_used) == [
        "TEST-2024-1", "TEST-2024-2"]
    assert [f.rule for f in waived.findings] == ["vulnerabilities", "vulnerabilities"]
    assert not engine.candidate_allowed("foo", "1.1", [days_ago(100)]).allowed


# --------------------------------------------------------------------------
# sdists
# --------------------------------------------------------------------------


def test_sdists_deny_and_its_exception() -> None:
    engine = PolicyEngine(PolicyConfig(sdists="deny", exceptions=[
        exception("legacy", rules=["sdists"], reason="no wheels exist; built in CI")]), now=NOW)
    assert not engine.candidate_allowed("native", "1.0", [days_ago(9)]).sdists_allowed
    assert engine.sdist_waiver("native", Version("1.0")) is None
    assert engine.candidate_allowed("legacy", "1.0", [days_ago(9)]).sdists_allowed
    use = engine.sdist_waiver("legacy", Version("1.0"))
    assert use is not None and use.rule == "sdists" and use.release == "legacy==1.0"
    allow = PolicyEngine(PolicyConfig(), now=NOW)
    assert allow.candidate_allowed("native", "1.0", [days_ago(9)]).sdists_allowed
    assert allow.sdist_waiver("legacy", Version("1.0")) is None
    one_release = PolicyEngine(PolicyConfig(sdists="deny", exceptions=[
        exception("legacy", "1.0", rules=["sdists"])]), now=NOW)
    assert one_release.candidate_allowed("legacy", "1.0", [days_ago(9)]).sdists_allowed
    assert not one_release.candidate_allowed("legacy", "2.0", [days_ago(9)]).sdists_allowed


# --------------------------------------------------------------------------
# exceptions: matching, expiry, labels, lockfile records
# --------------------------------------------------------------------------


def test_exception_version_forms() -> None:
    engine = PolicyEngine(PolicyConfig(min_age_days=7, exceptions=[
        exception("a", "1.0"), exception("b", ">=2,<3"), exception("C_d")]), now=NOW)

    def allowed(name: str, version: str) -> bool:
        return engine.candidate_allowed(name, version, [NOW]).allowed

    assert allowed("a", "1.0") and allowed("a", "1.0.0") and not allowed("a", "1.1")
    assert allowed("b", "2.5") and allowed("b", "2.6rc1") and not allowed("b", "3.0")
    assert allowed("c-d", "9") and not allowed("e", "1.0")


def test_expired_exception_is_an_error_that_names_it() -> None:
    config = parse_config(textwrap.dedent("""\
        version: 1
        sources: [{name: pypi, url: "https://pypi.org/simple/"}]
        targets: {linux: {python: "3.11", platforms: [manylinux_2_28_x86_64]}}
        sets:
          core:
            requirements: [foo==1.0]
            policy:
              exceptions:
                - {package: bar, reason: vendored fork, expires: 2024-10-10}
        policy:
          exceptions:
            - {package: baz, version: "2.0", reason: waiting for 2.1, expires: 2025-01-01}
            - {package: qux, reason: audited, expires: 2024-10-11}
            - {package: foo, version: "1.0", reason: pinned by vendor, expires: 2024-01-01}
        """))
    with pytest.raises(PolicyError) as caught:
        PolicyEngine.for_set(config, "core", now=NOW)
    assert str(caught.value).splitlines() == [
        ("mirror.yaml: policy.exceptions[2]: exception for foo==1.0 expired on 2024-01-01; "
        "renew it with a new date and reason, or remove it"),
        ("mirror.yaml: sets.core.policy.exceptions[0]: exception for bar expired on 2024-10-10; "
        "renew it with a new date and reason, or remove it"),
    ]
    # the day before, only foo's has expired; an exception is valid up to its expiry date
    with pytest.raises(PolicyError, match=r"^[^\n]*foo==1\.0[^\n]*$"):
        PolicyEngine.for_set(config, "core", now=NOW - timedelta(days=1))
    # audit keeps going: expired exceptions become findings and waive nothing
    engine = PolicyEngine.for_set(config, "core", now=NOW, allow_expired=True,
                                  where="conf/mirror.yaml")
    assert [(f.rule, f.level, f.release) for f in engine.expired_findings()] == [
        ("exceptions", "deny", "foo==1.0"), ("exceptions", "deny", "bar")]
    assert engine.expired_findings()[0].message.startswith("conf/mirror.yaml: policy.exceptions[2]")
    assert engine._waiver("foo", Version("1.0"), "yanked") is None
    assert engine._waiver("qux", Version("1.0"), "yanked") is not None


def test_policy_records_are_sorted_unique_and_fit_the_lockfile() -> None:
    engine = PolicyEngine(PolicyConfig(min_age_days=7, exceptions=[
        exception("foo", expires=date(2025, 1, 1), reason="internal package, no upload times")]),
        now=NOW)
    uses = [*engine.candidate_allowed("foo", "2.0", [None]).exceptions_used,
            *engine.candidate_allowed("foo", "1.0", [None], pinned=True).exceptions_used,
            *engine.candidate_allowed("foo", "1.0", [None]).exceptions_used]
    records = policy_records(uses)
    assert [r["release"] for r in records] == ["foo==1.0", "foo==2.0"]
    assert records[0]["expires"] == "2025-01-01"
    lock = Lockfile(set_name="core", requirements=("foo",), packages=(), input_hash="0" * 64,
                    targets=(LockedTarget("linux", "3.11", "cp", ("manylinux_2_28_x86_64",),
                                          'sys_platform == "linux"'),),
                    exceptions_used=records)
    assert Lockfile.loads(lock.dumps()).exceptions_used == records


def test_decisions_are_memoized() -> None:
    engine = PolicyEngine(PolicyConfig(min_age_days=1), now=NOW)
    first = engine.candidate_allowed("foo", "1.0", [days_ago(3)])
    assert engine.candidate_allowed("FOO", Version("1.0"), [days_ago(3)]) is first
    # the same release seen with other files (another target): decided again, not recalled
    assert not engine.candidate_allowed("foo", "1.0", [days_ago(0.5)]).allowed
    assert engine.candidate_allowed("foo", "1.0", [days_ago(0.5), days_ago(3)]).allowed


# --------------------------------------------------------------------------
# the schema: reasons, rules, sources, per-set overrides
# --------------------------------------------------------------------------

HEADER = textwrap.dedent("""\
    version: 1
    sources: [{name: pypi, url: "https://pypi.org/simple/"}]
    targets: {linux: {python: "3.11", platforms: [manylinux_2_28_x86_64]}}
    sets: {core: {requirements: [foo==1.0]}}
    """)


def test_exception_without_reason_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(HEADER + textwrap.dedent("""\
            policy:
              exceptions:
                - {package: foo, version: "1.0"}
                - {package: bar, reason: "  "}
                - {package: baz, reason: ok, rules: [yanked, PYSEC-2023-212, typo]}
                - {package: qux, version: "1.0", reason: known}
            """))
    assert caught.value.problems == [
        "mirror.yaml:7:7: policy.exceptions[0].reason: required key is missing",
        ("mirror.yaml:8:22: policy.exceptions[1].reason: the reason must say why the exception "
        "is needed"),
        ("mirror.yaml:9:66: policy.exceptions[2].rules[2]: 'typo' is neither a rule "
        "(min_age_days, yanked, vulnerabilities, sdists, licenses) nor an advisory id such as "
        "PYSEC-2023-212 or GHSA-..."),
    ]


def test_advisory_sources_are_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(HEADER + textwrap.dedent("""\
            policy:
              advisory_sources:
                - {kind: osv-offline}
                - {kind: pypi-json, path: x}
                - {kind: osv-api, url: "ftp://osv"}
                - {kind: nvd}
                - {kind: pypi-json, url: "http://proxy.example/pypi/"}
                - {kind: pypi-json, url: "http://proxy.example/pypi/", allow_http: true}
                - {kind: osv-api, url: "http://127.0.0.1:8080/"}
            """))
    assert [p.split(": ", 1)[1] for p in caught.value.problems] == [
        ("policy.advisory_sources[0]: an osv-offline source needs 'path' (a directory or .zip "
        "of OSV records)"),
        ("policy.advisory_sources[1].path: 'path' is for osv-offline sources; give 'url' (or "
        "nothing for the default)"),
        "policy.advisory_sources[2].url: 'ftp://osv' is not an http(s) URL",
        ("policy.advisory_sources[3].kind: input should be 'pypi-json', 'osv-api' or "
        "'osv-offline', got 'nvd'"),
        ("policy.advisory_sources[4].url: 'http://proxy.example/pypi/' is plain http: anyone "
         "on the path can hide advisories (use https, or say `allow_http: true` for a network "
         "you trust)"),
    ]


def test_an_advisory_sources_refused_url_is_shown_without_its_credentials() -> None:
    """A refused advisory URL (plain http, or not http at all) is quoted without the
    user name and password written into it, as a package source's is."""
    with pytest.raises(ConfigError) as caught:
        parse_config(HEADER + textwrap.dedent("""\
            policy:
              advisory_sources:
                - {kind: osv-api, url: "http://ops:s3cret-token@osv.internal/"}
                - {kind: osv-api, url: "ftp://ops:s3cret-token@osv.internal/"}
            """))
    assert len(caught.value.problems) == 2, caught.value.problems
    assert all("s3cret-token" not in problem for problem in caught.value.problems)
    assert "is plain http" in caught.value.problems[0]
    assert "is not an http(s) URL" in caught.value.problems[1]


def test_per_set_overrides_replace_global_keys_and_add_exceptions() -> None:
    config = parse_config(textwrap.dedent("""\
        version: 1
        sources: [{name: pypi, url: "https://pypi.org/simple/"}]
        targets: {linux: {python: "3.11", platforms: [manylinux_2_28_x86_64]}}
        sets:
          core: {requirements: [foo==1.0]}
          strict:
            requirements: [foo==1.0]
            policy:
              min_age_days: 14
              vulnerabilities: deny
              exceptions: [{package: foo, reason: vendor build}]
        policy:
          min_age_days: 3
          exceptions: [{package: bar, reason: internal}]
        """))
    core = PolicyEngine.for_set(config, "core", now=NOW)
    strict = PolicyEngine.for_set(config, "strict", now=NOW)
    assert core.candidate_allowed("x", "1", [days_ago(5)]).allowed
    assert not strict.candidate_allowed("x", "1", [days_ago(5)]).allowed
    assert strict.policy.vulnerabilities == "deny" and core.policy.vulnerabilities == "warn"
    labels = [u.label for u in strict.candidate_allowed("foo", "1", [NOW]).exceptions_used]
    assert labels == ["sets.strict.policy.exceptions[0]"]
    assert [u.label for u in strict.candidate_allowed("bar", "1", [NOW]).exceptions_used] == [
        "policy.exceptions[0]"]
    assert not core.candidate_allowed("foo", "1", [NOW]).exceptions_used


# --------------------------------------------------------------------------
# OSV evaluation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("events", "affected", "unaffected"), [
    ([{"introduced": "0"}, {"fixed": "1.5"}], ["0.1", "1.4.9", "1.5rc1"], ["1.5", "2.0"]),
    # two spans given out of order, as urllib3's PYSEC-2023-212 does
    ([{"introduced": "2.0.0"}, {"fixed": "2.0.7"}, {"introduced": "0"}, {"fixed": "1.26.18"}],
     ["1.26.17", "2.0.0", "2.0.6"], ["1.26.18", "1.27", "2.0.7", "3.0"]),
    ([{"introduced": "1.0"}, {"last_affected": "1.3"}], ["1.0", "1.3", "1.3.0"],
     ["0.9", "1.3.1", "1.4"]),
    ([{"introduced": "1.0"}], ["1.0", "99"], ["0.9"]),
    ([{"introduced": "0"}, {"limit": "2.0"}], ["1.9"], ["2.0", "2.1"]),
    # a start that does not parse: from the beginning (it hid the advisory before)
    ([{"introduced": "2015.04.28-foo"}, {"fixed": "1.0"}], ["0.5"], ["1.0"]),
    ([{"introduced": "0"}, {"fixed": "not-a-version"}], ["0.5", "9"], []),
])
def test_range_evaluation(events: list[dict[str, str]], affected: list[str],
                          unaffected: list[str]) -> None:
    for text in affected:
        assert range_affects(events, Version(text)), text
    for text in unaffected:
        assert not range_affects(events, Version(text)), text


def test_osv_records_versions_lists_withdrawn_and_other_ecosystems(tmp_path: Path) -> None:
    records = [
        osv_record("LIST-1", "foo", [], versions=["1.0", "1.1"]),
        osv_record("GONE-1", "foo", [{"introduced": "0"}], withdrawn="2024-01-01T00:00:00Z"),
        osv_record("NPM-1", "foo", [{"introduced": "0"}], ecosystem="npm"),
        osv_record("GIT-1", "foo", []),
    ]
    git_only = records[3]["affected"]
    assert isinstance(git_only, list)
    git_only[0]["ranges"] = [{"type": "GIT", "repo": "https://x", "events": [
        {"introduced": "0"}, {"fixed": "abc123"}]}]
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for record in records:
            out.writestr(f"{record['id']}.json", json.dumps(record))
        out.writestr("README.txt", "not a record")
    db = AdvisoryDB([OsvOfflineSource(archive)])
    assert [a.id for a in db.advisories_for("foo", Version("1.1"))] == ["LIST-1"]
    assert db.advisories_for("foo", Version("1.2")) == []


def test_offline_source_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("id: [unclosed\n")
    with pytest.raises(LockmirrorError, match=r"bad\.yaml: cannot parse OSV record"):
        OsvOfflineSource(tmp_path).advisories_for("foo", Version("1"))
    (tmp_path / "bad.yaml").write_text("just text\n")
    with pytest.raises(LockmirrorError, match=r"bad\.yaml: not an OSV record"):
        OsvOfflineSource(tmp_path).advisories_for("foo", Version("1"))
    with pytest.raises(LockmirrorError, match="OSV database not found"):
        OsvOfflineSource(tmp_path / "missing").advisories_for("foo", Version("1"))


def test_range_evaluation_alone_reproduces_every_bundled_records_version_list() -> None:
    """The PyPA records list affected versions *and* give ranges: the two
    must agree for every one of them (ranges evaluated without the list)."""
    checked = 0
    for path in sorted(ADVISORIES.glob("vulns/*/*.yaml")):
        data = yaml.safe_load(path.read_text())
        for entry in data["affected"]:
            events = [r["events"] for r in entry["ranges"] if r["type"] == "ECOSYSTEM"]
            for text in entry.get("versions", []):
                try:
                    version = Version(text)
                except InvalidVersion:
                    continue  # pre-PEP 440 releases such as pyjwt's "0.1-bulbasaur"
                assert any(range_affects(e, version) for e in events), (path.name, text)
                checked += 1
    assert checked > 1000


def test_bundled_records_parse_with_ids_aliases_and_fixes() -> None:
    source = OsvOfflineSource(ADVISORIES)
    assert source.record_count == 87
    [advisory] = [a for a in source.advisories_for("cryptography", Version("41.0.4"))]
    assert (advisory.id, advisory.aliases) == ("PYSEC-2023-254",
                                               ("CVE-2023-49083", "GHSA-jfhm-5ghh-2f97"))
    assert advisory.fixed_after(Version("41.0.4")) == ["41.0.6"]
    # PYSEC-2023-73 (redis) is withdrawn: no release is affected by it
    redis = OsvRecord.from_data(yaml.safe_load(
        (ADVISORIES / "vulns/redis/PYSEC-2023-73.yaml").read_text()), where="x")
    assert redis.withdrawn and not redis.affects("redis", Version("2.0.0"))


# --------------------------------------------------------------------------
# Network sources against the fixture index (PyPI JSON API, OSV API)
# --------------------------------------------------------------------------


def test_pypi_json_source(fixture_index: FixtureIndex) -> None:
    import requests

    source = PypiJsonSource(fixture_index.json_api_url, requests.Session())
    [advisory] = source.advisories_for("vulny", Version("1.0"))
    assert (advisory.id, advisory.aliases, advisory.fixed) == (
        "PYSEC-2023-0001", ("GHSA-fix7-ture-0001",), ("1.1",))
    assert advisory.summary == "fixture vulnerability in vulny 1.0"
    assert source.advisories_for("vulny", Version("1.1")) == []
    assert source.advisories_for("no-such-project", Version("1.0")) == []  # 404: nothing known
    before = fixture_index.count()
    source.advisories_for("vulny", Version("1.0"))
    assert fixture_index.count() == before  # cached

    fixture_index.add_vulnerability("alpha", "1.1", "PYSEC-2024-0002", fixed_in=["2.0"])
    fixture_index.fail_next(5, 503, path_prefix="/pypi/alpha/")
    with pytest.raises(NetworkError, match=r"cannot fetch http://127\.0\.0\.1:\d+/pypi/alpha/"
                                           r"1\.1/json: HTTP 503"):
        source.advisories_for("alpha", Version("1.1"))


def test_osv_api_source_batches_and_fetches_details_once(fixture_index: FixtureIndex) -> None:
    import requests

    fixture_index.add_vulnerability("alpha", "1.0", "PYSEC-2023-0001", fixed_in=["1.1"])
    source = OsvApiSource(fixture_index.osv_url, requests.Session())
    releases = [(canonicalize_name(n), Version(v))
                for n, v in [("vulny", "1.0"), ("vulny", "1.1"), ("alpha", "1.0")]]
    source.prefetch(releases)
    assert fixture_index.count("/v1/querybatch", method="POST") == 1
    found = {f"{n}=={v}": [a.id for a in source.advisories_for(n, v)] for n, v in releases}
    assert found == {"vulny==1.0": ["PYSEC-2023-0001"], "vulny==1.1": [],
                     "alpha==1.0": ["PYSEC-2023-0001"]}
    assert source.advisories_for("vulny", Version("1.0"))[0].fixed_after(Version("1.0")) == ["1.1"]
    assert fixture_index.count("/v1/querybatch", method="POST") == 1
    assert fixture_index.count("/v1/vulns/PYSEC-2023-0001") == 1


def test_sources_merge_by_id_and_alias(fixture_index: FixtureIndex, tmp_path: Path) -> None:
    (tmp_path / "osv").mkdir()
    (tmp_path / "osv" / "GHSA-fix7-ture-0001.json").write_text(json.dumps(osv_record(
        "GHSA-fix7-ture-0001", "vulny", [{"introduced": "0"}, {"fixed": "1.1"}],
        aliases=["PYSEC-2023-0001", "CVE-2023-0001"])))
    db = open_advisory_db([
        AdvisorySourceConfig(kind="pypi-json", url=fixture_index.json_api_url),
        AdvisorySourceConfig(kind="osv-api", url=fixture_index.osv_url),
        AdvisorySourceConfig(kind="osv-offline", path="osv"),
    ], base_dir=tmp_path)
    [advisory] = db.advisories_for("vulny", Version("1.0"))
    assert advisory.id == "PYSEC-2023-0001"
    assert advisory.aliases == ("CVE-2023-0001", "GHSA-fix7-ture-0001")
    assert advisory.source.startswith("pypi-json:")
    assert db.advisories_for("vulny", Version("1.1")) == []
