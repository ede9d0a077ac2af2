"""mirror.yaml validation: the bundled file passes; each mistake is one line naming file:line:col."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lockmirror.cli import main
from lockmirror.config import load_config, parse_config
from lockmirror.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

BASE = """\
version: 1
name: testmirror

sources:
  - name: pypi
    url: https://pypi.org/simple/
    priority: 10

targets:
  linux-py311:
    python: "3.11"
    platforms: [manylinux_2_28_x86_64]
  mac-py312:
    python: "3.12"
    platforms: [macosx_11_0_arm64]

sets:
  core:
    requirements:
      - requests==2.31.0
      - celery==5.3.4
    targets: [linux-py311]
  tools:
    requirements:
      - click==8.1.7
"""


def line_of(text: str, fragment: str) -> int:
    """1-based number of the only line containing ``fragment``."""
    found = [n for n, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(found) == 1, (fragment, found)
    return found[0]


def broken(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


# (case id, file text, expected line (found by fragment), column, "path: message" regex)
CASES = [
    ("bad requirement", broken("celery==5.3.4", "celery=5.3.2"), "celery=5.3.2", 9,
     (r"sets\.core\.requirements\[1\]: 'celery=5\.3\.2' is not a valid requirement; "
     r"did you mean '=='\?")),
    ("unknown key", broken("    priority: 10", "    priorty: 10"), "priorty", 5,
     r"sources\[0\]\.priorty: unknown key; did you mean 'priority'\?$"),
    ("undefined target", broken("targets: [linux-py311]", "targets: [linux-py311, win-py311]"),
     "win-py311", 28,
     r"sets\.core\.targets\[1\]: unknown target 'win-py311' \(defined: linux-py311, mac-py312\)$"),
    ("duplicate set", broken("  tools:", "  core:"), "  core:\n    requirements:\n      - click", 3,
     r"sets\.core: duplicate key 'core' \(first given at line 18\)$"),
    ("duplicate set by case", broken("  tools:", "  Core:"), "Core:", 3,
     r"sets\.Core: duplicate set name \(same as 'core'\)$"),
    # pylock.web.core.toml is no PEP 751 file name: uv refuses it, pip reads it as
    # requirements (found by an outside tester)
    ("a dot in a set name", broken("  tools:", "  web.tools:"), "web.tools:", 3,
     r"sets\.web\.tools: set names may hold letters, digits, '_' and '-' only, starting with "
     r"a letter or digit \(no '\.'"),
    # names that are file names: `lock` failed with 'File name too long' (an outside tester)
    ("a set name of 300 characters", broken("  tools:", "  " + "s" * 300 + ":"), "s" * 300, 3,
     r"^sets\.s{20}\.\.\.\(300 characters\): a name of 300 characters; at most 100 \(it "
     r"becomes part of file names\); rename it in mirror\.yaml \(`doit lock` then removes the "
     r"old name's lockfile as an orphan\)$"),
    ("a target name of 101 characters", broken("  mac-py312:", "  " + "m" * 101 + ":"),
     "m" * 101, 3, r"^targets\.m{20}\.\.\.\(101 characters\): a name of 101 characters"),
    ("a mirror name of 101 characters", broken("name: testmirror", "name: " + "n" * 101),
     "n" * 101, 1, r"^name: a name of 101 characters; at most 100"),
    # PyYAML reads no plain key over 1024 characters and blamed a missing ':' at its end
    ("a key of 5000 characters", broken("  tools:", "  " + "k" * 5000 + ":"), "k" * 5000, 3,
     r"^a key of 5000 characters: YAML reads a key of at most 1024$"),
    # '-x' and '-rf' hold only letters and '-': the rule they break is their first character
    ("a set name starting with '-'", broken("  tools:", "  -x:"), "-x:", 3,
     r"^sets\.-x: set names may hold letters, digits, '_' and '-' only, starting with a letter "
     r"or digit"),
    ("a target name starting with '-'", broken("  mac-py312:", "  -rf:"), "-rf:", 3,
     r"^targets\.-rf: target names may hold letters, digits, '\.', '_' and '-' only, starting "
     r"with a letter or digit$"),
    # an escape in double quotes gives what the reader refuses written raw
    ("a NUL written as an escape", broken("  tools:\n", '  tools:\n    description: "a\\0b"\n'),
     "description:", 18, r"^sets\.tools\.description: holds the control character '\\x00'; "
                         r"mirror\.yaml takes none but tab and newline$"),
    ("an ESC written as an escape", broken("  tools:\n", '  tools:\n    description: '
                                           '"x\\e[31mred\\u202e"\n'),
     "description:", 18, r"^sets\.tools\.description: holds the control character '\\x1b'"),
    ("a control character in a key", broken("  tools:", '  "to\\x01ls":'), "to\\x01ls", 3,
     r"^sets\.to\\x01ls: holds the control character '\\x01'"),
    ("wrong type", broken("priority: 10", "priority: high"), "priority: high", 5,
     r"sources\[0\]\.priority: input should be a valid integer.*got str 'high'$"),
    ("a switch for a number", broken("priority: 10", "priority: yes"), "priority: yes", 5,
     r"sources\[0\]\.priority: input should be a valid integer.*got bool True "
     r"\(YAML reads true/false, yes/no and on/off as a boolean\)$"),
    ("no targets", broken("targets: [linux-py311]", "targets: []"), "targets: []", 5,
     r"sets\.core\.targets: is empty; give at least one item$"),
    ("wrong container", broken("      - click==8.1.7", "      click: 8.1.7"),
     "requirements:\n      click", 5,
     r"sets\.tools\.requirements: input should be a valid list, got dict"),
    ("yaml syntax", broken("platforms: [macosx_11_0_arm64]", "platforms: [macosx_11_0_arm64"),
     "sets:", 5,
     (r"YAML syntax error: expected ',' or '\]', but got ':' \(while parsing a flow sequence "
     r"that starts at line 15, column 16\)$")),
    ("tab indent", broken('    python: "3.12"', '\tpython: "3.12"'), '\tpython: "3.12"', 1,
     (r"YAML syntax error: .*found character '\\t' that cannot start any token "
      r"\(a tab: YAML allows only spaces for indentation and after ':'\)$")),
    # the hint said "YAML indents with spaces" of a tab that indents nothing (found by an
    # outside tester)
    ("tab after a colon", broken("    priority: 10", "    priority:\t10"), "priority:\t10", 14,
     (r"YAML syntax error: .*found character '\\t' that cannot start any token "
      r"\(a tab: YAML allows only spaces for indentation and after ':'\)$")),
    # the parser notices the missing ':' at the next line's key (found by an outside tester)
    ("missing colon", broken("sets:\n", "policy:\n  yanked deny\n  vulnerabilities: warn\n"
                                         "sets:\n"), "vulnerabilities: warn", 18,
     (r"YAML syntax error: mapping values are not allowed here \(a missing ':', or a ':' with "
      r"no space after it, on this line or the one before\? a value holding ': ' needs "
      r"quotes\)$")),
    ("indentation", broken("  tools:", "   tools:"), "   tools:", 4,
     (r"YAML syntax error: expected <block end>.* \(this line is indented more or less "
      r"than the lines it belongs with\)$")),
    ("platform tag typo", broken("[manylinux_2_28_x86_64]", "[manylinux_2_28_x86-64]"),
     "x86-64", 17,
     (r"targets\.linux-py311\.platforms\[0\]: 'manylinux_2_28_x86-64' is not a platform tag "
      r"\(manylinux_X_Y_ARCH, .*\); did you mean 'manylinux_2_28_x86_64'\?$")),
    ("a variable in a flow mapping", broken("  tools:\n", "  tools: {x: ${X:-1}}\n  t2:\n"),
     "tools: {x", 15,
     r"YAML syntax error: .*\(\$\{VAR\} inside \{\.\.\.\}: YAML reads its '\{' as a mapping; "
     r"write that mapping in block style, one key per line\)$"),
    ("a switch for a policy word", broken("sets:\n", "policy:\n  yanked: no\nsets:\n"),
     "yanked: no", 3,
     r"policy\.yanked: input should be 'deny' or 'warn', got False \(YAML reads true/false, "
     r"yes/no and on/off as a boolean\)$"),
    # lock took PyPI's newest six instead of the file named (found by an outside tester)
    ("a direct URL requirement",
     broken("click==8.1.7", "six @ https://example.com/six-1.10.0-py2.py3-none-any.whl"),
     "six @", 9,
     r"sets\.tools\.requirements\[0\]: 'six @ https://example\.com/six-1\.10\.0-py2\.py3-none-any"
     r"\.whl' is a direct URL reference, which lockmirror does not support \(pin name==version "
     r"from a declared source\)$"),
    # an ABI that cannot be the target's passed validate, and lock failed naming some
    # unrelated package (found by an outside tester)
    ("an ABI of another Python", broken('python: "3.12"', 'python: "3.12"\n    abi: cp311'),
     "abi: cp311", 5,
     r"targets\.mac-py312\.abi: 'cp311' is an ABI of Python 3\.11, not of this target's python "
     r"\"3\.12\" \(use cp312, abi3 or none, or leave abi out\)$"),
    # CPython 3.7 and older have no cpXY ABI: `abi: cp36` locked sdists only (found by an
    # outside tester)
    ("a 3.8-style ABI on CPython 3.6",
     broken('python: "3.12"', 'python: "3.6"\n    abi: cp36'), "abi: cp36", 5,
     r"targets\.mac-py312\.abi: 'cp36' is no ABI of CPython 3\.6: 3\.7 and older report cp36m, "
     r"or cp36dm for a debug build \(use cp36m, abi3 or none, or leave abi out\)$"),
    ("a 3.8-style ABI on CPython 3.7.9",
     broken('python: "3.12"', 'python: "3.7.9"\n    abi: cp37d'), "abi: cp37d", 5,
     r"targets\.mac-py312\.abi: 'cp37d' is no ABI of CPython 3\.7: .* \(use cp37m, abi3"),
    # and 3.8 and newer have no cpXYm: `abi: cp38m` passed and locked sdists only (found by
    # an outside re-tester)
    ("a 3.7-style ABI on CPython 3.8",
     broken('python: "3.12"', 'python: "3.8"\n    abi: cp38m'), "abi: cp38m", 5,
     r"targets\.mac-py312\.abi: 'cp38m' is no ABI of CPython 3\.8: 3\.8 and newer report cp38 "
     r"\(no 'm'\), or cp38d for a debug build \(use cp38, abi3 or none, or leave abi out\)$"),
    ("a 3.7-style debug ABI on CPython 3.11",
     broken('python: "3.12"', 'python: "3.11"\n    abi: cp311dm'), "abi: cp311dm", 5,
     r"targets\.mac-py312\.abi: 'cp311dm' is no ABI of CPython 3\.11: .* \(use cp311, abi3"),
    ("a CPython ABI on PyPy",
     broken('python: "3.12"', 'python: "3.12"\n    implementation: pp\n    abi: cp312'),
     "abi: cp312", 5,
     r"targets\.mac-py312\.abi: 'cp312' is a CPython ABI, and this target's implementation is pp "
     r"\(use pypy312_pp73 or none, or leave abi out\)$"),
    ("a PyPy ABI on CPython", broken('python: "3.12"', 'python: "3.12"\n    abi: pypy312_pp73'),
     "abi: pypy312_pp73", 5,
     r"targets\.mac-py312\.abi: 'pypy312_pp73' is a PyPy ABI, and this target's implementation "
     r"is cp \(use cp312, abi3 or none, or leave abi out\)$"),
    # validate passed it, and every other command failed naming no line (found by an
    # outside tester)
    ("the tool set's name", broken("  tools:", "  lockmirror-tool:"), "lockmirror-tool:", 3,
     r"sets\.lockmirror-tool: the set name 'lockmirror-tool' is lockmirror's own \(its wheels "
     r"for the bundle's tool/\); rename that set$"),
    ("the tool set's name in capitals", broken("  tools:", "  LockMirror-Tool:"),
     "LockMirror-Tool:", 3,
     r"sets\.LockMirror-Tool: the set name 'lockmirror-tool' is lockmirror's own \(its wheels "
     r"for the bundle's tool/\), in any letter case; rename that set$"),
    # a destination named like a kind lost its name, and pointed at the publish: line
    # (found by an outside tester)
    ("a destination named s3", broken("sets:\n", "publish:\n  s3: {kind: s3, prefix: pypi}\n"
                                      "sets:\n"), "s3: {kind", 3,
     r"publish\.s3\.bucket: required key is missing$"),
    ("a destination named upload",
     broken("sets:\n", "publish:\n  upload: {kind: s3, bucket: bbb, regoin: x}\nsets:\n"),
     "regoin", 35, r"publish\.upload\.regoin: unknown key; did you mean 'region'\?$"),
    ("a destination named directory",
     broken("sets:\n", "publish:\n  directory:\n    kind: upload\n    url: ftp://x\nsets:\n"),
     "ftp://x", 5, r"publish\.directory\.url: 'ftp://x' is not an http\(s\) URL$"),
    # validate passed it, and lock said no source has 'requests' (check the spelling)
    ("a plain http source", broken("https://pypi.org/simple/", "http://pypi.org/simple/"),
     "http://pypi.org", 5,
     r"sources\[0\]\.url: 'http://pypi\.org/simple/' is plain http: anyone on the path can "
     r"change what the index lists and serves \(use https, or say `allow_http: true` for a "
     r"network you trust\)$"),
    # a scheme in capitals was 'not an http(s) or file URL' first (RFC 3986: it is http)
    ("a plain http source in capitals", broken("https://pypi.org/simple/",
                                               "HTTP://pypi.org/simple/"),
     "HTTP://pypi.org", 5,
     r"sources\[0\]\.url: 'HTTP://pypi\.org/simple/' is plain http: anyone on the path can "
     r"change what the index lists and serves \(use https, or say `allow_http: true` for a "
     r"network you trust\)$"),
    # a newcomer's slips said NoneType, "after validation" and a regular expression
    ("an empty set", broken("  tools:\n    requirements:\n      - click==8.1.7\n", "  tools:\n"),
     "tools:", 3, r"sets\.tools: is empty; write its keys under it, indented$"),
    ("empty requirements", broken("requirements:\n      - click==8.1.7\n",
                                  "requirements:  # none yet\n"), "# none yet", 5,
     r"sets\.tools\.requirements: is empty; write its items under it, one '- item' a line$"),
    ("an empty requirements list", broken("      - click==8.1.7\n", "").replace(
        "  tools:\n    requirements:\n", "  tools:\n    requirements: []\n"), "requirements: []",
     5, r"sets\.tools\.requirements: is empty; give at least one item$"),
    ("a name with a space", broken("name: testmirror", "name: test mirror"), "name: test", 1,
     r"^name: 'test mirror' may hold letters, digits, '\.', '_' and '-' only, starting with a "
     r"letter or digit$"),
    ("a python version as a tag", broken('python: "3.11"', "python: py311"), "python: py311", 5,
     r"targets\.linux-py311\.python: 'py311' is not a Python version like '3\.11' or "
     r"'3\.11\.4'; did you mean '3\.11'\?$"),
    ("a quoted switch", broken("      - click==8.1.7\n", "      - click==8.1.7\n"
                               "    prereleases: \"true\"\n"), "prereleases", 5,
     r"sets\.tools\.prereleases: input should be a valid boolean, got the quoted word 'true'; "
     r"drop the quotes$"),
    ("requirements as one string", broken("requirements:\n      - click==8.1.7",
                                          "requirements: click==8.1.7"), "requirements: click",
     5, r"sets\.tools\.requirements: input should be a list, got the text 'click==8\.1\.7'; "
        r"write a list: - name==version$"),
    ("a set's targets markers cannot tell apart",
     broken("  mac-py312:\n", "  linux-3119:\n    python: \"3.11.9\"\n"
                              "    platforms: [manylinux_2_28_x86_64]\n  mac-py312:\n"),
     "  tools:", 3, r"sets\.tools: set 'tools': targets 'linux-py311' and 'linux-3119' cannot "
                    r"be told apart by a lockfile marker"),
    ("missing variable", broken("https://pypi.org/simple/", "${PRIVATE_INDEX_URL}/simple/"),
     "PRIVATE_INDEX_URL", 5,
     (r"sources\[0\]\.url: environment variable PRIVATE_INDEX_URL is not set; "
     r"export PRIVATE_INDEX_URL=\.\.\. or write \$\{PRIVATE_INDEX_URL:-default\}$")),
]


def expected_line(text: str, fragment: str) -> int:
    if "\n" in fragment:  # a multi-line fragment: the line where it starts
        return text[: text.index(fragment)].count("\n") + 1
    return line_of(text, fragment)


def test_bundled_mirror_yaml_validates() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lockmirror", "validate", str(REPO / "mirror.yaml")],
        capture_output=True, text=True, check=False, cwd=REPO,
        env={"PATH": "/usr/bin:/bin"})  # no LOCKMIRROR_* variables: defaults must do
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{REPO / 'mirror.yaml'}: ok: 3 sets, 2 targets, 1 source"
    loaded = load_config(REPO / "mirror.yaml", environ={})
    assert loaded.config.sources[0].url == "https://pypi.org/simple/"


@pytest.mark.parametrize(("text", "fragment", "column", "pattern"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_each_mistake_is_one_line_with_its_position(
        text: str, fragment: str, column: int, pattern: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PRIVATE_INDEX_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    Path("mirror.yaml").write_text(text, encoding="utf-8")
    status = main(["validate", "mirror.yaml"])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    [line] = captured.err.splitlines()
    line = line.removeprefix("lockmirror: error: ")
    position = f"mirror.yaml:{expected_line(text, fragment)}:{column}: "
    assert line.startswith(position), line
    assert re.search(pattern, line[len(position):]), line
    assert "Traceback" not in captured.err


def test_a_mistyped_key_names_the_key_it_meant_and_the_required_one_it_left_missing(
) -> None:
    """Found by an outside tester: `platform:`, `requirments:` and `pasword_env:` got
    `unknown key` and `required key is missing`, but no "did you mean" as values do."""
    text = (BASE.replace("    priority: 10\n", "    priority: 10\n    pasword_env: PW\n")
            .replace("platforms: [macosx_11_0_arm64]", "platform: [macosx_11_0_arm64]")
            .replace("  tools:\n    requirements:", "  tools:\n    requirments:")
            .replace("  core:\n", "  core:\n    prerelease: true\n"))
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    line = {word: line_of(text, word) for word in ("pasword_env", "platform:", "requirments",
                                                   "mac-py312:", "tools:", "prerelease")}
    assert raised.value.problems == [
        f"mirror.yaml:{line['pasword_env']}:5: sources[0].pasword_env: unknown key; "
        "did you mean 'password_env'?",
        f"mirror.yaml:{line['mac-py312:']}:3: targets.mac-py312.platforms: required key is "
        f"missing (did you write 'platform' at line {line['platform:']}?)",
        f"mirror.yaml:{line['platform:']}:5: targets.mac-py312.platform: unknown key; "
        "did you mean 'platforms'?",
        f"mirror.yaml:{line['prerelease']}:5: sets.core.prerelease: unknown key; "
        "did you mean 'prereleases'?",
        f"mirror.yaml:{line['tools:']}:3: sets.tools.requirements: required key is missing "
        f"(did you write 'requirments' at line {line['requirments']}?)",
        f"mirror.yaml:{line['requirments']}:5: sets.tools.requirments: unknown key; "
        "did you mean 'requirements'?",
    ]
    # a key like no valid one gets no guess
    with pytest.raises(ConfigError) as raised:
        parse_config(BASE.replace("    priority: 10\n", "    zzzz: 1\n    priority: 10\n"))
    assert raised.value.problems[0].endswith("sources[0].zzzz: unknown key")


def test_cli_subprocess_reports_the_line_without_traceback(tmp_path: Path) -> None:
    text = broken("celery==5.3.4", "celery=5.3.2")
    (tmp_path / "mirror.yaml").write_text(text, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "lockmirror", "validate"],
                            capture_output=True, text=True, check=False, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        (f"lockmirror: error: mirror.yaml:{line_of(text, 'celery=5.3.2')}:9: "
        "sets.core.requirements[1]: 'celery=5.3.2' is not a valid requirement; did you mean "
        "'=='? (Expected semicolon (after name with no version specifier) or end)")]


@pytest.mark.parametrize("front_door", ["validate", "lock --check", "doit lock"])
def test_every_front_door_reports_a_mistake_at_its_line(
        front_door: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A set named like lockmirror's own passed `validate`; `lock --check` and doit then
    named the file by its absolute path and no line (found by an outside tester)."""
    text = broken("  tools:", "  lockmirror-tool:")
    monkeypatch.chdir(tmp_path)
    Path("mirror.yaml").write_text(text, encoding="utf-8")
    if front_door == "doit lock":  # dodo.py loads (doit list works); the lock task says it
        [task] = runpy.run_path(str(REPO / "dodo.py"))["task_lock"]()
        assert task["actions"][0]() is not None  # a TaskFailed: doit exits 1
    else:
        assert main(front_door.split()) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"lockmirror: error: mirror.yaml:{line_of(text, 'lockmirror-tool:')}:3: "
        "sets.lockmirror-tool: the set name 'lockmirror-tool' is lockmirror's own (its wheels "
        "for the bundle's tool/); rename that set"]


