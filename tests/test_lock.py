"""The lock stage on the fixture index: every rule of the resolver, hermetic."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex, build_wheel

from lockmirror.config import load_config
from lockmirror.errors import LockmirrorError, NotFoundError, ResolutionError
from lockmirror.formats.lockfile import Lockfile
from lockmirror.resolve.candidates import Refusal
from lockmirror.resolve.explain import policy_excluded
from lockmirror.stages.lock import lock_sets, stale_sets

X86 = "linux-x86_64-py311"
ARM = "linux-aarch64-py312"


def write_mirror(tmp: Path, index: FixtureIndex, sets: str, extra: str = "") -> Path:
    path = tmp / "mirror.yaml"
    path.write_text(f"""\
version: 1
name: test
sources:
  - name: fixture
    url: {index.url}
targets:
  {X86}:
    python: "3.11"
    platforms: [manylinux_2_28_x86_64]
  {ARM}:
    python: "3.12"
    platforms: [manylinux_2_28_aarch64]
sets:
{sets}
paths:
  cache: {tmp / "cache"}
{extra}""")
    return path


def lock(tmp: Path, index: FixtureIndex, sets: str, **kwargs: object) -> dict[str, Lockfile]:
    loaded = load_config(write_mirror(tmp, index, sets))
    return {r.set_name: r.lockfile for r in lock_sets(loaded, **kwargs)}  # type: ignore[arg-type]


def versions(lockfile: Lockfile, target: str) -> dict[str, str]:
    return {str(p.name): str(p.version) for p in lockfile.packages_for(target)}


def package(lockfile: Lockfile, name: str, version: str | None = None):  # type: ignore[no-untyped-def]
    found = [p for p in lockfile.packages if p.name == name
             and (version is None or str(p.version) == version)]
    assert len(found) == 1, (name, version, [(p.name, str(p.version)) for p in lockfile.packages])
    return found[0]


MAIN_SET = """\
  main:
    requirements:
      - alpha
      - beta[fast]
      - marked
      - yanky
      - native
      - Foo.Bar_baz
