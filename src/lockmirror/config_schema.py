"""The ``mirror.yaml`` schema: strict, frozen pydantic models.

:class:`MirrorConfig` is the validated file; the rest of lockmirror works on
these models. Checks that span sections on the raw data live in
:mod:`lockmirror.config`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from packaging.utils import NormalizedName, canonicalize_name
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
)

from .fsutil import parse_size
from .redaction import redact_text
from .spdx import spdx_expression
from .targets import MARKER_NAMES, Target, abi_mismatch

if TYPE_CHECKING:
    from packaging.requirements import Requirement


class _Strict(BaseModel):
    # Numbers and switches are StrictInt/StrictBool: pydantic would otherwise read
    # `keep: yes` as 1 and `lock_revisions: "2"` as 2 (strings for dates stay allowed).
    # defer_build: schemas are built on first use, so commands that touch one
    # model (an ad-hoc publish destination) do not pay for all of them at import.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def _check_env_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise ValueError(f"'{text}' is not an environment variable's name (letters, digits "
                         "and '_', not starting with a digit)")
    return text


EnvName = Annotated[str, AfterValidator(_check_env_name)]


def lower_scheme(url: str) -> str:
    """``url`` with its scheme in lower case (``HTTPS://`` is https, RFC 3986), as the rest
    of lockmirror compares schemes; a scheme not well formed is left: that guards only the
    advisory source's url, which comes here unchecked (.config refuses it as written); the
    other callers matched an http(s) or file scheme first."""
    scheme, colon, rest = url.partition(":")
    known = colon and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme)
    return scheme.lower() + colon + rest if known else url


def _file_source_problem(url: str) -> str:
    """Why a ``file:`` source is refused, and the loopback server to use instead: a
    lockfile never carries a file:// URL, so nothing could be locked from it."""
    tree = PurePosixPath(unquote(urlsplit(url).path) or "/")
    served = tree.parent if tree.name else tree
    return (f"'{redact_text(url)}' is a file:// source, which lockmirror cannot lock from "
            "(a lockfile never carries a file:// URL); serve the tree over http on loopback "
            f"(python3 -m http.server --bind 127.0.0.1 8000 --directory {served}) and give "
            f"the source url: http://127.0.0.1:8000/{tree.name + '/' if tree.name else ''} "
            "(loopback needs no allow_http)")


class SourceConfig(_Strict):
    """An upstream index (PEP 503/691 simple API)."""

    name: str = Field(min_length=1)
    url: str
    priority: StrictInt = Field(100, ge=-1_000_000, le=1_000_000,
                          description="lower is tried first; ties keep file order")
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    projects: list[str] = Field(default_factory=list,
                                description="projects taken from this source only")
    files_url: list[str] = Field(default_factory=list,
                                 description="URL prefixes the index's files live under (default:"
                                 " https://files.pythonhosted.org/packages/ for pypi.org, "
                                 "else the source's own scheme, host and port)")
    allow_http: StrictBool = Field(False, description="an http:// source whose files may be "
                                   "fetched over plain http (loopback hosts need no flag)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if re.match(r"^file:", value, re.IGNORECASE):
            raise ValueError(_file_source_problem(value))
        if not re.match(r"^https?://", value, re.IGNORECASE):
            raise ValueError(f"'{redact_text(value)}' is not an http(s) URL")
        value = lower_scheme(value)
        return value if value.endswith("/") else value + "/"

    @field_validator("files_url")
    @classmethod
    def _files_url(cls, value: list[str]) -> list[str]:
        for url in value:
            if redact_text(url) != url:  # the credential is never shown
                raise ValueError(f"'{redact_text(url)}' carries a user name or password; "
                                 "files_url takes none")
            if not re.match(r"^https?://[^/@]+/", url if url.endswith("/") else url + "/",
                            re.IGNORECASE):
                raise ValueError(f"'{url}' is not an http(s) URL with a host (and no user name)")
        return [lower_scheme(url if url.endswith("/") else url + "/") for url in value]

    @property
    def normalized_projects(self) -> frozenset[NormalizedName]:
        return frozenset(canonicalize_name(p) for p in self.projects)


def _check_platform(tag: str) -> str:
    from .platform_tags import platform_problem

    problem = platform_problem(tag)
    if problem is not None:
        raise ValueError(problem)
    return tag


PlatformTag = Annotated[str, AfterValidator(_check_platform)]


class TargetConfig(_Strict):
    """What an installer on the far side looks like."""

    python: str = Field(description="'3.11' (every 3.11.x) or '3.11.4'")
    implementation: Literal["cp", "pp"] = "cp"
    platforms: list[PlatformTag] = Field(min_length=1,
                                         description="platform tags, e.g. manylinux_2_28_x86_64")
    abi: str | None = Field(None, description="default: what that Python reports (CPython: "
                                              "cpXY, cpXYm for 3.7 and older)")
    markers: dict[str, str] = Field(default_factory=dict, description="marker overrides")

    @field_validator("abi")
    @classmethod
    def _abi(cls, value: str | None, info: ValidationInfo) -> str | None:
        # a misspelled ABI matched no compiled wheel and silently locked pure ones only
        if value is not None and not re.fullmatch(r"cp3\d+[dmtu]*|pypy3\d+_pp\d+|abi3|none",
                                                  value):
            raise ValueError(f"'{value}' is not an ABI tag like cp311, cp313t or pypy310_pp73")
        problem = abi_mismatch(value, info.data.get("python"), info.data.get("implementation"))
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("python", mode="before")
    @classmethod
    def _python(cls, value: Any) -> Any:
        if isinstance(value, float | int) and not isinstance(value, bool):
            raise ValueError(f"write the version quoted, python: \"3.NN\" (unquoted, YAML "
                             f"read it as the number {value})")
        if not isinstance(value, str):
            return value  # pydantic names the type
        text = value
        if not re.fullmatch(r"3\.\d+(\.\d+)?", text):
            # py311, cp311, python3.11, 311: the version written as a tag or a word
            meant = re.fullmatch(r"(?:py|cp|python)?\s*3\.?(1\d|[0-9])", text.strip().lower())
            hint = f"; did you mean '3.{meant.group(1)}'?" if meant else ""
            raise ValueError(f"'{text}' is not a Python version like '3.11' or '3.11.4'{hint}")
        return text

    @field_validator("markers")
    @classmethod
    def _markers(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key not in MARKER_NAMES:
                raise ValueError(f"'{key}' is not a PEP 508 marker name "
                                 f"(one of {', '.join(sorted(MARKER_NAMES))})")
        return value

    def target(self, name: str) -> Target:
        """The installer environment this entry describes, named ``name``."""
        return Target(name=name, python=self.python, implementation=self.implementation,
                      platforms=tuple(self.platforms), abi=self.abi,
                      overrides=dict(sorted(self.markers.items())))


Severity = Literal["deny", "warn", "ignore"]
MAX_AGE_DAYS = 36_500  # a century; beyond it the date arithmetic of the lock overflows


class AdvisorySourceConfig(_Strict):
    kind: Literal["pypi-json", "osv-api", "osv-offline"]
    url: Annotated[str, AfterValidator(lower_scheme)] | None = None  # checked in .config
    path: str | None = None
    allow_http: StrictBool = Field(False, description="an http:// url (anyone on the path "
                                   "can hide advisories; loopback hosts need no flag)")


class PolicyException(_Strict):
    package: str
    version: str = Field("*", description="a version or specifier; '*' for any")
    reason: str = Field(min_length=1)
    expires: date | None = None
    rules: list[str] = Field(default_factory=list,
                             description="which rules it waives; empty means all")


def _check_spdx(text: str) -> str:
    if spdx_expression(text) is None:
        raise ValueError(f"'{text}' is not an SPDX license id or expression "
                         "(e.g. MIT, Apache-2.0, GPL-3.0-only)")
    return text


SpdxText = Annotated[str, AfterValidator(_check_spdx)]


class LicensePolicyConfig(_Strict):
    """Which declared licenses a set may hold (SPDX ids or expressions)."""

    allow: list[SpdxText] = Field(default_factory=list,
                                  description="when given, every other license is denied")
    deny: list[SpdxText] = Field(default_factory=list)
    unknown: Literal["allow", "warn", "deny"] = Field(
        "warn", description="a release that declares no license, or none in SPDX terms")


class PolicyConfig(_Strict):
    min_age_days: StrictInt | None = Field(None, ge=0, le=MAX_AGE_DAYS)
    yanked: Literal["deny", "warn"] = "deny"
    vulnerabilities: Severity = "warn"
    sdists: Literal["allow", "deny"] = "allow"
    licenses: LicensePolicyConfig | None = None
    advisory_sources: list[AdvisorySourceConfig] = Field(default_factory=list)
    exceptions: list[PolicyException] = Field(default_factory=list)


class PolicyOverride(_Strict):
    """Per-set policy: any key given replaces the global one."""

    min_age_days: StrictInt | None = Field(None, ge=0, le=MAX_AGE_DAYS)
    yanked: Literal["deny", "warn"] | None = None
    vulnerabilities: Severity | None = None
    sdists: Literal["allow", "deny"] | None = None
    licenses: LicensePolicyConfig | None = None
    exceptions: list[PolicyException] = Field(default_factory=list)


def _check_requirement(text: str) -> str:
    if parse_requirement(text).url:
        # the lock resolves names from the sources: `six @ https://...` locked PyPI's newest six
        raise ValueError(f"'{text}' is a direct URL reference, which lockmirror does not "
                         "support (pin name==version from a declared source)")
    return text


RequirementText = Annotated[str, AfterValidator(_check_requirement)]


class SetConfig(_Strict):
    """A package set: what must install, for which targets."""

    description: str = ""
    requirements: list[RequirementText] = Field(min_length=1)
    # [] would lock nothing; leaving the key out means every target
    targets: Annotated[list[str], Field(min_length=1)] | None = Field(
        None, description="default: every target")
    prereleases: StrictBool = False
    prefer_sdists: StrictBool = Field(False, description="lock sdists even where wheels exist")
    policy: PolicyOverride | None = None


class S3Destination(_Strict):
    kind: Literal["s3"]
    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    directory_keys: StrictBool = Field(True, description="also upload simple/<p>/index.html as the "
                                 "key simple/<p>/ so the REST endpoint serves pip's URLs")
    lock_ttl: StrictInt = Field(3600, ge=10, le=7 * 86400, description=(
        "seconds the publish lock lives without renewal: a killed publisher's lock expires "
        "after this and the next publish takes it over"))


class UploadDestination(_Strict):
    kind: Literal["upload"]
    url: str
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    keyring: StrictBool = False
    simple_url: str | None = Field(None, description="its simple index, to see what it holds")

    @field_validator("url", "simple_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value, re.IGNORECASE):
            raise ValueError(f"'{value}' is not an http(s) URL")
        return None if value is None else lower_scheme(value)


class DirectoryDestination(_Strict):
    kind: Literal["directory"]
    path: str = Field(min_length=1, description="a directory (relative: to mirror.yaml's)")
    layout: Literal["flat", "tree"] = Field("flat", description="flat: the artifacts only "
                                            "(a pypiserver package dir); tree: the whole index")


Destination = Annotated[S3Destination | UploadDestination | DirectoryDestination,
                        Field(discriminator="kind")]


PathText = Annotated[str, Field(min_length=1)]  # "" would be mirror.yaml's own directory


class PathsConfig(_Strict):
    lockfiles: PathText = "lockfiles"
    store: PathText = Field(".store", description="the content-addressed store: a directory, "
                            "or s3://bucket/prefix on S3-compatible object storage")
    index: PathText = "dist-index"
    dist: PathText = "dist"
    cache: PathText = ".cache"
    quarantine: PathText = Field("quarantine.json",
                                 description="releases `audit --quarantine` took out of the index")


def _check_size(text: str) -> str:
    parse_size(text)  # ValueError names the text and the forms
    return text


class RetentionConfig(_Strict):
    """Which earlier locks the index keeps serving, and how big the mirror may grow."""

    lock_revisions: StrictInt = Field(2, ge=1, le=50, description=(
        "the last N committed revisions of each set's lockfile (the current one counts)"))
    days: StrictInt = Field(0, ge=0, le=3650, description=(
        "also keep a revision for this many days after a newer one replaced it"))
    max_size: Annotated[str, AfterValidator(_check_size)] | None = Field(
        None, description="e.g. 50GiB: the mirror (current and retained locks) past it is "
                          "reported")
    over_size: Literal["warn", "fail"] = "warn"


class BundleConfig(_Strict):
    keep: StrictInt = Field(3, ge=0, description="bundles of this mirror kept in paths.dist, "
                            "the one just written included; older ones are removed (0: keep all)")


# names that become part of file names (bundles, pylock.<set>.toml, constraints/<set>-...)
MAX_NAME_CHARS = 100
FileName = Annotated[str, Field(max_length=MAX_NAME_CHARS)]


class MirrorConfig(_Strict):
    version: Literal[1]
    name: FileName = Field("mirror", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    sources: list[SourceConfig] = Field(min_length=1)
    targets: dict[FileName, TargetConfig] = Field(min_length=1)
    sets: dict[FileName, SetConfig] = Field(min_length=1)
    policy: PolicyConfig = Field(default_factory=lambda: PolicyConfig())
    publish: dict[str, Destination] = Field(default_factory=dict)
    paths: PathsConfig = Field(default_factory=lambda: PathsConfig())
    retention: RetentionConfig = Field(default_factory=lambda: RetentionConfig())
    bundle: BundleConfig = Field(default_factory=lambda: BundleConfig())

    def all_targets(self) -> dict[str, Target]:
        """Every target of mirror.yaml by name, in the file's order."""
        return {name: spec.target(name) for name, spec in self.targets.items()}

    def set_targets(self, set_name: str) -> list[str]:
        """The target names a set covers, in file order."""
        chosen = self.sets[set_name].targets
        return list(chosen) if chosen is not None else list(self.targets)

    def sources_by_priority(self) -> list[SourceConfig]:
        return sorted(self.sources, key=lambda s: s.priority)  # sorted() is stable

    def policy_for(self, set_name: str) -> PolicyConfig:
        """The global policy with the set's overrides applied."""
        override = self.sets[set_name].policy
        if override is None:
            return self.policy
        changes: dict[str, Any] = {  # the models themselves, not their dumps
            key: getattr(override, key) for key in override.model_fields_set
            if key != "exceptions" and getattr(override, key) is not None
        }
        changes["exceptions"] = [*self.policy.exceptions, *override.exceptions]
        return self.policy.model_copy(update=changes)

    def exceptions_written(self, set_names: Iterable[str]
                           ) -> list[tuple[tuple[str | int, ...], PolicyException]]:
        """(YAML path, exception) of the global exceptions, then each set's own: the
        order of :meth:`policy_for`."""
        found: list[tuple[tuple[str | int, ...], PolicyException]] = [
            (("policy", "exceptions", i), spec) for i, spec in enumerate(self.policy.exceptions)]
        for name in set_names:
            override = self.sets[name].policy
            found += [(("sets", name, "policy", "exceptions", i), spec)
                      for i, spec in enumerate(override.exceptions if override else ())]
        return found


def overlapping_targets(set_name: str, chosen: Iterable[str] | None,
                        targets: Mapping[str, TargetConfig]) -> Iterator[str]:
    """The problem of a set (for the targets ``chosen``; None: every one) two of whose
    targets one installer could be both of.

    A lockfile selects entries by marker, and markers cannot see a glibc or
    musl level or which patch release a "3.11" target means: two such
    targets would get two active entries of one package (installers refuse
    the file), so lockmirror refuses the set instead.
    """
    names = [n for n in (chosen if chosen is not None else targets) if n in targets]
    built = [targets[n].target(n) for n in names]
    pairs = [(a, b) for i, a in enumerate(built) for b in built[i + 1:] if a.overlaps(b)]
    if pairs:
        first, second = pairs[0]
        shared = " and ".join(f"{k} == '{v}'" for k, v in first.marker_facts().items()
                              if second.marker_facts().get(k) == v)
        named = ", ".join(f"'{a.name}' and '{b.name}'" for a, b in pairs)
        yield (f"set '{set_name}': targets {named} cannot be told apart by a lockfile marker "
               f"(both match {shared}; markers see no glibc/musl level nor which patch "
               "release a \"3.11\" target means), so installers would find two entries of "
               "one package; list them in separate sets (`targets:`) or merge them into one")


def parse_requirement(text: str) -> Requirement:
    """Parse a PEP 508 requirement, with a hint for the usual slips."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        hint = ""
        if re.match(r"^\s*[A-Za-z0-9._\[\],-]+\s*=\s*[^=]", text):
            hint = "; did you mean '=='?"
        elif re.match(r"^\s*[A-Za-z0-9._-]+\s+[0-9]", text):
            hint = "; a version needs an operator, e.g. 'name==1.0'"
        first_line = str(exc).splitlines()[0]
        raise ValueError(f"'{text}' is not a valid requirement{hint} ({first_line})") from None
