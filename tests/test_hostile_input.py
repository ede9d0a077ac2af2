"""Hostile input ends in one line and exit 2: never a traceback, a hang or a partial file.

Two halves:

* the corpus in ``tests/data/hostile/`` (one file per attack: billion laughs,
  ``!!python/name`` tags, merge keys, a 5,000-digit integer, deep nesting, a
  NUL byte, a huge ``min_age_days``, ``bundle.json`` and ``manifest.json``
  with ``Infinity`` or 200,000 levels, hostile lockfiles), each run through
  the real CLI in a subprocess with a timeout and an address-space limit, so
  a regression fails instead of hanging or swapping;
* a hypothesis fuzz test (fixed seed, bounded examples) over mutated
  ``mirror.yaml``, lockfiles and ``bundle.json``, run in-process through
  ``lockmirror.cli.main``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import re
import resource
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import subprocess_env, tree_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockmirror.cli import main
from lockmirror.errors import LockmirrorError
from lockmirror.formats.bundle_format import BundleInfo
from lockmirror.formats.manifest import Entry

HOSTILE = Path(__file__).parent / "data" / "hostile"
TIMEOUT = 30          # seconds; the refusals take a fraction of one, a regression hangs
MEMORY = 2 << 30      # address space: an alias bomb hits it (MemoryError) instead of swapping
MANIFEST_PATH = "index/manifest.json"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def run_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lockmirror", *map(str, args)], cwd=cwd,
                          env=subprocess_env(drop=["LOCKMIRROR_TRACEBACK"]), capture_output=True, text=True, timeout=TIMEOUT,
                          preexec_fn=_limit_memory, check=False)


def assert_one_line(done: subprocess.CompletedProcess[str], where: str, says: str) -> str:
    """Exit 2 and exactly one line on stderr, naming ``where`` and saying ``says``."""
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert done.returncode == 2, done.stderr
    assert lines[0].startswith("lockmirror: error: ")
    assert where in lines[0], lines[0]
    assert re.search(says, lines[0]), lines[0]
    return lines[0]


def tree(root: Path) -> tuple[list[str], dict[str, bytes]]:
    """Every entry below ``root`` (directories too) and every file's bytes: what
    "nothing was written" compares."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")), tree_bytes(root)


# --------------------------------------------------------------------------
# mirror.yaml: `validate` and `lock --check`
# --------------------------------------------------------------------------

YAML_CASES = [  # file, line, what the message says
    ("billion-laughs.yaml", 12, "aliases expand to too much"),
    ("recursive-alias.yaml", 11, "nested more than 32 levels"),
    ("python-name-tag.yaml", 3, r"tag !!python/name:os\.system is not allowed"),
    ("python-object-tag.yaml", 11, r"tag !!python/object/apply:os\.system is not allowed"),
    ("merge-key.yaml", 10, r"merge keys \(<<\) are not supported"),
    ("long-integer.yaml", 13, "integer of 5000 characters is out of range"),
    ("deep-nesting.yaml", 13, "nested more than 32 levels"),
    ("nul-byte.yaml", 3, r"character '\\x00' is not allowed"),
    ("invalid-utf8.yaml", 3, r"not UTF-8 \(byte 0xff\)"),
    ("huge-min-age-days.yaml", 13, r"min_age_days: .*less than or equal to 36500"),
    ("invalid-date.yaml", 16, "expires: invalid value '2024-13-45'"),
]


@pytest.mark.parametrize("command", [("validate",), ("lock", "--check", "--config")],
                         ids=["validate", "lock-check"])
@pytest.mark.parametrize(("name", "line", "says"), YAML_CASES,
                         ids=[case[0] for case in YAML_CASES])
def test_hostile_mirror_yaml_is_one_line(tmp_path: Path, command: tuple[str, ...], name: str,
                                         line: int, says: str) -> None:
    (tmp_path / name).write_bytes((HOSTILE / name).read_bytes())
    before = tree(tmp_path)
    done = run_cli(*command, name, cwd=tmp_path)
    assert_one_line(done, f"{name}:{line}:", says)
    assert tree(tmp_path) == before


def test_a_mirror_yaml_over_a_mebibyte_is_refused_unread(tmp_path: Path) -> None:
    text = (HOSTILE / "good.yaml").read_text() + "# padding\n" * 120_000
    (tmp_path / "mirror.yaml").write_text(text)
    done = run_cli("validate", cwd=tmp_path)
    assert_one_line(done, "mirror.yaml: ", "more than the 1 MiB")


