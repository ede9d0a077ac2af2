"""The license policy: SPDX lists in mirror.yaml, AND/OR evaluated, unknown licenses, exceptions.

How a lock and an audit apply it is tested with the lock and audit; here the
schema (every list entry must be SPDX, named with its line), the evaluation
of expressions against the lists and the engine's findings and waivers.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from lockmirror.config import parse_config
from lockmirror.config_schema import LicensePolicyConfig, PolicyConfig, PolicyException
from lockmirror.errors import ConfigError, PolicyError
from lockmirror.formats.licenses import DeclaredLicense, license_refusal
from lockmirror.resolve.policy import PolicyEngine

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
                allow: [MIT, "Apache 2.0"]
                unknown: maybe
            """))
    problems = "\n".join(caught.value.problems)
    assert "policy.licenses.allow[1]" in problems and "'Apache 2.0' is not an SPDX" in problems
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
    rule = LicensePolicyConfig(deny=["GPL-3.0-only"], unknown=unknown)  # type: ignore[arg-type]
    return PolicyEngine(PolicyConfig(licenses=rule, exceptions=list(exceptions)), now=NOW)


def test_a_denied_license_is_a_deny_finding_an_exception_with_a_reason_waives() -> None:
    name, version = canonicalize_name("copyleft"), Version("1.0")
    finding = engine().license_finding(name, version, spdx("GPL-3.0-only"))
    assert finding is not None and finding.blocking and finding.rule == "licenses"
    assert finding.message == "copyleft==1.0: license GPL-3.0-only is denied (GPL-3.0-only)"
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
