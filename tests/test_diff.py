"""The lock diff (``lockmirror diff``) and the git diff driver (``--textconv``).

Two layers:

* model-level tests on small lockfiles written with :mod:`lockmirror.formats.lockfile`,
  for the corners (requirer cycles, both requirer spellings, files changed
  under the same version, findings, truncation, the CLI's sources);
* scenario tests on before/after lockfile pairs made by the real lock stage
  from the fixture index: an upgrade, new transitive dependencies with their
  why, a removal and target-specific changes, in text, Markdown and JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtureindex import FixtureIndex
from helpers import ARM_TARGET, X86_TARGET, git, mirror_yaml
from packaging.utils import canonicalize_name
from packaging.version import Version

from lockmirror import cli
from lockmirror.formats.lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile
from lockmirror.fsutil import format_size
from lockmirror.stages.diff import LockfileSide, diff_lockfiles, read_directory
from lockmirror.stages.diff_compare import why_chains
from lockmirror.stages.diff_model import LockDiff
from lockmirror.stages.diff_render import diff_as_json, render_json, render_markdown, render_text
from lockmirror.stages.diff_textconv import render_textconv

BIN = Path(sys.executable).parent
X86 = LockedTarget("linux-x86_64-py311", "3.11", "cp", ("manylinux_2_28_x86_64",),
                   "python_version == '3.11' and implementation_name == 'cpython' and "
                   "sys_platform == 'linux' and platform_machine == 'x86_64'")
ARM = LockedTarget("linux-aarch64-py312", "3.12", "cp", ("manylinux_2_28_aarch64",),
                   "python_version == '3.12' and implementation_name == 'cpython' and "
                   "sys_platform == 'linux' and platform_machine == 'aarch64'")
BOTH = (X86.name, ARM.name)


# --------------------------------------------------------------------------
# Model-level helpers
# --------------------------------------------------------------------------


def _file(filename: str, size: int = 1000) -> LockedFile:
    return LockedFile(filename=filename, url=f"https://files.example/{filename}", size=size,
                      sha256=hashlib.sha256(filename.encode()).hexdigest())


def _pkg(name: str, version: str, targets: tuple[str, ...] = BOTH, *,
         why: Mapping[str, tuple[str, ...]] | tuple[str, ...] = (),
         wheels: tuple[str, ...] | None = None, sdist: str | None = None, size: int = 1000,
         yanked: str | None = None, build_only: bool = False) -> LockedPackage:
    if wheels is None and sdist is None:
        wheels = ("py3-none-any",)
    stem = name.replace("-", "_")
    return LockedPackage(
        name=canonicalize_name(name), version=Version(version), targets=targets,
        index="https://index.example/simple/",
        wheels=tuple(_file(f"{stem}-{version}-{tag}.whl", size) for tag in wheels or ()),
        sdist=_file(f"{stem}-{version}.tar.gz", size) if sdist else None,
        why=why if isinstance(why, Mapping) else {t: why for t in targets},
        build_only=build_only, yanked=yanked)


def _lock(*packages: LockedPackage, set_name: str = "core", requirements: tuple[str, ...] = (),
          targets: tuple[LockedTarget, ...] = (X86, ARM),
          exceptions: tuple[Mapping[str, str], ...] = ()) -> Lockfile:
    return Lockfile(set_name=set_name, requirements=requirements, targets=targets,
                    packages=packages, input_hash="sha256:" + "0" * 64,
                    exceptions_used=exceptions)


def _side(*lockfiles: Lockfile, label: str = "side") -> LockfileSide:
    # Through the real TOML text, so the diff sees what a reader of the file sees.
    parsed = {lf.set_name: Lockfile.loads(lf.dumps()) for lf in lockfiles}
    return LockfileSide(label, parsed, {name: f"pylock.{name}.toml" for name in parsed})


def _changes(diff: LockDiff, set_name: str, target: str) -> dict[str, tuple[str, str | None,
                                                                             str | None]]:
    set_diff = next(s for s in diff.sets if s.set_name == set_name)
    target_diff = next(t for t in set_diff.targets if t.target == target)
    return {p.name: (p.change, p.old_version, p.new_version) for p in target_diff.packages}


# --------------------------------------------------------------------------
# why
# --------------------------------------------------------------------------


def test_why_walks_requirers_up_to_the_set() -> None:
    lock = _lock(
        _pkg("requests", "2.31.0", why=("core: requests==2.31.0",)),
        _pkg("urllib3", "2.0.4", why=("requests 2.31.0: urllib3<3,>=1.21.1",)),
        _pkg("pysocks", "1.7.1", why=("urllib3 2.0.4: pysocks!=1.5.7,<2.0,>=1.5.6; extra == 'socks'",)),
    )
    packages: dict[str, LockedPackage] = {p.name: p for p in lock.packages}
    assert why_chains(lock, packages["requests"], X86.name) == ("core: requests==2.31.0",)
    assert why_chains(lock, packages["urllib3"], X86.name) == (
        "core: requests==2.31.0 -> urllib3",)
    assert why_chains(lock, packages["pysocks"], ARM.name) == (
        "core: requests==2.31.0 -> urllib3 -> pysocks",)


def test_why_reads_the_short_requirer_spelling_too() -> None:
    # docs/ARCHITECTURE.md spells requirers "<set>" and "<parent> <version>".
    lock = _lock(_pkg("requests", "2.31.0", why=("core",)),
                 _pkg("idna", "3.4", why=("requests 2.31.0",)))
    idna = next(p for p in lock.packages if p.name == "idna")
    assert why_chains(lock, idna, X86.name) == ("core: requests==2.31.0 -> idna",)


def test_why_survives_cycles_and_prefers_short_chains() -> None:
    lock = _lock(
        _pkg("a", "1", why=("core: a", "b 1: a")),
        _pkg("b", "1", why=("a 1: b",)),
        _pkg("c", "1", why=("b 1: c", "a 1: c", "core: c>=1")),
    )
    by_name: dict[str, LockedPackage] = {p.name: p for p in lock.packages}
    assert why_chains(lock, by_name["b"], X86.name) == ("core: a -> b",)
    assert why_chains(lock, by_name["c"], X86.name) == (
        "core: c>=1", "core: a -> c")  # each parent expanded once, shortest first


def test_why_keeps_build_roots_and_unknown_parents_as_chain_heads() -> None:
    lock = _lock(_pkg("fixture-backend", "1.0", build_only=True,
                      why=("core (to build sdistonly 1.0): fixture-backend",)),
                 _pkg("orphan", "1.0", why=("ghost 9.9: orphan",)))
    by_name: dict[str, LockedPackage] = {p.name: p for p in lock.packages}
    assert why_chains(lock, by_name["fixture-backend"], ARM.name) == (
        "core (to build sdistonly 1.0): fixture-backend",)
    assert why_chains(lock, by_name["orphan"], ARM.name) == ("ghost 9.9: orphan",)


# --------------------------------------------------------------------------
# the model diff
# --------------------------------------------------------------------------


def test_every_kind_of_package_change_per_target() -> None:
    old = _lock(
        _pkg("requests", "2.30.0", why=("core: requests",)),
        _pkg("chardet", "5.2.0", why=("requests 2.30.0: chardet",)),
        _pkg("urllib3", "2.0.4", why=("requests 2.30.0: urllib3",)),
        _pkg("native", "1.0", wheels=("cp311-cp311-manylinux_2_17_x86_64",
                                      "cp312-cp312-manylinux_2_28_aarch64")),
    )
    new = _lock(
        _pkg("requests", "2.31.0", why=("core: requests",)),
        _pkg("urllib3", "1.26.18", why=("requests 2.31.0: urllib3",)),
        _pkg("idna", "3.4", why=("requests 2.31.0: idna",)),
        _pkg("armdep", "1.0", (ARM.name,), why=("core: armdep",)),
        # Same version, one more wheel for one target only.
        _pkg("native", "1.0", wheels=("cp311-cp311-manylinux_2_17_x86_64",
                                      "cp312-cp312-manylinux_2_28_aarch64",
                                      "cp312-cp312-manylinux_2_17_aarch64")),
    )
    diff = diff_lockfiles(_side(old), _side(new))
    assert _changes(diff, "core", X86.name) == {
        "chardet": ("removed", "5.2.0", None),
        "idna": ("added", None, "3.4"),
        "requests": ("upgraded", "2.30.0", "2.31.0"),
        "urllib3": ("downgraded", "2.0.4", "1.26.18"),
    }
    assert _changes(diff, "core", ARM.name) == {
        **_changes(diff, "core", X86.name),
        "armdep": ("added", None, "1.0"),
        "native": ("changed", "1.0", "1.0"),
    }
    core = diff.sets[0]
    arm = next(t for t in core.targets if t.target == ARM.name)
    native = next(p for p in arm.packages if p.name == "native")
    assert [f.filename for f in native.files_added] == [
        "native-1.0-cp312-cp312-manylinux_2_17_aarch64.whl"]
    idna = next(p for p in arm.packages if p.name == "idna")
    assert idna.why == ("core: requests -> idna",)
    chardet = next(p for p in arm.packages if p.name == "chardet")
    assert chardet.why == ("core: requests -> chardet",)  # removed: why it was there
    assert core.status == "changed"
    assert core.size_change == 1000 * (len(core.files_added) - len(core.files_removed))


def test_sets_and_targets_added_and_removed() -> None:
    old = _side(_lock(_pkg("a", "1", why=("core: a",))),
                _lock(_pkg("m", "1", why=("misp: m",)), set_name="misp"))
    new = _side(_lock(_pkg("a", "1", (X86.name,), why=("core: a",)), targets=(X86,)),
                _lock(_pkg("s", "1", why=("shuffle: s",)), set_name="shuffle"))
    diff = diff_lockfiles(old, new)
    assert [(s.set_name, s.status) for s in diff.sets] == [
        ("core", "changed"), ("misp", "removed"), ("shuffle", "added")]
    core = diff.sets[0]
    assert [(t.target, t.status) for t in core.targets] == [
        (X86.name, "unchanged"), (ARM.name, "removed")]
    assert core.files_added == core.files_removed == ()  # the file serves the other target still
    text = render_text(diff)
    assert "set misp (set removed)" in text
    assert "set shuffle (new set)" in text
    assert f"target {ARM.name} removed" in text


def test_unchanged_lockfiles_say_so_everywhere() -> None:
    lock = _lock(_pkg("a", "1", why=("core: a",)))
    diff = diff_lockfiles(_side(lock, label="old"), _side(lock, label="new"))
    assert not diff.changed
    assert "no changes to the lockfiles" in render_text(diff)
    assert "No changes to the lockfiles." in render_markdown(diff)
    data = json.loads(render_json(diff))
    assert data["changed"] is False
    assert data["sets"][0]["status"] == "unchanged"


def test_policy_findings_exceptions_used_and_yanked() -> None:
    waiver = {"exception": "policy.exceptions[0]", "package": "yanky", "version": "1.1",
              "release": "yanky==1.1", "rule": "yanked", "reason": "vendor pins it",
              "expires": "2031-01-01"}
    kept = {"exception": "policy.exceptions[1]", "package": "vulny", "version": "*",
            "release": "vulny==1.0", "rule": "vulnerabilities", "reason": "not reachable",
            "advisory": "PYSEC-2023-0001"}
    old = _lock(_pkg("vulny", "1.0", why=("core: vulny",)), exceptions=(kept,))
    new = _lock(_pkg("vulny", "1.0", why=("core: vulny",)),
                _pkg("yanky", "1.1", why=("core: yanky==1.1",), yanked="broken build, use 1.0"),
                exceptions=(waiver, kept))
    findings = diff_lockfiles(_side(old), _side(new)).sets[0].findings
    assert [(f.kind, f.package, f.version, f.new) for f in findings] == [
        ("exception-used", "yanky", "1.1", True),
        ("exception-used", "vulny", "1.0", False),
        ("yanked", "yanky", "1.1", True),
    ]
    assert findings[0].message == ("policy.exceptions[0] waives yanked for yanky==1.1: "
                                   "vendor pins it (expires 2031-01-01)")
    assert findings[1].message == ("policy.exceptions[1] waives vulnerabilities for vulny==1.0 "
                                   "(PYSEC-2023-0001): not reachable")
    assert findings[2].message == "yanky 1.1 is yanked upstream: broken build, use 1.0"


def test_format_size() -> None:
    assert format_size(0) == "0 B"
    assert format_size(1023) == "1023 B"
    assert format_size(63053) == "61.6 KiB"
    assert format_size(-5 * 1024 * 1024, signed=True) == "-5.0 MiB"
    assert format_size(3 * 1024**4) == "3072.0 GiB"
    assert format_size(10, signed=True) == "+10 B"


def test_markdown_stays_under_the_comment_limit() -> None:
    old = _lock(*(_pkg(f"p{i:03d}", "1.0", why=(f"core: p{i:03d}",)) for i in range(400)))
    new = _lock(*(_pkg(f"p{i:03d}", "2.0", why=(f"core: p{i:03d}",)) for i in range(400)))
    diff = diff_lockfiles(_side(old), _side(new))
    full = render_markdown(diff, max_chars=None)
    cut = render_markdown(diff, max_chars=10_000)
    assert len(full) > 10_000 >= len(cut)
    assert "<details>" in full and "<details>" not in cut
    assert "more changes not shown; run `lockmirror diff` for all of them." in cut


def test_markdown_escapes_and_code_spans() -> None:
    old = _lock(_pkg("a", "1", why=("core: a",)), requirements=("a",))
    new = _lock(_pkg("a", "1", why=("core: a",)),
                _pkg("b", "2", why=("core: b; extra == '*x|y*'",)), requirements=("a", "b"))
    markdown = render_markdown(diff_lockfiles(_side(old), _side(new)))
    row = next(line for line in markdown.splitlines() if line.startswith("| added |"))
    assert row == "| added | `b` | 2 | core: b; extra == '\\*x\\|y\\*' |"
    assert "Requirements: added `b`." in markdown


def _swap_first_wheel(lock: Lockfile, **changes: Any) -> Lockfile:
    """``lock`` with the first wheel of its first package changed (name kept)."""
    first = lock.packages[0]
    wheel = dataclasses.replace(first.wheels[0], **changes)
    return dataclasses.replace(lock, packages=(
        dataclasses.replace(first, wheels=(wheel, *first.wheels[1:])), *lock.packages[1:]))


def test_a_changed_hash_under_the_same_file_name_is_an_alarm_shown_first() -> None:
    before = _lock(_pkg("amqp", "5.4.2", why=("core: amqp",)),
                   _pkg("zz-last", "1.0", why=("core: zz-last",)), requirements=("amqp",))
    name = "amqp-5.4.2-py3-none-any.whl"
    assert before.packages[0].wheels[0].filename == name
    after = _swap_first_wheel(before, url=f"https://evil.example.com/{name}",
                              sha256="e" * 64, size=1044)
    diff = diff_lockfiles(_side(before, label="main"), _side(after, label="pr"))
    assert diff.changed and [a.kind for a in diff.sets[0].alarms] == ["sha256", "host"]
    text = render_text(diff).splitlines()
    sha_line = (f"  ! set core: {name}: sha256 changed for the same file name; files on PyPI "
                f"are immutable (was {hashlib.sha256(name.encode()).hexdigest()}, "
                f"now {'e' * 64})")
    host_line = (f"  ! set core: {name}: URL host changed from https://files.example to "
                 "https://evil.example.com")
    assert text[2].startswith("ALARM: 2 change(s) no routine update makes (a file's sha256 or "
                              "host under the same name")  # the rest: diff_render.ALARMS_ARE
    assert text[3:5] == [sha_line, host_line]
    assert text.index(sha_line) < next(i for i, line in enumerate(text)
                                       if line.startswith("set core"))
    markdown = render_markdown(diff).splitlines()
    assert markdown[2] == "> [!CAUTION]"
    assert markdown[4].startswith("> - set `core`: amqp-5.4.2-py3-none-any.whl: sha256 changed "
                                  "for the same file name; files on PyPI are immutable")
    assert "URL host changed from https://files.example to https://evil.example.com" \
        in markdown[5]
    assert markdown.index("> [!CAUTION]") < next(i for i, line in enumerate(markdown)
                                                 if "set(s) changed" in line)
    tiny = render_markdown(diff, max_chars=10)  # cut to the bone, the alarm stays
    assert "sha256 changed for the same file name" in tiny
    data = diff_as_json(diff)
    assert data["summary"]["alarms"] == 2
    assert [a["kind"] for a in data["sets"][0]["alarms"]] == ["sha256", "host"]


def test_a_hash_changed_only_in_its_last_digits_shows_two_different_hashes() -> None:
    """A forged hash sharing a long prefix with the real one: the alarm and
    git's textconv view both show the difference, not two equal-looking stubs."""
    before = _lock(_pkg("six", "1.17.0", why=("core: six",)), requirements=("six",))
    real = before.packages[0].wheels[0].sha256
    forged = real[:60] + ("0000" if real[60:] != "0000" else "ffff")
    after = _swap_first_wheel(before, sha256=forged)
    alarm = diff_lockfiles(_side(before), _side(after)).sets[0].alarms[0]
    assert alarm.kind == "sha256" and f"was {real}, now {forged}" in alarm.message
    old_lines = set(render_textconv(before).splitlines())
    new_lines = set(render_textconv(after).splitlines())
    assert [line for line in new_lines - old_lines if forged in line]
    assert [line for line in old_lines - new_lines if real in line]


