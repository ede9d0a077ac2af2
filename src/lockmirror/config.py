"""``mirror.yaml``: load, substitute ``${VAR}``, validate, and point at lines.

The public entry is :func:`load_config`. It returns a :class:`MirrorConfig`
or raises :class:`~lockmirror.errors.ConfigError` holding *every* problem
in the file, each formatted ``mirror.yaml:LINE:COL: dotted.path[3]: message``.

Validation happens here, at the edge; the rest of lockmirror works on the
typed model and on ``packaging`` objects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from .errors import ConfigError

if TYPE_CHECKING:  # loaded on use: an ad-hoc `lockmirror publish` reads no YAML
    import yaml
    from packaging.requirements import Requirement

DEFAULT_CONFIG = "mirror.yaml"

# --------------------------------------------------------------------------
# YAML with positions
# --------------------------------------------------------------------------

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
_VALUE_TAG = "tag:yaml.org,2002:value"  # PyYAML's tag for a plain '=': a string here


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


class _PositionedYaml:
    """YAML composed into plain data, remembering where each path came from."""

    def __init__(self, text: str, filename: str, environ: Mapping[str, str]) -> None:
        import yaml

        self.filename = filename
        self.environ = environ
        self.marks: dict[Path_, tuple[int, int]] = {}
        self.problems: list[str] = []
        # values holding an unset ${VAR}: already reported, so schema errors there are noise
        self.unresolved: set[Path_] = set()
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
            raise ConfigError([f"{where}: YAML syntax error: {detail}"]) from None
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
                key = self._scalar(key_node, path)
                key = str(key) if not isinstance(key, str) else key
                child = (*path, key)
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
        if isinstance(value, str):
            value = self._substitute(value, path)
        elif isinstance(value, date):
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

    def _substitute(self, value: str, path: Path_) -> str:
        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in self.environ:
                return self.environ[name]
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


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# --------------------------------------------------------------------------
# The schema
# --------------------------------------------------------------------------


class _Strict(BaseModel):
    # defer_build: schemas are built on first use, so commands that touch one
    # model (an ad-hoc publish destination) do not pay for all of them at import.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class SourceConfig(_Strict):
    """An upstream index (PEP 503/691 simple API)."""

    name: str
    url: str
    priority: int = Field(100, ge=-1_000_000, le=1_000_000,
                          description="lower is tried first; ties keep file order")
    username_env: str | None = None
    password_env: str | None = None
    projects: list[str] = Field(default_factory=list,
                                description="projects taken from this source only")
    files_url: list[str] = Field(default_factory=list,
                                 description="URL prefixes the index's files live under (default:"
                                 " https://files.pythonhosted.org/packages/ for pypi.org, "
                                 "else the source's own scheme, host and port)")
    allow_http: bool = Field(False, description="an http:// source whose files may be fetched "
                             "over plain http (loopback hosts need no flag)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^(https?|file)://", value):
            raise ValueError(f"'{value}' is not an http(s) or file URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("files_url")
    @classmethod
    def _files_url(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^https?://[^/@]+/", url if url.endswith("/") else url + "/"):
                raise ValueError(f"'{url}' is not an http(s) URL with a host (and no user name)")
        return [url if url.endswith("/") else url + "/" for url in value]

    @property
    def normalized_projects(self) -> frozenset[NormalizedName]:
        return frozenset(canonicalize_name(p) for p in self.projects)


class TargetConfig(_Strict):
    """What an installer on the far side looks like."""

    python: str = Field(description="'3.11' (every 3.11.x) or '3.11.4'")
    implementation: Literal["cp", "pp"] = "cp"
    platforms: list[str] = Field(min_length=1,
                                 description="platform tags, e.g. manylinux_2_28_x86_64")
    abi: str | None = Field(None, description="default: cpXY for CPython")
    markers: dict[str, str] = Field(default_factory=dict, description="marker overrides")

    @field_validator("python")
    @classmethod
    def _python(cls, value: Any) -> str:
        text = str(value)
        if not re.fullmatch(r"3\.\d+(\.\d+)?", text):
            raise ValueError(f"'{text}' is not a Python version like '3.11' or '3.11.4'")
        return text

    @field_validator("markers")
    @classmethod
    def _markers(cls, value: dict[str, str]) -> dict[str, str]:
        from .targets import MARKER_NAMES

        for key in value:
            if key not in MARKER_NAMES:
                raise ValueError(f"'{key}' is not a PEP 508 marker name "
                                 f"(one of {', '.join(sorted(MARKER_NAMES))})")
        return value


Severity = Literal["deny", "warn", "ignore"]
MAX_AGE_DAYS = 36_500  # a century; beyond it the date arithmetic of the lock overflows


class AdvisorySourceConfig(_Strict):
    kind: Literal["pypi-json", "osv-api", "osv-offline"]
    url: str | None = None
    path: str | None = None


class PolicyException(_Strict):
    package: str
    version: str = Field("*", description="a version or specifier; '*' for any")
    reason: str = Field(min_length=1)
    expires: date | None = None
    rules: list[str] = Field(default_factory=list,
                             description="which rules it waives; empty means all")


class PolicyConfig(_Strict):
    min_age_days: int | None = Field(None, ge=0, le=MAX_AGE_DAYS)
    yanked: Literal["deny", "warn"] = "deny"
    vulnerabilities: Severity = "warn"
    sdists: Literal["allow", "deny"] = "allow"
    advisory_sources: list[AdvisorySourceConfig] = Field(default_factory=list)
    exceptions: list[PolicyException] = Field(default_factory=list)


class PolicyOverride(_Strict):
    """Per-set policy: any key given replaces the global one."""

    min_age_days: int | None = Field(None, ge=0, le=MAX_AGE_DAYS)
    yanked: Literal["deny", "warn"] | None = None
    vulnerabilities: Severity | None = None
    sdists: Literal["allow", "deny"] | None = None
    exceptions: list[PolicyException] = Field(default_factory=list)


def _check_requirement(text: str) -> str:
    parse_requirement(text)
    return text


RequirementText = Annotated[str, AfterValidator(_check_requirement)]


class SetConfig(_Strict):
    """A package set: what must install, for which targets."""

    description: str = ""
    requirements: list[RequirementText] = Field(min_length=1)
    targets: list[str] | None = Field(None, description="default: every target")
    prereleases: bool = False
    prefer_sdists: bool = Field(False, description="lock sdists even where wheels exist")
    policy: PolicyOverride | None = None


class S3Destination(_Strict):
    kind: Literal["s3"]
    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    directory_keys: bool = Field(True, description="also upload simple/<p>/index.html as the "
                                 "key simple/<p>/ so the REST endpoint serves pip's URLs")


class UploadDestination(_Strict):
    kind: Literal["upload"]
    url: str
    username_env: str | None = None
    password_env: str | None = None
    keyring: bool = False
    simple_url: str | None = Field(None, description="its simple index, to see what it holds")


class DirectoryDestination(_Strict):
    kind: Literal["directory"]
    path: str
    layout: Literal["flat", "tree"] = Field("flat", description="flat: the artifacts only "
                                            "(a pypiserver package dir); tree: the whole index")


Destination = Annotated[S3Destination | UploadDestination | DirectoryDestination,
                        Field(discriminator="kind")]


class PathsConfig(_Strict):
    lockfiles: str = "lockfiles"
    store: str = ".store"
    index: str = "dist-index"
    dist: str = "dist"
    cache: str = ".cache"
    quarantine: str = Field("quarantine.json",
                            description="releases `audit --quarantine` took out of the index")


class MirrorConfig(_Strict):
    version: Literal[1]
    name: str = Field("mirror", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    sources: list[SourceConfig] = Field(min_length=1)
    targets: dict[str, TargetConfig] = Field(min_length=1)
    sets: dict[str, SetConfig] = Field(min_length=1)
    policy: PolicyConfig = Field(default_factory=lambda: PolicyConfig())
    publish: dict[str, Destination] = Field(default_factory=dict)
    paths: PathsConfig = Field(default_factory=lambda: PathsConfig())

    # Filled by load_config: where the file is, for resolving relative paths.
    # defer_build: schemas are built on first use, so commands that touch one
    # model (an ad-hoc publish destination) do not pay for all of them at import.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    @field_validator("sets")
    @classmethod
    def _targets_apart(cls, sets: dict[str, SetConfig],
                       info: ValidationInfo) -> dict[str, SetConfig]:
        """Refuse a set whose targets a PEP 508 marker cannot tell apart."""
        targets = info.data.get("targets")
        if not isinstance(targets, dict):
            return sets  # the targets are invalid themselves; reported there
        problems = [problem for name, spec in sets.items()
                    for problem in _overlapping_targets(name, spec, targets)]
        if problems:
            raise ValueError("; ".join(problems))
        return sets

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
        changes: dict[str, Any] = {
            key: value for key, value in override.model_dump(exclude_unset=True).items()
            if key != "exceptions" and value is not None
        }
        changes["exceptions"] = [*self.policy.exceptions, *override.exceptions]
        return self.policy.model_copy(update=changes)


def _overlapping_targets(set_name: str, spec: SetConfig,
                         targets: Mapping[str, TargetConfig]) -> Iterator[str]:
    """The problem of a set two of whose targets one installer could be both of.

    A lockfile selects entries by marker, and markers cannot see a glibc or
    musl level or which patch release a "3.11" target means: two such
    targets would get two active entries of one package (installers refuse
    the file), so lockmirror refuses the set instead.
    """
    from .targets import Target

    names = [n for n in (spec.targets if spec.targets is not None else targets) if n in targets]
    built = [Target.from_config(n, targets[n]) for n in names]
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


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


class LoadedConfig:
    """A validated config and the directory its relative paths start from."""

    def __init__(self, config: MirrorConfig, path: Path, text: str) -> None:
        self.config = config
        self.path = path
        self.root = path.parent
        self.text = text

    def resolve(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else self.root / path

    @property
    def lockfile_dir(self) -> Path:
        return self.resolve(self.config.paths.lockfiles)

    @property
    def store_dir(self) -> Path:
        return self.resolve(os.environ.get("LOCKMIRROR_STORE") or self.config.paths.store)

    @property
    def index_dir(self) -> Path:
        return self.resolve(self.config.paths.index)

    @property
    def dist_dir(self) -> Path:
        return self.resolve(self.config.paths.dist)

    @property
    def cache_dir(self) -> Path:
        return self.resolve(os.environ.get("LOCKMIRROR_CACHE") or self.config.paths.cache)

    @property
    def quarantine_path(self) -> Path:
        return self.resolve(self.config.paths.quarantine)

    def lockfile_path(self, set_name: str) -> Path:
        return self.lockfile_dir / f"pylock.{set_name}.toml"


def load_config(path: str | os.PathLike[str] = DEFAULT_CONFIG, *,
                environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read and validate ``mirror.yaml``.

    Raises ConfigError listing every problem (exit code 2). Reads one file;
    no network.
    """
    file = Path(path)
    display = str(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)  # a bigger file is refused unread
    except FileNotFoundError:
        raise ConfigError([f"{display}: no such file; create it or pass its path"]) from None
    except OSError as exc:
        raise ConfigError([f"{display}: cannot read: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_YAML_BYTES:
        limit = MAX_YAML_BYTES >> 20
        raise ConfigError([f"{display}: more than the {limit} MiB lockmirror reads as mirror.yaml"])
    try:  # with the newlines read_text() would give
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError([f"{display}:{line}:{column}: not UTF-8 (byte 0x{raw[exc.start]:02x})"]
                          ) from None
    return LoadedConfig(parse_config(text, display, environ=environ), file.resolve(), text)


def parse_config(text: str, filename: str = DEFAULT_CONFIG, *,
                 environ: Mapping[str, str] | None = None) -> MirrorConfig:
    """Validate YAML text; see :func:`load_config`."""
    doc = _PositionedYaml(text, filename, os.environ if environ is None else environ)
    problems = doc.problems
    config: MirrorConfig | None = None
    if not isinstance(doc.data, dict):
        problems.append(f"{doc.where(())}: the file must be a mapping with version, "
                        "sources, targets and sets")
    else:
        try:
            config = MirrorConfig.model_validate(doc.data)
        except ValidationError as exc:
            for error in exc.errors():
                loc = _clean_loc(error["loc"])
                if loc not in doc.unresolved:
                    doc.problem(loc, _message(error))
    if isinstance(doc.data, dict):
        for path, message in _cross_checks(doc.data):
            doc.problem(path, message)
    if problems:
        raise ConfigError(sorted(set(problems), key=_line_key))
    assert config is not None
    return config


def _line_key(problem: str) -> tuple[int, int, str]:
    match = re.match(r"^[^:]*:(\d+):(\d+):", problem)
    return (int(match.group(1)), int(match.group(2)), problem) if match else (0, 0, problem)


def _clean_loc(loc: tuple[Any, ...]) -> Path_:
    # pydantic inserts the discriminator tag into union paths: publish.x.s3.bucket
    out: list[str | int] = []
    for part in loc:
        publish_kind = part in {"s3", "upload", "directory"} and out[:1] == ["publish"]
        if isinstance(part, str) and publish_kind:
            continue
        out.append(part)
    return tuple(out)


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    if kind == "literal_error":
        return f"{error['msg'].lower()}, got {error['input']!r}"
    if kind.endswith(("_type", "_parsing")):
        return f"{error['msg'].lower()}, got {type(error['input']).__name__} {error['input']!r}"
    return str(error["msg"])


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _cross_checks(data: dict[str, Any]) -> Iterator[tuple[Path_, str]]:
    """Checks that span sections: names, references, dates.

    They run on the raw data, tolerant of wrong types (pydantic reports
    those), so that every problem in the file is reported in one pass.
    """
    yield from _source_checks(_as_list(data.get("sources")))
    targets = _as_dict(data.get("targets"))
    for name in targets:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            yield ("targets", name), "target names may hold letters, digits, '.', '_' and '-' only"
    yield from _set_checks(_as_dict(data.get("sets")), targets)
    yield from _policy_checks(_as_dict(data.get("policy")), _as_dict(data.get("sets")))


def _source_checks(items: list[Any]) -> Iterator[tuple[Path_, str]]:
    """Source names unique; a project pinned to one source only."""
    sources = [s for s in items if isinstance(s, dict)]
    seen: dict[str, int] = {}
    owners: dict[NormalizedName, str] = {}
    for i, source in enumerate(sources):
        name = str(source.get("name", ""))
        if name in seen:
            yield (("sources", i, "name"),
                   f"duplicate source name '{name}' (also sources[{seen[name]}])")
        seen[name] = i
        for j, project in enumerate(_as_list(source.get("projects"))):
            key = canonicalize_name(str(project))
            if key in owners and owners[key] != name:
                yield (("sources", i, "projects", j),
                       f"'{project}' is pinned to both '{owners[key]}' and '{name}'")
            owners[key] = name


def _set_checks(sets: dict[str, Any], targets: dict[str, Any]) -> Iterator[tuple[Path_, str]]:
    """Set names valid and unique; their targets defined; each project required once."""
    normalized_sets: dict[str, str] = {}
    for set_name, spec in sets.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", set_name):
            yield ("sets", set_name), "set names may hold letters, digits, '.', '_' and '-' only"
        lowered = set_name.lower()
        if lowered in normalized_sets:
            yield ("sets", set_name), f"duplicate set name (same as '{normalized_sets[lowered]}')"
        normalized_sets[lowered] = set_name
        spec = _as_dict(spec)
        for j, target in enumerate(_as_list(spec.get("targets"))):
            if isinstance(target, str) and target not in targets:
                yield (("sets", set_name, "targets", j),
                       f"unknown target '{target}' (defined: {', '.join(targets) or 'none'})")
        yield from _requirement_checks(set_name, _as_list(spec.get("requirements")))


def _requirement_checks(set_name: str, requirements: list[Any]) -> Iterator[tuple[Path_, str]]:
    """A project named by two requirements of one set."""
    from packaging.requirements import InvalidRequirement, Requirement

    names: dict[NormalizedName, int] = {}
    for j, text in enumerate(requirements):
        try:
            name = canonicalize_name(Requirement(str(text)).name)
        except InvalidRequirement:
            continue  # reported by the schema
        if name in names:
            yield (("sets", set_name, "requirements", j),
                   f"'{name}' is already required at requirements[{names[name]}]")
        names[name] = j


def _policy_checks(policy: dict[str, Any], sets: dict[str, Any]) -> Iterator[tuple[Path_, str]]:
    """Exceptions (global and per set) and advisory sources."""
    exception_lists: list[tuple[Path_, Any]] = [(("policy",), policy.get("exceptions"))]
    exception_lists += [(("sets", name, "policy"), _as_dict(_as_dict(spec).get("policy"))
                         .get("exceptions")) for name, spec in sets.items()]
    for prefix, exceptions in exception_lists:
        for i, exception in enumerate(_as_list(exceptions)):
            yield from _exception_checks((*prefix, "exceptions", i), _as_dict(exception))
    for i, source in enumerate(_as_list(policy.get("advisory_sources"))):
        source = _as_dict(source)
        if source.get("kind") == "osv-offline" and not source.get("path"):
            yield (("policy", "advisory_sources", i),
                   "an osv-offline source needs 'path' (a directory or .zip of OSV records)")
        if source.get("kind") in ("pypi-json", "osv-api") and source.get("path"):
            yield (("policy", "advisory_sources", i, "path"),
                   "'path' is for osv-offline sources; give 'url' (or nothing for the default)")
        url = source.get("url")
        if isinstance(url, str) and not re.match(r"^https?://", url):
            yield (("policy", "advisory_sources", i, "url"), f"'{url}' is not an http(s) URL")


# Rules an exception may waive by name (see lockmirror.policy); anything else
# in `rules` must look like an advisory id or alias (PYSEC-..., GHSA-..., CVE-...).
WAIVABLE_RULES = ("min_age_days", "yanked", "vulnerabilities", "sdists")
_ADVISORY_ID_RE = re.compile(r"^[A-Z][A-Z0-9]*-[A-Za-z0-9._:-]+$")


def _exception_checks(path: Path_, exception: dict[str, Any]) -> Iterator[tuple[Path_, str]]:
    version = str(exception.get("version", "*"))
    if version != "*":
        try:
            Version(version)
        except InvalidVersion:
            from packaging.specifiers import InvalidSpecifier, SpecifierSet

            try:
                SpecifierSet(version)
            except InvalidSpecifier:
                yield (*path, "version"), f"'{version}' is neither a version nor a specifier"
    reason = exception.get("reason")
    if isinstance(reason, str) and not reason.strip():
        yield (*path, "reason"), "the reason must say why the exception is needed"
    for j, rule in enumerate(_as_list(exception.get("rules"))):
        if rule not in WAIVABLE_RULES and not _ADVISORY_ID_RE.match(str(rule)):
            yield ((*path, "rules", j),
                   (f"'{rule}' is neither a rule ({', '.join(WAIVABLE_RULES)}) "
                    "nor an advisory id such as PYSEC-2023-212 or GHSA-..."))
