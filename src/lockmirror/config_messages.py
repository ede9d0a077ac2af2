"""What a pydantic error about ``mirror.yaml`` says to its user.

:func:`schema_problems` turns the errors of
:meth:`~lockmirror.config_schema.MirrorConfig.model_validate` into (YAML path,
message) pairs in the user's words: no Python type names or regular
expressions, a hint where the slip is a usual one (a typo of a key, a key
indented under the wrong mapping, a version quoted as a word).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .config_yaml import Path_, PositionedYaml
from .spelling import did_you_mean


def schema_problems(errors: Iterable[Mapping[str, Any]], doc: PositionedYaml
                    ) -> Iterator[tuple[Path_, str]]:
    """(YAML path, message) of each pydantic error, but those on a ``${VAR}`` that
    is not set (reported by the YAML reader)."""
    errors = list(errors)
    meant = _meant_keys(errors)
    for error in errors:
        loc = _clean_loc(error["loc"])
        if loc not in doc.unresolved:
            yield loc, _message(error) + (_typo_note(error["type"], loc, meant, doc)
                                          or _indent_note(error["type"], loc, doc))


def _clean_loc(loc: tuple[Any, ...]) -> Path_:
    # pydantic inserts the discriminator tag after the destination's name:
    # publish.x.s3.bucket. Only that part goes; a destination may be named s3 itself.
    if len(loc) > 2 and loc[0] == "publish" and loc[2] in ("s3", "upload", "directory"):
        return (*loc[:2], *loc[3:])
    if loc and loc[-1] == "[key]":  # a mapping's key (a set's name) is wrong: the key's path
        return tuple(loc[:-1])
    return tuple(loc)


def _meant_keys(errors: Iterable[Mapping[str, Any]]) -> dict[Path_, str]:
    """Each unknown key's path -> the valid key it most likely misspells."""
    from .config_keys import nearest_key

    meant = {}
    for error in errors:
        if error["type"] == "extra_forbidden":
            key = nearest_key(error["loc"])
            if key is not None:
                meant[_clean_loc(error["loc"])] = key
    return meant


def _typo_note(kind: str, loc: Path_, meant: Mapping[Path_, str], doc: PositionedYaml) -> str:
    """What makes a typo read as one mistake: ``; did you mean 'platforms'?`` on
    the unknown key, `` (did you write 'platform' at line 9?)`` on the required
    key it leaves missing."""
    if kind == "extra_forbidden":
        return did_you_mean(meant.get(loc))
    if kind != "missing":
        return ""
    typo = next((path for path, key in meant.items()
                 if path[:-1] == loc[:-1] and key == loc[-1]), None)
    if typo is None:
        return ""
    line = f" at line {doc.marks[typo][0]}" if typo in doc.marks else ""
    return f" (did you write '{typo[-1]}'{line}?)"


# the entries of these mappings are named by the user; a known key of the entry
# itself among them is one indented a level too little (`platforms:` under `targets:`)
_ENTRIES = {"targets": "target", "sets": "set"}


def _entry_keys(section: str) -> set[str]:
    from .config_schema import SetConfig, TargetConfig

    return set((TargetConfig if section == "targets" else SetConfig).model_fields)


def _indent_note(kind: str, loc: Path_, doc: PositionedYaml) -> str:
    """``; is it indented under the target above?`` on a target or set named like a
    key of one; on the key that left missing, where that entry is. A target or set
    at column 1: see :func:`_top_level_note`."""
    if len(loc) == 1:
        return _top_level_note(kind, loc[0], doc)
    if loc[0] not in _ENTRIES or not isinstance(loc[1], str):
        return ""
    entry, keys = _ENTRIES[str(loc[0])], _entry_keys(str(loc[0]))
    if len(loc) == 2 and loc[1] in keys:
        return f"; is it indented under the {entry} above?"
    stray = (loc[0], loc[-1])
    if kind == "missing" and len(loc) == 3 and stray in doc.marks:
        return f" (is '{loc[-1]}' at line {doc.marks[stray][0]} meant to be indented under it?)"
    return ""