"""


@pytest.fixture
def main_lock(tmp_path: Path, fixture_index: FixtureIndex) -> Lockfile:
    return lock(tmp_path, fixture_index, MAIN_SET)["main"]


def test_targets_get_their_own_versions_and_files(main_lock: Lockfile) -> None:
    x86, arm = versions(main_lock, X86), versions(main_lock, ARM)
    # alpha 2.0 needs Python >= 3.12: the 3.11 target keeps 1.1
    assert x86["alpha"] == "1.1" and arm["alpha"] == "2.0"
    assert package(main_lock, "alpha", "1.1").targets == (X86,)
    assert "python_version == \"3.11\"" in (package(main_lock, "alpha", "1.1").marker or "")
    # extras pull in their dependency; PEP 503 names are normalized
    assert x86["speedup"] == "1.2" and "foo-bar-baz" in x86
    # the platform wheel for each target, and only those
    native = package(main_lock, "native")
    wheels = sorted(w.filename for w in native.wheels)
    assert len(wheels) == 2 and native.sdist is None
    assert "cp311" in wheels[0] and "manylinux_2_17_x86_64" in wheels[0]
    assert "cp312" in wheels[1] and "manylinux_2_28_aarch64" in wheels[1]
    assert all(f.sha256 and f.size and f.upload_time for _, f in main_lock.iter_files())


def test_markers_are_evaluated_for_the_target_not_the_host(main_lock: Lockfile) -> None:
    x86, arm = versions(main_lock, X86), versions(main_lock, ARM)
    assert "linuxdep" in x86 and "linuxdep" in arm
    assert "windep" not in x86 and "windep" not in arm
    assert "armdep" in arm and "armdep" not in x86          # platform_machine
    assert "olddep" in x86 and "olddep" not in arm          # python_version < 3.12
    # python_full_version >= 3.11.4 holds for some 3.11.x: locked, with its marker
    patchdep = package(main_lock, "patchdep")
    assert set(patchdep.targets) == {X86, ARM}
    assert patchdep.marker is not None and "python_full_version >= \"3.11.4\"" in patchdep.marker
    from packaging.markers import Marker

    marker = Marker(patchdep.marker)
    base = {"sys_platform": "linux", "platform_machine": "x86_64", "python_version": "3.11",
            "implementation_name": "cpython", "os_name": "posix", "platform_system": "Linux",
            "platform_python_implementation": "CPython", "platform_release": "",
            "platform_version": "", "implementation_version": "3.11.2"}
    assert not marker.evaluate({**base, "python_full_version": "3.11.2"})
    assert marker.evaluate({**base, "python_full_version": "3.11.7"})


def test_why_records_the_requirement_chain(main_lock: Lockfile) -> None:
    speedup = package(main_lock, "speedup")
    assert any("beta" in why for why in speedup.why[X86])
    assert any(w.startswith("main:") for w in package(main_lock, "alpha", "1.1").why[X86])


def test_yanked_release_only_when_pinned(tmp_path: Path, fixture_index: FixtureIndex,
                                         main_lock: Lockfile) -> None:
    assert versions(main_lock, X86)["yanky"] == "1.0"
    # PEP 592: an exact pin may take a yanked release, when the policy only warns
    pinned = lock(tmp_path, fixture_index,
                  "  p:\n    requirements: [yanky==1.1]\n    policy: {yanked: warn}\n")["p"]
    assert package(pinned, "yanky").yanked == "broken build, use 1.0"


def test_prereleases_only_when_asked_or_pinned(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    sets = ("  plain:\n    requirements: [gamma]\n"
            "  pre:\n    requirements: [gamma]\n    prereleases: true\n"
            "  pin:\n    requirements: [gamma==2.0b1]\n")
    locks = lock(tmp_path, fixture_index, sets)
    assert versions(locks["plain"], X86)["gamma"] == "1.0"
    assert versions(locks["pre"], X86)["gamma"] == "2.0b1"
    assert versions(locks["pin"], X86)["gamma"] == "2.0b1"


def test_sdists_with_their_build_requirements(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    sets = "  s:\n    requirements: [sdistonly, oldmeta, legacy]\n"
    lockfile = lock(tmp_path, fixture_index, sets)["s"]
    for name in ("sdistonly", "oldmeta", "legacy"):
        pkg = package(lockfile, name)
        assert pkg.sdist is not None and not pkg.wheels
    # static PKG-INFO (2.2) gives speedup; oldmeta's alpha comes from the PEP 517 hook
    assert "speedup" in package(lockfile, "sdistonly").dependencies
    assert "alpha" in package(lockfile, "oldmeta").dependencies
    backend = package(lockfile, "fixture-backend")
    assert backend.build_only and backend.wheels
    assert any("to build sdistonly" in w for w in backend.why[X86])
    for name in ("setuptools", "wheel"):  # PEP 517's fallback for a setup.py-only sdist
        tool = package(lockfile, name)
        assert tool.build_only and any("legacy" in w for w in tool.why[X86])


def test_lockfiles_are_byte_identical_across_runs(tmp_path: Path,
                                                  fixture_index: FixtureIndex) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = lock(tmp_path / "a", fixture_index, MAIN_SET)  # each with its own, cold cache
    second = lock(tmp_path / "b", fixture_index, MAIN_SET)
    assert first["main"].dumps() == second["main"].dumps()
    # the written files too, and a re-run does not rewrite
    loaded = load_config(tmp_path / "a" / "mirror.yaml")
    again = lock_sets(loaded)
    assert not again[0].written


def test_conflict_names_both_sides(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    with pytest.raises(ResolutionError) as info:
        lock(tmp_path, fixture_index, "  c:\n    requirements: [left, right]\n")
    text = str(info.value)
    assert "shared" in text and "shared<2" in text and "shared>=2" in text
    assert "left 1.0" in text and "right 1.0" in text and (X86 in text or ARM in text)


def test_releases_no_advisory_source_could_check_are_named_once_for_the_set(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    """The JSON API answers 404 for alpha 1.1 (x86_64 takes it; aarch64's Python 3.12
    takes alpha 2.0, the latest, which the project JSON covers): one warning for the
    set, counting every target's releases (it was one per target, each its own count)."""
    fixture_index.fail_next(20, 404, "/pypi/alpha/1.1/json")
    path = write_mirror(tmp_path, fixture_index, "  c:\n    requirements: [alpha]\n",
                        extra=f"policy:\n  advisory_sources:\n    - {{kind: pypi-json, "
                              f"url: '{fixture_index.json_api_url}'}}\n")
    (result,) = lock_sets(load_config(path))
    assert [w for w in result.warnings if "not checked" in w] == [
        f"vulnerabilities were not checked for 1 of 2 releases (alpha==1.1): "
        f"pypi-json:{fixture_index.json_api_url} answers no JSON for single releases, and "
        "its project JSON covers only the latest release"]