def test_the_corpus_mirror_yaml_is_valid_without_its_attack(tmp_path: Path) -> None:
    done = run_cli("validate", HOSTILE / "good.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_aliases_that_a_real_file_uses_still_work(tmp_path: Path) -> None:
    # a second target reuses the first one's platform list (a target that repeated the
    # first one whole would be refused: markers could not tell the two apart)
    text = (HOSTILE / "good.yaml").read_text().replace(
        "platforms: [manylinux_2_28_x86_64]", "platforms: &plat [manylinux_2_28_x86_64]").replace(
        "sets:\n", "  again: {python: \"3.12\", platforms: *plat}\nsets:\n").replace(
        "requirements: [requests==2.31.0]", "requirements: &reqs [requests==2.31.0]\n"
        "  other:\n    requirements: *reqs")
    (tmp_path / "mirror.yaml").write_text(text)
    done = run_cli("validate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 sets, 2 targets" in done.stdout


# --------------------------------------------------------------------------
# bundle.json and manifest.json: `import` and `verify`
# --------------------------------------------------------------------------


def write_bundle(out: Path, info_bytes: bytes, manifest_bytes: bytes, top: str) -> Path:
    """A tar laid out like a lockmirror bundle, with a matching .sha256 listing."""
    path = out / f"{top}.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        directory = tarfile.TarInfo(top)
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        for name, data in (("bundle.json", info_bytes), (MANIFEST_PATH, manifest_bytes)):
            member = tarfile.TarInfo(f"{top}/{name}")
            member.size, member.mode = len(data), 0o644
            tar.addfile(member, io.BytesIO(data))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return path


def bundle_around_manifest(out: Path, manifest_bytes: bytes) -> Path:
    """A bundle whose bundle.json is valid and pins ``manifest_bytes`` (a
    carrier can write both: only a signature would stop him)."""
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    info = BundleInfo(name="demo", kind="full", index_manifest_sha256=digest,
                      base_manifest_sha256=None, lockmirror_version="0.1.0", tool_python=None,
                      files={MANIFEST_PATH: Entry(digest, len(manifest_bytes))})
    return write_bundle(out, info.dumps(), manifest_bytes, info.top)


BUNDLE_CASES = [
    ("bundle-infinity.json", "Infinity is not a number"),
    ("bundle-nan.json", "NaN is not a number"),
    ("bundle-huge-float.json", "'1e400' is not a finite number"),
    ("bundle-long-integer.json", "integer of 5000 digits is out of range"),
    ("bundle-deep-nesting.json", "nested too deeply"),
    ("bundle-not-an-object.json", "not a lockmirror bundle.json: a JSON list"),
    # json keeps the last of a key given twice (found by an outside tester)
    ("bundle-duplicate-key.json", "the key 'kind' appears twice in one JSON object"),
]


@pytest.mark.parametrize(("name", "says"), BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_hostile_bundle_json_is_one_line(tmp_path: Path, name: str, says: str) -> None:
    manifest = b'{\n "files": {},\n "format": "lockmirror-manifest/1"\n}\n'
    bundle = write_bundle(tmp_path, (HOSTILE / name).read_bytes(), manifest,
                          "lockmirror-demo-0123456789abcdef")
    before = tree(tmp_path)
    done = run_cli("import", bundle, "--into", tmp_path / "mirror", cwd=tmp_path)
    assert_one_line(done, f"{bundle.name}:lockmirror-demo-0123456789abcdef/bundle.json", says)
    assert tree(tmp_path) == before  # no mirror, no staging tree, nothing half-written


MANIFEST_CASES = [
    ("manifest-deep-nesting.json", "nested too deeply"),
    ("manifest-infinity.json", "Infinity is not a number"),
    # a manifest lockmirror never writes, each named in words, not a Python exception's
    ("manifest-entry-without-size.json",
     "the entry of 'files/a/a-1.0-py3-none-any.whl' is not {\"sha256\": ..., \"size\": ...}"),
    ("manifest-files-a-list.json", "'files' is a JSON list, not an object"),
    ("manifest-sha256-a-number.json",
     "sha256 of 'files/a/a-1.0-py3-none-any.whl' is 5, not 64 hex digits"),
    # a path listed twice: json keeps the last entry (found by an outside tester)
    ("manifest-duplicate-path.json", "the key 'files/six/six-1.16.0-py2.py3-none-any.whl' "
                                     "appears twice in one JSON object"),
]


@pytest.mark.parametrize(("name", "says"), MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES])
def test_hostile_manifest_in_a_bundle_is_one_line(tmp_path: Path, name: str, says: str) -> None:
    bundle = bundle_around_manifest(tmp_path, (HOSTILE / name).read_bytes())
    before = tree(tmp_path)
    done = run_cli("import", bundle, "--into", tmp_path / "mirror", cwd=tmp_path)
    assert_one_line(done, f"{bundle.name}:{bundle.stem}/{MANIFEST_PATH}", says)
    assert tree(tmp_path) == before


@pytest.mark.parametrize(("name", "says"), MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES])
def test_hostile_manifest_in_a_mirror_is_one_line(tmp_path: Path, name: str, says: str) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "manifest.json").write_bytes((HOSTILE / name).read_bytes())
    done = run_cli("verify", mirror, cwd=tmp_path)
    assert_one_line(done, str(mirror / "manifest.json"), says)


