"""``lockmirror validate --online``: each requirement against the sources' own project
pages (never a root listing), with the set, the mirror.yaml line and what exists instead."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex, build_wheel
from packaging.version import Version

from lockmirror.cli import main
from lockmirror.resolve.requirement_check import name_variants, nearest_versions, swapped_letters

MIRROR = """\
version: 1
sources: [{{name: fixture, url: "{url}"}}]
targets:
  linux: {{python: "3.11", platforms: [manylinux_2_17_x86_64]}}
sets:
  intel:
    requirements:
      - python-alpha
      - yanky==1.1
      - alpha==1.5
      - beta==1.0
paths: {{cache: {cache}}}
"""


def test_online_names_the_set_the_line_and_what_exists(
        tmp_path: Path, fixture_index: FixtureIndex,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mirror.yaml"
    path.write_text(MIRROR.format(url=fixture_index.url, cache=tmp_path / "cache"),
                    encoding="utf-8")
    # offline, nothing is asked and nothing is wrong with the file itself
    assert main(["validate", str(path)]) == 0
    assert fixture_index.requests == []
    capsys.readouterr()
    assert main(["validate", "--online", str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [
        f"{path}:8:9: sets.intel.requirements[0]: no source has a project named "
        "'python-alpha' (set intel); nearest existing names: alpha",
        f"{path}:9:9: sets.intel.requirements[1]: yanky 1.1 is yanked (broken build, use 1.0) "
        "(set intel); nearest versions not yanked: 1.0",
        f"{path}:10:9: sets.intel.requirements[2]: alpha 1.5 does not exist (set intel); "
        "nearest versions: 1.0, 1.1, 2.0",
    ]
    assert fixture_index.root_requests == []  # project pages only


def test_online_passes_a_sound_file(tmp_path: Path, fixture_index: FixtureIndex,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mirror.yaml"
    text = MIRROR.format(url=fixture_index.url, cache=tmp_path / "cache")
    path.write_text(text.replace("python-alpha", "alpha").replace("yanky==1.1", "yanky==1.0")
                    .replace("alpha==1.5", "speedup>=1"), encoding="utf-8")
    assert main(["validate", "--online", str(path)]) == 0
    assert capsys.readouterr().out.endswith("; 4 projects found on the sources\n")


def test_a_swapped_letter_finds_the_name_and_a_miss_says_what_was_tried(
        tmp_path: Path, fixture_index: FixtureIndex,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mirror.yaml"
    text = MIRROR.format(url=fixture_index.url, cache=tmp_path / "cache")
    path.write_text(text.replace("python-alpha", "btea").replace("yanky==1.1", "zqxv")
                    .replace("alpha==1.5", "alpha").replace("beta==1.0", "beta"),
                    encoding="utf-8")
    assert main(["validate", "--online", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:8:9: sets.intel.requirements[0]: no source has a project named 'btea' "
        "(set intel); nearest existing names: beta",
        f"{path}:9:9: sets.intel.requirements[1]: no source has a project named 'zqxv' "
        "(set intel); none of the likely spellings tried exists either (python-/py affixes, "
        "separators, two neighbouring letters swapped)",
    ]
    assert fixture_index.root_requests == []  # project pages only


def test_name_variants_and_nearest_versions() -> None:
    assert swapped_letters("sxi") == ["xsi", "six"]
    assert "requests" in swapped_letters("reqeusts")
    assert swapped_letters("aa") == []
    assert name_variants("python-stix2") == ["stix2", "pythonstix2"]
    assert name_variants("pydeep")[:1] == ["deep"]
    assert name_variants("stix2") == ["python-stix2", "pystix2", "stix2-python"]
    assert name_variants("Yara_Python") == ["yara", "yarapython"]
    versions = [Version(v) for v in ("1.0", "1.1", "2.0", "2.1", "3.0")]
    assert nearest_versions(versions, Version("2.0.5")) == [Version(v) for v in
                                                             ("1.1", "2.0", "2.1", "3.0")]


def test_one_rule_for_a_pin() -> None:
    """lock, --upgrade and --upgrade-vulnerable all call this: ==1.* is a range."""
    from packaging.requirements import Requirement

    from lockmirror.resolve.requirement_check import pins_exactly

    assert pins_exactly(Requirement("alpha==1.0")) and pins_exactly(Requirement("alpha===1.0"))
    assert not pins_exactly(Requirement("alpha==1.*"))
    assert not pins_exactly(Requirement("alpha>=1,<2"))


@pytest.mark.parametrize("policy", [
    "policy: {yanked: warn}\n",
    "policy:\n  exceptions:\n    - {package: yanky, version: '1.1', rules: [yanked], "
    "reason: 'the one build that works here'}\n",
], ids=["yanked-warn", "exception"])
def test_online_takes_a_yanked_pin_the_policy_takes(
        tmp_path: Path, fixture_index: FixtureIndex, policy: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """What ``lock`` accepts, ``validate --online`` must not refuse."""
    path = tmp_path / "mirror.yaml"
    text = MIRROR.format(url=fixture_index.url, cache=tmp_path / "cache")
    path.write_text(text.replace("      - python-alpha\n", "").replace("alpha==1.5", "alpha")
                    + policy, encoding="utf-8")
    assert main(["validate", "--online", str(path)]) == 0, capsys.readouterr().err


def url_blamed(path: Path, capsys: pytest.CaptureFixture[str], says: str, check: str, *,
               after_validate: Callable[[], None] = lambda: None) -> tuple[list[str], str]:
    """``validate --online`` and ``lock`` of ``path`` both fail on the sources' URLs,
    every line of validate's (one per requirement) and lock's error saying ``says``
    and the hint ``check ... in mirror.yaml``; validate's lines and lock's stderr."""
    assert main(["validate", "--online", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (f"{path}:8:9: sets.intel.requirements[0]: no source has a project "
                        f"named 'python-alpha': {says} (set intel); {check} in mirror.yaml: "
                        "a PEP 503 index, e.g. https://pypi.org/simple/")
    assert len(lines) == 4 and all(says in line for line in lines), lines
    after_validate()
    assert main(["lock", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert (f"no source has a project named 'python-alpha': {says} ({check} in "
            "mirror.yaml") in err, err
    return lines, err


def test_a_wrong_source_path_is_named_once_not_a_spelling_hint_per_project(
        tmp_path: Path, fixture_index: FixtureIndex,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``/simpel/`` for ``/simple/``: every project answered 404, and each got a spelling
    hint (validate's likely spellings, lock's "check the spelling"). Both now say the
    source's URL looks wrong, naming it, in one wording."""
    wrong = fixture_index.url.replace("/simple/", "/simpel/")
    path = tmp_path / "mirror.yaml"
    path.write_text(MIRROR.format(url=wrong, cache=tmp_path / "cache"), encoding="utf-8")
    says = (f"source fixture ({wrong}) answers 404 for every project asked, pip too, so "
            "the URL looks wrong")
    asked: list[str] = []

    def validate_asked() -> None:  # what validate asked, before lock asks again
        asked.extend(r.path.split("/")[2] for r in fixture_index.requests)
        fixture_index.reset_counts()

    _lines, err = url_blamed(path, capsys, says, "check the source's url",
                             after_validate=validate_asked)
    assert set(asked) == {"python-alpha", "yanky", "alpha", "beta", "pip"}, asked  # no spellings
    assert asked.count("pip") == 1, asked  # once for the source, not once per project
    assert "spelling" not in err, err
    pip_asked = [r for r in fixture_index.requests if r.path.split("/")[2] == "pip"]
    assert len(pip_asked) == 1, pip_asked


