"""What a change to mirror.yaml's trust settings looks like to a reviewer.

The policy (``policy:`` and each set's own, with its ``prefer_sdists`` and
``prereleases``), the sources and the publish destinations decide what may be
locked, from where files may be fetched, what is built from source and where
credentials are sent. A pull request that relaxes them beside a routine bump
showed in the lock diff as one line, "the lock's inputs changed: the policy",
or not at all (found by outside testers). :func:`config_changes` compares
the two sides' mirror.yaml key by key, as written (``${VAR:-deny}`` stays that
text, credentials in URLs taken out), and gives one line per change:
``policy.yanked: "deny" -> "warn"``, ``sources.pypi.files_url: added [...]``,
``policy.exceptions: added {...}`` (a list of mappings is compared item by
item). Nothing is judged: a narrowing is listed as a widening is.
"""

from __future__ import annotations

import json
from typing import Any

_SHOWN = 160  # characters of a value in a line


def config_changes(old_text: str, new_text: str) -> tuple[str, ...]:
    """One line per trust setting that differs between two mirror.yaml texts,
    sorted by key; () when they agree or either does not read as YAML."""
    from ..errors import LockmirrorError

    try:
        old, new = _trust_settings(old_text), _trust_settings(new_text)
    except LockmirrorError:  # the config check reports a broken mirror.yaml, not the diff
        return ()
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if key.endswith("[]"):  # items of a list of mappings, each as canonical JSON
            name = key[:-2]
            lines += [f"{name}: removed {_short(item)}" for item in sorted(set(before or ()) -
                                                                          set(after or ()))]
            lines += [f"{name}: added {_short(item)}" for item in sorted(set(after or ()) -
                                                                        set(before or ()))]
        elif key not in old:
            lines.append(f"{key}: added {_short(_json(after))}")
        elif key not in new:
            lines.append(f"{key}: removed (was {_short(_json(before))})")
        elif before != after:
            lines.append(f"{key}: {_short(_json(before))} -> {_short(_json(after))}")
    return tuple(lines)


def _trust_settings(text: str) -> dict[str, Any]:
    """The policy, each set's policy and build options, each source (by name) and
    each publish destination of one mirror.yaml, as written, flattened to
    ``dotted.key -> value``."""
    from ..config_yaml import PositionedYaml

    data = PositionedYaml(text, "mirror.yaml", None).data  # ${VAR} as written
    data = data if isinstance(data, dict) else {}
    found: dict[str, Any] = {}
    _flatten("policy", data.get("policy"), found)
    sets = data.get("sets")
    for name, spec in sorted(sets.items() if isinstance(sets, dict) else (), key=str):
        for key in ("policy", "prefer_sdists", "prereleases"):
            if isinstance(spec, dict) and key in spec:
                _flatten(f"sets.{name}.{key}", spec[key], found)
    sources = data.get("sources")
    for number, source in enumerate(sources if isinstance(sources, list) else []):
        name = source.get("name") if isinstance(source, dict) else None
        _flatten(f"sources.{name if isinstance(name, str) else number}", _redacted(source),
                 found)
    _flatten("publish", _redacted(data.get("publish")), found)
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


def _flatten(prefix: str, value: Any, found: dict[str, Any]) -> None:
    if value is None or value == [] or value == {}:  # as good as not written
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, found)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        found[f"{prefix}[]"] = [_json(item) for item in value]
    else:
        found[prefix] = value


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _short(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."
