"""``mirror.yaml``: load, substitute ``${VAR}``, validate, and point at lines.

The public entry is :func:`load_config`. It returns a :class:`MirrorConfig`
or raises :class:`~lockmirror.errors.ConfigError` holding *every* problem
in the file, each formatted ``mirror.yaml:LINE:COL: dotted.path[3]: message``.

Validation happens here, at the edge; the rest of lockmirror works on the
typed model (:mod:`lockmirror.config_schema`) and on ``packaging`` objects.
The YAML reading with its limits is :mod:`lockmirror.config_yaml`; this
module holds the loading and the checks that span sections.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import ValidationError

from .config_messages import schema_problems
from .config_schema import MirrorConfig, TargetConfig
from .config_yaml import MAX_YAML_BYTES, Path_, PositionedYaml
from .errors import ConfigError, InputError, LockmirrorError, UnknownNameError
from .redaction import redact_text

DEFAULT_CONFIG = "mirror.yaml"
TOOL_SET = "lockmirror-tool"  # lockmirror's own set (stages.tool_set): no set of mirror.yaml
SIGNING_KEY_ENV = "LOCKMIRROR_SIGNING_KEY"  # the bundle signing key's file, when none is given
# what a set's name may be: its lockfile is pylock.<set>.toml, and PEP 751 allows no dot in <set>
SET_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"


def lockfile_name(set_name: str) -> str:
    """``pylock.<set>.toml``: the file name of a set's lockfile."""
    return f"pylock.{set_name}.toml"


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

    def problems_at(self, problems: Iterable[tuple[Path_, str]],
                    filename: str | None = None) -> ConfigError:
        """ConfigError of ``problems`` (YAML path, message) found after loading, each
        named with its line and column in the file (``filename``: as the user gave it)."""
        doc = PositionedYaml(self.text, filename or self.path.name, os.environ)
        for path, message in problems:
            doc.problem(path, message)
        return ConfigError(doc.problems)

    def platform_warnings(self, filename: str | None = None,
                          targets: Iterable[str] | None = None) -> list[str]:
        """One line per platform tag of a target (of ``targets``; default: every one)
        that is valid but likely unintended (:func:`lockmirror.platform_tags.platform_warning`),
        with its line and column; ``validate`` and ``lock`` print them once."""
        from .platform_tags import platform_warning

        wanted = set(self.config.targets if targets is None else targets)
        found = [(("targets", name, "platforms", i), warning)
                 for name, target in self.config.targets.items() if name in wanted
                 for i, tag in enumerate(target.platforms)
                 if (warning := platform_warning(tag)) is not None]
        return self.problems_at(found, filename).problems if found else []

    def unset_credentials(self, filename: str | None = None) -> ConfigError | None:
        """A ConfigError naming every credential variable (``username_env`` /
        ``password_env``) of a source that the environment does not set, each with
        its line; None when all are set. ``lock`` raises it before asking a source,
        ``validate`` warns of it (a CI job may validate without the secret)."""
        from .net.http import unset_credentials

        unset = [(("sources", i, field), f"environment variable {variable} is not set (lock "
                  "and fetch need it for this source's credentials)")
                 for i, field, variable in unset_credentials(self.config.sources)]
        return self.problems_at(unset, filename) if unset else None

    @property
    def lockfile_dir(self) -> Path:
        return self.resolve(self.config.paths.lockfiles)

    @property
    def store_dir(self) -> Path:
        """The local store's directory; LockmirrorError when ``paths.store`` is an
        ``s3://`` URL (the stages that read an S3 store use :attr:`store_location`)."""
        location = self.store_location
        if location.startswith("s3://"):
            raise LockmirrorError("this command needs a local store, and paths.store is on S3",
                                  where=location, hint="fetch, index, publish and bundle take "
                                  "an S3 store; run this one with LOCKMIRROR_STORE=<a directory>")
        return Path(location)

    @property
    def store_location(self) -> str:
        """``paths.store`` (or ``$LOCKMIRROR_STORE``): an ``s3://`` URL as written,
        else the resolved local path."""
        setting = os.environ.get("LOCKMIRROR_STORE") or self.config.paths.store
        return setting if setting.startswith("s3://") else str(self.resolve(setting))

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
    def signing_key(self) -> Path | None:
        """The private key file bundles are signed with when none is given
        (:func:`signing_key_file`)."""
        return signing_key_file()

    @property
    def quarantine_path(self) -> Path:
        return self.resolve(self.config.paths.quarantine)

    def chosen_sets(self, names: Sequence[str] | None) -> list[str]:
        """``names`` (default: every set, in mirror.yaml's order), each checked to
        be a set of mirror.yaml; raises UnknownNameError (exit 2) naming the first
        that is not: every command's ``--set`` is looked up here."""
        for name in names or ():
            if name not in self.config.sets:
                raise UnknownNameError(f"no set named '{name}'", where=self.path.name,
                                       hint=f"sets in mirror.yaml: {', '.join(self.config.sets)}")
        return list(names) if names else list(self.config.sets)

    def lockfile_path(self, set_name: str) -> Path:
        return self.lockfile_dir / lockfile_name(set_name)