def _top_level_note(kind: str, key: str | int, doc: PositionedYaml) -> str:
    """A target or set written at column 1 under ``targets:`` or ``sets:``, which
    YAML reads as a top-level key: ``; is it a target meant to be indented under
    'targets:' at line 8?`` on it, and where it is on the section it left empty."""
    section = _section_above(key, doc)
    if kind == "extra_forbidden" and section is not None:
        return (f"; is it a {_ENTRIES[section]} meant to be indented under '{section}:' at "
                f"line {doc.marks[(section,)][0]}?")
    if key in _ENTRIES and kind.endswith("_type") and not doc.data.get(key):
        stray = next((k for k in doc.data if _section_above(k, doc) == key), None)
        if stray is not None:
            return (f" (is '{stray}' at line {doc.marks[(stray,)][0]} meant to be indented "
                    "under it?)")
    return ""


def _section_above(key: str | int, doc: PositionedYaml) -> str | None:
    """``targets`` or ``sets`` when ``key`` is a top-level key mirror.yaml does not
    know, holding a mapping (or nothing), whose nearest known top-level key above
    it is that section: an entry of it indented a level too little."""
    from .config_schema import MirrorConfig

    known = MirrorConfig.model_fields
    if key in known or (key,) not in doc.marks or not isinstance(doc.data.get(key),
                                                                  (dict, type(None))):
        return None
    line = doc.marks[(key,)][0]
    above = [(doc.marks[(k,)][0], k) for k in doc.data
             if k in known and (k,) in doc.marks and doc.marks[(k,)][0] < line]
    section = max(above)[1] if above else None
    return section if section in _ENTRIES else None


# what a pattern of the schema allows, in words
_PATTERNS = {r"^[A-Za-z0-9][A-Za-z0-9._-]*$": "letters, digits, '.', '_' and '-' only, "
                                              "starting with a letter or digit"}
_BOOLEAN_WORDS = ("true", "false", "yes", "no", "on", "off")


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    worded = _in_words(kind, error)
    if worded is not None:
        return worded
    # the user wrote yes, no, on or off (maybe through ${VAR}): say what YAML made of it
    note = (" (YAML reads true/false, yes/no and on/off as a boolean)"
            if isinstance(error.get("input"), bool) else "")
    if kind == "literal_error":
        return f"{error['msg'].lower()}, got {error['input']!r}{note}"
    got = f"got {type(error['input']).__name__} {error['input']!r}{note}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):  # not the class's name
        return f"input should be a mapping (key: value), {got}"
    if kind.endswith(("_type", "_parsing")):
        return f"{error['msg'].lower()}, {got}"
    message = str(error["msg"])  # "List should have at least 1 item ...": one casing throughout
    return message[:1].lower() + message[1:]


def _in_words(kind: str, error: Mapping[str, Any]) -> str | None:
    """The message of an error whose pydantic wording speaks Python (NoneType, list
    after validation, a regular expression) or that misses the usual slip; None:
    pydantic's own words will do."""
    value = error.get("input")
    if value is None and kind.endswith("_type"):  # `core:` or `requirements:` and nothing
        what = ("write its keys under it, indented" if kind.startswith(("model", "dict"))
                else "write its items under it, one '- item' a line"
                if kind == "list_type" else "give it a value")
        return f"is empty; {what}"
    if kind == "too_short" and isinstance(value, (list, dict)) and not value:
        return "is empty; give at least one " + ("item" if isinstance(value, list) else "entry")
    if kind == "string_too_long" and isinstance(value, str):
        orphan = (" (`doit lock` then removes the old name's lockfile as an orphan)"
                  if error["loc"][:1] == ("sets",) else "")
        return (f"a name of {len(value)} characters; at most {error['ctx']['max_length']} "
                f"(it becomes part of file names); rename it in mirror.yaml{orphan}")
    if kind == "string_pattern_mismatch":
        allowed = _PATTERNS.get(str(error.get("ctx", {}).get("pattern")))
        return (f"'{value}' may hold {allowed}" if allowed
                else f"'{value}' holds characters that are not allowed here")
    if kind == "bool_type" and isinstance(value, str) and value.lower() in _BOOLEAN_WORDS:
        return (f"input should be a valid boolean, got the quoted word '{value}'; drop the "
                "quotes")
    if kind == "list_type" and isinstance(value, str):
        items = "- name==version" if error["loc"][-1] == "requirements" else "- item"
        return f"input should be a list, got the text '{value}'; write a list: {items}"
    return None