# --------------------------------------------------------------------------
# Lockfiles: `diff` reads them like fetch, index, bundle and audit do
# --------------------------------------------------------------------------

LOCKFILE_CASES = [
    # the parser's (rtoml's) own words, with the place
    ("pylock.long-integer.toml", "integer number overflowed at line 21 column 8"),
    ("pylock.out-of-range.toml", "integer 99999999999999999999 is out of TOML's 64-bit range"),
    ("pylock.infinity.toml", "'inf' is not a finite number"),
    ("pylock.deep-nesting.toml", "max recursion depth met at line 12 column 85"),
    ("pylock.nul-byte.toml", "invalid basic string.* at line 9 column 11"),
    ("pylock.date-out-of-range.toml", "the date-time 0001-01-01T00:00:00\\+23:59 is out of range"),
    ("pylock.bad-targets.toml", "malformed lockmirror data in the lockfile"),
]


@pytest.mark.parametrize(("name", "says"), LOCKFILE_CASES, ids=[c[0] for c in LOCKFILE_CASES])
def test_hostile_lockfile_is_one_line(tmp_path: Path, name: str, says: str) -> None:
    good = HOSTILE / "pylock.good.toml"
    out = tmp_path / "diff.txt"
    done = run_cli("diff", good, HOSTILE / name, "-o", out, cwd=tmp_path)
    assert_one_line(done, str(HOSTILE / name), says)
    assert not out.exists()


def test_a_lockfile_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    """Lockfile.read shares the URL rule's reader: an undecodable file is a user error."""
    bad = tmp_path / "pylock.latin1.toml"
    bad.write_bytes((HOSTILE / "pylock.good.toml").read_bytes() + b"# caf\xe9\n")
    done = run_cli("diff", HOSTILE / "pylock.good.toml", bad, cwd=tmp_path)
    assert_one_line(done, str(bad), "cannot read the lockfile: 'utf-8' codec")


@pytest.mark.parametrize(("name", "says"), LOCKFILE_CASES[:4], ids=[c[0] for c in LOCKFILE_CASES[:4]])
def test_hostile_lockfile_in_a_mirror_is_one_line(tmp_path: Path, name: str, says: str) -> None:
    """`lockmirror lockfile` reads a mirror's lockfiles with the same limits as the stages."""
    (tmp_path / "lockfiles").mkdir()
    bad = tmp_path / "lockfiles" / "pylock.demo.toml"
    bad.write_bytes((HOSTILE / name).read_bytes())
    done = run_cli("lockfile", "--base-url", "https://mirror.internal/", tmp_path, cwd=tmp_path)
    assert_one_line(done, str(bad), f"not a TOML lockfile: .*{says}")