def test_every_problem_is_reported_in_one_pass() -> None:
    text = broken("    priority: 10", "    priorty: 10").replace("celery==5.3.4", "celery=5.3.2")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "mirror.yaml", environ={})
    assert [p.split(": ")[0] for p in caught.value.problems] == [
        f"mirror.yaml:{line_of(text, 'priorty')}:5",
        f"mirror.yaml:{line_of(text, 'celery=5.3.2')}:9"]
    assert caught.value.exit_code == 2


def test_targets_that_overlap_are_reported_beside_a_broken_target() -> None:
    # the overlap check sees the targets the schema passed, even when the file has problems
    text = broken("  mac-py312:\n", "  linux-3119:\n    python: \"3.11.9\"\n"
                                     "    platforms: [manylinux_2_28_x86_64]\n"
                                     "  linux-bad:\n    python: \"3.11\"\n"
                                     "    platforms: [manylinux_2_28_x86-64]\n  mac-py312:\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "mirror.yaml", environ={})
    assert [p.split(": ")[1] for p in caught.value.problems] == [
        "targets.linux-bad.platforms[0]", "sets.tools"]
    assert "'linux-py311' and 'linux-3119' cannot be told apart" in caught.value.problems[1]
    assert "linux-bad'" not in caught.value.problems[1]


def test_variables_are_substituted(tmp_path: Path) -> None:
    text = broken("https://pypi.org/simple/", "${PRIVATE_INDEX_URL:-https://fallback.example/simple}")
    config = parse_config(text, environ={})
    assert config.sources[0].url == "https://fallback.example/simple/"
    config = parse_config(text, environ={"PRIVATE_INDEX_URL": "https://nexus.example/simple"})
    assert config.sources[0].url == "https://nexus.example/simple/"
    # a plain scalar is typed after the substitution, as YAML types it written out;
    # a quoted one stays text (and a switch stays strict about it)
    numbered = broken("priority: 10", "priority: ${PRIORITY:-10}")
    assert parse_config(numbered, environ={"PRIORITY": "5"}).sources[0].priority == 5
    assert parse_config(numbered, environ={}).sources[0].priority == 10
    with pytest.raises(ConfigError, match=r"priority: input should be a valid integer"):
        parse_config(broken("priority: 10", 'priority: "${PRIORITY:-10}"'), environ={})


def test_a_name_that_yaml_reads_as_a_boolean_or_number_stays_as_written() -> None:
    """`no:` was the set False (pylock.False.toml), `3.10:` the target 3.1, and a
    destination `on:` publish:True (found by an outside tester)."""
    config = parse_config(textwrap.dedent("""\
        version: 1
        sources: [{name: pypi, url: "https://pypi.org/simple/"}]
        targets:
          "3.10": {python: "3.10", platforms: [manylinux_2_28_x86_64]}
          3.11: {python: "3.11", platforms: [manylinux_2_28_x86_64]}
        sets:
          no: {requirements: [six], targets: ["3.10"]}
          off: {requirements: [idna], targets: ["3.11"]}
        publish:
          on: {kind: directory, path: www}
        """))
    assert list(config.sets) == ["no", "off"] and list(config.targets) == ["3.10", "3.11"]
    assert list(config.publish) == ["on"]
    # a key YAML would read as a date (an invalid one, too) is a name like any other
    dated = parse_config(textwrap.dedent("""\
        version: 1
        sources: [{name: pypi, url: "https://pypi.org/simple/"}]
        targets: {lin: {python: "3.11", platforms: [manylinux_2_28_x86_64]}}
        sets: {2024-02-30: {requirements: [six]}}
        """))
    assert list(dated.sets) == ["2024-02-30"]


def test_destination_values_and_empty_names_are_refused_at_their_line() -> None:
    """Each validated, then failed at publish or fetch without the mirror.yaml line (an
    empty store path filled the project's own directory; found by an outside tester)."""
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent("""\
            version: 1
            sources: [{name: "", url: "https://pypi.org/simple/", username_env: ""}]
            targets: {lin: {python: "3.11", platforms: [manylinux_2_28_x86_64]}}
            sets: {core: {requirements: [six]}}
            paths: {store: ""}
            publish:
              a: {kind: upload, url: "nexus.example/x"}
              b: {kind: s3, bucket: "My_Bucket"}
              c: {kind: directory, path: ""}
            """))
    problems = [p.split(": ", 1)[1] for p in caught.value.problems]
    assert problems == [
        "sources[0].name: string should have at least 1 character",
        "sources[0].username_env: '' is not an environment variable's name (letters, digits "
        "and '_', not starting with a digit)",
        "paths.store: string should have at least 1 character",
        "publish.a.url: 'nexus.example/x' is not an http(s) URL",
        "publish.b.bucket: 'My_Bucket' is not an S3 bucket name (3 to 63 lower-case letters, "
        "digits, '.' and '-')",
        "publish.c.path: string should have at least 1 character",
    ], problems


