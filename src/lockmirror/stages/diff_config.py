"""What a change to mirror.yaml's trust settings looks like to a reviewer.

The policy (``policy:`` and each set's own, with its ``prefer_sdists`` and
``prereleases``), the sources, the publish destinations, ``paths``, ``retention``,
``bundle``, the mirror's ``name`` and the quarantine list decide what may be
locked, from where files may be fetched, what is built from source, what stays
served and where credentials are sent. A pull request that relaxes them beside a routine bump
showed in the lock diff as one line, "the lock's inputs changed: the policy",
or not at all (found by outside testers). :func:`config_changes` compares
the two sides' mirror.yaml key by key, as written (``${VAR:-deny}`` stays that
text, credentials in URLs taken out, a value written out at its default as good
as absent), and gives one line per change: ``policy.yanked: "deny" -> "warn"``;
a source, destination or exception (by its package) added or removed whole is
one line with its settings as written; one changed is a line per setting
(``policy.exceptions[cryptography].version: "51.0.1" -> "*"``), a list by the
items it gained and lost; the sources both sides name, reordered, is a line too
(the first of equal priority that has a project serves it). Names are escaped
(a newline in one must not end the line or the Markdown list), and only free
text is shortened, never the line. Nothing is judged: a narrowing is listed as
a widening is.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field
from typing import Any

_TEXT = 100  # characters of one string value shown (a reason, a description)
_NO_DEFAULT = object()


@dataclass
class _Settings:
    """One mirror.yaml's trust settings."""

    flat: dict[str, Any] = field(default_factory=dict)  # dotted key -> value as written
    entries: dict[str, Any] = field(default_factory=dict)  # "sources.corp" -> its mapping
    sources: list[str] = field(default_factory=list)  # the sources' names, in file order
    owner: dict[str, str] = field(default_factory=dict)  # flat key -> the entry holding it


def config_changes(old_text: str, new_text: str,
                   quarantine: tuple[str | None, str | None] = (None, None)) -> tuple[str, ...]:
    """One line per trust setting that differs between two mirror.yaml texts, and
    per release the quarantine lists (their texts, when known: None is no list)
    gained or lost; () when they agree or either mirror.yaml does not read as YAML."""
    from ..errors import LockmirrorError

    try:
        old, new = _trust_settings(old_text), _trust_settings(new_text)
    except LockmirrorError:  # the config check reports a broken mirror.yaml, not the diff
        return ()
    lines = _quarantine_changes(*quarantine)
    kept_old = [name for name in old.sources if name in new.sources]
    kept_new = [name for name in new.sources if name in old.sources]
    if kept_old != kept_new:
        lines.append(f"sources: order {', '.join(kept_old)} -> {', '.join(kept_new)} (of "
                     "sources with the same priority, the first that has a project serves it)")
    whole = set(old.entries) ^ set(new.entries)  # added or removed as a whole
    for entry in sorted(whole):
        verb, side = ("added", new) if entry in new.entries else ("removed", old)
        lines.append(f"{entry}: {verb} {_shown(side.entries[entry])}")
    for key in sorted(set(old.flat) | set(new.flat)):
        if key in whole or old.owner.get(key) in whole or new.owner.get(key) in whole:
            continue  # said with its entry (by what holds it: a name may hold a dot)
        before, after = old.flat.get(key), new.flat.get(key)
        if key not in old.flat:
            lines.append(f"{key}: added {_shown(after)}")
        elif key not in new.flat:
            lines.append(f"{key}: removed (was {_shown(before)})")
        elif isinstance(before, list) and isinstance(after, list) and before != after:
            gained = [item for item in after if item not in before]
            lost = [item for item in before if item not in after]
            lines.append(f"{key}: " + "; ".join(
                [f"{what} {_shown(items)}" for what, items in (("added", gained),
                                                               ("removed", lost)) if items]
                or [f"order {_shown(before)} -> {_shown(after)}"]))
        elif before != after:
            lines.append(f"{key}: {_shown(before)} -> {_shown(after)}")
    return tuple(lines)


def _trust_settings(text: str) -> _Settings:
    """The policy, each set's policy and build options, each source (by name) and
    each publish destination of one mirror.yaml, as written."""
    from ..config_yaml import PositionedYaml

    data = PositionedYaml(text, "mirror.yaml", None).data  # ${VAR} as written
    data = _redacted(data if isinstance(data, dict) else {})
    found = _Settings()
    for section in ("name", "paths", "retention", "bundle", "policy"):
        _flatten(section, data.get(section), found)  # where things live, what stays served
    sets = data.get("sets")
    for name, spec in sorted(sets.items() if isinstance(sets, dict) else (), key=str):
        for key in ("policy", "prefer_sdists", "prereleases"):
            if isinstance(spec, dict) and key in spec:
                _flatten(f"sets.{_name(name)}.{key}", spec[key], found)
    sources = data.get("sources") if isinstance(data.get("sources"), list) else []
    names = [_name(source.get("name", number) if isinstance(source, dict) else number)
             for number, source in enumerate(sources)]
    for name, source in zip(_numbered(names), sources, strict=True):
        found.sources.append(name)  # a repeated name numbered: the first of them serves
        _entry(f"sources.{name}", source, found)
    publish = data.get("publish")
    for name, destination in (publish.items() if isinstance(publish, dict) else ()):
        _entry(f"publish.{_name(name)}", destination, found)
    return found


