"""What a change to mirror.yaml's trust settings looks like to a reviewer.

The policy (``policy:`` and each set's own, with its ``prefer_sdists`` and
``prereleases``), the sources, the publish destinations, ``paths``, ``retention``,
``bundle``, the mirror's ``name`` and the quarantine list decide what may be
locked, from where files may be fetched, what is built from source, what stays
served and where credentials are sent. A pull request that relaxes them beside a routine bump
showed in the lock diff as one line, "the lock's inputs changed: the policy",
or not at all (found by outside testers). :func:`config_changes` compares
the two sides' mirror.yaml key by key, as written (``${VAR:-deny}`` stays that
text, credentials in URLs taken out), by effective value: a key one side leaves
out has the schema's default there, shown as such (``policy.vulnerabilities:
"deny" -> "warn" (the default)``), so a default written out or taken out is no
change (an outside tester read ``removed (was "deny")`` for a move to warn, and
``added "warn"`` for deny -> warn written out). One line per change: a source,
destination, exception (by its package) or license rule added or removed whole
is one line with its settings as written; one changed is a line per setting
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

from pydantic import BaseModel

_TEXT = 100  # characters of one string value shown (a reason, a description)
_SET_KEYS = ("policy", "prefer_sdists", "prereleases")  # a set's keys that are trust settings


@dataclass
class _Settings:
    """One mirror.yaml's trust settings."""

    flat: dict[str, Any] = field(default_factory=dict)  # dotted key -> value as written
    # dotted key -> the schema's default, for each key of a mapping the file holds
    # (a section, a source, ...) that has one: the value of a key left out
    defaults: dict[str, Any] = field(default_factory=dict)
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
        lines += _setting_change(key, old, new)
    return tuple(lines)


def _setting_change(key: str, old: _Settings, new: _Settings) -> list[str]:
    """The line for one setting, when its effective values differ: as written, or
    the schema's default where a side leaves it out (said so)."""
    missing = object()

    def effective(side: _Settings) -> tuple[Any, str]:
        if key in side.flat:
            return side.flat[key], ""
        return side.defaults.get(key, missing), " (the default)"

    (before, before_note), (after, after_note) = effective(old), effective(new)
    if before == after:
        return []
    if before is missing:
        return [f"{key}: added {_shown(after)}"]
    if after is missing:
        return [f"{key}: removed (was {_shown(before)})"]
    if isinstance(before, list) and isinstance(after, list) and before and after:
        gained = [item for item in after if item not in before]
        lost = [item for item in before if item not in after]
        return [f"{key}: " + "; ".join(
            [f"{what} {_shown(items)}" for what, items in (("added", gained),
                                                           ("removed", lost)) if items]
            or [f"order {_shown(before)} -> {_shown(after)}"])]
    # a list emptied or filled shows both sides: empty, an exception's rules or a
    # source's projects mean all of them, and "removed [...]" would read as narrowing
    return [f"{key}: {_shown(before)}{before_note} -> {_shown(after)}{after_note}"]


def _trust_settings(text: str) -> _Settings:
    """The policy, each set's policy and build options, each source (by name) and
    each publish destination of one mirror.yaml, as written, with the schema's
    defaults of what it leaves out."""
    from ..config_schema import (
        BundleConfig,
        DirectoryDestination,
        MirrorConfig,
        PathsConfig,
        PolicyConfig,
        RetentionConfig,
        S3Destination,
        SetConfig,
        SourceConfig,
        UploadDestination,
    )
    from ..config_yaml import PositionedYaml

    data = PositionedYaml(text, "mirror.yaml", None).data  # ${VAR} as written
    data = _redacted(data if isinstance(data, dict) else {})
    found = _Settings()
    found.defaults["name"] = _field_default(MirrorConfig, "name")
    _flatten("name", data.get("name"), found)
    sections: dict[str, type[BaseModel]] = {  # where things live, what stays served
        "paths": PathsConfig, "retention": RetentionConfig, "bundle": BundleConfig,
        "policy": PolicyConfig}
    for section, model in sections.items():
        _note_defaults(section, model, found)  # each section is there when left out
        _flatten(section, data.get(section), found, model)
    sets = data.get("sets")
    for name, spec in sorted(sets.items() if isinstance(sets, dict) else (), key=str):
        if not isinstance(spec, dict):
            continue
        _note_defaults(f"sets.{_name(name)}", SetConfig, found, _SET_KEYS)
        for key in _SET_KEYS:
            if key in spec:  # a set's policy: each key it gives replaces the global one
                _flatten(f"sets.{_name(name)}.{key}", spec[key], found,
                         _field_model(SetConfig, key)[0])
    sources = data.get("sources") if isinstance(data.get("sources"), list) else []
    names = [_name(source.get("name", number) if isinstance(source, dict) else number)
             for number, source in enumerate(sources)]
    for name, source in zip(_numbered(names), sources, strict=True):
        found.sources.append(name)  # a repeated name numbered: the first of them serves
        _entry(f"sources.{name}", source, found, SourceConfig)
    publish = data.get("publish")
    kinds: dict[Any, type[BaseModel]] = {
        "s3": S3Destination, "upload": UploadDestination, "directory": DirectoryDestination}
    for name, destination in (publish.items() if isinstance(publish, dict) else ()):
        kind = destination.get("kind") if isinstance(destination, dict) else None
        _entry(f"publish.{_name(name)}", destination, found,
               kinds.get(kind) if isinstance(kind, str) else None)
    return found