def test_an_abi_that_is_no_abi_tag_is_refused() -> None:
    """`abi: banana` validated and locked pure-Python wheels only (found by an outside
    tester)."""
    text = textwrap.dedent("""\
        version: 1
        sources: [{name: pypi, url: "https://pypi.org/simple/"}]
        targets: {lin: {python: "PY", implementation: IMPL, abi: ABI,
                        platforms: [manylinux_2_28_x86_64]}}
        sets: {core: {requirements: [six]}}
        """)

    def config(python: str, implementation: str, abi: str) -> str:
        return text.replace("PY", python).replace("IMPL", implementation).replace("ABI", abi)

    with pytest.raises(ConfigError, match=r"targets\.lin\.abi: 'banana' is not an ABI tag"):
        parse_config(config("3.11", "cp", "banana"))
    for python, implementation, abi in [
            ("3.11", "cp", "cp311"), ("3.13", "cp", "cp313t"), ("3.11.4", "cp", "cp311d"),
            ("3.12", "cp", "abi3"), ("3.12", "cp", "none"), ("3.10", "pp", "pypy310_pp73"),
            ("3.11", "pp", "pypy311_pp74"), ("3.10", "pp", "none"), ("3.6", "cp", "cp36m"),
            ("3.7", "cp", "cp37dm"), ("3.6", "cp", "abi3")]:
        parsed = parse_config(config(python, implementation, abi))
        assert parsed.targets["lin"].abi == abi