def split_names(values: Iterable[str]) -> list[str]:
    """Set or target names given one by one or comma-separated, as both front doors
    take them (``--set a,b``, ``--set a --set b``): in order, each stripped, empty
    ones (``a,``) dropped."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def signing_key_file() -> Path | None:
    """``$LOCKMIRROR_SIGNING_KEY``: the private key file bundles are signed with when
    none is given (``doit bundle`` takes no options); None: unsigned. InputError,
    never showing the value, when it holds a key instead of a file name."""
    named = os.environ.get(SIGNING_KEY_ENV)
    if not named:
        return None
    if "\n" in named or "PRIVATE KEY" in named or len(named) > 4096:
        # the key itself, not a file name: never shown, never kept
        raise InputError(f"${SIGNING_KEY_ENV} holds a key, not the path of its file",
                         hint="write the key to a file (mode 0600) and name that file")
    return Path(named)


def signing_key_stamp() -> dict[str, str]:
    """What makes a bundle's signature another (doit's stamp of ``doit bundle``): the
    key file's path, size and mtime (a key rotated in place too); the path alone when
    unreadable (bundle says why)."""
    try:
        key = signing_key_file()
    except InputError:  # a key where its file's name belongs: never in doit's state or output
        return {"key": "not a file name", "stat": ""}
    try:
        stat = os.stat(key) if key else None
    except (OSError, ValueError):
        stat = None
    return {"key": str(key or ""), "stat": f"{stat.st_size}:{stat.st_mtime_ns}" if stat else ""}


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
        looked = "" if file.is_absolute() else f" (looked in {Path.cwd()})"
        raise ConfigError([f"{display}: no such file{looked}; create it, run from the "
                           "directory holding it, or pass its path"]) from None
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
        raise ConfigError([f"{display}:{line}:{column}: not UTF-8 (byte 0x{raw[exc.start]:02x}); "
                           "save it as UTF-8"]) from None
    return LoadedConfig(parse_config(text, display, environ=environ), file.resolve(), text)


def parse_config(text: str, filename: str = DEFAULT_CONFIG, *,
                 environ: Mapping[str, str] | None = None) -> MirrorConfig:
    """Validate YAML text; see :func:`load_config`."""
    doc = PositionedYaml(text, filename, os.environ if environ is None else environ)
    problems = doc.problems
    config: MirrorConfig | None = None
    if not isinstance(doc.data, dict):
        problems.append(f"{doc.where(())}: the file must be a mapping with version, "
                        "sources, targets and sets")
    else:
        config, valid_targets = _schema_checks(doc)
        for path, message in [*_cross_checks(doc.data, valid_targets),
                              *_written_credentials(doc)]:
            doc.problem(path, message)
    if problems:
        raise ConfigError(sorted(set(problems), key=_line_key))
    assert config is not None
    return config


def _schema_checks(doc: PositionedYaml) -> tuple[MirrorConfig | None, dict[str, TargetConfig]]:
    """The file validated by the schema (None when it has problems, each reported at its
    place in ``doc``) and the valid targets by name (with problems: those that build alone)."""
    try:
        config = MirrorConfig.model_validate(doc.data)
    except ValidationError as exc:
        errors = exc.errors()
        for loc, message in schema_problems(errors, doc):
            doc.problem(loc, message)
        broken = {error["loc"][1] for error in errors
                  if len(error["loc"]) > 1 and error["loc"][0] == "targets"}
        valid = {}
        for name, spec in _as_dict(doc.data.get("targets")).items():
            if name not in broken:  # one whose problem the schema placed elsewhere fails here
                with contextlib.suppress(ValidationError):  # and is left out too
                    valid[name] = TargetConfig.model_validate(spec)
        return None, valid
    return config, config.targets


def _line_key(problem: str) -> tuple[int, int, str]:
    match = re.match(r"^[^:]*:(\d+):(\d+):", problem)
    return (int(match.group(1)), int(match.group(2)), problem) if match else (0, 0, problem)


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _cross_checks(data: dict[str, Any], valid_targets: Mapping[str, TargetConfig]
                  ) -> Iterator[tuple[Path_, str]]:
    """Checks that span sections: names, references, dates.

    They run on the raw data, tolerant of wrong types (pydantic reports
    those), so that every problem in the file is reported in one pass.
    """
    yield from _source_checks(_as_list(data.get("sources")))
    targets = _as_dict(data.get("targets"))
    for name in targets:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            yield ("targets", name), ("target names may hold letters, digits, '.', '_' and '-' "
                                      "only, starting with a letter or digit")
    yield from _set_checks(_as_dict(data.get("sets")), targets)
    yield from _overlap_checks(_as_dict(data.get("sets")), valid_targets)
    yield from _policy_checks(_as_dict(data.get("policy")), _as_dict(data.get("sets")))
    for name, destination in _as_dict(data.get("publish")).items():
        bucket = _as_dict(destination).get("bucket")
        if (_as_dict(destination).get("kind") == "s3" and isinstance(bucket, str)
                and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket)):
            yield (("publish", name, "bucket"), f"'{bucket}' is not an S3 bucket name (3 to 63 "
                   "lower-case letters, digits, '.' and '-')")


def _written_credentials(doc: PositionedYaml) -> Iterator[tuple[Path_, str]]:
    """A user name or password written into a source's URL in the file (never shown).
    One a ``${VAR}`` fills in comes from the environment, as credentials may."""
    for i, source in enumerate(_as_list(doc.data.get("sources"))):
        url = doc.written.get(("sources", i, "url"), _as_dict(source).get("url"))
        if isinstance(url, str) and redact_text(url) != url:
            yield (("sources", i, "url"), "a user name or password is written into the URL "
                   "(mirror.yaml never holds credentials); name the environment variables "
                   "holding them in the source's username_env and password_env")


def _source_checks(items: list[Any]) -> Iterator[tuple[Path_, str]]:
    """Source names unique; no plain http unless allowed; a project pinned to one
    source only."""
    seen: dict[str, int] = {}
    owners: dict[NormalizedName, str] = {}
    for i, source in enumerate(items):
        if not isinstance(source, dict):
            continue  # reported by the schema
        name = str(source.get("name", ""))
        if name in seen:
            yield (("sources", i, "name"),
                   f"duplicate source name '{name}' (also sources[{seen[name]}])")
        seen[name] = i
        url = source.get("url")
        if _plain_http(url) and source.get("allow_http") is not True:
            yield (("sources", i, "url"), f"'{redact_text(url)}' is plain http: anyone on the "
                   "path can change what the index lists and serves (use https, or say "
                   "`allow_http: true` for a network you trust)")
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
        if not re.fullmatch(SET_NAME, set_name):
            yield (("sets", set_name), "set names may hold letters, digits, '_' and '-' only, "
                   "starting with a letter or digit (no '.', which pylock.<name>.toml cannot hold)")
        lowered = set_name.lower()
        if lowered == TOOL_SET:  # its lockfile too: pylock.lockmirror-tool.toml
            case = "" if set_name == TOOL_SET else ", in any letter case"
            yield (("sets", set_name), f"the set name '{TOOL_SET}' is lockmirror's own (its "
                   f"wheels for the bundle's tool/){case}; rename that set")
        if lowered in normalized_sets:
            yield ("sets", set_name), f"duplicate set name (same as '{normalized_sets[lowered]}')"
        normalized_sets[lowered] = set_name
        spec = _as_dict(spec)
        for j, target in enumerate(_as_list(spec.get("targets"))):
            if isinstance(target, str) and target not in targets:
                yield (("sets", set_name, "targets", j),
                       f"unknown target '{target}' (defined: {', '.join(targets) or 'none'})")
        yield from _requirement_checks(set_name, _as_list(spec.get("requirements")))


def _overlap_checks(sets: dict[str, Any], valid: Mapping[str, TargetConfig]
                    ) -> Iterator[tuple[Path_, str]]:
    """A set two of whose valid targets (the broken ones the schema reports) a lockfile
    marker cannot tell apart, at the set's own line."""
    from .config_schema import overlapping_targets

    for set_name, spec in sets.items():
        chosen = _as_dict(spec).get("targets")
        chosen = [n for n in chosen if isinstance(n, str)] if isinstance(chosen, list) else None
        for message in overlapping_targets(set_name, chosen, valid):
            yield ("sets", set_name), message


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
        if isinstance(url, str) and not re.match(r"^https?://", url, re.IGNORECASE):
            yield (("policy", "advisory_sources", i, "url"),
                   f"'{redact_text(url)}' is not an http(s) URL")
        elif _plain_http(url) and not source.get("allow_http"):
            yield (("policy", "advisory_sources", i, "url"),
                   f"'{redact_text(url)}' is plain http: anyone on the path can hide "
                   "advisories (use https, or say `allow_http: true` for a network you trust)")


def _plain_http(url: Any) -> TypeGuard[str]:
    """Whether ``url`` is an ``http://`` URL to a host other than a loopback one."""
    return isinstance(url, str) and url.lower().startswith("http://") and not _loopback_url(url)


def _loopback_url(url: str) -> bool:
    from urllib.parse import urlsplit

    from .formats.url_policy import is_loopback  # only for an http:// source

    try:
        return is_loopback(urlsplit(url).hostname or "")
    except ValueError:  # a malformed port or host
        return False


# Rules an exception may waive by name (see lockmirror.resolve.policy); anything else
# in `rules` must look like an advisory id or alias (PYSEC-..., GHSA-..., CVE-...).
WAIVABLE_RULES = ("min_age_days", "yanked", "vulnerabilities", "sdists", "licenses")
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
