"""Why a resolution failed, in words: the conflict, the missing version or file.

:func:`explain_impossible` turns resolvelib's ResolutionImpossible into one
LockmirrorError naming the target, the requirement chain, and what exists
instead (nearest versions, the files' tags, a policy that excluded them).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from packaging.utils import NormalizedName
from packaging.version import InvalidVersion, Version
from resolvelib.resolvers import RequirementInformation

from ..errors import LockmirrorError, NotFoundError, ResolutionError
from ..formats.url_policy import url_host
from ..fsutil import first_of
from ..net.simple_page import PATH_IN_NAME, DistFile, ProjectPage, RefusedFile
from ..targets import Truth

if TYPE_CHECKING:
    from .candidates import Candidate, CandidateFactory, Refusal, Req


def explain_impossible(causes: Collection[RequirementInformation[Req, Candidate]],
                       factory: CandidateFactory, root_label: str) -> LockmirrorError:
    """The conflict ``causes`` (resolvelib's ResolutionImpossible.causes, or those a
    reporter saw last) in words: the requirements on each project and their chains."""
    target = factory.ctx.target
    where = f"{root_label} on target {target.name}"
    by_name: dict[str, list[Any]] = defaultdict(list)
    for cause in causes:
        by_name[cause.requirement.name].append(cause)
    lines = []
    for name, items in sorted(by_name.items()):
        try:
            available = factory.base_candidates(NormalizedName(name))
        except NotFoundError as error:
            return error
        reqs = [c.requirement for c in items]
        if len(items) == 1 or not available:
            return _no_match(reqs[0], factory, where, items[0].parent)
        lines.append(f"conflicting requirements on {name}:")
        lines += [f"  {line}" for line in _conflict_lines(reqs, factory, root_label)]
        excluded = policy_excluded(factory.ctx.excluded, {name})
        if excluded:
            lines.append(f"  excluded by policy: {excluded}")
    return ResolutionError("cannot resolve:\n" + "\n".join(lines), where=where)


def explain_gave_up(causes: Collection[RequirementInformation[Req, Candidate]],
                    factory: CandidateFactory, root_label: str, rounds: int,
                    all_pinned: bool) -> LockmirrorError:
    """resolvelib's ResolutionTooDeep in words: the conflict it met last (``causes``,
    worded as :func:`explain_impossible` words it), and what to do: pin more of the
    requirements, or when the set pins them all, change a pin the conflict names."""
    gave_up = f"resolution gave up after {rounds} backtracking rounds"
    excluded = policy_excluded(factory.ctx.excluded)
    hint = ("every requirement of the set is pinned: the conflict is the likely cause; "
            "change a pin it names" if all_pinned else "pin more of the requirements")
    if excluded:
        hint += f"; the policy kept these from it, which may be why: {excluded}"
    where = f"{root_label} on target {factory.ctx.target.name}"
    if not causes:
        return ResolutionError(gave_up, where=where, hint=hint)
    conflict = explain_impossible(causes, factory, root_label)
    last = conflict.message.removeprefix("cannot resolve:\n")
    return ResolutionError(f"{gave_up}; the conflict it met last: {last}",
                           where=conflict.where or where,
                           hint=f"{conflict.hint}; {hint}" if conflict.hint else hint)


def policy_excluded(excluded: Mapping[tuple[str, str], Refusal], names: set[str] | None = None,
                    shown: int = 3) -> str:
    """The releases the policy kept from the resolver (of ``names``, default all),
    newest first by name: ``typing-extensions 4.12.2: license PSF-2.0 is not in the
    allowed list; ... and 5 more``; "" when none."""
    found = sorted(((name, Version(version), refusal.reason)
                    for (name, version), refusal in excluded.items()
                    if names is None or name in names), key=lambda item: item[1], reverse=True)
    found.sort(key=lambda item: item[0])  # by name, each newest first
    return first_of([_release_reason(f"{name} {version}", name, version, why)
                     for name, version, why in found], shown, separator="; ")


def _release_reason(label: str, name: str, version: Version, why: str) -> str:
    """``label: why``, or ``why`` alone when it names the release itself (the
    policy's findings start with ``name==version``)."""
    return why if why.startswith(f"{name}=={version}") else f"{label}: {why}"


def _exception_hint(name: str, version: Version, refusal: Refusal) -> str:
    """What to do about a release the policy excludes (README, Policy and audit):
    the exception that waives the rules that refused it."""
    rules = ", ".join(dict.fromkeys(refusal.rules)) or "<the rule>"
    return (f"pin another version, or add to mirror.yaml's policy.exceptions an entry "
            f"{{package: {name}, version: '{version}', rules: [{rules}], reason: <why it is "
            "acceptable>}")


def _conflict_lines(reqs: Sequence[Req], factory: CandidateFactory,
                    root_label: str) -> list[str]:
    """One line per requirement text and requirer: the requirer's versions together
    (resolvelib names each version it tried), then the whole chain of requirers back
    to the set, ``MarkupSafe>=2.0 <- jinja2 3.1.3, 3.1.2 <- flask 2.3.3 (set core)``."""
    grouped: dict[tuple[str, str | None], list[Req]] = defaultdict(list)
    for req in reqs:
        grouped[(req.text, req.parent.name if req.parent else None)].append(req)
    lines = []
    for (text, _), same in grouped.items():
        parents = sorted({r.parent for r in same if r.parent is not None},
                         key=lambda c: c.version, reverse=True)
        if not parents:
            lines.append(f"{text} (required by the set {root_label})")
            continue
        versions = ", ".join(str(p.version) for p in parents)
        chain = "".join(f" <- {_label(c)} {c.version}" for c in _requirers(parents[0], factory))
        lines.append(f"{text} <- {_label(parents[0])} {versions}{chain} (set {root_label})")
    return lines


def _requirers(candidate: Candidate, factory: CandidateFactory) -> list[Candidate]:
    """The requirers above ``candidate`` up to one the set itself asked for."""
    chain: list[Candidate] = []
    seen = {id(candidate)}
    current = factory.requirer_of(candidate)
    while current is not None and id(current) not in seen:
        chain.append(current)
        seen.add(id(current))
        current = factory.requirer_of(current)
    return chain


def _label(candidate: Candidate) -> str:
    extras = f"[{','.join(sorted(candidate.extras))}]" if candidate.extras else ""
    return f"{candidate.name}{extras}"


def _no_match(req: Req, factory: CandidateFactory, where: str,
              parent: Candidate | None) -> LockmirrorError:
    """Explain why nothing matched one requirement: no such version, builds that
    failed, a policy, or why the newest matching release installs nowhere here."""
    ctx = factory.ctx
    who = f" (required by {parent.name} {parent.version})" if parent else ""
    contradiction = _self_contradiction(req)
    if contradiction is not None:
        return ResolutionError(f"'{req.text}'{who} contradicts itself: {contradiction}",
                               where=where, hint="keep either the pin or the range")
    versions = factory.versions(req.name)  # newest first
    matching = [v for v in versions if req.specifier.contains(v, prereleases=True)]
    unfiltered = None
    if not matching:  # the lock's pages drop wheels no target can use: ask for every file
        unfiltered = ctx.client.unfiltered_project(req.name)
        versions = unfiltered.releases
        matching = [v for v in versions if req.specifier.contains(v, prereleases=True)]
    refused = None if matching or unfiltered is None else _refused_files(req, unfiltered)
    if refused is not None:
        return ResolutionError(f"no version of {req.name} matches '{req.text}'{who}: {refused[0]}",
                               where=where, hint=refused[1])
    if not matching:
        nearest = _nearest(sorted(versions), req)
        others = _refused_links(unfiltered.refused) if unfiltered is not None else ""
        return ResolutionError(
            f"no version of {req.name} matches '{req.text}'{who}{others}",
            where=where, hint=f"nearest existing versions: {', '.join(map(str, nearest))}"
            if nearest else "lockmirror does not follow such links; ask the index's "
            "maintainer" if others else "the project has no releases")
    failed = [ctx.skipped[(req.name, str(v))] for v in matching
              if (req.name, str(v)) in ctx.skipped]
    if failed:
        return ResolutionError(
            f"no candidate of {req.name} for '{req.text}'{who} is left: "
            f"{'; '.join(e.message for e in failed)}", where=where,
            hint="pin a version with wheels or static metadata")
    excluded = [_release_reason(str(v), req.name, v, ctx.excluded[(req.name, str(v))].reason)
                for v in reversed(matching) if (req.name, str(v)) in ctx.excluded]
    left_out = [str(v) for v in matching if v.is_prerelease]
    pre_hint = None
    if left_out and not factory.prereleases_allowed(req.name, [req], matching):
        pre_hint = (f"pre-releases ({', '.join(left_out[:3])}) are left out because a final "
                    "release matches; set 'prereleases: true' on the set in mirror.yaml to "
                    "take them")
    if excluded:
        newest = next(v for v in matching if (req.name, str(v)) in ctx.excluded)
        hint = _exception_hint(req.name, newest, ctx.excluded[(req.name, str(newest))])
        return ResolutionError(f"'{req.text}'{who}: excluded by policy: {'; '.join(excluded)}",
                               where=where, hint=f"{hint}; {pre_hint}" if pre_hint else hint)
    best = matching[0]
    reason, hint = _why_not(req, factory, best, matching, unfiltered)
    if pre_hint is not None and not best.is_prerelease:
        hint = f"{hint}; {pre_hint}"
    return ResolutionError(f"no file of {req.name} {best} installs on "
                           f"{ctx.target.describe()}{who}: {reason}", where=where, hint=hint)


def _refused_files(req: Req, page: ProjectPage) -> tuple[str, str] | None:
    """(what, hint) when files of the newest release matching ``req`` were refused as
    the page was read (:attr:`ProjectPage.refused`: on a host no source declares, a
    file:// link, a path in the name), as ``2 files of p 1.0 are outside the file
    locations their source declares: http://other:8080 (that host was not asked)``; None when no
    matching file was."""
    matching = [r for r in page.refused if r.version is not None
                and req.specifier.contains(r.version, prereleases=True)]
    if not matching:
        return None
    newest = max(r.version for r in matching if r.version is not None)
    groups: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    count: dict[tuple[str, str, str], int] = defaultdict(int)
    described = [r for r in matching if r.version == newest]
    for file in described:
        kind, detail = _refusal(file)
        groups[kind].add(detail)
        count[kind] += 1
    said = "; ".join(
        f"{count[kind]} {'file' if count[kind] == 1 else 'files'} of {req.name} {newest} "
        f"{kind[0] if count[kind] == 1 else kind[1]}: {', '.join(sorted(details))}{kind[2]}"
        for kind, details in groups.items())
    others = _refused_links([r for r in page.refused if r not in described])
    if others:  # the page's other refused links are said too, not dropped
        said += f"; and{others.removeprefix(':')}"
    hint = ("if that host serves the source's files, add it to the source's files_url in "
            "mirror.yaml" if any("locations" in kind[0] for kind in groups) else
            "lockmirror does not fetch such files; ask the index's maintainer, or pin "
            "another version")
    return said, hint


def _refused_links(refused: Sequence[RefusedFile], shown: int = 3) -> str:
    """``: 2 links on its page were refused: x/../x.whl (a path in its file name), data:x
    ('data:' URLs are not allowed; https only)`` (the first ``shown``, each cut to 120
    characters, then ``; N more links refused``), for the links refused as the page was
    read that no matching release named; "" when none was."""
    if not refused:
        return ""
    named = ", ".join(f"{_cut(file.filename if file.reason == PATH_IN_NAME else file.url)}"
                      f" ({file.reason})" for file in refused[:shown])
    more = f"; {len(refused) - shown} more links refused" if len(refused) > shown else ""
    links = "1 link on its page was" if len(refused) == 1 else \
        f"{len(refused)} links on its page were"
    return f": {links} refused: {named}{more}"


def _cut(text: str, most: int = 120) -> str:
    return text if len(text) <= most else text[:most - 3] + "..."


def _refusal(file: RefusedFile) -> tuple[tuple[str, str, str], str]:
    """((what one such file is, what several are, what was not done), the detail)."""
    if file.reason == PATH_IN_NAME:
        return ("is named with a path", "are named with a path", " (refused)"), file.filename
    if file.url[:5].lower() == "file:":  # schemes are case-insensitive (FILE:///x too)
        return ("is a file:// link", "are file:// links", " (not opened)"), file.url
    if file.reason.startswith("not under a file location"):
        return ("is outside the file locations its source declares",
                "are outside the file locations their source declares",
                " (that host was not asked)"), \
            url_host(file.url)
    return (f"is refused ({file.reason})", f"are refused ({file.reason})",
            " (not requested)"), file.url


def _self_contradiction(req: Req) -> str | None:
    """``no version can satisfy both ==3.4 and <3`` when the requirement's own
    specifiers exclude the version it pins; None when they do not."""
    for pin in req.specifier:
        if pin.operator != "==" or "*" in pin.version:
            continue
        try:
            version = Version(pin.version)
        except InvalidVersion:
            continue
        others = sorted(str(s) for s in req.specifier
                        if not s.contains(version, prereleases=True))
        if others:
            both = "both " if len(others) == 1 else ""
            return f"no version can satisfy {both}{pin} and {' and '.join(others)}"
    return None


def _why_not(req: Req, factory: CandidateFactory, version: Version,
             matching: Sequence[Version], unfiltered: ProjectPage | None = None
             ) -> tuple[str, str]:
    """(why ``version`` of the requirement's project is not a candidate, hint);
    ``unfiltered``: the page with every file, when already read."""
    ctx = factory.ctx
    candidate = factory.candidate(req.name, version)
    if candidate is not None and version.is_prerelease \
            and not factory.prereleases_allowed(req.name, [req], matching):
        return ("it is a pre-release, and a final release matches too (pre-releases are "
                "taken only when the requirement names one or no final release installs)",
                "set 'prereleases: true' on the set in mirror.yaml, or name the pre-release "
                f"in the requirement (e.g. '{req.name}>={version}')")
    if candidate is not None and candidate.yanked:
        return (f"it is yanked ({candidate.yanked_reason or 'no reason given'})",
                f"pin it exactly ('{req.name}=={version}') to take a yanked release")
    if candidate is not None:
        return ("it conflicts with the other requirements",
                "pin the packages that require it to versions that agree")
    files = (unfiltered or ctx.client.unfiltered_project(req.name)).files_of(version)
    target = ctx.target
    if files and not any(target.allows_python(f.requires_python) is Truth.ALWAYS
                         for f in files):
        requires = sorted({f.requires_python for f in files if f.requires_python})
        return (f"its Requires-Python {', '.join(requires)} excludes Python {target.python}",
                f"what exists: {_describe_files(files, ctx.allow_sdists)}")
    return ("no wheel of it matches the target's tags"
            + ("" if ctx.allow_sdists else ", and sdists are denied by policy"),
            f"what exists: {_describe_files(files, ctx.allow_sdists)}; in mirror.yaml, pin "
            f"a version of {req.name} that has a wheel for this target, limit the set's "
            "`targets:` to those it has wheels for, or give the requirement an environment "
            "marker (PEP 508) that is false on this target")


def _nearest(versions: Sequence[Version], req: Req) -> list[Version]:
    pins = [Version(s.version) for s in req.specifier
            if s.operator == "==" and "*" not in s.version]
    if not pins:
        return list(versions[-3:])
    pin = pins[0]
    lower = [v for v in versions if v < pin][-2:]
    higher = [v for v in versions if v > pin][:2]
    return lower + higher


def _describe_files(files: Sequence[DistFile], allow_sdists: bool) -> str:
    if not files:
        return "no files"
    wheels = [f for f in files if f.is_wheel]
    sdists = [f for f in files if not f.is_wheel]
    if not wheels:
        if sdists and not allow_sdists:
            return "only an sdist, and sdists are denied by policy"
        return "only an sdist" if sdists else "no files"
    pythons = sorted({t.interpreter for f in wheels for t in f.tags}, key=_interpreter_order)
    platforms = sorted({t.platform for f in wheels for t in f.tags})
    requires = sorted({f.requires_python for f in files if f.requires_python})
    text = f"wheels for {', '.join(pythons)} on {', '.join(platforms[:6])}"
    if len(platforms) > 6:
        text += f" and {len(platforms) - 6} more platforms"
    if sdists and not allow_sdists:
        text += " and an sdist (sdists are denied by policy)"
    if requires:
        text += f"; Requires-Python {', '.join(requires)}"
    return text


def _interpreter_order(tag: str) -> tuple[str, int, int, str]:
    """``cp37`` before ``cp310`` (as versions, not as strings): implementation,
    major, minor; a tag of another shape after, as text."""
    match = re.fullmatch(r"([a-z]+)(\d)(\d*)", tag)
    if match is None:
        return ("~", 0, 0, tag)
    return (match.group(1), int(match.group(2)), int(match.group(3) or -1), tag)