def test_a_release_a_vulnerability_excludes_names_the_rule_that_waives_it(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    """vulny 1.0 has PYSEC-2023-0001: the remedy names the advisory that refused it (an
    exception for it waives that advisory only, not the whole vulnerabilities rule;
    the hint used to guess a rule from the message's words)."""
    path = write_mirror(tmp_path, fixture_index, "  v:\n    requirements: ['vulny==1.0']\n",
                        extra=f"policy:\n  vulnerabilities: deny\n  advisory_sources:\n"
                              f"    - {{kind: pypi-json, url: '{fixture_index.json_api_url}'}}\n")
    with pytest.raises(LockmirrorError) as info:
        lock_sets(load_config(path))
    assert "excluded by policy: " in str(info.value) and "PYSEC-2023-0001" in str(info.value)
    assert ("an entry {package: vulny, version: '1.0', rules: [PYSEC-2023-0001], reason: "
            "<why it is acceptable>}") in str(info.value)


def test_policy_excluded_lists_the_newest_first_and_counts_the_rest() -> None:
    said = {("te", "4.9.0"): "license PSF-2.0 is not in the allowed list",
            ("te", "4.12.2"): "license PSF-2.0 is not in the allowed list",
            ("te", "4.10.0"): "x", ("te", "4.11.0"): "y", ("a", "1.0"): "z"}
    excluded = {release: Refusal(why) for release, why in said.items()}
    assert policy_excluded(excluded, {"te"}) == (
        "te 4.12.2: license PSF-2.0 is not in the allowed list; te 4.11.0: y; te 4.10.0: x "
        "and 1 more")
    assert policy_excluded(excluded, shown=2) == (
        "a 1.0: z; te 4.12.2: license PSF-2.0 is not in the allowed list and 3 more")
    assert policy_excluded({}, None) == ""


def test_conflict_shows_the_whole_chain_back_to_the_set(
        tmp_path: Path, make_index: Callable[..., FixtureIndex]) -> None:
    """flask + markupsafe: the conflict on markupsafe comes through jinja2 from flask;
    the message names flask and puts jinja2's versions on one line."""
    files = tmp_path / "files"
    files.mkdir()
    build_wheel(files, "app", "1.0", requires_dist=["mid>=1.0"])  # flask 2.3.3
    for minor in range(5):  # jinja2 3.1.2 ... 3.1.6, each needing markupsafe>=2
        build_wheel(files, "mid", f"1.{minor}", requires_dist=["low>=2"])
    for version in ("1.0", "2.0"):  # markupsafe
        build_wheel(files, "low", version)
    index = make_index(files)
    with pytest.raises(ResolutionError) as info:
        lock(tmp_path, index, "  web:\n    requirements: [app==1.0, low==1.0]\n")
    text = str(info.value)
    assert "app 1.0" in text  # the requirer of mid, which requires low>=2
    [line] = [line for line in text.splitlines() if "low>=2" in line]
    assert line == "  low>=2 <- mid 1.4, 1.3, 1.2, 1.1, 1.0 <- app 1.0 (set web)"
    assert "low==1.0 (required by the set web)" in text


def test_missing_version_lists_nearest(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    with pytest.raises(ResolutionError) as info:
        lock(tmp_path, fixture_index, "  m:\n    requirements: [alpha==1.5]\n")
    assert "alpha" in str(info.value) and "1.1" in str(info.value) and "2.0" in str(info.value)


def test_no_file_for_target_says_what_exists(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    with pytest.raises(ResolutionError) as info:
        lock(tmp_path, fixture_index, "  o:\n    requirements: [only311]\n")
    text = str(info.value)
    assert ARM in text and "cp311" in text


def test_no_wheel_for_target_says_what_to_do_and_orders_pythons_as_versions(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    for python in ("cp310", "cp37", "cp39"):  # x86_64 only: nothing for the aarch64 target
        fixture_index.add_file(build_wheel(tmp_path / "wheels", "oldwheels", "1.0",
                                           tag=f"{python}-{python}-manylinux_2_17_x86_64"))
    with pytest.raises(ResolutionError) as info:
        lock(tmp_path, fixture_index, "  o:\n    requirements: [oldwheels]\n")
    text = str(info.value)
    assert "what exists: wheels for cp37, cp39, cp310 on manylinux_2_17_x86_64" in text, text
    assert ("in mirror.yaml, pin a version of oldwheels that has a wheel for this target, "
            "limit the set's `targets:` to those it has wheels for, or give the requirement "
            "an environment marker (PEP 508) that is false on this target") in text, text


def test_unknown_project(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    with pytest.raises(NotFoundError) as info:
        lock(tmp_path, fixture_index, "  u:\n    requirements: [no-such-project]\n")
    assert "no-such-project" in str(info.value)


def test_an_error_both_targets_meet_is_placed_once(tmp_path: Path,
                                                    fixture_index: FixtureIndex) -> None:
    """The missing project's page is asked once, so both targets got the one error, and
    each placed it: 'mirror.yaml:15: set 'u', target 'A': mirror.yaml:15: set 'u', target
    'B': no source has ...'."""
    with pytest.raises(NotFoundError) as info:
        lock(tmp_path, fixture_index, "  u:\n    requirements: [gamma, no-such-project]\n")
    text = str(info.value)
    assert text.count("set 'u'") == 1 and text.count("mirror.yaml:") == 1, text
    assert text.startswith("mirror.yaml:15: set 'u', target '"), text
    assert "check the spelling of the requirement" in text, text


def test_check_and_no_network_when_current(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    path = write_mirror(tmp_path, fixture_index, "  q:\n    requirements: [alpha]\n")
    loaded = load_config(path)
    assert stale_sets(loaded) == {"q": f"{loaded.lockfile_path('q')} is missing"}
    lock_sets(loaded)
    assert stale_sets(loaded) == {}
    path.write_text(path.read_text().replace("[alpha]", "[alpha, speedup]"))
    assert "q" in stale_sets(load_config(path))
    # the CLI gate: exit 1 naming the set, writes nothing
    before = loaded.lockfile_path("q").read_bytes()
    cli = subprocess.run([sys.executable, "-m", "lockmirror", "lock", "--check",
                          "--config", str(path)], capture_output=True, text=True)
    assert cli.returncode == 1 and "set 'q'" in cli.stderr and "Traceback" not in cli.stderr
    assert loaded.lockfile_path("q").read_bytes() == before
    # the doit uptodate check of a current set reads only the lockfile: no request
    path.write_text(path.read_text().replace("[alpha, speedup]", "[alpha]"))
    fixture_index.reset_counts()
    assert stale_sets(load_config(path), ["q"]) == {}
    assert fixture_index.count() == 0


def test_existing_pins_are_kept_unless_upgraded(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    # beta needs alpha>=1.0; with alpha 1.1 missing upstream the 3.11 target gets 1.0
    for name in [f for f in fixture_index.files if f.startswith("alpha-1.1")]:
        fixture_index.remove_file(name)
    path = write_mirror(tmp_path, fixture_index, "  k:\n    requirements: [beta]\n")
    lock_sets(load_config(path))
    assert versions(Lockfile.read(tmp_path / "lockfiles/pylock.k.toml"), X86)["alpha"] == "1.0"
    fixture_index.reset()  # alpha 1.1 is back upstream
    path.write_text(path.read_text().replace("[beta]", "[beta, gamma]"))
    loaded = load_config(path)
    lock_sets(loaded)  # re-lock of a changed set: the transitive pin stays
    assert versions(Lockfile.read(loaded.lockfile_path("k")), X86)["alpha"] == "1.0"
    lock_sets(loaded, upgrade=["alpha"])  # moved deliberately
    assert versions(Lockfile.read(loaded.lockfile_path("k")), X86)["alpha"] == "1.1"


@pytest.mark.skipif(sys.version_info[:2] != (3, 11) or sys.platform != "linux"
                    or os.uname().machine != "x86_64", reason="needs a cp311 x86_64 Linux host")
def test_pip_and_uv_install_from_the_lockfile(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    from uv import find_uv_bin

    lockfile = lock(tmp_path, fixture_index, "  i:\n    requirements: ['beta[fast]', native]\n")["i"]
    path = tmp_path / "pylock.toml"
    path.write_text(lockfile.dumps())
    for installer in ("uv", "pip"):
        env_dir = tmp_path / f"venv-{installer}"
        venv.create(env_dir, with_pip=False)
        python = env_dir / "bin" / "python"
        if installer == "uv":
            cmd = [find_uv_bin(), "pip", "install", "--python", str(python), "-r", str(path),
                   "--no-config", "--cache-dir", str(tmp_path / "uvcache")]
        else:
            # the test environment's pip (>= 26.1 reads pylock.toml) installs into the venv
            cmd = [sys.executable, "-m", "pip", "--python", str(python), "install",
                   "--no-cache-dir", "--disable-pip-version-check", "-r", str(path)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        listed = subprocess.run([find_uv_bin(), "pip", "list", "--python", str(python)],
                                capture_output=True, text=True).stdout
        assert "speedup" in listed and "native" in listed and "alpha" in listed


def test_bad_requirement_text_never_reaches_the_resolver(tmp_path: Path,
                                                         fixture_index: FixtureIndex) -> None:
    from lockmirror.errors import ConfigError

    with pytest.raises(ConfigError):
        lock(tmp_path, fixture_index, "  b:\n    requirements: ['alpha=1.0']\n")
    assert fixture_index.count() == 0


def test_policy_applies_while_locking(tmp_path: Path, fixture_index: FixtureIndex,
                                      catalogue) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from lockmirror.errors import ConfigError

    newest = next(t for f, t in catalogue.upload_times.items() if f.startswith("speedup-1.2"))
    # speedup 1.2 is 1.5 days old, 1.0 is 2.5 days old; min_age_days 2 admits only 1.0
    now = newest + timedelta(days=1.5)
    policy = "policy:\n  min_age_days: 2\n"
    path = write_mirror(tmp_path, fixture_index, "  a:\n    requirements: [speedup]\n", policy)
    result = lock_sets(load_config(path), now=now)[0]
    assert versions(result.lockfile, X86)["speedup"] == "1.0"  # unpinned: the older release

    path = write_mirror(tmp_path, fixture_index, "  a:\n    requirements: [speedup==1.2]\n", policy)
    with pytest.raises(LockmirrorError) as info:
        lock_sets(load_config(path), now=now)
    assert "excluded by policy: speedup==1.2 was uploaded" in str(info.value)  # named once
    assert ("add to mirror.yaml's policy.exceptions an entry {package: speedup, version: "
            "'1.2', rules: [min_age_days], reason: <why it is acceptable>}") in str(info.value)

    waived = policy + ("  exceptions:\n    - {package: speedup, version: '1.2', "
                       "reason: needed for the fast path, rules: [min_age_days]}\n")
    path = write_mirror(tmp_path, fixture_index, "  a:\n    requirements: [speedup==1.2]\n", waived)
    result = lock_sets(load_config(path), now=now)[0]
    assert versions(result.lockfile, X86)["speedup"] == "1.2"
    used = Lockfile.read(result.path).exceptions_used
    assert used and used[0]["package"] == "speedup" and "fast path" in used[0]["reason"]

    expired = policy + ("  exceptions:\n    - {package: speedup, version: '1.2', "
                        "reason: temporary, expires: 2020-01-01}\n")
    path = write_mirror(tmp_path, fixture_index, "  a:\n    requirements: [speedup==1.2]\n", expired)
    with pytest.raises(ConfigError) as expired_info:  # a mirror.yaml mistake, with its line
        lock_sets(load_config(path), now=now)
    assert "expired" in str(expired_info.value) and "policy.exceptions[0]" in str(expired_info.value)
    assert re.match(r"mirror\.yaml:\d+:\d+: ", str(expired_info.value))


def test_sdists_denied_by_policy(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    path = write_mirror(tmp_path, fixture_index, "  s:\n    requirements: [sdistonly]\n",
                        "policy:\n  sdists: deny\n")
    with pytest.raises(ResolutionError) as info:
        lock_sets(load_config(path))
    assert "only an sdist" in str(info.value)


@pytest.mark.parametrize("relative", [False, True])
def test_credentials_in_a_source_url_never_reach_the_lockfile(
        tmp_path: Path, fixture_index: FixtureIndex, relative: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from lockmirror.stages.fetch import fetch_config

    fixture_index.require_basic_auth("reader", "s3cret-pw")
    fixture_index.relative_urls = relative
    path = write_mirror(tmp_path, fixture_index, "  c:\n    requirements: [beta]\n")
    # from the environment: mirror.yaml refuses credentials written into it
    path.write_text(path.read_text().replace(f"url: {fixture_index.url}", "url: ${SOURCE_URL}"))
    monkeypatch.setenv("SOURCE_URL", fixture_index.url_with_auth("reader", "s3cret-pw"))
    loaded = load_config(path)
    result = lock_sets(loaded)[0]
    text = result.path.read_text()
    assert "s3cret" not in text and "reader@" not in text
    assert versions(result.lockfile, X86)["alpha"] == "1.1"
    # the files are fetched with the same credentials, taken from the source URL
    os.environ["LOCKMIRROR_STORE"] = str(tmp_path / "store")
    try:
        summary = fetch_config(loaded)
    finally:
        del os.environ["LOCKMIRROR_STORE"]
    assert summary.downloaded == summary.files - summary.derived > 0


def test_settings_left_at_their_defaults_do_not_move_the_input_hash(tmp_path: Path) -> None:
    from lockmirror.stages.lock_inputs import input_hash

    base = ("version: 1\nsources: [{name: pypi, url: 'https://pypi.org/simple/'}]\n"
            "targets: {t: {python: '3.11', platforms: [manylinux_2_28_x86_64]}}\n"
            "sets: {core: {requirements: [foo]}}\n")
    hashes = {}
    for name, extra in {"bare": "", "defaults": "policy: {yanked: deny, sdists: allow}\n",
                        "changed": "policy: {yanked: warn}\n"}.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(base + extra)
        hashes[name] = input_hash(load_config(path, environ={}), "core")
    # a newer lockmirror's new optional setting is a default too: no lockfile goes stale
    assert hashes["bare"] == hashes["defaults"] != hashes["changed"]


PINNED_MIRROR_YAML = """\
version: 1
name: pinned
sources:
  - name: internal
    url: https://pkgs.example/simple/
    priority: 10
    projects: [ourlib]
    username_env: PKGS_USER
    password_env: PKGS_TOKEN
  - name: pypi
    url: https://pypi.org/simple/
    files_url: [https://files.pythonhosted.org/packages/]
targets:
  py311:
    python: "3.11"
    platforms: [manylinux_2_28_x86_64]
  py312-arm:
    python: "3.12"
    platforms: [manylinux_2_28_aarch64]
    markers: {platform_release: "6.1"}
sets:
  core:
    description: not an input
    requirements: ["requests>=2.31", "ourlib==1.2"]
    prereleases: true
    policy: {sdists: deny}
policy:
  min_age_days: 3
  yanked: warn
  exceptions:
    - {package: requests, version: "2.31.0", reason: reviewed, rules: [min_age_days]}
"""
# what lockmirror of LOCK_FORMAT 3 records for PINNED_MIRROR_YAML's set 'core'
PINNED_INPUT_HASH = "sha256:5dcb46b0fd49984e3a0e948a4474bd1c7fdb1aa1943b123b15681500e1c7153f"
PINNED_INPUT_PARTS = {
    "format": "3", "policy": "1ea3b39f1d211ad8", "requirements": "dac0410cb6fd63de",
    "set": "b7d0eb5c8d377631", "source.internal": "4949fe23a58ef7a5",
    "source.pypi": "58676a4b84052b30", "target.py311": "fd0ad524d3e657e1",
    "target.py312-arm": "d22fa5c457673395"}


def test_the_input_hash_recipe_is_pinned(tmp_path: Path) -> None:
    """The lock-inputs hash (``input-hash``) and its parts (``inputs``) of a fixed
    mirror.yaml, to the byte. Every lockfile records them, and ``lock --check`` compares
    them with what this lockmirror computes: a change to the recipe (what is hashed, how
    it is dumped) without a new LOCK_FORMAT made the lockfiles of a lockmirror of a day
    earlier stale, naming inputs no one changed (4958e21: "the policy; the set's options;
    target 'py311'", found by an outside tester). Settings left at their defaults are not
    hashed, so a new optional setting does not fail this."""
    from lockmirror.formats.lockfile import LOCK_FORMAT
    from lockmirror.stages.lock_inputs import input_hash, input_parts

    path = tmp_path / "mirror.yaml"
    path.write_text(PINNED_MIRROR_YAML)
    loaded = load_config(path, environ={})
    bump = (f"the lock-inputs hash recipe (stages/lock_inputs.py) changed: every lockfile an "
            f"earlier lockmirror wrote now reads as locked from other inputs. Bump LOCK_FORMAT "
            f"(formats/lockfile.py, now {LOCK_FORMAT}) so `lock --check` says the lock format "
            "changed, then pin the new values here")
    assert input_hash(loaded, "core") == PINNED_INPUT_HASH, bump
    assert input_parts(loaded, "core") == PINNED_INPUT_PARTS, bump