def test_a_hand_edit_of_any_other_field_is_shown_never_no_changes() -> None:
    """Fields the alarms do not cover (a file's URL path, size, metadata hash; a
    marker with the same targets, Requires-Python, build-only) each make an
    "edited" line; the diff never says "no changes" for them."""
    before = _lock(_pkg("six", "1.17.0", why=("core: six",)), requirements=("six",))
    wheel = before.packages[0].wheels[0]
    edits = {
        "url": {"url": wheel.url.replace("files.example/", "files.example/other/")},
        "size": {"size": wheel.size // 10},
        "metadata": {"metadata_sha256": "0" * 64},
    }
    for field, change in edits.items():
        after = _swap_first_wheel(before, **change)
        diff = diff_lockfiles(_side(before), _side(after))
        assert diff.changed and diff.sets[0].alarms == (), field
        (line,) = diff.sets[0].edits
        assert line.startswith(f"six 1.17.0: {wheel.filename}: "), line
        assert f"edited: {line}" in render_text(diff) and "no changes" not in render_text(diff)
    extra = dataclasses.replace(wheel, filename="six-1.17.0-cp311-cp311-manylinux_2_28_x86_64.whl",
                                url="https://files.example/de/ad/six.whl", sha256="e" * 64)
    after = dataclasses.replace(before, packages=(dataclasses.replace(
        before.packages[0], wheels=(*before.packages[0].wheels, extra)),))
    (line,) = diff_lockfiles(_side(before), _side(after)).sets[0].edits
    assert line == ("six 1.17.0: a file added to a release locked before: "
                    f"{extra.filename} from {extra.url} sha256 {'e' * 64}")
    # dependencies too (found by an outside tester: a hand-added dependency of kombu,
    # backing a made-up why for a slipped-in package, showed nowhere)
    for field, value in (("marker", 'sys_platform == "win32"'), ("requires_python", ">=2.7"),
                         ("build_only", True), ("dependencies", ("pika",))):
        after = dataclasses.replace(before, packages=(
            dataclasses.replace(before.packages[0], **{field: value}),))
        diff = diff_lockfiles(_side(before), _side(after))
        assert diff.changed, field
        assert [e for e in diff.sets[0].edits if e.startswith("six 1.17.0: ")], field
    # the same change on many releases (a lock that gained dependency groups) is one line
    # naming them, not a line each (found by an outside tester: 36 such lines)
    names = ("alpha", "beta", "gamma", "six")
    many = _lock(*(_pkg(n, "1.0", why=(f"core: {n}",)) for n in names), requirements=names)
    grouped = dataclasses.replace(many, packages=tuple(
        dataclasses.replace(p, marker='"runtime" in dependency_groups', groups=("runtime",))
        for p in many.packages))
    assert diff_lockfiles(_side(many), _side(grouped)).sets[0].edits == (
        '4 releases: marker changed from none to "runtime" in dependency_groups: alpha 1.0, '
        "beta 1.0, gamma 1.0, six 1.0",
        "4 releases: groups changed from none to runtime: alpha 1.0, beta 1.0, gamma 1.0, "
        "six 1.0")


def test_a_build_tool_installers_now_take_by_default_is_an_alarm() -> None:
    """setuptools, which the lockfile calls build-only, loses its build group's marker (or
    gets the runtime group's): installing the set would install it. lock never
    writes that (a build tool that becomes a runtime dependency is no longer
    build-only): an alarm, as lock --check's entry check says."""
    build = '"build-x" in dependency_groups'
    before = dataclasses.replace(
        _lock(dataclasses.replace(_pkg("setuptools", "80.0", why=("x: setuptools",)),
                                  marker=build, build_only=True), requirements=("x",)),
        build_groups=("build-x",))
    assert diff_lockfiles(_side(before), _side(before)).sets[0].alarms == ()
    for marker in (None, '"runtime" in dependency_groups'):
        after = dataclasses.replace(before, packages=(
            dataclasses.replace(before.packages[0], marker=marker),))
        alarms = [a.message for a in diff_lockfiles(_side(before), _side(after)).sets[0].alarms]
        assert ("setuptools 80.0: locked only to build sdists, yet its marker lets installers "
                "take it by default") in alarms, alarms


def test_a_changed_index_for_the_same_release_is_an_alarm() -> None:
    before = _lock(_pkg("pytz", "2024.1", why=("core: pytz",)), requirements=("pytz",))
    after = dataclasses.replace(before, packages=(dataclasses.replace(before.packages[0],
                                              index="https://pypi-cache.evil.example/simple/"),))
    diff = diff_lockfiles(_side(before), _side(after))
    assert diff.changed and [a.kind for a in diff.sets[0].alarms] == ["index"]
    assert ("! set core: pytz 2024.1: index changed from https://index.example/simple/ to "
            "https://pypi-cache.evil.example/simple/") in render_text(diff)
    assert "index https://pypi-cache.evil.example/simple/" in render_textconv(after)


def test_a_host_change_with_the_same_hash_is_always_shown() -> None:
    before = _lock(_pkg("amqp", "5.4.2", why=("core: amqp",)), requirements=("amqp",))
    name = before.packages[0].wheels[0].filename
    after = _swap_first_wheel(before, url=f"https://evil.example.com/{name}")
    diff = diff_lockfiles(_side(before), _side(after))
    assert diff.changed and diff.sets[0].status == "changed"
    text = render_text(diff)
    assert "no changes to the lockfiles" not in text
    assert (f"! set core: {name}: URL host changed from https://files.example to "
            "https://evil.example.com") in text
    assert "sha256 changed" not in text
    assert "URL host changed" in render_markdown(diff).splitlines()[4]
    # git's textconv diff shows it too
    assert render_textconv(before) != render_textconv(after)
    assert render_textconv(after).count("from https://evil.example.com") == 1


def test_a_file_added_from_a_host_the_old_side_does_not_use_is_an_alarm() -> None:
    """Found by an outside tester: a bump whose new wheel came from another host showed
    as a plain bump (its URL nowhere, no alarm). A file added from a host no file of the
    old side (any of its lockfiles) comes from is an alarm; hosts already used stay
    quiet; the URL is shown without its user name and password."""
    cdn = _lock(_pkg("acme", "1.0", why=("x: acme",)), set_name="x", requirements=("acme",))
    cdn = _swap_first_wheel(cdn, url="https://cdn.example/acme-1.0-py3-none-any.whl")
    before = _lock(_pkg("six", "1.16.0", why=("core: six",)), requirements=("six",))
    bumped = _lock(_pkg("six", "1.17.0", why=("core: six",)),
                   _pkg("alpha", "1.0", why=("core: alpha",)), requirements=("six",))
    name = "six-1.17.0-py3-none-any.whl"
    evil = _swap_first_wheel(bumped, url=f"https://user:s3cret@mirror.evil.example:8443/p/{name}")
    plain = diff_lockfiles(_side(before, cdn), _side(bumped, cdn))
    assert plain.summary()["alarms"] == 0  # files.example: a host the old side uses
    from_cdn = _swap_first_wheel(bumped, url=f"https://cdn.example/{name}")
    assert diff_lockfiles(_side(before, cdn), _side(from_cdn, cdn)).summary()["alarms"] == 0
    diff = diff_lockfiles(_side(before, cdn, label="main"), _side(evil, cdn, label="pr"))
    (alarm,) = diff.sets[0].alarms
    assert (alarm.kind, alarm.filename, alarm.package, alarm.version) == (
        "new-host", name, "six", "1.17.0")
    url = f"https://mirror.evil.example:8443/p/{name}"
    assert alarm.message == (f"{name}: a new file from https://mirror.evil.example:8443, a "
                             f"host no file of the old side comes from: {url}")
    data = diff_as_json(diff)
    assert data["summary"]["alarms"] == 1
    added = {f["filename"]: f["url"] for f in data["sets"][0]["files"]["added"]}
    assert added == {name: url, "alpha-1.0-py3-none-any.whl":
                     "https://files.example/alpha-1.0-py3-none-any.whl"}
    for rendered in (render_text(diff), render_markdown(diff), render_json(diff)):
        assert "s3cret" not in rendered and "mirror.evil.example:8443" in rendered
    # a file added to a release locked before: the alarm beside its edited line, which
    # leaves the password out too
    extra = dataclasses.replace(before.packages[0].wheels[0], url=evil.packages[0].wheels[0].url,
                                filename="six-1.16.0-py2-none-any.whl", sha256="e" * 64)
    grown = dataclasses.replace(before, packages=(dataclasses.replace(
        before.packages[0], wheels=(*before.packages[0].wheels, extra)),))
    diff = diff_lockfiles(_side(before), _side(grown))
    assert [a.kind for a in diff.sets[0].alarms] == ["new-host"]
    assert diff.sets[0].edits[0].endswith(f"from {url} sha256 {'e' * 64}")
    moved = _swap_first_wheel(before, url="https://u:s3cret@files.example/other/x.whl")
    (line,) = diff_lockfiles(_side(before), _side(moved)).sets[0].edits
    assert line.endswith("URL changed from https://files.example/six-1.16.0-py3-none-any.whl "
                         "to https://files.example/other/x.whl")
    # no old side at all (a first lock): nothing to compare hosts with
    assert diff_lockfiles(_side(), _side(evil)).sets[0].alarms == ()


# --------------------------------------------------------------------------
# textconv
# --------------------------------------------------------------------------


def test_textconv_lines_name_their_package() -> None:
    lock = _lock(
        _pkg("requests", "2.31.0", why=("core: requests==2.31.0",)),
        _pkg("armdep", "1.0", (ARM.name,), why={ARM.name: ("marked 1.0: armdep>=1.0",)}),
        _pkg("marked", "1.0", why=("core: marked==1.0",)),
        _pkg("sdistonly", "1.0", sdist="yes", why={X86.name: ("core: sdistonly",),
                                                   ARM.name: ("marked 1.0: sdistonly",)}),
        requirements=("requests==2.31.0", "marked==1.0"))
    text = render_textconv(Lockfile.loads(lock.dumps()))
    lines = text.splitlines()
    assert lines[:4] == ["lockmirror lockfile for set core", f"input-hash {lock.input_hash}",
                         "requirement requests==2.31.0", "requirement marked==1.0"]
    assert "armdep 1.0: targets linux-aarch64-py312" in lines
    assert "armdep 1.0: why: core: marked==1.0 -> armdep" in lines
    assert "requests 2.31.0: why: core: requests==2.31.0" in lines
    assert "sdistonly 1.0: why on linux-x86_64-py311: core: sdistonly" in lines
    assert "sdistonly 1.0: why on linux-aarch64-py312: core: marked==1.0 -> sdistonly" in lines
    digest = hashlib.sha256(b"requests-2.31.0-py3-none-any.whl").hexdigest()
    assert (f"requests 2.31.0: wheel requests-2.31.0-py3-none-any.whl 1000 B sha256:{digest} "
            "from https://files.example/requests-2.31.0-py3-none-any.whl" in lines)
    assert "requests 2.31.0: index https://index.example/simple/" in lines
    assert text == render_textconv(Lockfile.loads(lock.dumps()))  # stable


def test_textconv_command_falls_back_to_raw_text(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "pylock.core.toml"
    broken.write_text("this is [not toml\n", encoding="utf-8")
    assert cli.main(["diff", "--textconv", str(broken)]) == 0
    out = capsys.readouterr()
    assert out.out == "this is [not toml\n"
    assert "showing the raw text" in out.err
    empty = tmp_path / "empty"
    empty.write_text("", encoding="utf-8")
    assert cli.main(["diff", "--textconv", str(empty)]) == 0
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------
# The command: files, directories, git revisions
# --------------------------------------------------------------------------


@pytest.fixture
def lock_repo(tmp_path: Path) -> Iterator[Path]:
    """A git repository: main has requests 2.30.0; branch `feature` upgrades it."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "lockfiles").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "mirror.yaml").write_text(
        "version: 1\nsources: [{name: s, url: 'https://index.example/simple/'}]\n"
        "targets: {linux-x86_64-py311: {python: '3.11', platforms: [manylinux_2_28_x86_64]}}\n"
        "sets: {core: {requirements: [requests]}}\n", encoding="utf-8")
    old = _lock(_pkg("requests", "2.30.0", (X86.name,), why=("core: requests",)),
                targets=(X86,))
    old.write(repo / "lockfiles" / "pylock.core.toml")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "feature")
    new = _lock(_pkg("requests", "2.31.0", (X86.name,), why=("core: requests",)),
                targets=(X86,))
    new.write(repo / "lockfiles" / "pylock.core.toml")
    git(repo, "commit", "-q", "-am", "upgrade requests")
    yield repo


def test_a_hand_edit_is_caught_against_the_merge_base_and_crlf_is_no_edit(
        lock_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pull request's own case (no OLD given): a default-groups line added by
    hand is an alarm; the same lockfile checked out with CRLF endings is not."""
    from lockmirror.stages.diff import run

    monkeypatch.chdir(lock_repo)
    lockfile = lock_repo / "lockfiles" / "pylock.core.toml"
    git(lock_repo, "checkout", "-q", "main")
    text = lockfile.read_text()
    lockfile.write_bytes(text.replace("\n", "\r\n").encode())
    assert not run(None, None, config=lock_repo / "mirror.yaml", branches=["main"]).changed
    lockfile.write_text(text.replace('created-by = "lockmirror"\n',
                                     'created-by = "lockmirror"\ndefault-groups = ["build-x"]\n'))
    diff = run(None, None, config=lock_repo / "mirror.yaml", branches=["main"])
    assert [a.kind for a in diff.sets[0].alarms] == ["text"]


def test_a_relaxed_policy_or_widened_source_is_spelled_out_for_the_reviewer(
        lock_repo: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: a pull request that set ``yanked: warn``, added a
    blanket exception and widened a source's files_url beside a routine bump showed
    as "the lock's inputs changed: the policy". Each change now has its line, in
    every rendering, whether or not the lockfiles changed."""
    monkeypatch.chdir(lock_repo)
    config = lock_repo / "mirror.yaml"
    config.write_text(config.read_text().replace(
        "sources: [{name: s, url: 'https://index.example/simple/'}]",
        "sources:\n  - name: s\n    url: 'https://index.example/simple/'\n"
        "    files_url: ['https://files.example/']\n"
        "  - name: extra\n    url: 'https://evil.example/simple/'\n")
        + "policy:\n  yanked: warn\n  exceptions:\n"
        "    - {package: urllib3, version: '*', reason: 'r', rules: []}\n", encoding="utf-8")
    assert cli.main(["diff", "main", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["config_changes"] == [
        # an exception, a source or a destination added whole: one line, as written
        'policy.exceptions[urllib3]: added {"package": "urllib3", "version": "*", '
        '"reason": "r", "rules": []}',
        'sources.extra: added {"name": "extra", "url": "https://evil.example/simple/"}',
        'policy.yanked: "deny" (the default) -> "warn"',
        'sources.s.files_url: [] (the default) -> ["https://files.example/"]']
    assert cli.main(["diff", "main"]) == 0
    text = capsys.readouterr().out
    assert "mirror.yaml: trust settings changed (policy, sources, publish, build options, " \
        "paths, retention, quarantine)" in text
    assert '  ! policy.yanked: "deny" (the default) -> "warn"' in text
    assert cli.main(["diff", "main", "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert "> [!WARNING]" in markdown
    assert "s3cr3t" not in text + markdown  # a token in a source URL is never shown
    git(lock_repo, "commit", "-q", "-am", "relax")
    assert cli.main(["diff", "HEAD~1", "HEAD", "--format", "json"]) == 0  # two revisions too
    assert len(json.loads(capsys.readouterr().out)["config_changes"]) == 4
    # lockfile paths carry no mirror.yaml: nothing to compare, nothing claimed
    lockfile = str(lock_repo / "lockfiles" / "pylock.core.toml")
    assert cli.main(["diff", lockfile, lockfile, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["config_changes"] == []


def test_the_quarantine_list_of_each_side_is_compared(
        lock_repo: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: deleting quarantine.json (or moving it with
    paths.quarantine) served the quarantined releases again with no diff line."""
    monkeypatch.chdir(lock_repo)
    listed = lock_repo / "quarantine.json"
    listed.write_text('{"format": "lockmirror-quarantine/1", "releases": [{"name": "six", '
                      '"version": "1.16.0", "since": "2024-01-01T00:00:00Z", '
                      '"reasons": ["X"]}]}\n')
    assert cli.main(["diff", "main", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["config_changes"] == [
        "quarantine: six==1.16.0 taken out"]
    git(lock_repo, "add", "quarantine.json")
    git(lock_repo, "commit", "-qm", "quarantine six")
    listed.unlink()
    assert cli.main(["diff", "HEAD", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["config_changes"] == [
        "quarantine: six==1.16.0 back in the index"]


def test_trust_lines_follow_links_and_dotted_names(
        lock_repo: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester (round four): mirror.yaml made a link to a moved
    copy hid every change in that copy; an entry named by another's prefix (corp and
    corp.internal) hid the other's changes; a NUL in a path crashed diff."""
    from lockmirror.stages.diff_config import config_changes

    monkeypatch.chdir(lock_repo)
    config = lock_repo / "mirror.yaml"
    (lock_repo / "config").mkdir()
    (lock_repo / "config" / "mirror.yaml").write_text(
        config.read_text() + "policy: {yanked: warn}\n", encoding="utf-8")
    config.unlink()
    config.symlink_to("config/mirror.yaml")
    git(lock_repo, "add", "-A")
    git(lock_repo, "commit", "-qm", "a link")
    assert cli.main(["diff", "main", "HEAD", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["config_changes"] == [
        'policy.yanked: "deny" (the default) -> "warn"']
    dotted = ("sources:\n  - {name: corp.internal, url: 'https://c.example/simple/'}\n"
              "publish:\n  prod.eu: {kind: upload, url: 'https://u.example/'}\n")
    moved = (dotted.replace("https://c.example", "https://evil.example")
             .replace("https://u.example", "https://collect.evil.example")
             + "  prod: {kind: directory, path: out}\n")
    moved = moved.replace("publish:", "  - {name: corp, url: 'https://pypi.org/simple/'}\npublish:")
    lines = config_changes(dotted, moved)
    assert 'sources.corp.internal.url: "https://c.example/simple/" -> ' \
           '"https://evil.example/simple/"' in lines
    assert 'publish.prod.eu.url: "https://u.example/" -> "https://collect.evil.example/"' in lines
    # two sources of one name: neither hides the other
    twice = ("sources:\n  - {name: p, url: 'https://evil.example/simple/'}\n"
             "  - {name: p, url: 'https://p.example/simple/'}\n")
    assert 'sources.p.url: "https://p.example/simple/" -> "https://evil.example/simple/"' in \
        config_changes("sources:\n  - {name: p, url: 'https://p.example/simple/'}\n", twice)
    config.unlink()
    config.write_text((lock_repo / "config" / "mirror.yaml").read_text()
                      + 'paths:\n  quarantine: "q\\0.json"\n', encoding="utf-8")
    # no internal error: the escaped NUL is refused where mirror.yaml is read, at its line
    assert cli.main(["diff", "HEAD", "--format", "json"]) == 2
    assert "paths.quarantine: holds the control character '\\x00'" in capsys.readouterr().err


def test_trust_settings_are_compared_as_written_with_destinations_and_build_options() -> None:
    """Found by an outside tester (round two): a policy value moved behind
    ${VAR:-deny}, a new publish destination (which doit publish hands the upload
    credentials) and prefer_sdists showed nowhere."""
    from lockmirror.stages.diff_config import config_changes

    old = "policy:\n  yanked: deny\nsets:\n  s:\n    requirements: [a]\n"
    new = ("policy:\n  yanked: ${YANKED:-deny}\n  exceptions: []\n"
           "sets:\n  s:\n    requirements: [a]\n    prefer_sdists: true\n"
           "publish:\n  nexus:\n    kind: upload\n    url: https://u:tok@evil.example/\n"
           "    username_env: LOCKMIRROR_UPLOAD_USERNAME\n")
    assert config_changes(old, new) == (
        'publish.nexus: added {"kind": "upload", "url": "https://evil.example/", '
        '"username_env": "LOCKMIRROR_UPLOAD_USERNAME"}',
        'policy.yanked: "deny" -> "${YANKED:-deny}"',  # compared as written
        "sets.s.prefer_sdists: false (the default) -> true")  # no "exceptions: added []"
    assert config_changes(new, new) == ()
    # found by an outside tester (a reviewer's screen): a widened exception showed as two
    # identical truncated lines; a default written out or taken out was an alarm; sources
    # reordered (the first of equal priority serves a project) showed nothing
    narrow = ("policy:\n  exceptions:\n    - {package: c, version: '1.0', rules: [min_age_days],"
              f" reason: '{'long words ' * 30}'}}\n")
    wide = narrow.replace("version: '1.0', rules: [min_age_days],", "version: '*',")
    assert config_changes(narrow, wide) == (
        'policy.exceptions[c].rules: ["min_age_days"] -> [] (the default)',  # now all rules
        'policy.exceptions[c].version: "1.0" -> "*"')
    plain = "sources:\n  - {name: a, url: 'https://a/simple/'}\n  - {name: b, url: 'https://b/simple/'}\n"
    assert config_changes(plain, plain.replace("simple/'}\n  - {name: b",
                                               "simple/', priority: 100, allow_http: false}"
                                               "\n  - {name: b")) == ()
    assert config_changes("policy: {yanked: deny}\n", "policy: {}\n") == ()
    swapped = ("sources:\n  - {name: b, url: 'https://b/simple/'}\n"
               "  - {name: a, url: 'https://a/simple/'}\n")
    assert config_changes(plain, swapped) == (
        "sources: order a, b -> b, a (of sources with the same priority, the first that has "
        "a project serves it)",)
    # found by a reviewer: a set's `licenses: {}` replaces the global rule (it is no
    # default there); a name cannot end the line; a query cannot pass for credentials;
    # an advisory source's token is taken out; shared sources reordered beside an added
    # one; a list shows the items it gained
    rule = "policy:\n  licenses: {deny: [GPL-3.0-only]}\nsets:\n  core:\n    requirements: [a]\n"
    assert config_changes(rule, rule + "    policy: {licenses: {allow: []}}\n") == (
        'sets.core.policy.licenses: added {"allow": []}',)
    assert "\n" not in "".join(config_changes(plain, plain.replace("name: a", 'name: "x\\n<!--"')))
    assert config_changes(plain, plain.replace("https://a/", "https://evil?@a/")) == (
        'sources.a.url: "https://a/simple/" -> "https://evil?@a/simple/"',)
    osv = "policy:\n  advisory_sources: [{kind: osv, url: 'https://u:tok@osv.example/'}]\n"
    assert "tok" not in "".join(config_changes("", osv))
    grown = ("sources:\n  - {name: b, url: 'https://b/simple/', projects: [x]}\n"
             "  - {name: a, url: 'https://a/simple/'}\n  - {name: c, url: 'https://c/simple/'}\n")
    assert config_changes(plain, grown) == (
        "sources: order a, b -> b, a (of sources with the same priority, the first that has "
        "a project serves it)",
        'sources.c: added {"name": "c", "url": "https://c/simple/"}',
        'sources.b.projects: [] (the default) -> ["x"]')
    # found by an outside tester (round three): the quarantine list moved or emptied,
    # retention widened and the store moved to a committed directory showed nothing
    assert config_changes("version: 1\n", "retention: {lock_revisions: 50, days: 3650}\n"
                          "paths: {store: vendor-store, quarantine: .github/q.json}\n") == (
        'paths.quarantine: "quarantine.json" (the default) -> ".github/q.json"',
        'paths.store: ".store" (the default) -> "vendor-store"',
        "retention.days: 0 (the default) -> 3650",
        "retention.lock_revisions: 2 (the default) -> 50")
    listed = '{"format": "lockmirror-quarantine/1", "releases": [%s]}'
    six = '{"name": "six", "version": "1.16.0", "since": "2024-01-01T00:00:00Z", "reasons": ["X"]}'
    assert config_changes("version: 1\n", "version: 1\n", (listed % six, None)) == (
        "quarantine: six==1.16.0 back in the index",)
    assert config_changes("version: 1\n", "version: 1\n", (None, listed % six)) == (
        "quarantine: six==1.16.0 taken out",)
    # a password holding '@' is taken out whole
    (line,) = config_changes(plain, plain.replace("https://a/", "https://alice:p@ss@a2/"))
    assert line == 'sources.a.url: "https://a/simple/" -> "https://a2/simple/"'
    # a URL written with variables is compared as written, its credentials left out,
    # and never crashes (found by a reviewer: a ${PORT} made urlsplit raise)
    a = "sources:\n  - {name: s, url: 'https://u:tok@h.example:${PORT}/simple/'}\n"
    b = "sources:\n  - {name: s, url: '${URL:-https://u:tok@h.example/simple/}'}\n"
    (line,) = config_changes(a, b)
    assert "tok" not in line and "${PORT}" in line and "${URL:-https://" in line


def test_trust_lines_compare_effective_values_with_the_schema_defaults() -> None:
    """Found by an outside tester: where the old mirror.yaml wrote a default out, the
    lines hid the change: vulnerabilities deny -> warn (left out) read "removed (was
    "deny")", yanked deny -> warn and lock_revisions 2 -> 1 read "added", warn ->
    deny read "added "deny"". A key left out now has the schema's default."""
    from lockmirror.stages.diff_config import config_changes

    assert config_changes("policy: {vulnerabilities: deny}\n", "policy: {}\n") == (
        'policy.vulnerabilities: "deny" -> "warn" (the default)',)
    assert config_changes("policy: {yanked: deny}\n", "policy: {yanked: warn}\n") == (
        'policy.yanked: "deny" -> "warn"',)
    assert config_changes("retention: {lock_revisions: 2}\n",
                          "retention: {lock_revisions: 1}\n") == (
        "retention.lock_revisions: 2 -> 1",)
    assert config_changes("policy: {vulnerabilities: warn}\n",
                          "policy: {vulnerabilities: deny}\n") == (
        'policy.vulnerabilities: "warn" -> "deny"',)
    assert config_changes("version: 1\n", "policy: {vulnerabilities: deny}\n") == (
        'policy.vulnerabilities: "warn" (the default) -> "deny"',)
    # a default written out or taken out, anywhere the schema has one, is no change
    written = ("name: mirror\npolicy:\n  vulnerabilities: warn\n  licenses: {unknown: warn}\n"
               "  advisory_sources: [{kind: osv-api, allow_http: false}]\n"
               "  exceptions: [{package: a, reason: r, version: '*', rules: []}]\n"
               "retention: {lock_revisions: 2, days: 0}\nbundle: {keep: 3}\n"
               "sets:\n  s: {requirements: [a], prereleases: false}\n"
               "publish:\n  b: {kind: s3, bucket: b, lock_ttl: 3600, directory_keys: true}\n")
    left_out = ("policy:\n  licenses: {}\n  advisory_sources: [{kind: osv-api}]\n"
                "  exceptions: [{package: a, reason: r}]\n"
                "sets:\n  s: {requirements: [a]}\npublish:\n  b: {kind: s3, bucket: b}\n")
    assert config_changes(written, left_out) == ()
    assert config_changes(left_out, written) == ()
    # inside a destination, an exception and a license rule the defaults are filled in too
    assert config_changes(left_out, left_out.replace("bucket: b}", "bucket: b, lock_ttl: 60}")
                          .replace("reason: r}", "reason: r, version: '1.0'}")
                          .replace("licenses: {}", "licenses: {unknown: deny}")) == (
        'policy.exceptions[a].version: "*" (the default) -> "1.0"',
        'policy.licenses.unknown: "warn" (the default) -> "deny"',
        "publish.b.lock_ttl: 3600 (the default) -> 60")
    # no default to fill in: a set, a license rule (off when left out) or a limit is new
    assert config_changes("version: 1\n", "policy: {licenses: {}, min_age_days: 3}\n"
                          "sets:\n  s: {requirements: [a], prereleases: true}\n") == (
        "policy.licenses: added {}", "policy.min_age_days: added 3",
        "sets.s.prereleases: added true")


def test_default_old_side_is_the_merge_base_with_main(
        lock_repo: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(lock_repo)
    monkeypatch.delenv("GITHUB_BASE_REF", raising=False)
    base = git(lock_repo, "rev-parse", "main").strip()
    # The working tree moves on after the branch commit: NEW is the working tree.
    _lock(_pkg("requests", "2.32.0", (X86.name,), why=("core: requests",)),
          targets=(X86,)).write(lock_repo / "lockfiles" / "pylock.core.toml")
    assert cli.main(["diff", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["old"] == f"merge base with main ({base[:12]})"
    assert data["new"] == "working tree"
    # a clone's origin/HEAD is named as the branch it points to (README: "merge base with
    # the main branch"), not "origin/HEAD"
    git(lock_repo, "update-ref", "refs/remotes/origin/main", "main")
    git(lock_repo, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    assert cli.main(["diff", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["old"] == \
        f"merge base with origin/main ({base[:12]})"
    package = data["sets"][0]["targets"][0]["packages"][0]
    assert (package["change"], package["old_version"], package["new_version"]) == (
        "upgraded", "2.30.0", "2.32.0")


def test_two_revisions_and_the_pull_request_base(
        lock_repo: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(lock_repo)
    assert cli.main(["diff", "main", "feature", "--exit-code"]) == 1
    text = capsys.readouterr().out
    assert "^ requests 2.30.0 -> 2.31.0  core: requests" in text
    # In a pull-request workflow the base branch comes from GITHUB_BASE_REF.
    git(lock_repo, "update-ref", "refs/remotes/origin/release", "main")
    git(lock_repo, "branch", "-m", "main", "trunk")  # no `main` to fall back on
    monkeypatch.setenv("GITHUB_BASE_REF", "release")
    assert cli.main(["diff", "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert "merge base with origin/release" in markdown
    assert "| upgraded | `requests` | 2.30.0 → 2.31.0 | core: requests |" in markdown


def test_a_bump_from_a_new_host_is_an_alarm_against_the_revision(
        lock_repo: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The outside tester's case: `lockmirror diff HEAD` after a bump whose new wheel
    alone moved to another host printed a plain bump, rc 0, no alarm, no URL."""
    monkeypatch.chdir(lock_repo)
    assert cli.main(["diff", "main", "feature", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["alarms"] == 0  # same host: quiet
    name = "requests-2.32.0-py3-none-any.whl"
    url = f"https://mirror.evil.example/packages/{name}"
    _swap_first_wheel(_lock(_pkg("requests", "2.32.0", (X86.name,), why=("core: requests",)),
                            targets=(X86,)), url=url).write(
        lock_repo / "lockfiles" / "pylock.core.toml")
    message = (f"{name}: a new file from https://mirror.evil.example, a host no file of the "
               f"old side comes from: {url}")
    assert cli.main(["diff", "HEAD"]) == 0
    text = capsys.readouterr().out.splitlines()  # after a note: licenses not compared
    alarm = next(i for i, line in enumerate(text) if line.startswith("ALARM: "))
    assert text[alarm].startswith("ALARM: 1 change(s) no routine update makes (a file's "
                                  "sha256 or host under the same name, a file added from a "
                                  "host the old side does not use")
    assert text[alarm + 1] == f"  ! set core: {message}"
    assert cli.main(["diff", "HEAD", "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out.splitlines()
    caution = markdown.index("> [!CAUTION]")
    assert markdown[caution + 1].startswith("> **1 change(s) no routine update makes")
    assert markdown[caution + 2] == f"> - set `core`: {message}"
    assert cli.main(["diff", "HEAD", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["alarms"] == 1
    assert data["sets"][0]["alarms"] == [{"kind": "new-host", "filename": name,
                                          "package": "requests", "version": "2.32.0",
                                          "old": "", "new": url, "message": message}]
    assert [(f["filename"], f["url"]) for f in data["sets"][0]["files"]["added"]] == [
        (name, url)]


def test_unknown_revision_is_one_clear_line(lock_repo: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(lock_repo)
    assert cli.main(["diff", "no-such-branch"]) == 1
    err = capsys.readouterr().err
    assert err == ("lockmirror: error: 'no-such-branch' is not a lockfile, a directory "
                   "or a git revision\n")


def test_an_edit_no_comparison_reads_is_never_no_changes(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """default-groups added by hand (installers would take build tools by
    default): the parsed lockfiles compare equal, the bytes do not."""
    before = tmp_path / "before" / "pylock.core.toml"
    after = tmp_path / "after" / "pylock.core.toml"
    _lock(_pkg("a", "1", why=("core: a",))).write(before)
    text = before.read_text()
    after.parent.mkdir()
    after.write_text(text.replace('created-by = "lockmirror"\n',
                                  'created-by = "lockmirror"\ndefault-groups = ["build-x"]\n', 1))
    assert cli.main(["diff", str(before), str(after)]) == 0
    out = capsys.readouterr().out
    assert "no changes" not in out
    assert "! set core: the lockfile's text changed where this diff does not compare" in out
    # beside a version bump too: a hostile change cannot hide behind a routine one
    _lock(_pkg("a", "2", why=("core: a",))).write(after)
    text = after.read_text()
    after.write_text(text.replace('created-by = "lockmirror"\n',
                                  'created-by = "lockmirror"\ndefault-groups = ["build-x"]\n', 1))
    assert cli.main(["diff", str(before), str(after)]) == 0
    out = capsys.readouterr().out
    assert "a 1 -> 2" in out  # the bump shows, and so does the edit beside it
    assert "! set core: the lockfile's text changed where this diff does not compare" in out


def test_exit_code_tells_a_difference_from_an_error(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    before, after = tmp_path / "a.toml", tmp_path / "b.toml"
    _lock(_pkg("a", "1", why=("core: a",))).write(before)
    _lock(_pkg("a", "2", why=("core: a",))).write(after)
    assert cli.main(["diff", str(before), str(before), "--exit-code"]) == 0
    assert cli.main(["diff", str(before), str(after), "--exit-code"]) == 1
    assert cli.main(["diff", str(before), str(tmp_path / "nowhere.toml"), "--exit-code",
                     "--config", str(tmp_path / "mirror.yaml")]) == 2
    assert "error:" in capsys.readouterr().err
    # an output that cannot be written is an error too, not "they differ"
    assert cli.main(["diff", str(before), str(before), "--exit-code",
                     "--output", str(before / "out.md")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_git_external_driver_takes_an_added_lockfile(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """git hands /dev/null for the missing side of an added lockfile: a driver that
    fails would abort the whole git diff."""
    new = tmp_path / "pylock.core.toml"
    _lock(_pkg("a", "1", why=("core: a",))).write(new)
    assert cli.main(["diff", "--git-external", "lockfiles/pylock.core.toml", "/dev/null", ".",
                     ".", str(new), "abc", "100644"]) == 0
    out = capsys.readouterr().out
    assert "set core (new set)" in out


def test_files_and_directories_need_no_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no repository, no mirror.yaml
    before, after = tmp_path / "before", tmp_path / "after"
    _lock(_pkg("a", "1", why=("core: a",))).write(before / "pylock.core.toml")
    _lock(_pkg("a", "2", why=("core: a",))).write(after / "pylock.core.toml")
    # Single files pair up even when their sets differ.
    _lock(_pkg("a", "3", why=("x: a",)), set_name="x").write(after / "pylock.x.toml")
    out = tmp_path / "out" / "diff.json"
    assert cli.main(["diff", str(before), str(after), "--format", "json",
                     "--output", str(out)]) == 0
    assert capsys.readouterr().out == ""
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [(s["set"], s["status"]) for s in data["sets"]] == [("core", "changed"),
                                                              ("x", "added")]
    assert cli.main(["diff", str(before / "pylock.core.toml"),
                     str(after / "pylock.x.toml")]) == 0
    assert "^ a 1 -> 3  x: a" in capsys.readouterr().out


def test_git_diff_driver_shows_readable_lines(lock_repo: Path) -> None:
    lockmirror = BIN / "lockmirror"
    if not lockmirror.is_file():
        pytest.skip("the lockmirror console script is not installed in this environment")
    (lock_repo / ".gitattributes").write_text(
        (Path(__file__).resolve().parent.parent / ".gitattributes").read_text(encoding="utf-8"),
        encoding="utf-8")
    git(lock_repo, "config", "diff.lockmirror.textconv", f"{lockmirror} diff --textconv")
    patch = git(lock_repo, "diff", "main", "feature", "--", "lockfiles")
    changed = [line for line in patch.splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    # the last line is the file's own sha256: any edit at all changes a line
    texts = [line for line in changed if line[1:].startswith("text sha256 ")]
    assert [line[:13] for line in texts] == ["-text sha256 ", "+text sha256 "]
    changed = [line for line in changed if line not in texts]
    digest_old = hashlib.sha256(b"requests-2.30.0-py3-none-any.whl").hexdigest()
    digest_new = hashlib.sha256(b"requests-2.31.0-py3-none-any.whl").hexdigest()
    assert changed == [
        "-requests 2.30.0: targets linux-x86_64-py311",
        "-requests 2.30.0: index https://index.example/simple/",
        "-requests 2.30.0: why: core: requests",
        (f"-requests 2.30.0: wheel requests-2.30.0-py3-none-any.whl 1000 B sha256:{digest_old} "
         "from https://files.example/requests-2.30.0-py3-none-any.whl"),
        "+requests 2.31.0: targets linux-x86_64-py311",
        "+requests 2.31.0: index https://index.example/simple/",
        "+requests 2.31.0: why: core: requests",
        (f"+requests 2.31.0: wheel requests-2.31.0-py3-none-any.whl 1000 B sha256:{digest_new} "
         "from https://files.example/requests-2.31.0-py3-none-any.whl"),
    ]


def test_git_textconv_warning_names_the_file_in_the_repository(lock_repo: Path) -> None:
    # found by an outside tester: a lockfile at a revision that is no lockfile gave "...
    # (/tmp/git-blob-dg7quj/pylock.util.toml); showing the raw text": git's temporary copy
    git(lock_repo, "config", "diff.lockmirror.textconv",
        f"{shlex.quote(sys.executable)} -m lockmirror diff --textconv")
    (lock_repo / ".gitattributes").write_text("lockfiles/pylock.*.toml diff=lockmirror\n")
    (lock_repo / "lockfiles" / "pylock.core.toml").write_text("this is [not toml\n")
    git(lock_repo, "commit", "-q", "-am", "break it")
    done = subprocess.run(["git", "-C", str(lock_repo), "diff", "main", "HEAD", "--",
                           "lockfiles"], capture_output=True, text=True, check=True)
    assert "+this is [not toml" in done.stdout
    assert "lockfiles/pylock.core.toml" in done.stderr and "showing the raw text" in done.stderr
    assert "git-blob-" not in done.stderr


def test_git_textconv_of_good_lockfiles_asks_git_nothing(lock_repo: Path, tmp_path: Path) -> None:
    # `git log -p` runs textconv once per blob: the name in the repository (a `git
    # ls-files` over the whole index) is looked up only when there is an error to name
    git(lock_repo, "config", "diff.lockmirror.textconv",
        f"{shlex.quote(sys.executable)} -m lockmirror diff --textconv")
    (lock_repo / ".gitattributes").write_text("lockfiles/pylock.*.toml diff=lockmirror\n")
    trace = tmp_path / "git-trace"
    done = subprocess.run(["git", "-C", str(lock_repo), "diff", "main", "feature", "--",
                           "lockfiles"], capture_output=True, text=True, check=True,
                          env={**os.environ, "GIT_TRACE": str(trace)})
    assert "requests" in done.stdout and done.stderr == ""
    assert "textconv" in trace.read_text(encoding="utf-8")  # the driver did run
    assert "ls-files" not in trace.read_text(encoding="utf-8")


def test_setup_git_driver_works_from_a_shell_without_the_venv(
        lock_repo: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(lock_repo)
    monkeypatch.setenv("HOME", str(lock_repo))  # the config goes into the repository's
    assert cli.main(["setup-git"]) == 0
    assert "diff.lockmirror.textconv" in capsys.readouterr().out
    textconv = git(lock_repo, "config", "diff.lockmirror.textconv").strip()
    assert textconv == f"{shlex.quote(sys.executable)} -m lockmirror diff --textconv"
    assert (lock_repo / ".gitattributes").read_text(encoding="utf-8") == (
        "lockfiles/pylock.*.toml diff=lockmirror\n")
    assert cli.main(["setup-git"]) == 0  # again: nothing added twice
    assert (lock_repo / ".gitattributes").read_text(encoding="utf-8").count("diff=") == 1
    git_bin = shutil.which("git")
    assert git_bin is not None
    # a shell that never saw the venv: neither lockmirror nor its python on PATH
    shell = {"PATH": "/usr/bin:/bin", "HOME": str(lock_repo), "GIT_CONFIG_NOSYSTEM": "1"}

    def run(*args: str) -> str:
        done = subprocess.run([git_bin, "-C", str(lock_repo), *args], capture_output=True,
                              text=True, env=shell, check=True)
        assert done.stderr == "", done.stderr
        return done.stdout

    # git diff: the external driver, the bump as a move
    diff = run("diff", "main", "feature")
    assert "^ requests 2.30.0 -> 2.31.0  core: requests" in diff
    assert "-requests 2.30.0" not in diff
    # git log -p: the textconv (git runs external drivers there only with --ext-diff)
    log = run("log", "-p", "-1", "feature")
    assert "+requests 2.31.0: why: core: requests" in log
    assert "^ requests 2.30.0 -> 2.31.0" in run("log", "-p", "--ext-diff", "-1", "feature")


def test_setup_git_keeps_what_lockmirror_writes_out_of_git_status(
        tmp_path: Path, fixture_index: FixtureIndex, reproducible_build: None,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: the index state beside ``dist-index/``
    (``.dist-index.lockmirror/``) showed as untracked in their own repository's
    ``git status``. setup-git adds to .gitignore every path lockmirror writes that
    must not be committed (by mirror.yaml's paths), once: after every stage only
    what is to be committed is untracked."""
    repo = tmp_path / "mirror-repo"
    repo.mkdir()
    git(repo, "init", "-q")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HOME", str(repo))  # the config goes into the repository's
    (repo / "mirror.yaml").write_text(mirror_yaml(
        fixture_index.url, {"core": ["beta==1.0"]},
        extra="paths: {index: site/dist-index, store: /nowhere/outside/store}\n"))
    (repo / ".gitignore").write_text("/.venv/\n/dist/")  # the user's own, no newline at its end
    monkeypatch.setenv("LOCKMIRROR_STORE", str(tmp_path / "store"))  # paths.store is outside
    assert cli.main(["setup-git"]) == 0
    expected = ["/.venv/", "/dist/", "/site/dist-index/", "/site/.dist-index.lockmirror/", "/.cache/",
                ".doit.db*"]
    assert (repo / ".gitignore").read_text().splitlines() == expected
    assert (".gitignore: added `/site/dist-index/`, `/site/.dist-index.lockmirror/`, `/.cache/`, "
            "`.doit.db*` (commit it)") in capsys.readouterr().out
    assert cli.main(["setup-git"]) == 0  # again: nothing added twice
    assert (repo / ".gitignore").read_text().splitlines() == expected
    assert ".gitignore" not in capsys.readouterr().out
    for command in (["lock"], ["fetch"], ["index"], ["bundle", "--no-tool"],
                    ["check-install", "--file", "--no-install"], ["sbom", "-o", "dist/sbom"]):
        assert cli.main(command) == 0, command
    assert (repo / "site" / ".dist-index.lockmirror").is_dir()
    assert (repo / ".cache").is_dir() and (repo / "dist").is_dir()
    untracked = git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert sorted(untracked) == ["?? .gitattributes", "?? .gitignore",
                                 "?? lockfiles/pylock.core.toml", "?? mirror.yaml"]


def test_setup_git_with_a_config_that_is_not_there_says_so(
        lock_repo: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped --config was taken for "no mirror.yaml": the driver was set up for
    ./lockfiles/ whatever the named file says; it is an error, as for every command."""
    monkeypatch.chdir(lock_repo)
    monkeypatch.setenv("HOME", str(lock_repo))
    assert cli.main(["setup-git", "--config", "mirorr.yaml"]) == 2
    assert "mirorr.yaml: no such file" in capsys.readouterr().err
    assert not (lock_repo / ".gitattributes").exists()


def test_pin_bumps_are_moves_in_the_text_diff() -> None:
    old = _lock(_pkg("requests", "2.31.0", why=("core: requests==2.31.0",)),
                _pkg("idna", "3.4", why=("core: idna>=3",)),
                requirements=("requests==2.31.0", "idna>=3", "six"))
    new = _lock(_pkg("requests", "2.32.3", why=("core: requests==2.32.3",)),
                _pkg("idna", "3.7", why=("core: idna>=3.7",)),
                requirements=("requests==2.32.3", "idna>=3.7", "click"))
    text = render_text(diff_lockfiles(_side(old), _side(new)))
    assert ("  requirements: requests 2.31.0 -> 2.32.3; idna>=3 -> idna>=3.7; +click; -six"
            in text.splitlines())
    assert "+requests==2.32.3" not in text and "-requests==2.31.0" not in text
    markdown = render_markdown(diff_lockfiles(_side(old), _side(new)))
    assert "moved `requests 2.31.0 -> 2.32.3`" in markdown


# --------------------------------------------------------------------------
# Scenario: lockfiles from the real lock stage on the fixture index
# --------------------------------------------------------------------------

SCENARIO_POLICY = """\
policy:
  yanked: warn
  vulnerabilities: warn
  advisory_sources:
    - kind: pypi-json
      url: {json_api}
"""
BEFORE = "speedup==1.0, shared==1.0"
AFTER = ("speedup==1.2, beta==1.0, marked==1.0, sdistonly==1.0, native==1.0, yanky==1.1, "
         "vulny==1.0")


@dataclass(frozen=True)
class LockPair:
    before: Path
    after: Path
    config: Path  # mirror.yaml as of "after"
    diff: LockDiff


@pytest.fixture(scope="module")
def lock_pair(tmp_path_factory: pytest.TempPathFactory, catalogue_index: Any) -> LockPair:
    """The same mirror locked before and after a change to mirror.yaml, kept in two dirs."""
    lock = pytest.importorskip("lockmirror.stages.lock", reason="the lock stage has not landed")
    from lockmirror.config import load_config

    root = tmp_path_factory.mktemp("scenario")
    repo = root / "repo"
    repo.mkdir()
    config = repo / "mirror.yaml"
    copies = {}
    for label, core in (("before", BEFORE), ("after", AFTER)):
        config.write_text(mirror_yaml(
            catalogue_index.url, {"core": core.split(", "), "misp": ["gamma==1.0"]},
            name="scenario", targets=X86_TARGET | ARM_TARGET,
            extra=SCENARIO_POLICY.format(json_api=catalogue_index.json_api_url)),
            encoding="utf-8")
        lock.lock_sets(load_config(config))  # the second run starts from the first's pins
        copies[label] = root / label
        shutil.copytree(repo / "lockfiles", copies[label])
    diff = diff_lockfiles(read_directory(copies["before"], label="before"),
                          read_directory(copies["after"], label="after"))
    return LockPair(copies["before"], copies["after"], config, diff)


def _locked(pair: LockPair, filename: str) -> LockedFile:
    for directory in (pair.before, pair.after):
        for _, file in Lockfile.read(directory / "pylock.core.toml").iter_files():
            if file.filename == filename:
                return file
    raise AssertionError(f"{filename} is in neither lockfile")


def _size(pair: LockPair, filename: str) -> int:
    return _locked(pair, filename).size


def _sha256(pair: LockPair, filename: str) -> str:
    return _locked(pair, filename).sha256


def _target(diff: LockDiff, set_name: str, target: str) -> Any:
    set_diff = next(s for s in diff.sets if s.set_name == set_name)
    return next(t for t in set_diff.targets if t.target == target)


def test_scenario_package_changes_per_target(lock_pair: LockPair) -> None:
    common = {
        "beta": ("added", None, "1.0"),
        "fixture-backend": ("added", None, "1.0"),
        "foo-bar-baz": ("added", None, "1.0"),
        "linuxdep": ("added", None, "1.0"),
        "marked": ("added", None, "1.0"),
        "native": ("added", None, "1.0"),
        "patchdep": ("added", None, "1.0"),
        "sdistonly": ("added", None, "1.0"),
        "shared": ("removed", "1.0", None),
        "speedup": ("upgraded", "1.0", "1.2"),
        "vulny": ("added", None, "1.0"),
        "yanky": ("added", None, "1.1"),
    }
    assert _changes(lock_pair.diff, "core", X86.name) == {
        **common, "alpha": ("added", None, "1.1"), "olddep": ("added", None, "1.0")}
    # Target-specific: alpha 2.0 needs Python 3.12; armdep and olddep follow markers.
    assert _changes(lock_pair.diff, "core", ARM.name) == {
        **common, "alpha": ("added", None, "2.0"), "armdep": ("added", None, "1.0")}
    assert [(s.set_name, s.status) for s in lock_pair.diff.sets] == [
        ("core", "changed"), ("misp", "unchanged")]


def test_scenario_why_chains(lock_pair: LockPair) -> None:
    def why(target: str, name: str) -> tuple[str, ...]:
        package = next(p for p in _target(lock_pair.diff, "core", target).packages
                       if p.name == name)
        return tuple(package.why)

    assert why(X86.name, "alpha") == ("core: beta==1.0 -> alpha",)
    assert why(ARM.name, "foo-bar-baz") == ("core: beta==1.0 -> foo-bar-baz",)
    assert why(ARM.name, "armdep") == ("core: marked==1.0 -> armdep",)
    assert why(X86.name, "speedup") == ("core: speedup==1.2", "core: sdistonly==1.0 -> speedup")
    assert why(X86.name, "fixture-backend") == ("core (to build sdistonly 1.0): fixture-backend",)
    assert why(X86.name, "shared") == ("core: shared==1.0",)  # why it was there


def test_scenario_files_sizes_sdists_and_findings(lock_pair: LockPair) -> None:
    core = lock_pair.diff.sets[0]
    removed = {f.filename for f in core.files_removed}
    assert removed == {"shared-1.0-py3-none-any.whl", "speedup-1.0-py3-none-any.whl"}
    added = {f.filename for f in core.files_added}
    assert {"alpha-1.1-py3-none-any.whl", "alpha-2.0-py3-none-any.whl",
            "native-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "native-1.0-cp312-cp312-manylinux_2_28_aarch64.whl",
            "sdistonly-1.0.tar.gz"} <= added
    before = Lockfile.read(lock_pair.before / "pylock.core.toml")
    after = Lockfile.read(lock_pair.after / "pylock.core.toml")
    assert core.old_size == sum(f.size for _, f in before.iter_files())
    assert core.new_size == sum(f.size for _, f in after.iter_files())
    assert core.size_change == (sum(f.size for f in core.files_added)
                                - sum(f.size for f in core.files_removed))
    # Each target sees only the native wheel it can install.
    x86_native = next(p for p in _target(lock_pair.diff, "core", X86.name).packages
                      if p.name == "native")
    assert [f.filename for f in x86_native.files_added] == [
        "native-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"]
    assert [(s.file.filename, s.source_builds_on) for s in core.new_sdists] == [
        ("sdistonly-1.0.tar.gz", BOTH)]
    assert [(f.kind, f.package, f.version, f.new) for f in core.findings] == [
        ("policy-finding", "vulny", "1.0", True),  # vulnerabilities: warn, recorded by lock
        ("yanked", "yanky", "1.1", True)]
    assert core.requirements_added == ("speedup==1.2", "beta==1.0", "marked==1.0",
                                       "sdistonly==1.0", "native==1.0", "yanky==1.1",
                                       "vulny==1.0")
    assert core.requirements_removed == ("speedup==1.0", "shared==1.0")


def test_scenario_reversed_is_a_downgrade(lock_pair: LockPair) -> None:
    back = diff_lockfiles(read_directory(lock_pair.after), read_directory(lock_pair.before))
    changes = _changes(back, "core", ARM.name)
    assert changes["speedup"] == ("downgraded", "1.2", "1.0")
    assert changes["shared"] == ("added", None, "1.0")
    assert changes["armdep"] == ("removed", "1.0", None)
    assert back.sets[0].new_sdists == ()
    assert back.sets[0].findings == ()


def test_scenario_text(lock_pair: LockPair) -> None:
    text = render_text(lock_pair.diff)
    lines = text.splitlines()
    assert lines[0] == "lockmirror diff before -> after"
    core = lock_pair.diff.sets[0]
    assert lines[2] == (f"set core: 14 added, 1 removed, 1 upgraded, files "
                        f"+{len(core.files_added)} -{len(core.files_removed)}, "
                        f"{format_size(core.size_change, signed=True)} "
                        f"({format_size(core.old_size)} -> {format_size(core.new_size)})")
    assert lines[3] == ("  requirements: speedup 1.0 -> 1.2; +beta==1.0; +marked==1.0; "
                        "+sdistonly==1.0; +native==1.0; +yanky==1.1; +vulny==1.0; -shared==1.0")
    assert lines[4] == f"  target {X86.name}:"
    # Columns: the widest "name version" in a target block is "fixture-backend 1.0".
    assert "    + alpha 1.1            core: beta==1.0 -> alpha" in lines
    assert "    + alpha 2.0            core: beta==1.0 -> alpha" in lines
    assert ("    + fixture-backend 1.0  core (to build sdistonly 1.0): fixture-backend "
            "[build-only]") in lines
    assert "    - shared 1.0           was: core: shared==1.0" in lines
    assert ("    ^ speedup 1.0 -> 1.2   core: speedup==1.2; core: sdistonly==1.0 -> speedup"
            in lines)
    assert f"  target {ARM.name}:" in lines
    assert "    + armdep 1.0           core: marked==1.0 -> armdep" in lines
    width = max(len(f.filename) for f in core.files_added + core.files_removed)
    speedup_old = _size(lock_pair, "speedup-1.0-py3-none-any.whl")
    assert (f"    - {'speedup-1.0-py3-none-any.whl':<{width}}  "
            f"{format_size(speedup_old):>9}") in lines
    sdist = format_size(_size(lock_pair, "sdistonly-1.0.tar.gz"))
    assert (f"  new sdist: sdistonly-1.0.tar.gz ({sdist}); no wheel for linux-x86_64-py311, "
            "linux-aarch64-py312: built from source there") in lines
    assert ("  policy: new yanked: yanky 1.1 is yanked upstream: broken build, use 1.0"
            in lines)
    assert lines[-1] == "unchanged: misp"


def test_scenario_markdown(lock_pair: LockPair) -> None:
    markdown = render_markdown(lock_pair.diff)
    lines = markdown.splitlines()
    assert lines[0] == "### lockmirror diff: `before` → `after`"
    assert lines[2].startswith("**1 set(s) changed**: packages 14 added, 1 removed, 1 upgraded;")
    assert "#### Set `core`" in lines
    assert f"**Target** `{X86.name}`" in lines
    assert "| change | package | version | why |" in lines
    assert "| added | `alpha` | 1.1 | core: beta==1.0 → alpha |" in lines
    assert "| added | `alpha` | 2.0 | core: beta==1.0 → alpha |" in lines
    assert "| upgraded | `speedup` | 1.0 → 1.2 | core: speedup==1.2<br>core: sdistonly==1.0 → speedup |" in lines
    assert "| removed | `shared` | 1.0 | core: shared==1.0 |" in lines
    assert ("| added | `fixture-backend` | 1.0 | core (to build sdistonly 1.0): fixture-backend "
            "(build-only) |") in lines
    shared = format_size(_size(lock_pair, "shared-1.0-py3-none-any.whl"))
    assert f"| − | `shared-1.0-py3-none-any.whl` | {shared} |" in lines
    sdist = format_size(_size(lock_pair, "sdistonly-1.0.tar.gz"))
    assert (f"- `sdistonly-1.0.tar.gz` ({sdist}): no wheel for `linux-x86_64-py311`, "
            "`linux-aarch64-py312`, built from source there") in lines
    assert "- ⚠️ **new** yanked: yanky 1.1 is yanked upstream: broken build, use 1.0" in lines
    assert lines[-1] == "Unchanged: `misp`."


def test_scenario_json(lock_pair: LockPair) -> None:
    text = render_json(lock_pair.diff)
    data = json.loads(text)
    assert data == diff_as_json(lock_pair.diff)
    assert text == render_json(lock_pair.diff)  # same input, same bytes
    assert list(data) == ["schema", "old", "new", "changed", "summary", "notes", "config_changes",
                          "sets"]  # keys are only ever added within schema 1
    assert data["schema"] == "lockmirror-diff/1"
    assert data["summary"] == {
        "sets_changed": 1, "packages_added": 14, "packages_removed": 1,
        "packages_upgraded": 1, "packages_downgraded": 0, "packages_changed": 0,
        "files_added": len(lock_pair.diff.sets[0].files_added), "files_removed": 2,
        "size_change": lock_pair.diff.sets[0].size_change, "alarms": 0}
    core = data["sets"][0]
    assert list(core) == ["set", "status", "old_path", "new_path", "requirements", "targets",
                          "files", "new_sdists", "findings", "alarms", "retained", "edits"]
    assert core["edits"] == []  # the requirements' change has its own line
    assert core["new_path"] == str(lock_pair.after / "pylock.core.toml")
    arm = next(t for t in core["targets"] if t["target"] == ARM.name)
    assert arm["status"] == "changed"
    assert arm["old_definition"] == arm["new_definition"] == "cp3.12 manylinux_2_28_aarch64"
    speedup = next(p for p in arm["packages"] if p["name"] == "speedup")
    assert speedup == {
        "name": "speedup", "change": "upgraded", "old_version": "1.0", "new_version": "1.2",
        "why": ["core: speedup==1.2", "core: sdistonly==1.0 -> speedup"],
        "requirers": ["core: speedup==1.2", "sdistonly 1.0: speedup>=1.0"],
        "build_only": False,
        "files_added": [{"filename": "speedup-1.2-py3-none-any.whl", "package": "speedup",
                         "version": "1.2", "kind": "wheel",
                         "size": _size(lock_pair, "speedup-1.2-py3-none-any.whl"),
                         "sha256": _sha256(lock_pair, "speedup-1.2-py3-none-any.whl"),
                         "url": _locked(lock_pair, "speedup-1.2-py3-none-any.whl").url}],
        "files_removed": [{"filename": "speedup-1.0-py3-none-any.whl", "package": "speedup",
                           "version": "1.0", "kind": "wheel",
                           "size": _size(lock_pair, "speedup-1.0-py3-none-any.whl"),
                           "sha256": _sha256(lock_pair, "speedup-1.0-py3-none-any.whl"),
                           "url": _locked(lock_pair, "speedup-1.0-py3-none-any.whl").url}],
    }
    assert core["new_sdists"][0]["source_builds_on"] == list(BOTH)
    assert core["findings"][1:] == [{"kind": "yanked", "severity": "warn", "package": "yanky",
                                     "version": "1.1", "new": True,
                                     "message": "yanky 1.1 is yanked upstream: broken build, "
                                                "use 1.0"}]
    assert core["findings"][0] == {
        "kind": "policy-finding", "severity": "warn", "package": "vulny", "version": "1.0",
        "new": True, "message": "vulnerabilities: PYSEC-2023-0001 (GHSA-fix7-ture-0001): "
                                "fixture vulnerability in vulny 1.0; fixed in 1.1"}
    assert data["sets"][1] == {**data["sets"][1], "set": "misp", "status": "unchanged"}


def test_an_sdist_added_for_another_target_changes_nothing_where_a_wheel_installs() -> None:
    """A new musl target brings pydeep2's sdist; x86_64 and aarch64 install its
    wheel as before, so their views do not say "files changed"."""
    before = _lock(_pkg("pydeep2", "0.5.1", why=("core: pydeep2",)), requirements=("pydeep2",))
    after = _lock(_pkg("pydeep2", "0.5.1", why=("core: pydeep2",), sdist="yes",
                       wheels=("py3-none-any",)), requirements=("pydeep2",))
    diff = diff_lockfiles(_side(before), _side(after))
    (set_diff,) = diff.sets
    assert [t.packages for t in set_diff.targets] == [(), ()]
    assert [f.filename for f in set_diff.files_added] == ["pydeep2-0.5.1.tar.gz"]


def test_an_audit_that_could_not_check_names_what_the_change_brings_in() -> None:
    """One audit row covers every release no source could tell about; the
    diff names those among them this change brings in."""
    from lockmirror.stages.audit_row import AuditRow
    from lockmirror.stages.diff_model import with_audit

    before = _lock(_pkg("six", "1.0", why=("core: six",)), requirements=("six",))
    after = _lock(_pkg("six", "1.0", why=("core: six",)),
                  _pkg("urllib3", "2.0.4", why=("core: urllib3",)), requirements=("six",))
    row = AuditRow(package="", version="", rule="vulnerabilities", level="warn",
                   message="vulnerabilities were not checked for 2 of 40 releases (...): why",
                   sets=("core",), releases=("six==1.0", "urllib3==2.0.4"))
    noted = dataclasses.replace(diff_lockfiles(_side(before), _side(after)), notes=("n",))
    diff = with_audit(noted, [row])
    assert diff.notes == ("n",)  # what the diff could not do stays said
    # the row's text about the whole mirror (other sets' releases too) is not repeated
    assert [(f.message, f.new) for f in diff.sets[0].findings if f.kind == "audit"] == [
        ("vulnerabilities: not checked for what this change brings in: urllib3==2.0.4", True)]


def test_scenario_with_the_audit(lock_pair: LockPair, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("lockmirror.stages.audit", reason="the audit stage has not landed")
    monkeypatch.chdir(lock_pair.config.parent)
    assert cli.main(["diff", str(lock_pair.before), str(lock_pair.after), "--audit",
                     "--config", str(lock_pair.config), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    findings = data["sets"][0]["findings"]
    audit = {(f["package"], f["version"]): f for f in findings if f["kind"] == "audit"}
    # The advisory comes from the fixture index's JSON API; the release is new in this diff.
    vulny = audit[("vulny", "1.0")]
    assert (vulny["severity"], vulny["new"]) == ("warn", True)
    assert "PYSEC-2023-0001" in vulny["message"]
    # The audit's yanked finding (asked of the index now) replaces the lockfile's own.
    assert audit[("yanky", "1.1")]["message"].startswith("yanked: ")
    assert [f for f in findings if f["kind"] == "yanked"] == []
    assert all(f["new"] for f in findings)
    assert cli.main(["diff", str(lock_pair.before), str(lock_pair.after), "--audit",
                     "--config", str(lock_pair.config), "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert "- ⚠️ **new** audit: vulnerabilities: " in markdown
