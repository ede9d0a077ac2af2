"""``mirror.yaml`` as YAML: a bounded loader that remembers each value's line.

:class:`PositionedYaml` composes the text into plain data (standard tags only,
no merge keys, bounded alias expansion, depth and integers), substitutes
``${VAR}`` and collects problems formatted ``mirror.yaml:LINE:COL: path: message``.
A limit exceeded or a syntax error raises :class:`~lockmirror.errors.ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:  # loaded on use: an ad-hoc `lockmirror publish` reads no YAML
    import yaml

Path_ = tuple[str | int, ...]
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Limits that keep a hostile mirror.yaml (an alias bomb, 10,000 nested brackets,
# a 5,000-digit integer) from hanging or killing the loader. A real mirror.yaml
# is a few KiB, nests six levels and has no integer beyond a few digits.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_DEPTH = 32
# what aliases add once expanded: one per node plus the length of each scalar,
# for every visit after the first (billion laughs: 9**9 nodes from 81 aliases)
MAX_ALIAS_WEIGHT = 1 << 18
MAX_INT_CHARS = 20
_YAML_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in (
    "null", "bool", "int", "float", "str", "seq", "map", "timestamp"))
# what str.splitlines() splits on: a value quoted in a message must not start a new line
_LINE_BREAKS = re.compile("[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_INT_TAG, _MERGE_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:merge"
# The parser's words for the usual slips, and what they mean to someone writing mirror.yaml
_PLAIN_WORDS = (
    ("found character '\\t' that cannot start any token", " (a tab: YAML allows only spaces "
                                                          "for indentation and after ':')"),
    # `yanked deny` runs on into the next line's key, whose ':' the parser then refuses
    ("mapping values are not allowed here", " (a missing ':', or a ':' with no space after "
                                            "it, on this line or the one before? a value "
                                            "holding ': ' needs quotes)"),
    ("expected <block end>", " (this line is indented more or less than the lines it belongs "
                             "with)"),
)
_VALUE_TAG = "tag:yaml.org,2002:value"  # PyYAML's tag for a plain '=': a string here
# what the reader refuses written raw (NUL, ESC...), which a double-quoted "\0" or "\e"
# still gives: control characters but tab and newline
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# PyYAML reads a key written without '? ' up to this long, and says a ':' is amiss after it
MAX_KEY_CHARS = 1024


class _Refused(Exception):
    """A limit of mirror.yaml is exceeded: fatal, reported at ``mark``'s line."""

    def __init__(self, message: str, mark: yaml.Mark) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def _bounded_loader() -> type[yaml.SafeLoader]:
    """PyYAML's SafeLoader with a nesting limit: its composer recurses once
    per level, so 10,000 brackets would end in a RecursionError."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
            self.depth += 1
            try:
                if self.depth > MAX_YAML_DEPTH:
                    raise _Refused(f"nested more than {MAX_YAML_DEPTH} levels deep",
                                   self.peek_event().start_mark)  # type: ignore[no-untyped-call]
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return BoundedLoader


class PositionedYaml:
    """YAML composed into plain data, remembering where each path came from."""

    def __init__(self, text: str, filename: str, environ: Mapping[str, str] | None) -> None:
        """``environ`` fills in ``${VAR}``; None keeps every ``${...}`` as written."""
        import yaml

        self.filename = filename
        self.environ = environ
        self.marks: dict[Path_, tuple[int, int]] = {}
        self.problems: list[str] = []
        # values holding an unset ${VAR}: already reported, so schema errors there are noise
        self.unresolved: set[Path_] = set()
        # strings as the file writes them, where a ${VAR} changed them (what came
        # from the environment and what was written in the file tell apart)
        self.written: dict[Path_, str] = {}
        self._constructor = yaml.constructor.SafeConstructor()
        self._seen: set[int] = set()  # nodes converted once: an alias repeats them
        self._alias_weight = 0
        if len(text) > MAX_YAML_BYTES:
            message = (f"{filename}: {len(text)} characters is more than the "
                       f"{MAX_YAML_BYTES >> 20} MiB lockmirror reads as mirror.yaml")
            raise ConfigError([message])
        try:
            node = yaml.compose(text, Loader=_bounded_loader())
            self.data: Any = {} if node is None else self._convert(node, ())
        except _Refused as exc:
            where = f"{filename}:{exc.mark.line + 1}:{exc.mark.column + 1}"
            raise ConfigError([f"{where}: {exc.message}"]) from None
        except yaml.reader.ReaderError as exc:  # NUL and other unprintable characters
            line = text.count("\n", 0, exc.position) + 1
            column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
            message = (f"{filename}:{line}:{column}: character {chr(exc.character)!r} is "
                       "not allowed in YAML")
            raise ConfigError([message]) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
            detail = exc.problem or exc.context or "invalid YAML"
            start = exc.context_mark
            if exc.context and start is not None and mark is not None and start.line != mark.line:
                # an unclosed bracket or quote is noticed lines later: say where it opened
                detail += f" ({exc.context} that starts at line {start.line + 1}, " \
                          f"column {start.column + 1})"
            elif exc.context and exc.problem:
                detail = f"{exc.context}: {exc.problem}"
            plain = next((words for fragment, words in _PLAIN_WORDS if fragment in detail), "")
            line_text = text.splitlines()[mark.line] if mark and mark.line < len(
                text.splitlines()) else ""
            long_key = _long_key(line_text)
            if long_key is not None and mark is not None:
                raise ConfigError([f"{filename}:{mark.line + 1}:{long_key[0]}: a key of "
                                   f"{long_key[1]} characters: YAML reads a key of at most "
                                   f"{MAX_KEY_CHARS}"]) from None
            if not plain and "${" in line_text and "{" in line_text.split("${")[0]:
                plain = (" (${VAR} inside {...}: YAML reads its '{' as a mapping; write that "
                         "mapping in block style, one key per line)")
            raise ConfigError([f"{where}: YAML syntax error: {detail}{plain}"]) from None
        except yaml.YAMLError as exc:  # pragma: no cover - non-marked YAML errors are rare
            first = str(exc).splitlines()[0]
            raise ConfigError([f"{filename}: YAML error: {first}"]) from None
        if node is not None:
            self.marks.setdefault((), (node.start_mark.line + 1, node.start_mark.column + 1))

    def _convert(self, node: yaml.Node, path: Path_) -> Any:
        """Plain data of ``node``; problems with one value are collected (the
        value becomes None), a limit exceeded raises _Refused."""
        import yaml

        self._weigh(node, path)
        self.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if node.tag not in _YAML_TAGS and node.tag != _VALUE_TAG:
            self._refuse_tag(node, path)
            return None
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:  # fatal: the mapping's keys are unknown
                    raise _Refused(f"{format_path(path) or 'top level'}: merge keys (<<) are "
                                   "not supported; write the keys out", key_node.start_mark)
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _YAML_TAGS:
                    self.problem(path, "a key must be a plain string", mark=key_node.start_mark)
                    continue
                # a name as written: `no:` or `3.10:` is not False or 3.1 (a set, target
                # or destination named so was renamed and its files with it)
                key = str(key_node.value)
                child = (*path, key)
                if self._control_character(key, child, key_node.start_mark):
                    continue
                if key in result:
                    self.problem(child, f"duplicate key '{key}' (first given at line "
                                        f"{self.marks[child][0]})", mark=key_node.start_mark)
                    continue
                self.marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                result[key] = self._convert(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        value = self._scalar(node, path)
        if isinstance(value, str) and self._control_character(value, path, node.start_mark):
            return None
        if isinstance(value, str) and self.environ is not None:
            substituted = self._substitute(value, path)
            if substituted != value:
                self.written[path] = value
            if substituted != value and node.style is None:
                # a plain `keep: ${KEEP:-3}` is the number 3, as `keep: 3` would be
                tag = yaml.resolver.Resolver().resolve(  # type: ignore[no-untyped-call]
                    yaml.ScalarNode, substituted, (True, False))
                value = self._scalar(yaml.ScalarNode(tag, substituted, node.start_mark,
                                                     node.end_mark), path)
            else:
                value = substituted
        if isinstance(value, date):
            value = value.isoformat()
        return value

    def _weigh(self, node: yaml.Node, path: Path_) -> None:
        import yaml

        if len(path) > MAX_YAML_DEPTH:  # only a recursive alias (&a [*a]) gets here
            raise _Refused(f"nested more than {MAX_YAML_DEPTH} levels deep (a recursive "
                           "alias?)", node.start_mark)
        if id(node) not in self._seen:  # the file's own size bounds first visits
            self._seen.add(id(node))
            return
        self._alias_weight += 1 + (len(node.value) if isinstance(node, yaml.ScalarNode) else 0)
        if self._alias_weight > MAX_ALIAS_WEIGHT:
            raise _Refused("aliases expand to too much (more than "
                           f"{MAX_ALIAS_WEIGHT:,} repeated nodes and characters); write the "
                           "values out or use fewer aliases", node.start_mark)

    def _refuse_tag(self, node: yaml.Node, path: Path_) -> None:
        self.unresolved.add(path)
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        self.problem(path, f"the tag {tag} is not allowed: mirror.yaml holds plain strings, "
                     "numbers, booleans, lists and mappings", mark=node.start_mark)

    def _scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        """The value of a scalar with a standard tag; None (and a problem) if
        it is an integer too long to be one lockmirror uses, or an invalid date."""
        import yaml

        if node.tag == _VALUE_TAG:
            return node.value
        if node.tag == _INT_TAG and len(node.value) > MAX_INT_CHARS:
            self.unresolved.add(path)
            self.problem(path, f"an integer of {len(node.value)} characters is out of range",
                         mark=node.start_mark)
            return None
        try:
            return self._constructor.construct_object(node)
        except (ValueError, OverflowError, yaml.YAMLError) as exc:  # 2024-13-45
            self.unresolved.add(path)
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.problem(path, f"invalid value {node.value[:40]!r}: {first}",
                         mark=node.start_mark)
            return None

    def _control_character(self, value: str, path: Path_, mark: yaml.Mark) -> bool:
        """Whether ``value`` (a string or key as the file writes it: an escape such
        as "\\0" or "\\e" in double quotes) holds a control character other than tab
        and newline; if so, a problem at ``mark``."""
        found = _CONTROL.search(value)
        if found is None:
            return False
        self.unresolved.add(path)
        self.problem(path, f"holds the control character {found.group()!r}; mirror.yaml "
                     "takes none but tab and newline", mark=mark)
        return True

    def _substitute(self, value: str, path: Path_) -> str:
        environ = self.environ
        assert environ is not None  # _convert substitutes only with an environment

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            self.unresolved.add(path)
            self.problem(path, f"environment variable {name} is not set",
                         hint=f"export {name}=... or write ${{{name}:-default}}")
            return match.group(0)

        return _ENV_RE.sub(replace, value)

    def where(self, path: Path_) -> str:
        probe = path
        while probe not in self.marks and probe:
            probe = probe[:-1]
        line, col = self.marks.get(probe, (1, 1))
        return f"{self.filename}:{line}:{col}"

    def problem(self, path: Path_, message: str, *, hint: str | None = None,
                mark: yaml.Mark | None = None) -> None:
        where = (f"{self.filename}:{mark.line + 1}:{mark.column + 1}" if mark
                 else self.where(path))
        text = f"{where}: {format_path(path)}: {message}" if path else f"{where}: {message}"
        if hint:
            text += f"; {hint}"
        self.problems.append(_LINE_BREAKS.sub(lambda m: repr(m.group())[1:-1], text))


def _long_key(line: str) -> tuple[int, int] | None:
    """(column, length) of the key ``line`` starts with (after its indent and any
    '- ') when it is longer than :data:`MAX_KEY_CHARS`, which YAML then reports as
    a ':' out of place; None for any other line."""
    stripped = line.lstrip(" ")
    if stripped.startswith("- "):
        stripped = stripped[2:].lstrip(" ")
    found = re.match(r"(.*?):(?:\s|$)", stripped)
    key = found.group(1) if found else ""
    if len(key) > 1 and key[0] in "'\"" and key[-1] == key[0]:
        key = key[1:-1]
    return (len(line) - len(stripped) + 1, len(key)) if len(key) > MAX_KEY_CHARS else None


def format_path(path: Path_) -> str:
    """``sets.core.requirements[2]``; a key too long to read in one line (a set named
    with 300 characters) is cut to its start and its length."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        shown = f"{part[:20]}...({len(part)} characters)" if len(part) > _KEY_SHOWN else part
        out += f".{shown}" if out else shown
    return out


_KEY_SHOWN = 60  # characters of a key a message shows whole


