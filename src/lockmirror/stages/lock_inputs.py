"""What shapes a set's lock, as one hash and as named parts.

:func:`input_hash` is the fingerprint a lockfile records (``input-hash``):
equal means current, with no network and no doit database. :func:`input_parts`
hashes each input alone (the set's requirements, its options, each target,
each source, the policy) and records lockmirror's lock format; the lockfile
keeps them (``[tool.lockmirror] inputs``) so :func:`what_changed` can name
the input that moved when the fingerprint no longer matches: a requirement,
the policy, a source (and the environment variable its URL comes from), a
target, the tool's lock format, or the lockfile itself.

No part holds a secret: sources carry names of credential variables, never
their values, and environment variables are named, never hashed.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ..config import LoadedConfig
from ..config_schema import TargetConfig
from ..formats.lockfile import LOCK_FORMAT
from ..redaction import redact_url
from ..targets import default_abi

__all__ = ["input_hash", "input_parts", "what_changed"]

_PART_CHARS = 16  # of a sha256: enough to tell that an input changed
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
# a source's settings that widen what its lockfile entries may name or are sent:
# a pull request changing one changes the fingerprint, so the lock diff shows it
_SOURCE_TRUST = {"files_url", "allow_http", "username_env", "password_env"}


def _input_data(loaded: LoadedConfig, set_name: str) -> dict[str, Any]:
    # Settings left at their defaults are left out: a lockmirror that adds an
    # optional setting does not make every lockfile stale; setting it does.
    config = loaded.config
    spec = config.sets[set_name]
    return {
        "format": LOCK_FORMAT,
        "set": spec.model_dump(mode="json", exclude={"description"}, exclude_defaults=True),
        "targets": {name: _target_data(config.targets[name])
                    for name in config.set_targets(set_name)},
        # without user info: the hash is committed, a token in the URL is not its input;
        # where its files may lie and which credentials it gets are inputs (the URL rule)
        "sources": [{"name": s.name, "url": redact_url(s.url), "priority": s.priority,
                     "projects": sorted(s.projects), **s.model_dump(
                         mode="json", include=_SOURCE_TRUST, exclude_defaults=True)}
                    for s in config.sources],
        "policy": config.policy_for(set_name).model_dump(mode="json", exclude_defaults=True),
    }


def _target_data(target: TargetConfig) -> dict[str, Any]:
    """A target's settings, and the ABI it gets where that is not the ``cpXY`` lockmirror
    assumed before it knew CPython 3.7 and older report ``cpXYm``: a lockfile locked
    under the old default took sdists where cp36m wheels exist, so it is not current."""
    data = target.model_dump(mode="json", exclude_defaults=True)
    major, minor = (int(part) for part in target.python.split(".")[:2])
    abi = default_abi(target.implementation, (major, minor))
    if target.abi is None and target.implementation == "cp" and abi != f"cp{major}{minor}":
        data["abi"] = abi
    return data


def input_hash(loaded: LoadedConfig, set_name: str) -> str:
    """sha256 over the set, its targets, the sources and its policy (no secrets)."""
    encoded = json.dumps(_input_data(loaded, set_name), sort_keys=True,
                         separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()


def input_parts(loaded: LoadedConfig, set_name: str) -> dict[str, str]:
    """The inputs of :func:`input_hash`, each hashed alone (``format``: the
    lock format itself), keyed ``requirements``, ``set``, ``policy``,
    ``target.<name>``, ``source.<name>``."""
    data = _input_data(loaded, set_name)
    spec = dict(data["set"])
    parts = {"format": str(data["format"]),
             "requirements": _digest(spec.pop("requirements")),
             "set": _digest(spec), "policy": _digest(data["policy"])}
    parts.update({f"target.{name}": _digest(target)
                  for name, target in data["targets"].items()})
    parts.update({f"source.{source['name']}": _digest(source) for source in data["sources"]})
    return dict(sorted(parts.items()))


def what_changed(loaded: LoadedConfig, set_name: str, recorded: dict[str, str]) -> str:
    """Which inputs differ from the parts a lockfile recorded, in words.

    ``recorded`` empty (a lockfile from before parts were kept): a general
    sentence. Parts all equal while the fingerprint differs: the lockfile's
    own ``input-hash`` was edited.
    """
    if not recorded:
        return "mirror.yaml changed, or this lockmirror locks differently"
    now = input_parts(loaded, set_name)
    changed = [key for key in sorted(set(now) | set(recorded)) if now.get(key) != recorded.get(key)]
    if not changed:
        return ("the lockfile itself: its input-hash was edited (the inputs it records match "
                "mirror.yaml)")
    return "changed: " + "; ".join(_describe(loaded, key, now, recorded) for key in changed)


def _describe(loaded: LoadedConfig, key: str, now: dict[str, str],
              recorded: dict[str, str]) -> str:
    kind, _, name = key.partition(".")
    if kind == "format":
        return (f"lockmirror's lock format (the lockfile's is {recorded.get(key, '?')}, this "
                f"lockmirror's {now[key]}): the tool version changed")
    if kind == "requirements":
        return "the set's requirements"
    if kind == "set":
        return "the set's options (targets, prereleases, prefer_sdists or its policy)"
    if kind == "policy":
        return "the policy"
    what = "target" if kind == "target" else "source"
    if key not in now:
        return f"{what} '{name}' was removed"
    if key not in recorded:
        return f"{what} '{name}' was added"
    text = f"{what} '{name}'"
    if kind == "source":
        variables = _url_variables(loaded, name)
        if variables:
            text += (f" (its URL comes from the environment variable "
                     f"{', '.join(variables)}: is it set as when the set was locked?)")
    return text


def _url_variables(loaded: LoadedConfig, source_name: str) -> list[str]:
    """The ``${VAR}`` names in the URL of a source as mirror.yaml writes it."""
    from ..config_yaml import PositionedYaml

    names = [s.name for s in loaded.config.sources]
    if source_name not in names:
        return []
    doc = PositionedYaml(loaded.text, loaded.path.name, {})  # positions only
    line = doc.marks.get(("sources", names.index(source_name), "url"))
    if line is None:
        return []
    return _VARIABLE.findall(loaded.text.splitlines()[line[0] - 1])


def _digest(value: object) -> str:
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:_PART_CHARS]