def test_an_unquoted_python_version_says_to_quote_it() -> None:
    text = textwrap.dedent("""\
        version: 1
        sources: [{name: pypi, url: "https://pypi.org/simple/"}]
        targets: {lin: {python: 3.10, platforms: [manylinux_2_28_x86_64]}}
        sets: {core: {requirements: [six]}}
        """)
    with pytest.raises(ConfigError, match=r"targets\.lin\.python: write the version quoted, "
                                          r"python: \"3\.NN\" \(unquoted, YAML read it as "
                                          r"the number 3\.1\)"):
        parse_config(text)


def test_missing_file_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^nowhere\.yaml: no such file") as caught:
        load_config("nowhere.yaml")
    assert f"(looked in {Path.cwd()})" in str(caught.value)  # run from the wrong directory


@pytest.mark.parametrize(("tag", "nearest"), [
    ("manylinux_2_28_x86_64", None), ("manylinux2014_aarch64", None), ("musllinux_1_2_armv7l", None),
    ("macosx_11_0_universal2", None), ("win_arm64", None), ("linux_x86_64", None), ("any", None),
    ("manylinux_2_28_x86-64", "manylinux_2_28_x86_64"), ("Manylinux2014-aarch64",
     "manylinux2014_aarch64"), ("musllinux_1_2_arm64", "musllinux_1_2_aarch64"),
    ("macosx_11_0_aarch64", "macosx_11_0_arm64"), ("win-amd64", "win_amd64"),
    ("manylinux_2_17_amd64", "manylinux_2_17_x86_64"), ("manylinux2010_aarch64", ""),
    ("manylinux_2_28", ""), ("solaris", ""),
])
def test_platform_tags_follow_the_known_grammars(tag: str, nearest: str | None) -> None:
    from lockmirror.platform_tags import nearest_platform, platform_problem

    problem = platform_problem(tag)
    if nearest is None:
        assert problem is None
        return
    assert problem is not None and problem.startswith(f"'{tag}' is not a platform tag")
    assert (nearest_platform(tag) or "") == nearest
    assert (f"did you mean '{nearest}'?" in problem) == bool(nearest)


