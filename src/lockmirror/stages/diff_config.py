"""What a change to mirror.yaml's trust settings looks like to a reviewer.

The policy (``policy:`` and each set's own, with its ``prefer_sdists`` and
``prereleases``), the sources and the publish destinations decide what may be
locked, from where files may be fetched, what is built from source and where
credentials are sent. A pull request that relaxes them beside a routine bump
showed in the lock diff as one line, "the lock's inputs changed: the policy",
or not at all (found by outside testers). :func:`config_changes` compares
the two sides' mirror.yaml key by key, as written (``${VAR:-deny}`` stays that
text, credentials in URLs taken out, a value written out at its default as good
as absent), and gives one line per change: ``policy.yanked: "deny" -> "warn"``;
a source, destination or exception (by its package) added or removed whole is
one line with its settings as written; one changed is a line per setting
(``policy.exceptions[cryptography].version: "51.0.1" -> "*"``); sources of
equal standing reordered is a line too (the first that has a project serves
it). Nothing is judged: a narrowing is listed as a widening is.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field
from typing import Any

_SHOWN = 240  # characters of a value in a line
_NO_DEFAULT = object()


@dataclass
class _Settings:
    """One mirror.yaml's trust settings."""

    flat: dict[str, Any] = field(default_factory=dict)  # dotted key -> value as written
    entries: dict[str, Any] = field(default_factory=dict)  # "sources.corp" -> its mapping
    sources: list[str] = field(default_factory=list)  # the sources' names, in file order


def config_changes(old_text: str, new_text: str) -> tuple[str, ...]:
    """One line per trust setting that differs between two mirror.yaml texts;
    () when they agree or either does not read as YAML."""
    from ..errors import LockmirrorError

    try:
        old, new = _trust_settings(old_text), _trust_settings(new_text)
    except LockmirrorError:  # the config check reports a broken mirror.yaml, not the diff
        return ()
    lines = []
    if old.sources != new.sources and sorted(old.sources) == sorted(new.sources):
        lines.append(f"sources: order {', '.join(old.sources)} -> {', '.join(new.sources)} "
                     "(of sources with the same priority, the first that has a project "
                     "serves it)")
    whole = set(old.entries) ^ set(new.entries)  # added or removed as a whole
    for entry in sorted(whole):
        verb, side = ("added", new) if entry in new.entries else ("removed", old)
        lines.append(f"{entry}: {verb} {_short(_json(side.entries[entry]))}")
    for key in sorted(set(old.flat) | set(new.flat)):
        if any(key.startswith(f"{entry}.") for entry in whole):
            continue
        before, after = old.flat.get(key), new.flat.get(key)
        if key not in old.flat:
            lines.append(f"{key}: added {_short(_json(after))}")
        elif key not in new.flat:
            lines.append(f"{key}: removed (was {_short(_json(before))})")
        elif before != after:
            lines.append(f"{key}: {_short(_json(before))} -> {_short(_json(after))}")
    return tuple(lines)


def _trust_settings(text: str) -> _Settings:
    """The policy, each set's policy and build options, each source (by name) and
    each publish destination of one mirror.yaml, as written."""
    from ..config_yaml import PositionedYaml

    data = PositionedYaml(text, "mirror.yaml", None).data  # ${VAR} as written
    data = data if isinstance(data, dict) else {}
    found = _Settings()
    _flatten("policy", data.get("policy"), found)
    sets = data.get("sets")
    for name, spec in sorted(sets.items() if isinstance(sets, dict) else (), key=str):
        for key in ("policy", "prefer_sdists", "prereleases"):
            if isinstance(spec, dict) and key in spec:
                _flatten(f"sets.{name}.{key}", spec[key], found)
    sources = data.get("sources")
    for number, source in enumerate(sources if isinstance(sources, list) else []):
        name = source.get("name") if isinstance(source, dict) else None
        name = name if isinstance(name, str) else str(number)
        found.sources.append(name)
        found.entries[f"sources.{name}"] = _redacted(source)
        _flatten(f"sources.{name}", _redacted(source), found)
    publish = data.get("publish")
    for name, destination in (publish.items() if isinstance(publish, dict) else ()):
        found.entries[f"publish.{name}"] = _redacted(destination)
        _flatten(f"publish.{name}", _redacted(destination), found)
    return found


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
    if value is None or value == [] or value == {} or value == _default(prefix):
        return  # as good as not written
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, found)
    elif isinstance(value, list) and all(isinstance(v, dict) and "package" in v for v in value):
        seen: dict[str, int] = {}
        for item in value:  # exceptions: each by its package
            package = str(item["package"])
            seen[package] = seen.get(package, 0) + 1
            entry = f"{prefix}[{package}{'' if seen[package] == 1 else f' #{seen[package]}'}]"
            found.entries[entry] = item
            _flatten(entry, item, found)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for item in value:  # advisory sources: each whole, as canonical JSON
            found.entries[f"{prefix}[{_json(item)}]"] = item
    else:
        found.flat[prefix] = value


def _default(key: str) -> Any:
    """The schema's default for a dotted key of :func:`_trust_settings`, or a
    marker no value equals (unknown, or no default)."""
    from pydantic import BaseModel

    from ..config_schema import PolicyConfig, SetConfig, SourceConfig

    parts = key.split(".")
    if parts[0] == "policy":
        model: type[BaseModel] = PolicyConfig
        rest = parts[1:]
    elif parts[0] == "sets" and len(parts) > 2 and parts[2] != "policy":
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


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _short(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."