def _entry(entry: str, value: Any, found: _Settings,
           model: type[BaseModel] | None = None) -> None:
    """A source, destination, exception or license rule: whole, and its settings,
    each owned by it (``model``: what the schema says it is, None if unknown)."""
    found.entries[entry] = value
    before = set(found.flat)
    _flatten(entry, value, found, model)
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
    from ..redaction import redact_text  # a regex: ${PORT} or ${URL:-...} too

    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return redact_text(value) if isinstance(value, str) else value


def _flatten(prefix: str, value: Any, found: _Settings,
             model: type[BaseModel] | None = None) -> None:
    """``value`` below ``prefix`` into ``found`` as written (``model``: what the
    schema says a mapping there is, for its keys' defaults; None if unknown). A
    rule whose presence is itself a setting (``licenses:``, off when left out; a
    set's ``licenses: {}`` replaces the global rule) is an entry."""
    if value is None:
        return
    if isinstance(value, dict) and (value or model is not None):
        if model is not None:
            _note_defaults(prefix, model, found)
        for key, item in value.items():
            inner, optional = _field_model(model, key)
            if optional and isinstance(item, dict):
                _entry(f"{prefix}.{_name(key)}", item, found, inner)
            else:
                _flatten(f"{prefix}.{_name(key)}", item, found, inner)
    elif isinstance(value, list) and value and all(
            isinstance(v, dict) and "package" in v for v in value):
        packages = _numbered([_name(item["package"]) for item in value])
        for package, item in zip(packages, value, strict=True):  # exceptions: by package
            _entry(f"{prefix}[{package}]", item, found, model)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for item in value:  # advisory sources: each whole (keys in any order: one entry)
            written = {key: inner for key, inner in item.items()
                       if not (model and _field_default(model, key) == inner)}
            found.entries[f"{prefix}[{json.dumps(written, sort_keys=True)}]"] = item
    else:
        found.flat[prefix] = value


def _note_defaults(prefix: str, model: type[BaseModel], found: _Settings,
                   keys: tuple[str, ...] | None = None) -> None:
    """The schema's default of each key of ``model`` (or of ``keys``) below ``prefix``
    that has one (None is no default: the key is then added or removed)."""
    for key in keys if keys is not None else tuple(model.model_fields):
        default = _field_default(model, key)
        if default is not None and not isinstance(default, BaseModel):
            found.defaults[f"{prefix}.{key}"] = default


def _field_default(model: type[BaseModel], key: Any) -> Any:
    """The default of ``model``'s field ``key``; None when it has none or no such field."""
    found = model.model_fields.get(key) if isinstance(key, str) else None
    return None if found is None else found.get_default(call_default_factory=True)


def _field_model(model: type[BaseModel] | None, key: Any
                 ) -> tuple[type[BaseModel] | None, bool]:
    """The model a field's mapping (or its list's items) is, or None; and whether the
    field is an optional mapping (None by default: its presence is a setting)."""
    found = model.model_fields.get(key) if model is not None and isinstance(key, str) else None
    if found is None:
        return None, False
    nested = [t for t in (found.annotation, *typing.get_args(found.annotation))
              if isinstance(t, type) and issubclass(t, BaseModel)]
    if not nested:
        return None, False
    return nested[0], found.default is None and found.default_factory is None


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