def test_validate_names_the_line_of_a_credential_variable_that_is_not_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Offline a warning (a CI job may validate without the secret); with
    --online, where the source is asked, an error; either way with its line."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IDX_TOKEN", raising=False)
    text = ("version: 1\nsources:\n  - name: private\n    url: https://idx.example/simple/\n"
            "    password_env: IDX_TOKEN\ntargets:\n"
            "  linux: {python: '3.11', platforms: [manylinux_2_17_x86_64]}\n"
            "sets:\n  core: {requirements: [six]}\n")
    Path("mirror.yaml").write_text(text, encoding="utf-8")
    assert main(["validate", "mirror.yaml"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("mirror.yaml: ok: ")
    assert captured.err == ("lockmirror: warning: mirror.yaml:5:5: sources[0].password_env: "
                            "environment variable IDX_TOKEN is not set (lock and fetch need it "
                            "for this source's credentials)\n")
    assert main(["validate", "mirror.yaml", "--online"]) == 2
    assert capsys.readouterr().err.startswith("lockmirror: error: mirror.yaml:5:5: ")
    monkeypatch.setenv("IDX_TOKEN", "t0ken")
    assert main(["validate", "mirror.yaml"]) == 0
    assert capsys.readouterr().err == ""


def test_credentials_written_into_a_source_url_are_refused_at_their_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: `validate` and every stage took a source URL with
    user:password@ written in mirror.yaml without a word. The line is named, never the
    secret; a URL a ${VAR} fills in whole comes from the environment, and passes."""
    monkeypatch.chdir(tmp_path)
    text = broken("https://pypi.org/simple/", "https://ci:s3cr3t@nexus.example/simple/")
    Path("mirror.yaml").write_text(text, encoding="utf-8")
    assert main(["validate"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"lockmirror: error: mirror.yaml:{line_of(text, 's3cr3t')}:5: sources[0].url: a user "
        "name or password is written into the URL (mirror.yaml never holds credentials); name "
        "the environment variables holding them in the source's username_env and password_env"]
    # variables written into the userinfo, or in a default, are written too
    for url in ("https://${CI_USER}:${CI_TOKEN}@nexus.example/simple/",
                "${NEXUS_URL:-https://ci:s3cr3t@nexus.example/simple/}"):
        with pytest.raises(ConfigError) as raised:
            parse_config(broken("https://pypi.org/simple/", url),
                         environ={"CI_USER": "ci", "CI_TOKEN": "s3cr3t"})
        (problem,) = raised.value.problems
        assert "sources[0].url: a user name or password is written" in problem
        assert "s3cr3t" not in problem
    from_env = broken("https://pypi.org/simple/", "${NEXUS_URL}")
    config = parse_config(from_env, environ={
        "NEXUS_URL": "https://ci:s3cr3t@nexus.example/simple/"})
    assert config.sources[0].url == "https://ci:s3cr3t@nexus.example/simple/"
    # other messages about such a URL leave the secret out too
    with pytest.raises(ConfigError) as raised:
        parse_config(broken("https://pypi.org/simple/", "ftp://ci:s3cr3t@nexus.example/simple/")
                     .replace("priority: 10", "files_url: ['https://ci:s3cr3t@cdn.example/']"))
    assert raised.value.problems[0].endswith(
        "sources[0].url: 'ftp://nexus.example/simple/' is not an http(s) URL")
    assert raised.value.problems[-1].endswith(
        "sources[0].files_url: 'https://cdn.example/' carries a user name or password; "
        "files_url takes none")
    assert not any("s3cr3t" in problem for problem in raised.value.problems)


@pytest.mark.parametrize(("change", "says"), [
    (lambda text: "\ufeff" + text, "not TOML 1.0, which installers read: "),
    (lambda text: text + '\n[tool.review]\nnote = """a\r\nb"""\n',
     "installers read other values from it than lockmirror"),
], ids=["byte-order mark", "carriage return in a multi-line string"])
def test_validate_reads_a_lockfile_as_lock_check_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        change: Any, says: str) -> None:
    """validate printed ok for a lockfile starting with a byte-order mark that `lock
    --check` refuses (installers' TOML parser does): it reads lockfiles with the same
    reader, offline, and says which file."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "mirror.yaml", "mirror.yaml")
    shutil.copytree(REPO / "lockfiles", "lockfiles")
    assert main(["validate"]) == 0
    capsys.readouterr()
    path = tmp_path / "lockfiles" / "pylock.core.toml"
    path.write_bytes(change(path.read_text(encoding="utf-8")).encode("utf-8"))
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lockmirror: error: lockfiles installers would read differently:\n")
    assert f"  {path}: {says}" in err


def test_a_plain_http_source_passes_when_allowed_or_on_a_loopback_host() -> None:
    for url, extra in (("http://pypi.org/simple/", "\n    allow_http: true"),
                       ("http://127.0.0.1:8080/simple/", ""), ("http://localhost/simple/", "")):
        config = parse_config(broken("url: https://pypi.org/simple/", f"url: {url}{extra}"))
        assert config.sources[0].url == url


def test_a_url_scheme_in_capitals_is_the_scheme_in_lower_case() -> None:
    """Schemes are case-insensitive (RFC 3986): `HTTPS://` is https, and `HTTP://` is
    http, refused or allowed as `http://` is."""
    for written, extra in (("HTTPS://pypi.org/simple/", ""), ("Https://pypi.org/simple/", ""),
                           ("HTTP://127.0.0.1:8080/simple/", ""),
                           ("HTTP://pypi.org/simple/", "\n    allow_http: true")):
        config = parse_config(broken("url: https://pypi.org/simple/",
                                     f"url: {written}{extra}"))
        scheme, rest = written.split(":", 1)
        assert config.sources[0].url == f"{scheme.lower()}:{rest}"
    config = parse_config(broken("priority: 10", "priority: 10\n    files_url: "
                                 "[HTTPS://files.example.org/packages]\n"
                                 "policy:\n  advisory_sources:\n    - kind: osv-api\n"
                                 "      url: HTTPS://osv.example.org/"))
    assert config.sources[0].files_url == ["https://files.example.org/packages/"]
    assert config.policy.advisory_sources[0].url == "https://osv.example.org/"


@pytest.mark.parametrize(("tag", "meant"), [
    ("manylinux_2_28", "'manylinux_2_28_x86_64' or 'manylinux_2_28_aarch64'"),
    ("manylinux2014", "'manylinux2014_x86_64' or 'manylinux2014_aarch64'"),
    ("musllinux_1_2", "'musllinux_1_2_x86_64' or 'musllinux_1_2_aarch64'"),
    ("macosx_11_0", "'macosx_11_0_x86_64' or 'macosx_11_0_arm64'"),
    ("manylinux1", "'manylinux1_x86_64' or 'manylinux1_i686'"),
])
def test_a_platform_tag_without_its_architecture_names_the_usual_two(tag: str, meant: str
                                                                     ) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(broken("[manylinux_2_28_x86_64]", f"[{tag}]"))
    (problem,) = raised.value.problems
    assert problem.endswith(f"; did you mean {meant}?"), problem


def test_a_linux_platform_tag_is_a_warning_from_validate_and_lock_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """linux_x86_64 was taken without a word, and lock took sdists of most binary
    packages (PyPI has no linux_* wheels); such tags are right for privately built
    wheels, so it is a warning with its line, printed once, not an error."""
    monkeypatch.chdir(tmp_path)
    text = broken("[manylinux_2_28_x86_64]", "[linux_x86_64]").replace(
        "targets: [linux-py311]", "targets: [linux-py311]\n  more:\n    requirements: [six]\n"
        "    targets: [linux-py311]")
    Path("mirror.yaml").write_text(text, encoding="utf-8")
    warning = (f"lockmirror: warning: mirror.yaml:{line_of(text, 'linux_x86_64')}:17: "
               "targets.linux-py311.platforms[0]: 'linux_x86_64' matches only privately built "
               "wheels: PyPI carries no linux_* wheels, so most binary packages lock as sdists; "
               "for PyPI wheels use e.g. manylinux_2_28_x86_64")
    assert main(["validate"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("mirror.yaml: ok: ")
    assert captured.err.splitlines() == [warning]
    assert main(["lock", "--check"]) == 1  # nothing locked yet: stale, after the warning
    err = capsys.readouterr().err
    assert err.splitlines()[0] == warning
    assert err.count("warning: ") == 1  # two sets lock for the target: said once


def test_a_key_of_a_target_indented_a_level_too_little_says_so() -> None:
    """`platforms:` under `targets:` gave two errors about a target named platforms."""
    text = broken("    platforms: [manylinux_2_28_x86_64]", "  platforms: [manylinux_2_28_x86_64]")
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    stray = line_of(text, "  platforms: [manylinux")
    assert [p.split(": ", 1)[1] for p in raised.value.problems] == [
        f"targets.linux-py311.platforms: required key is missing (is 'platforms' at line "
        f"{stray} meant to be indented under it?)",
        "targets.platforms: input should be a mapping (key: value), got list "
        "['manylinux_2_28_x86_64']; is it indented under the target above?"]
    text = broken("  tools:\n    requirements:", "  tools:\n  requirements:")
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    assert raised.value.problems[-1].endswith("; is it indented under the set above?")


def test_a_target_or_set_at_column_1_says_to_indent_it_under_its_section() -> None:
    """A target written at column 1 under `targets:` is a top-level key to YAML: it was
    'unknown key' with no word of the section it left empty."""
    text = broken("  linux-py311:\n    python: \"3.11\"\n    platforms: [manylinux_2_28_x86_64]\n"
                  "  mac-py312:\n    python: \"3.12\"\n    platforms: [macosx_11_0_arm64]\n",
                  "linux-py311:\n  python: \"3.11\"\n  platforms: [manylinux_2_28_x86_64]\n"
                  "mac-py312:\n  python: \"3.12\"\n  platforms: [macosx_11_0_arm64]\n")
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    section, first, second = (expected_line(text, key) for key in ("targets:\n", "linux-py311:",
                                                                    "mac-py312:"))
    assert raised.value.problems[:3] == [
        f"mirror.yaml:{section}:1: targets: is empty; write its keys under it, indented "
        f"(is 'linux-py311' at line {first} meant to be indented under it?)",
        f"mirror.yaml:{first}:1: linux-py311: unknown key; is it a target meant to be "
        f"indented under 'targets:' at line {section}?",
        f"mirror.yaml:{second}:1: mac-py312: unknown key; is it a target meant to be "
        f"indented under 'targets:' at line {section}?"]
    text = broken("  tools:\n    requirements:\n      - click", "tools:\n  requirements:\n    - click")
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    assert raised.value.problems == [
        f"mirror.yaml:{line_of(text, 'tools:')}:1: tools: unknown key; is it a set meant to be "
        f"indented under 'sets:' at line {line_of(text, 'sets:')}?"]


def test_a_file_that_is_not_utf8_says_to_save_it_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "mirror.yaml"
    path.write_bytes(BASE.replace("testmirror", "caf\u00e9").encode("latin-1"))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).endswith("not UTF-8 (byte 0xe9); save it as UTF-8")


def test_lock_names_every_unset_credential_variable_with_its_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """lock named only the first unset variable, and no line (validate gives the line):
    every one, each with its line, before a source is asked."""
    from lockmirror.errors import LockmirrorError
    from lockmirror.net.http import source_auth

    monkeypatch.chdir(tmp_path)
    for name in ("IDX_USER", "IDX_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    text = ("version: 1\nsources:\n  - name: private\n    url: https://idx.example/simple/\n"
            "    username_env: IDX_USER\n    password_env: IDX_TOKEN\ntargets:\n"
            "  linux: {python: '3.11', platforms: [manylinux_2_17_x86_64]}\n"
            "sets:\n  core: {requirements: [six]}\n")
    Path("mirror.yaml").write_text(text, encoding="utf-8")
    for command in (["lock"], ["lock", "--check"]):
        assert main(command) == 2
        assert capsys.readouterr().err.splitlines() == [
            "mirror.yaml:5:5: sources[0].username_env: environment variable IDX_USER is not "
            "set (lock and fetch need it for this source's credentials)",
            "mirror.yaml:6:5: sources[0].password_env: environment variable IDX_TOKEN is not "
            "set (lock and fetch need it for this source's credentials)"]
    with pytest.raises(LockmirrorError) as raised:  # fetch's door: every one too
        source_auth(load_config("mirror.yaml").config.sources, {})
    assert "environment variables IDX_USER and IDX_TOKEN are not set" in str(raised.value)
    assert raised.value.where == ("mirror.yaml: source 'private', username_env; "
                                  "source 'private', password_env")


def test_a_newer_platform_tag_is_one_of_the_targets_family() -> None:
    """Only a newer tag of the target's system and architecture would bring a wheel;
    universal2 serves both macOS architectures, legacy manylinux tags are glibc versions."""
    from lockmirror.platform_tags import newer_platforms

    assert newer_platforms(["macosx_11_0_arm64"], ["win_amd64", "win32"]) is None
    assert newer_platforms(["macosx_11_0_arm64"], ["macosx_14_0_arm64",
                                                   "macosx_12_0_x86_64"]) == ["macosx_14_0_arm64"]
    assert newer_platforms(["macosx_11_0_arm64"], ["macosx_12_0_universal2"]) == [
        "macosx_12_0_universal2"]
    assert newer_platforms(["manylinux_2_17_x86_64"], ["manylinux1_x86_64"]) == []
    assert newer_platforms(["manylinux2014_x86_64"], ["manylinux_2_28_x86_64",
                                                      "musllinux_1_2_x86_64"]) == [
        "manylinux_2_28_x86_64"]
    assert newer_platforms(["win_amd64"], ["any"]) == []


def test_a_name_over_the_limit_says_to_rename_it_and_where_a_bundled_one_is_fixed(
        tmp_path: Path) -> None:
    """Older lockmirrors took a set name as long as the file system did; this one
    refuses it over 100 characters. The message says what to do (found by an outside
    tester); a mirror.yaml a bundle carried (`audit --mirror`) is fixed on the build side."""
    from lockmirror.stages.import_state import IMPORT_MIRROR_YAML, mirror_config

    text = broken("  tools:\n", f"  {'s' * 120}:\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    [problem] = caught.value.problems
    assert problem.endswith(
        f"sets.{'s' * 20}...(120 characters): a name of 120 characters; at most 100 (it becomes part of file "
        "names); rename it in mirror.yaml (`doit lock` then removes the old name's lockfile "
        "as an orphan)"), problem
    carried = tmp_path / "far" / IMPORT_MIRROR_YAML
    carried.parent.mkdir(parents=True)
    carried.write_text(text)
    with pytest.raises(ConfigError) as caught:
        mirror_config(tmp_path / "far", None)
    assert caught.value.problems[-1] == (f"{carried}: this mirror.yaml came with the bundle: "
                                         "fix it on the build side and import a new bundle")
