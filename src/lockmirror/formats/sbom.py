"""CycloneDX 1.6 JSON SBOMs of locked sets: what crosses the gap, in the form security tools read.

One document covers one set (all its targets) or several (the whole mirror,
carried in the bundle). For each locked release: a ``library`` component
``pkg:pypi/<name>@<version>`` with its declared license
(:mod:`lockmirror.formats.licenses`), authors (every author and maintainer,
each once, names and addresses paired as the metadata pairs them) and a
supplier (the maintainers, else the authors; none when the metadata names
nobody) from the core metadata
and properties (``lockmirror:target``, ``lockmirror:build-only``,
``lockmirror:yanked``, ``lockmirror:policy-exception``,
``lockmirror:policy-finding`` (a warn-level finding the lock allowed, as the
lockfile records it), ``lockmirror:set``);
inside it a ``file`` component per artifact (``?file_name=`` qualifier, its
sha256). The dependency graph is the lockfiles' ``dependencies``, rooted at
each set's requirements. A release the mirror does not serve (the quarantine
list keeps it out of the index) is no component: the document names it only in
a ``lockmirror:quarantined`` metadata property. The model and the JSON come from
``cyclonedx-python-lib``; nothing here writes JSON by hand.

Deterministic: components, properties and dependencies sorted; the
timestamp only when a ``source_date_epoch`` is given; the serial number a
UUID derived from the rest of the document (serialized once, with a zero
serial number that is then replaced). No network, no file system:
the caller passes the facts it read from the store (:class:`ReleaseFacts`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import getaddresses
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .licenses import CLASSIFIER_SEPARATOR, UNKNOWN, DeclaredLicense

if TYPE_CHECKING:
    from packaging.version import Version

    from .core_metadata import CoreMetadata
    from .lockfile import LockedPackage, Lockfile

SPEC_VERSION = "1.6"
_ZERO_SERIAL = uuid.UUID(int=0)


Person = tuple[str | None, str | None]  # (name, email); one of them at least


@dataclass(frozen=True)
class ReleaseFacts:
    """What the core metadata of one release says that an SBOM carries."""

    license: DeclaredLicense = UNKNOWN
    authors: tuple[Person, ...] = ()  # the authors and maintainers, each person once
    summary: str | None = None
    supplier: str | None = None  # the maintainers' (else the authors') names
    supplier_contacts: tuple[Person, ...] = ()  # those of them with an address
    metadata_found: bool = True

    @classmethod
    def from_metadata(cls, metadata: CoreMetadata) -> ReleaseFacts:
        from .licenses import declared_license

        raw = metadata.raw
        maintainers = _role(raw.get("maintainer"), raw.get("maintainer_email"))
        authors = _role(raw.get("author"), raw.get("author_email"))
        supplier, contacts = _supplier(maintainers, authors)
        # maintainers first: a person both roles name is spelled as the supplier spells them
        return cls(license=declared_license(metadata),
                   authors=tuple(_distinct([*maintainers, *authors])),
                   summary=raw.get("summary") or None, supplier=supplier,
                   supplier_contacts=contacts)


def _role(named: str | None, addressed: str | None) -> list[Person]:
    """One role's people, paired as its two fields pair them. Each address in the
    address field (``Ada <ada@example.org>, ops@example.org``) is a person with its
    own name, or none; the name field names people besides them (PEP 621 backends
    write the authors without an address there: ``Author: Manfred Stienstra, Yuri
    Takhteyev`` beside ``Author-email: Waylan Limberg <...>``), except that a name
    field and one bare address are one person (``Author: Ada``, ``Author-email:
    ada@example.org``, as setup.py writes them). A placeholder (blank, ``UNKNOWN``,
    ``None``) names no one. A name field that holds addresses too (``Author: Andrew
    Svetlov <andrew.svetlov@gmail.com>``) is taken apart the same way."""
    name = (named or "").strip()
    addresses: list[Person] = [
        (own.strip() if _names_someone(own.strip()) else None, email)
        for own, email in getaddresses([addressed or ""]) if "@" in email]
    if "@" in name:
        return _distinct([*_named_people(name), *addresses])
    if not _names_someone(name):
        return _distinct(addresses)
    if len(addresses) == 1 and addresses[0][0] is None:
        return [(name, addresses[0][1])]
    return _distinct([(name, None), *addresses])


def _named_people(text: str) -> list[Person]:
    """The people of a name field that holds addresses: each comma-separated part
    with an address as name and address, any other as a name alone (a name is never
    passed to the address parser, which drops all but its first word)."""
    people: list[Person] = []
    for part in (part.strip() for part in text.split(",")):
        if "@" in part:
            found = getaddresses([part])
            own, email = found[0] if found else ("", "")
            if "@" in email:
                people.append((own.strip() if _names_someone(own.strip()) else None, email))
        elif _names_someone(part):
            people.append((part, None))
    return people


def _distinct(people: Sequence[Person]) -> list[Person]:
    """``people`` with each person once: the first of those alike but for case, and
    no name alone where someone of that name has an address."""
    addressed = {name.casefold() for name, email in people if name and email}
    seen: set[tuple[str, str]] = set()
    out: list[Person] = []
    for name, email in people:
        key = ((name or "").casefold(), (email or "").casefold())
        if key in seen or (email is None and key[0] in addressed):
            continue
        seen.add(key)
        out.append((name, email))
    return out


def _supplier(*roles: list[Person]) -> tuple[str | None, tuple[Person, ...]]:
    """Who supplies a release: the first role in ``roles`` that names someone, as its
    names (``Isaac Muse, Waylan Limberg``) with those of its people who have an
    address as contacts; (None, ()) when no role names anyone (bare addresses only)."""
    for people in roles:
        names = [name for name, _ in people if name]
        if names:
            return ", ".join(names), tuple(p for p in people if p[1] is not None)
    return None, ()


def _names_someone(text: str) -> bool:
    return text.upper() not in ("", "UNKNOWN", "NONE")


MISSING = ReleaseFacts(metadata_found=False)


@dataclass(frozen=True)
class SbomSubject:
    """What a document describes: ``name`` (a set, or the mirror), the tool's
    version, the mirror.yaml commit, the time to stamp (seconds since the
    epoch; None writes no timestamp) and whether mirror.yaml differs from that
    commit (then the commit is not claimed as its source: :data:`MODIFIED_SINCE`)."""

    name: str
    tool_version: str
    commit: str | None = None
    source_date_epoch: int | None = None
    commit_modified: bool = False


# mirror.yaml's commit, claimed only for the mirror.yaml that commit holds; one with
# uncommitted changes names the commit it was changed from under MODIFIED_SINCE instead
COMMIT_PROPERTY = "lockmirror:mirror.yaml-commit"
MODIFIED_SINCE = "lockmirror:mirror.yaml-modified-since-commit"


# A release whose core metadata the store lacks (not fetched): said in its license property
NO_METADATA = "unknown: no core metadata in the store"


def render_sbom(subject: SbomSubject, lockfiles: Sequence[Lockfile],
                facts: Mapping[tuple[str, Version], ReleaseFacts],
                retained: Sequence[tuple[Lockfile, str]] = (),
                quarantined: Collection[tuple[str, str]] = ()) -> bytes:
    """The CycloneDX 1.6 JSON document of ``lockfiles`` (one per set), as bytes.
    ``retained``: earlier lock revisions the mirror still serves, each with why
    (the landing page's words); a release only they name is a component too, its
    files and hashes declared, with the property ``lockmirror:kept-for``.
    ``quarantined``: releases (normalized name, version text) the index leaves out
    although locked; none is a component (the document declares what the mirror
    serves), each one the lockfiles name is a ``lockmirror:quarantined`` property
    of the document's metadata (``name==version``), so a reader knows the lock pins it."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom

    bom = Bom(serial_number=_ZERO_SERIAL)
    _describe(bom, subject, lockfiles)
    named = [*lockfiles, *(lock for lock, _ in retained)]
    for release in sorted({f"{p.name}=={p.version}" for lock in named for p in lock.packages
                           if (p.name, str(p.version)) in quarantined}):
        bom.metadata.properties.add(Property(name="lockmirror:quarantined", value=release))
    current = [_served(lock, quarantined) for lock in lockfiles]
    kept = [(_served(lock, quarantined), why) for lock, why in retained]
    packages = _components(bom, [*((lock, "") for lock in current), *kept], facts)
    _dependencies(bom, current, packages)
    return _with_serial(_serialize(bom))


def _served(lockfile: Lockfile, quarantined: Collection[tuple[str, str]]) -> Lockfile:
    """``lockfile`` without the releases ``quarantined`` (itself when it locks none)."""
    kept = tuple(p for p in lockfile.packages if (p.name, str(p.version)) not in quarantined)
    return lockfile if len(kept) == len(lockfile.packages) else replace(lockfile, packages=kept)


def _serialize(bom: Any) -> bytes:
    from cyclonedx.output.json import JsonV1Dot6

    return (JsonV1Dot6(bom).output_as_string(indent=2) + "\n").encode()


def _with_serial(document: bytes) -> bytes:
    """``document`` (serialized with the zero serial number) with its serial
    number: a UUID made of the sha256 of ``document``. The document is serialized
    once; its one ``"serialNumber"`` member is rewritten in place (a JSON string
    holds no bare ``"``, so the member's text appears nowhere else)."""
    serial = uuid.UUID(hashlib.sha256(document).hexdigest()[:32], version=5)
    member = '"serialNumber": "{}"'
    return document.replace(member.format(_ZERO_SERIAL.urn).encode(),
                            member.format(serial.urn).encode(), 1)


def _describe(bom: Any, subject: SbomSubject, lockfiles: Sequence[Lockfile]) -> None:
    from cyclonedx.model import Property
    from cyclonedx.model.component import Component, ComponentType

    metadata = bom.metadata
    metadata.timestamp = (None if subject.source_date_epoch is None
                          else datetime.fromtimestamp(subject.source_date_epoch, UTC))
    metadata.tools.components.add(Component(type=ComponentType.APPLICATION,
                                            name="lockmirror", version=subject.tool_version))
    metadata.component = Component(type=ComponentType.PLATFORM, name=subject.name,
                                   bom_ref=_root_ref(subject.name))
    if subject.commit:
        metadata.properties.add(Property(
            name=MODIFIED_SINCE if subject.commit_modified else COMMIT_PROPERTY,
            value=subject.commit))
    for lockfile in lockfiles:
        metadata.properties.add(Property(name="lockmirror:set", value=lockfile.set_name))
        for target in lockfile.targets:
            metadata.properties.add(Property(name="lockmirror:target",
                                             value=f"{target.name}: {target.marker}"))


def _components(bom: Any, lockfiles: Sequence[tuple[Lockfile, str]],
                facts: Mapping[tuple[str, Version], ReleaseFacts]) -> dict[str, Any]:
    """One component per (name, version) across the lockfiles (each with why it
    is kept, "" for a current lock); bom-ref -> component of the current locks
    (the dependency graph is theirs)."""
    from cyclonedx.model import Property

    merged: dict[tuple[str, Version], list[tuple[str, LockedPackage, Lockfile]]] = {}
    kept_for: dict[tuple[str, Version], set[str]] = {}
    for lockfile, why in lockfiles:
        for package in lockfile.packages:
            merged.setdefault(package.key, []).append((lockfile.set_name, package, lockfile))
            kept_for.setdefault(package.key, set()).add(why)
    made: dict[str, Any] = {}
    for key, uses in sorted(merged.items()):
        component = _component(uses, facts.get(key, MISSING))
        bom.components.add(component)
        if "" in kept_for[key]:
            made[str(component.bom_ref)] = component
        else:  # only an earlier revision names it
            for why in sorted(kept_for[key]):
                component.properties.add(Property(name="lockmirror:kept-for", value=why))
    return made


def _component(uses: list[tuple[str, LockedPackage, Lockfile]], facts: ReleaseFacts) -> Any:
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.contact import OrganizationalContact, OrganizationalEntity

    package = uses[0][1]
    purl = _purl(package)
    component = Component(type=ComponentType.LIBRARY, name=package.name,
                          version=str(package.version), purl=purl, bom_ref=purl.to_string(),
                          description=facts.summary)
    _add_license(component, facts)
    for name, email in facts.authors:
        component.authors.add(OrganizationalContact(name=name, email=email))
    if facts.supplier is not None:
        component.supplier = OrganizationalEntity(name=facts.supplier, contacts=[
            OrganizationalContact(name=name, email=email)
            for name, email in facts.supplier_contacts])
    # every file any use locks (two sets, or a retained revision, may lock different ones)
    files = {file.filename: file for _, used, _ in uses for file in used.files}
    for file in (files[name] for name in sorted(files)):
        file_purl = _purl(package, file_name=file.filename)
        part = Component(type=ComponentType.FILE, name=file.filename,
                         version=str(package.version), purl=file_purl,
                         bom_ref=file_purl.to_string())
        part.hashes.add(HashType(alg=HashAlgorithm.SHA_256, content=file.sha256))
        component.components.add(part)
    properties = set()
    for set_name, used, lockfile in uses:
        properties.add(("lockmirror:set", set_name))
        properties.update(("lockmirror:target", t) for t in used.targets)
        if used.build_only:
            properties.add(("lockmirror:build-only", set_name))
        if used.yanked is not None:
            properties.add(("lockmirror:yanked", used.yanked or "yanked (no reason given)"))
        for record in lockfile.exceptions_used:  # release: "name==version"
            if record.get("release") == f"{package.name}=={package.version}":
                text = "; ".join(f"{k}={v}" for k, v in sorted(record.items()))
                properties.add(("lockmirror:policy-exception", text))
        for record in lockfile.policy_findings:  # warnings the lock allowed, unwaived
            if record.get("release") == f"{package.name}=={package.version}":
                properties.add(("lockmirror:policy-finding",
                                f"{record.get('rule')}: {record.get('message')}"))
    if not facts.metadata_found:
        properties.add(("lockmirror:license", NO_METADATA))
    elif facts.license.unknown:
        properties.add(("lockmirror:license", "unknown: the metadata declares none"))
    else:
        properties.add(("lockmirror:license-source", facts.license.source))
    for name, value in sorted(properties):
        component.properties.add(Property(name=name, value=value))
    return component


def _add_license(component: Any, facts: ReleaseFacts) -> None:
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression

    declared = facts.license
    if declared.spdx is not None:
        component.licenses.add(LicenseExpression(declared.spdx))
    elif declared.text is not None and declared.source == "classifiers":
        # one license per classifier: they do not say AND or OR, so no expression
        for name in declared.text.split(CLASSIFIER_SEPARATOR):
            component.licenses.add(DisjunctiveLicense(name=name))
    elif declared.text is not None:
        component.licenses.add(DisjunctiveLicense(name=declared.text))


def _dependencies(bom: Any, lockfiles: Sequence[Lockfile], made: Mapping[str, Any]) -> None:
    by_name: dict[str, list[Any]] = {}
    for ref, component in made.items():
        by_name.setdefault(component.name, []).append(component)
    edges: dict[str, set[str]] = {}
    for lockfile in lockfiles:
        for package in lockfile.packages:
            ref = _purl(package).to_string()
            edges.setdefault(ref, set()).update(
                str(c.bom_ref) for d in package.dependencies for c in by_name.get(d, ()))
    for ref, targets in sorted(edges.items()):
        bom.register_dependency(made[ref], [made[t] for t in sorted(targets)])
    roots = {lockfile.set_name: _requirement_names(lockfile.requirements)
             for lockfile in lockfiles}
    top = [c for names in roots.values() for n in sorted(names) for c in by_name.get(n, ())]
    bom.register_dependency(bom.metadata.component, top)


def _requirement_names(requirements: Sequence[str]) -> set[str]:
    names: set[str] = set()
    for text in requirements:
        try:
            names.add(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            continue
    return names


def _purl(package: LockedPackage, **qualifiers: str) -> Any:
    from packageurl import PackageURL

    return PackageURL(type="pypi", name=package.name, version=str(package.version),
                      qualifiers=qualifiers or None)


def _root_ref(name: str) -> str:
    return f"lockmirror:{name}"
