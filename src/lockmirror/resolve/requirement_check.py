"""``validate --online``: the requirements of mirror.yaml against the index itself.

:func:`check_requirements` asks the configured sources for the project page of
every requirement (project pages only, never an index's root listing) and
reports, with the set and the ``mirror.yaml`` line:

- a project no source has, with the nearest existing names, found by asking for
  a few likely spellings (``python-stix2`` -> ``stix2``, ``reqeusts`` -> ``requests``;
  see :func:`name_variants` and :func:`swapped_letters`);
- an exact pin (``==``) to a release that does not exist, or whose files are all
  yanked, with the nearest versions that exist and are not yanked.

Cost: one page per distinct project, plus up to :data:`MAX_VARIANTS` +
:data:`MAX_SWAPS` pages per unknown project (fetched together); pages go
through the shared HTTP cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from ..config import LoadedConfig
from ..config_yaml import Path_
from ..errors import NotFoundError, WrongSourceError

MAX_VARIANTS = 8
MAX_SWAPS = 24  # a name of 25 letters; longer names try their first 24 swaps
_PREFIXES = ("python-", "python3-", "py-", "py")
_SUFFIXES = ("-python", "-python3", "-py")


class PageFile(Protocol):
    @property
    def yanked(self) -> bool: ...

    @property
    def yanked_reason(self) -> str | None: ...


class Page(Protocol):
    @property
    def releases(self) -> Sequence[Version]: ...

    def files_of(self, version: Version) -> Sequence[PageFile]: ...


class Pages(Protocol):
    """What this check needs of :class:`lockmirror.net.index_client.IndexClient`."""

    def project(self, name: str) -> Page: ...

    def prefetch_projects(self, names: Iterable[str]) -> None: ...


def check_requirements(loaded: LoadedConfig, pages: Pages) -> list[tuple[Path_, str]]:
    """(YAML path, problem) for every requirement the index contradicts, in file order."""
    config = loaded.config
    wanted = [(set_name, j, Requirement(text)) for set_name, spec in config.sets.items()
              for j, text in enumerate(spec.requirements)]
    pages.prefetch_projects(sorted({canonicalize_name(r.name) for _, _, r in wanted}))
    yank_allowed = {name: _yank_allowed(loaded, name) for name in config.sets}
    problems: list[tuple[Path_, str]] = []
    for set_name, j, requirement in wanted:
        problem = _problem(requirement, set_name, pages, yank_allowed[set_name])
        if problem is not None:
            problems.append((("sets", set_name, "requirements", j), problem))
    return problems


def _yank_allowed(loaded: LoadedConfig, set_name: str) -> Callable[[str, Version], bool]:
    """Whether the set's policy takes a yanked release pinned exactly (``yanked: warn``,
    or an exception for it), as ``lock`` would; an expired exception waives nothing."""
    from ..resolve.policy import PolicyEngine

    engine = PolicyEngine.for_set(loaded.config, set_name, now=datetime.now(UTC),
                                  allow_expired=True)

    def allowed(name: str, version: Version) -> bool:
        finding = engine.yanked_finding(canonicalize_name(name), version, True, pinned=True)
        return finding is None or not finding.blocking

    return allowed


def _problem(requirement: Requirement, set_name: str, pages: Pages,
             yank_allowed: Callable[[str, Version], bool]) -> str | None:
    try:
        page = pages.project(requirement.name)
    except WrongSourceError as error:  # the source's URL, not the name: no spellings tried
        return f"{error.message} (set {set_name}); {error.hint}"
    except NotFoundError:
        found = existing_names(requirement.name, pages)
        hint = (f"; nearest existing names: {', '.join(found)}" if found
                else "; none of the likely spellings tried exists either (python-/py "
                     "affixes, separators, two neighbouring letters swapped)")
        return f"no source has a project named '{requirement.name}' (set {set_name}){hint}"
    pin = _exact_pin(requirement)
    if pin is None:
        return None
    # the page's releases: versions its file names state, the names checked
    releases = {version: page.files_of(version) for version in page.releases}
    usable = sorted(v for v, files in releases.items() if not all(f.yanked for f in files))
    nearest = ", ".join(str(v) for v in nearest_versions(usable, pin))
    if pin not in releases:
        return (f"{requirement.name} {pin} does not exist (set {set_name}); nearest versions: "
                f"{nearest or 'none'}")
    if pin not in usable and not yank_allowed(requirement.name, pin):
        reason = next((f.yanked_reason for f in releases[pin] if f.yanked_reason), None)
        return (f"{requirement.name} {pin} is yanked" + (f" ({reason})" if reason else "")
                + f" (set {set_name}); nearest versions not yanked: {nearest or 'none'}")
    return None


def pins_exactly(requirement: Requirement) -> bool:
    """Whether ``requirement`` pins one version (``==``/``===`` without a ``*``): the
    one rule for "a pin" in lock, --upgrade and --upgrade-vulnerable."""
    return any(s.operator in ("==", "===") and "*" not in s.version
               for s in requirement.specifier)


def _exact_pin(requirement: Requirement) -> Version | None:
    for spec in requirement.specifier:
        if spec.operator in ("==", "===") and "*" not in spec.version:
            try:
                return Version(spec.version)
            except InvalidVersion:
                return None
    return None


def nearest_versions(versions: Sequence[Version], pin: Version, each_side: int = 2
                     ) -> list[Version]:
    """Up to ``each_side`` versions below ``pin`` and as many above, ascending."""
    lower = [v for v in versions if v < pin][-each_side:]
    higher = [v for v in versions if v > pin][:each_side]
    return lower + higher


def name_variants(name: str) -> list[NormalizedName]:
    """Likely intended names for an unknown project, most likely first:
    ``python-`` / ``py`` / ``-python`` taken off or put on, separators dropped."""
    base = canonicalize_name(name)
    found: list[str] = []
    # the first (longest) affix that fits: "python-" is not "py" + "thon-"
    prefix = next((p for p in _PREFIXES if base.startswith(p) and len(base) > len(p)), None)
    if prefix:
        found.append(base[len(prefix):])
    suffix = next((s for s in _SUFFIXES if base.endswith(s) and len(base) > len(s)), None)
    if suffix:
        found.append(base[:-len(suffix)])
    if not found:
        found += [f"python-{base}", f"py{base}", f"{base}-python"]
    found.append(base.replace("-", ""))
    unique = dict.fromkeys(canonicalize_name(n) for n in found if n)
    unique.pop(base, None)
    return list(unique)[:MAX_VARIANTS]


def swapped_letters(name: str) -> list[NormalizedName]:
    """``name`` with two neighbouring letters swapped, each way (``reqeusts`` ->
    ``requests``, ``sxi`` -> ``six``): the commonest typing slip."""
    base = canonicalize_name(name)
    swaps = (base[:i] + base[i + 1] + base[i] + base[i + 2:] for i in range(len(base) - 1)
             if base[i] != base[i + 1])
    return list(dict.fromkeys(canonicalize_name(n) for n in swaps
                              if n.strip("-") == n))[:MAX_SWAPS]


def existing_names(name: str, pages: Pages) -> list[str]:
    """The variants of ``name`` some source has (one page request each)."""
    variants = list(dict.fromkeys([*name_variants(name), *swapped_letters(name)]))
    pages.prefetch_projects(variants)
    found: list[str] = []
    for variant in variants:
        try:
            pages.project(variant)
        except NotFoundError:
            continue
        found.append(variant)
    return found
