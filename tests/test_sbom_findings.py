"""SBOMs (issue 23): the policy findings the lock allowed, and each release's supplier.

A warn-level finding (a yanked pin under ``yanked: warn``, an advisory under
``vulnerabilities: warn``, no SPDX license under ``licenses.unknown: warn``)
is recorded by the lock in the lockfile's ``policy-findings`` and shown as a
``lockmirror:policy-finding`` property of its component; one an exception
waives is shown only as ``lockmirror:policy-exception``. The supplier is the
maintainers named in the core metadata, else the authors, else absent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from fixtureindex import FixtureIndex
from helpers import mirror_yaml
from packaging.version import Version

from lockmirror.config import load_config
from lockmirror.formats.lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile
from lockmirror.formats.store import Store
from lockmirror.formats.url_policy import url_host
from lockmirror.fsutil import sha256_bytes
from lockmirror.stages.diff_compare import diff_set
from lockmirror.stages.diff_model import LockDiff
from lockmirror.stages.diff_render import render_text
from lockmirror.stages.diff_textconv import render_textconv
from lockmirror.stages.lock import lock_sets
from lockmirror.stages.sbom import MIRROR_DOCUMENT, sbom_documents

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
WARN = ("policy:\n  yanked: warn\n  vulnerabilities: warn\n"
        "  licenses: {{deny: [GPL-3.0-only], unknown: warn}}\n"
        "  advisory_sources: [{{kind: pypi-json, url: '{json_api}'}}]\n")
WAIVE_YANKY = ("  exceptions:\n    - {package: yanky, version: '1.1', reason: the fix is in 1.1.1,"
               " expires: 2027-06-30}\n")


def write_mirror(tmp: Path, index: FixtureIndex, policy: str = "") -> Path:
    """The set pins a yanked, a vulnerable and an MIT release under :data:`WARN`
    (and ``policy``: exceptions)."""
    path = tmp / "mirror.yaml"
    path.write_text(mirror_yaml(
        index.url, {"core": ["yanky==1.1", "vulny==1.0", "copyleft==1.0"]}, name="findings",
        targets={"linux": ("3.11", "manylinux_2_28_x86_64")},
        extra=f'paths: {{cache: "{tmp / "cache"}", store: "{tmp / "store"}"}}\n'
              + WARN.format(json_api=index.json_api_url) + policy))
    return path


def properties(document: dict[str, Any], name: str, prop: str) -> list[str]:
    component = next(c for c in document["components"] if c["name"] == name)
    return [p["value"] for p in component.get("properties", []) if p["name"] == prop]


def documents_of(lockfile: Lockfile, store_dir: Path) -> dict[str, bytes]:
    return sbom_documents([lockfile], Store(store_dir), mirror_name="findings",
                          tool_version="9.9")


def test_warn_level_findings_the_lock_allowed_are_in_the_lockfile_and_the_sbom(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    path = write_mirror(tmp_path, fixture_index)
    (result,) = lock_sets(load_config(path), now=NOW)
    recorded = Lockfile.read(result.path)
    assert recorded.policy_findings == result.lockfile.policy_findings
    assert {(r["release"], r["rule"], r.get("advisory")) for r in recorded.policy_findings} == {
        ("yanky==1.1", "yanked", None), ("yanky==1.1", "licenses", None),
        ("vulny==1.0", "vulnerabilities", "PYSEC-2023-0001"), ("vulny==1.0", "licenses", None)}
    # what lock printed is what it recorded; copyleft 1.0 (MIT) passes every rule
    assert sorted(result.warnings) == sorted(r["message"] for r in recorded.policy_findings)
    assert "policy-finding yanked: yanky==1.1 is yanked: broken build, use 1.0" in \
        render_textconv(recorded).splitlines()

    documents = documents_of(recorded, tmp_path / "store")
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    assert all(validator.validate_str(d.decode()) is None for d in documents.values())
    core = json.loads(documents["core.cdx.json"])
    assert properties(core, "yanky", "lockmirror:policy-finding") == [
        "licenses: yanky==1.1 declares no SPDX license (none; licenses.unknown: warn)",
        "yanked: yanky==1.1 is yanked: broken build, use 1.0"]
    vulny = properties(core, "vulny", "lockmirror:policy-finding")
    assert [v.split(":", 1)[0] for v in vulny] == ["licenses", "vulnerabilities"]
    assert "PYSEC-2023-0001" in vulny[1]
    assert properties(core, "copyleft", "lockmirror:policy-finding") == []
    assert properties(core, "yanky", "lockmirror:policy-exception") == []

    # the same inputs, the same bytes: the lock writes nothing new, the SBOMs repeat
    (again,) = lock_sets(load_config(path), now=NOW)
    assert not again.written
    assert documents_of(Lockfile.read(again.path), tmp_path / "store") == documents


def test_a_waived_finding_is_only_the_exception(tmp_path: Path,
                                                fixture_index: FixtureIndex) -> None:
    path = write_mirror(tmp_path, fixture_index, WAIVE_YANKY)
    (result,) = lock_sets(load_config(path), now=NOW)
    assert {r["rule"] for r in result.lockfile.exceptions_used} == {"yanked", "licenses"}
    assert not [r for r in result.lockfile.policy_findings if r["release"] == "yanky==1.1"]
    core = json.loads(documents_of(result.lockfile, tmp_path / "store")["core.cdx.json"])
    assert properties(core, "yanky", "lockmirror:policy-finding") == []
    waived = properties(core, "yanky", "lockmirror:policy-exception")
    assert len(waived) == 2 and all("reason=the fix is in 1.1.1" in w for w in waived)
    assert len(properties(core, "vulny", "lockmirror:policy-finding")) == 2  # not waived


def test_diff_shows_the_findings_a_change_brings(tmp_path: Path,
                                                fixture_index: FixtureIndex) -> None:
    """A reviewer's diff: the findings recorded by the new lock, marked new when
    the old lock did not record them (a yanked release is said once, as yanked)."""
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    (waived,) = lock_sets(load_config(write_mirror(tmp_path / "old", fixture_index,
                                                   WAIVE_YANKY)), now=NOW)
    (warned,) = lock_sets(load_config(write_mirror(tmp_path / "new", fixture_index)), now=NOW)
    hosts = frozenset(url_host(f.url) for _, f in waived.lockfile.iter_files())
    diff = diff_set("core", waived.lockfile, warned.lockfile, "old", "new", hosts)
    found = {(f.kind, f.package, f.message.split(":", 1)[0], f.new) for f in diff.findings
             if f.kind == "policy-finding"}
    assert found == {("policy-finding", "vulny", "licenses", False),
                     ("policy-finding", "vulny", "vulnerabilities", False),
                     ("policy-finding", "yanky", "licenses", True)}  # waived before
    assert [f.new for f in diff.findings if f.kind == "yanked"] == [False]
    assert "policy: new policy-finding: licenses: yanky==1.1 declares no SPDX license" in \
        render_text(LockDiff("old", "new", (diff,)))


def test_lock_check_names_recorded_findings_that_differ(tmp_path: Path,
                                                        fixture_index: FixtureIndex) -> None:
    """``lock --check --resolve``: findings that differ from what lock would record now
    (an advisory published since, a policy loosened) are named as such."""
    from dataclasses import replace

    from lockmirror.stages.lock_check import describe_differences

    (result,) = lock_sets(load_config(write_mirror(tmp_path, fixture_index)), now=NOW)
    committed = replace(result.lockfile, policy_findings=result.lockfile.policy_findings[1:])
    assert describe_differences(committed, result.lockfile, committed.dumps(),
                                result.lockfile.dumps()) == [
        "policy findings differ from what `lock` writes"]


# --------------------------------------------------------------------------
# Supplier: the maintainers, else the authors, else none
# --------------------------------------------------------------------------

TARGET = LockedTarget("host", "3.11", "cp", ("manylinux_2_28_x86_64",),
                      'python_version == "3.11"')


def released(store: Store, name: str, *headers: str) -> LockedPackage:
    data = ("\n".join(["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0", *headers])
            + "\n\n").encode()
    digest = sha256_bytes(data)
    store.write(digest, data)
    wheel = LockedFile(filename=f"{name}-1.0-py3-none-any.whl",
                       url=f"https://files.example/{name}-1.0-py3-none-any.whl", size=1,
                       sha256=sha256_bytes(name.encode()), metadata_sha256=digest)
    return LockedPackage(name=name, version=Version("1.0"), targets=("host",),  # type: ignore[arg-type]
                         index="https://pypi.org/simple/", wheels=(wheel,))


SUPPLIERS: list[tuple[str, list[str], dict[str, Any] | None]] = [
    ("maintained", ["Author: Ada", "Author-email: ada@example.org", "Maintainer: Grace",
                    "Maintainer-email: grace@example.org"],
     {"name": "Grace", "contact": [{"email": "grace@example.org", "name": "Grace"}]}),
    ("mailed", ["Author: Ada", "Maintainer-email: Grace Hopper <grace@example.org>, "
                "ops@example.org"],
     {"name": "Grace Hopper", "contact": [{"email": "grace@example.org", "name": "Grace Hopper"},
                                          {"email": "ops@example.org"}]}),
    ("authored", ["Author: Ada Lovelace", "Maintainer: UNKNOWN"], {"name": "Ada Lovelace"}),
    ("authormailed", ["Author-email: Ada <ada@example.org>, Bob <bob@example.org>"],
     {"name": "Ada, Bob", "contact": [{"email": "ada@example.org", "name": "Ada"},
                                      {"email": "bob@example.org", "name": "Bob"}]}),
    ("placeholders", ["Maintainer: None", "Author:   ", "Author-email: Ada <ada@example.org>"],
     {"name": "Ada", "contact": [{"email": "ada@example.org", "name": "Ada"}]}),
    ("nameless", ["Author-email: ada@example.org", "Maintainer-email: ops@example.org"], None),
    # markdown 3.11.4 as its METADATA has it (PEP 621: the authors without an address in
    # Author, those with one in Author-email); Waylan's address is his, not Isaac Muse's
    ("markdown", [
        "Author: Manfred Stienstra, Yuri Takhteyev",
        "Author-email: Waylan limberg <python.markdown@gmail.com>",
        "Maintainer: Isaac Muse",
        "Maintainer-email: Waylan Limberg <python.markdown@gmail.com>"],
     {"name": "Isaac Muse, Waylan Limberg",
      "contact": [{"email": "python.markdown@gmail.com", "name": "Waylan Limberg"}]}),
    ("echoed", ["Author: Ada", "Author-email: Ada <ada@example.org>, Bob <bob@example.org>"],
     {"name": "Ada, Bob", "contact": [{"email": "ada@example.org", "name": "Ada"},
                                      {"email": "bob@example.org", "name": "Bob"}]}),
    # aiohttp's METADATA: the address in the name field, nothing in Author-email
    ("svetlov", ["Author: Andrew Svetlov <andrew.svetlov@gmail.com>"],
     {"name": "Andrew Svetlov",
      "contact": [{"email": "andrew.svetlov@gmail.com", "name": "Andrew Svetlov"}]}),
    ("nameful", ["Author: Ada Lovelace, Bob <bob@example.org>, nobody@example.org"],
     {"name": "Ada Lovelace, Bob",
      "contact": [{"email": "bob@example.org", "name": "Bob"}, {"email": "nobody@example.org"}]}),
    ("nobody", [], None),
]


def test_the_supplier_is_the_maintainer_else_the_author_else_absent(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    lockfile = Lockfile(set_name="core", requirements=tuple(name for name, _, _ in SUPPLIERS),
                        targets=(TARGET,), input_hash="x", packages=tuple(released(store, name, *headers)
                                       for name, headers, _ in SUPPLIERS))
    documents = sbom_documents([lockfile], store, mirror_name="demo", tool_version="9.9")
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    assert all(validator.validate_str(d.decode()) is None for d in documents.values())
    components = {c["name"]: c for c in json.loads(documents[MIRROR_DOCUMENT])["components"]}
    assert {name: components[name].get("supplier") for name, _, _ in SUPPLIERS} == \
        {name: supplier for name, _, supplier in SUPPLIERS}
    # the authors stay as they were: both roles, as written
    assert components["maintained"]["authors"] == [
        {"email": "ada@example.org", "name": "Ada"},
        {"email": "grace@example.org", "name": "Grace"}]
    # an address field's names and addresses are taken apart (idna's
    # `Author-email: Kim Davies <kim@...>` made an email of the whole text)
    assert components["authormailed"]["authors"] == [
        {"email": "ada@example.org", "name": "Ada"}, {"email": "bob@example.org", "name": "Bob"}]
    # every author kept, each address with its own name, a person once whatever the case
    assert components["markdown"]["authors"] == [
        {"name": "Isaac Muse"}, {"name": "Manfred Stienstra, Yuri Takhteyev"},
        {"email": "python.markdown@gmail.com", "name": "Waylan Limberg"}]
    assert components["echoed"]["authors"] == [
        {"email": "ada@example.org", "name": "Ada"}, {"email": "bob@example.org", "name": "Bob"}]
    assert components["mailed"]["authors"] == [
        {"name": "Ada"}, {"email": "grace@example.org", "name": "Grace Hopper"},
        {"email": "ops@example.org"}]
    # an address in the name field is taken apart as in the address field (it was
    # kept in the name: "Andrew Svetlov <andrew.svetlov@gmail.com>")
    assert components["svetlov"]["authors"] == [
        {"email": "andrew.svetlov@gmail.com", "name": "Andrew Svetlov"}]
    assert components["nameful"]["authors"] == [
        {"name": "Ada Lovelace"}, {"email": "bob@example.org", "name": "Bob"},
        {"email": "nobody@example.org"}]
    assert documents == sbom_documents([lockfile], store, mirror_name="demo", tool_version="9.9")