def _entry(entry: str, value: Any, found: _Settings) -> None:
    """A source, destination or exception: whole, and its settings, each owned by it."""
    found.entries[entry] = value
    before = set(found.flat)
    _flatten(entry, value, found)
    found.owner.update(dict.fromkeys(set(found.flat) - before, entry))


def _numbered(names: list[str]) -> list[str]:
    """``names`` with a repeated one numbered (``pypi``, ``pypi #2``): none hides another."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out


def quarantine_path(text: str) -> str:
    """Where a mirror.yaml text keeps its quarantine list (``paths.quarantine`` with
    ``${VAR}`` filled in, as the config does), relative to it."""
    import os

    from ..config_schema import PathsConfig
    from ..config_yaml import PositionedYaml
    from ..errors import LockmirrorError

    try:
        data = PositionedYaml(text, "mirror.yaml", os.environ).data
    except LockmirrorError:
        data = None
    paths = data.get("paths") if isinstance(data, dict) else None
    written = paths.get("quarantine") if isinstance(paths, dict) else None
    return written if isinstance(written, str) else str(
        PathsConfig.model_fields["quarantine"].default)


def _quarantine_changes(old: str | None, new: str | None) -> list[str]:
    """A line per release the quarantine list let back into the index, and one for
    those it took out (found by an outside tester: deleting the list, or pointing
    ``paths.quarantine`` elsewhere, served quarantined releases with no line)."""
    from ..errors import LockmirrorError
    from ..formats.quarantine_list import QuarantineList

    def keys(text: str | None) -> set[Any]:  # (name, Version): 1.16 is 1.16.0
        try:
            return set(QuarantineList.loads(text, where="quarantine list").keys if text else ())
        except LockmirrorError:
            return set()

    before, after = keys(old), keys(new)
    return ([f"quarantine: {name}=={version} back in the index"
             for name, version in sorted(before - after)]
            + [f"quarantine: {name}=={version} taken out"
               for name, version in sorted(after - before)])


def _name(value: Any) -> str:
    """A name from the file as part of a key: escaped, so a newline or a bracket in
    it cannot end a line or start a Markdown construct."""
    return json.dumps(str(value), ensure_ascii=False)[1:-1]


def _redacted(value: Any) -> Any:
    """``value`` with every URL's user name and password taken out: a source URL
    may carry a token, and the diff goes into a pull-request comment."""
    from ..formats.url_policy import redact_text  # a regex: ${PORT} or ${URL:-...} too

    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return redact_text(value) if isinstance(value, str) else value


def _flatten(prefix: str, value: Any, found: _Settings) -> None:
    """``value`` below ``prefix`` into ``found``; a value at its schema default is
    as good as absent, but a rule's mapping written out whose every key is (a set's
    ``licenses: {}``, which replaces the global rule) is recorded itself."""
    if value is None or value == _default(prefix):
        return
    before = len(found.flat) + len(found.entries)
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{_name(key)}", item, found)
    elif isinstance(value, list) and value and all(
            isinstance(v, dict) and "package" in v for v in value):
        packages = _numbered([_name(item["package"]) for item in value])
        for package, item in zip(packages, value, strict=True):  # exceptions: by package
            _entry(f"{prefix}[{package}]", item, found)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for item in value:  # advisory sources: each whole (keys in any order: one entry)
            found.entries[f"{prefix}[{json.dumps(item, sort_keys=True)}]"] = item
    else:
        found.flat[prefix] = value
    rule = prefix.startswith("policy.") or ".policy." in prefix  # not a section's root
    if len(found.flat) + len(found.entries) == before and (rule or not isinstance(value, dict)):
        found.flat[prefix] = value


def _default(key: str) -> Any:
    """The schema's default for a dotted key of :func:`_trust_settings`, or a
    marker no value equals (unknown, or no default)."""
    from pydantic import BaseModel

    from ..config_schema import (
        BundleConfig,
        PathsConfig,
        PolicyConfig,
        PolicyOverride,
        RetentionConfig,
        SetConfig,
        SourceConfig,
    )

    sections: dict[str, type[BaseModel]] = {
        "policy": PolicyConfig, "paths": PathsConfig, "retention": RetentionConfig,
        "bundle": BundleConfig}
    parts = key.split(".")
    model: type[BaseModel]
    if parts[0] in sections and len(parts) > 1:
        model, rest = sections[parts[0]], parts[1:]
    elif parts[0] == "sets" and len(parts) > 3 and parts[2] == "policy":
        model, rest = PolicyOverride, parts[3:]
    elif parts[0] == "sets" and len(parts) == 3:
        model, rest = SetConfig, parts[2:]
    elif parts[0] == "sources" and len(parts) == 3:
        model, rest = SourceConfig, parts[2:]
    else:
        return _NO_DEFAULT
    for position, name in enumerate(rest):
        found = model.model_fields.get(name)
        if found is None:
            return _NO_DEFAULT
        if position == len(rest) - 1:
            default = found.get_default(call_default_factory=True)
            return _NO_DEFAULT if default is None else default
        nested = [t for t in (found.annotation, *typing.get_args(found.annotation))
                  if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:
            return _NO_DEFAULT
        model = nested[0]
    return _NO_DEFAULT


def _shown(value: Any) -> str:
    """``value`` as JSON, each long string (free text) shortened, never the whole."""

    def short(item: Any) -> Any:
        if isinstance(item, dict):
            return {key: short(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [short(inner) for inner in item]
        if isinstance(item, str) and len(item) > _TEXT:
            return item[:_TEXT - 3] + "..."
        return item

    return json.dumps(short(value), ensure_ascii=False, default=str)