def test_a_fallback_source_asked_only_for_what_the_first_lacks_is_not_called_wrong(
        tmp_path: Path, fixture_index: FixtureIndex, make_index: Callable[..., FixtureIndex],
        capsys: pytest.CaptureFixture[str]) -> None:
    """A lower-priority source holding only internal packages (no pip) is asked only
    for what the first source lacks: a misspelt name is the likely mistake, not its URL."""
    files = tmp_path / "internal"
    build_wheel(files, "private-tool", "1.0")
    internal = make_index(files)
    path = tmp_path / "mirror.yaml"
    text = MIRROR.format(url=fixture_index.url, cache=tmp_path / "cache").replace(
        '"}]', f'"}}, {{name: internal, url: "{internal.url}"}}]', 1)
    path.write_text(text.replace("python-alpha", "btea").replace("yanky==1.1", "alpha")
                    .replace("alpha==1.5", "yanky"), encoding="utf-8")
    assert main(["validate", "--online", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"lockmirror: error: {path}:8:9: sets.intel.requirements[0]: no source "
                   "has a project named 'btea' (set intel); nearest existing names: beta\n")
    assert main(["lock", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "check the spelling of the requirement" in err and "looks wrong" not in err, err


def test_two_sources_without_pip_are_not_both_accused(
        tmp_path: Path, fixture_index: FixtureIndex, make_index: Callable[..., FixtureIndex],
        capsys: pytest.CaptureFixture[str]) -> None:
    """``/simpel/`` first, then a right in-house index (no pip: it serves only its own
    packages): both have no page for anything asked, but nothing tells from outside which
    URL is wrong, so the message says one may be, and names both."""
    files = tmp_path / "internal"
    build_wheel(files, "private-tool", "1.0")
    internal = make_index(files)
    wrong = fixture_index.url.replace("/simple/", "/simpel/")
    path = tmp_path / "mirror.yaml"
    text = MIRROR.format(url=wrong, cache=tmp_path / "cache").replace(
        '"}]', f'", priority: 1}}, {{name: internal, url: "{internal.url}", priority: 2}}]', 1)
    path.write_text(text, encoding="utf-8")
    says = (f"sources fixture ({wrong}), internal ({internal.url}) have no page for any "
            "project asked, nor for pip: one of their urls may be wrong (an index of in-house "
            "packages has no pip either)")
    lines, _err = url_blamed(path, capsys, says, "check their urls")
    assert "looks wrong" not in "\n".join(lines)