def test_the_corpus_lockfile_is_valid_without_its_attack(tmp_path: Path) -> None:
    good = HOSTILE / "pylock.good.toml"
    done = run_cli("diff", good, good, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no changes to the lockfiles" in done.stdout


# --------------------------------------------------------------------------
# Fuzzing: mutated inputs through lockmirror.cli.main, in-process
# --------------------------------------------------------------------------

# Tokens that mean something to YAML, TOML or JSON, or to a parser's limits.
TOKENS = [
    "&a ", "*a", "<<: *a\n", "!!python/name:os.system ", "!!binary ", "!local ", "!!set ",
    "[", "]", "{", "}", "- ", ": ", ",", "\n", "  ", '"', "'", "\\", "#", "? ", "|", ">",
    "---\n", "...\n", "%YAML 1.1\n", "\x00", "\t", "\ufeff", "\x85", "9" * 30, "-0x1F",
    "2024-13-45", ".inf", "~", "=", "${X}", "${X:-y}", "1e400", "NaN", "Infinity", "-Infinity",
    "nan", "inf", "[[packages]]\n", "[tool.lockmirror]\n", "= ", "true", "null", "0o7",
]
EDIT = st.tuples(st.floats(0, 1), st.integers(0, 6),
                 st.one_of(st.sampled_from(TOKENS), st.text(max_size=4)))
EDITS = st.lists(EDIT, min_size=1, max_size=6)
FUZZ = settings(derandomize=True, database=None, max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def mutate(text: str, edits: list[tuple[float, int, str]]) -> str:
    """Each edit replaces ``cut`` characters at a relative ``place`` by ``token``."""
    for place, cut, token in edits:
        at = int(place * len(text))
        text = text[:at] + token + text[at + cut:]
    return text


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lockmirror-fuzz-") as name:
        yield Path(name)


def run_main(*args: str | Path) -> tuple[int, str]:
    """``lockmirror.cli.main`` in-process: exit status and stderr."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    return code, err.getvalue()


def assert_clean(code: int, stderr: str, name: str, allowed: set[int]) -> None:
    """Success, or lines that each name the file (mirror.yaml reports every problem
    on a line of its own); never a traceback or an internal error."""
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert code in allowed, (code, stderr)
    if code:
        lines = [line for line in stderr.splitlines() if not line.startswith("import: ")]
        assert lines, "an error without a message"
        for line in lines:
            assert re.match(rf"^(lockmirror: error: )?\S*{re.escape(name)}", line), line


@pytest.mark.timeout(240)
@FUZZ
@given(edits=EDITS)
def test_fuzz_mirror_yaml(edits: list[tuple[float, int, str]]) -> None:
    text = mutate((HOSTILE / "good.yaml").read_text(), edits)
    with scratch() as root:
        path = root / "mirror.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        code, stderr = run_main("validate", path)
        assert_clean(code, stderr, "mirror.yaml", {0, 2})
        assert sorted(p.name for p in root.iterdir()) == ["mirror.yaml"]


@pytest.mark.timeout(240)
@FUZZ
@given(edits=EDITS)
def test_fuzz_lockfile(edits: list[tuple[float, int, str]]) -> None:
    good = HOSTILE / "pylock.good.toml"
    with scratch() as root:
        path = root / "pylock.demo.toml"
        path.write_text(mutate(good.read_text(), edits), encoding="utf-8",
                        errors="surrogatepass")
        code, stderr = run_main("diff", good, path, "-o", root / "diff.txt")
        assert_clean(code, stderr, "pylock.demo.toml", {0, 2})
        assert (root / "diff.txt").exists() == (code == 0)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(10**19, 10**30) | st.floats()
    | st.sampled_from([math.inf, -math.inf, math.nan, 1e308]) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                               max_size=3),
    max_leaves=8)


@pytest.mark.timeout(240)
@FUZZ
@given(edits=st.lists(EDIT, max_size=2), key=st.sampled_from(["size", "sha256", "files", "kind", "name",
                                         "base_manifest_sha256", "tool_python", "format"]),
       value=JSON_VALUES)
def test_fuzz_bundle_json(edits: list[tuple[float, int, str]], key: str, value: object) -> None:
    """A bundle.json with one value replaced and then mutated as text. Its
    directory is named after its content whenever it parses, so the import
    gets past that check to everything behind it. Integrity refusals of a
    bundle (a hash that does not match) keep their exit status 1."""
    manifest = b'{\n "files": {},\n "format": "lockmirror-manifest/1"\n}\n'
    digest = hashlib.sha256(manifest).hexdigest()
    info = BundleInfo(name="demo", kind="full", index_manifest_sha256=digest,
                      base_manifest_sha256=None, lockmirror_version="0.1.0", tool_python=None,
                      files={MANIFEST_PATH: Entry(digest, len(manifest))})
    data = json.loads(info.dumps())
    if key in ("size", "sha256"):
        data["files"][MANIFEST_PATH][key] = value
    else:
        data[key] = value
    text = mutate(json.dumps(data, indent=1, sort_keys=True), edits)
    raw = text.encode("utf-8", "surrogatepass")
    try:
        top = BundleInfo.loads(raw, where="bundle.json").top
    except LockmirrorError:
        top = "lockmirror-demo-0123456789abcdef"
    with scratch() as root:
        bundle = write_bundle(root, raw, manifest, top)
        before = tree(root)
        code, stderr = run_main("import", bundle, "--into", root / "mirror")
        assert_clean(code, stderr, bundle.name, {0, 1, 2})
        if code:
            assert tree(root) == before


# --------------------------------------------------------------------------
# The last line of defence: what nothing converted still prints one line
# --------------------------------------------------------------------------


def _raising(error: BaseException) -> object:
    def run(*_args: object) -> None:
        raise error
    return run


def test_an_unexpected_exception_is_one_internal_error_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.commands import validate

    monkeypatch.delenv("LOCKMIRROR_TRACEBACK", raising=False)
    monkeypatch.setattr(validate, "run", _raising(RuntimeError("boom\nsecond line")))
    assert main(["validate"]) == 70
    assert capsys.readouterr().err.splitlines() == [
        ("lockmirror: internal error: RuntimeError: boom (a bug in lockmirror; "
         "set LOCKMIRROR_TRACEBACK=1 for the traceback)")]
    monkeypatch.setenv("LOCKMIRROR_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["validate"])


def test_an_unconverted_os_error_is_one_line_naming_the_file(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.commands import validate

    monkeypatch.setattr(validate, "run",
                        _raising(PermissionError(13, "Permission denied", "/srv/mirror.yaml")))
    assert main(["validate"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "lockmirror: error: /srv/mirror.yaml: Permission denied"]


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path) -> None:
    """Found by an outside tester: `lockmirror ... | head` (and git's textconv under a
    pager quit early) printed `lockmirror: error: Broken pipe`. The command now stops
    without a word, with the status a shell gives a process SIGPIPE stopped."""
    # names of at most 100 characters, the most mirror.yaml takes
    sets = "".join(f"  set{i}-{'x' * 90}: {{requirements: [six]}}\n" for i in range(2000))
    (tmp_path / "mirror.yaml").write_text(  # ~200 KiB of output: more than a pipe holds
        "version: 1\nsources: [{name: pypi, url: 'https://pypi.org/simple/'}]\n"
        "targets: {t: {python: '3.11', platforms: [manylinux_2_28_x86_64]}}\nsets:\n" + sets,
        encoding="utf-8")
    child = subprocess.Popen([sys.executable, "-m", "lockmirror", "sets"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=subprocess_env(offline=True))
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.readline().startswith(b"set0-")
    child.stdout.close()  # as head does after its lines
    try:  # stderr is to stay empty: waiting first cannot fill its pipe
        assert child.wait(timeout=120) == 141
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.stderr.read() == b""


def test_a_doit_action_turns_any_exception_into_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from doit.exceptions import TaskFailed  # type: ignore[import-untyped]

    from lockmirror.doit_tasks import _action

    monkeypatch.delenv("LOCKMIRROR_TRACEBACK", raising=False)
    result = _action(_raising(OverflowError("date value out of range")))()
    assert isinstance(result, TaskFailed)
    assert capsys.readouterr().err.splitlines() == [
        ("lockmirror: internal error: OverflowError: date value out of range (a bug in "
         "lockmirror; set LOCKMIRROR_TRACEBACK=1 for the traceback)")]
    result = _action(_raising(FileNotFoundError(2, "No such file or directory", "/x")))()
    assert isinstance(result, TaskFailed)
    assert capsys.readouterr().err == "lockmirror: error: /x: No such file or directory\n"


@pytest.mark.parametrize("state", [".lockmirror/advisories.json", ".lockmirror"])
def test_a_bundle_whose_index_names_the_mirrors_own_state_is_refused(tmp_path: Path,
                                                                      state: str) -> None:
    """``.lockmirror/`` holds the far side's own state (advisory snapshot,
    mirror.yaml, the manifest its last bundle pinned); an index manifest that
    names it or a file there would overwrite it: refused before anything is written."""
    entry = '{"sha256": "' + "0" * 64 + '", "size": 2}'
    manifest = (f'{{\n "files": {{\n  "{state}": ' + entry
                + '\n },\n "format": "lockmirror-manifest/1"\n}\n').encode()
    bundle = bundle_around_manifest(tmp_path, manifest)
    before = tree(tmp_path)
    done = run_cli("import", bundle, "--into", tmp_path / "mirror", cwd=tmp_path)
    assert_one_line(done, f"{bundle.name}:{bundle.stem}/{MANIFEST_PATH}",
                    f"names {state}, the mirror's own state")
    assert tree(tmp_path) == before


def test_an_error_keeps_its_own_line_breaks_and_escapes_a_hostile_place() -> None:
    """A conflict's chains keep their lines; a place or hint quoting a hostile
    name (a newline, an escape, a bidi override) is escaped whole."""
    from lockmirror.errors import LockmirrorError, error_text

    error = LockmirrorError("cannot resolve:\n  a==1 (required by the set core)",
                            where="bundle.tar:top/x\n\x1b[2Kimport: ok\u202e",
                            hint="see\nhere")
    assert error_text(error).splitlines() == [
        "lockmirror: error: bundle.tar:top/x\\n\\x1b[2Kimport: ok\\u202e: cannot resolve:",
        "  a==1 (required by the set core) (see\\nhere)"]
