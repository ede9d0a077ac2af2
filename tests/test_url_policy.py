"""Lockfile URLs belong to their sources (issue 19, point 1).

Model-level: :func:`lockmirror.formats.url_policy.url_problem` and friends on every
rule (file hosts, pinning, http, file://, credentials, dot segments). CLI:
``validate``, ``fetch``, ``index`` and ``bundle`` refuse a lockfile whose URL
left its source with one line naming the lockfile, the package and the URL,
before any file is opened or downloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env
from packaging.utils import canonicalize_name
from packaging.version import Version

from lockmirror import cli, errors
from lockmirror.config_schema import SourceConfig
from lockmirror.formats.lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile

# The CLI tests below need none of the new modules: on the code before issue 19
# they fail by what the commands do, not by an import.
try:
    from lockmirror.formats.url_policy import (
        check_lockfile_urls,
        entries_of,
        file_prefixes,
        package_problem,
        url_problem,
    )
except ImportError:  # pragma: no cover - only on the code before issue 19
    pass

PYPI = SourceConfig(name="pypi", url="https://pypi.org/simple/")
WHEEL = "amqp-5.4.2-py3-none-any.whl"
PYPI_URL = f"https://files.pythonhosted.org/packages/aa/bb/cc/{WHEEL}"
EVIL_URL = f"https://evil.example.com/{WHEEL}"
TARGET = LockedTarget("linux", "3.11", "cp", ("manylinux_2_28_x86_64",),
                      "python_version == '3.11' and sys_platform == 'linux'")


def source(**fields: object) -> SourceConfig:
    return SourceConfig.model_validate({"name": "private", "url": "https://idx.corp/simple/",
                                        **fields})


# --------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------


def test_pypi_files_live_on_files_pythonhosted_org() -> None:
    assert file_prefixes(PYPI) == ("https://files.pythonhosted.org/packages/",)
    assert url_problem(PYPI_URL, [PYPI]) is None
    problem = url_problem(EVIL_URL, [PYPI])
    assert problem is not None and "files.pythonhosted.org/packages/" in problem
    # same host, outside the path; another port; the index host itself
    assert url_problem(f"https://files.pythonhosted.org/other/{WHEEL}", [PYPI]) is not None
    assert url_problem(f"https://files.pythonhosted.org:8443/packages/{WHEEL}", [PYPI]) \
        is not None
    assert url_problem(f"https://pypi.org/packages/{WHEEL}", [PYPI]) is not None
    assert url_problem(f"https://FILES.pythonhosted.org:443/packages/x/{WHEEL}", [PYPI]) is None


def test_another_source_serves_from_its_own_host_or_its_files_url() -> None:
    own = source()
    assert file_prefixes(own) == ("https://idx.corp/",)
    assert url_problem(f"https://idx.corp/files/{WHEEL}", [own]) is None
    assert url_problem(f"https://cdn.corp/{WHEEL}", [own]) is not None
    declared = source(files_url=["https://cdn.corp/wheels"])
    assert file_prefixes(declared) == ("https://cdn.corp/wheels/",)
    assert url_problem(f"https://cdn.corp/wheels/{WHEEL}", [declared]) is None
    assert url_problem(f"https://cdn.corp/wheelsX/{WHEEL}", [declared]) is not None
    assert url_problem(f"https://idx.corp/files/{WHEEL}", [declared]) is not None  # replaced


def test_never_file_urls_credentials_or_dot_segments() -> None:
    for url, words in [
        ("file:///etc/passwd", "file:// URLs are never allowed"),
        (f"https://user:s3cret@files.pythonhosted.org/packages/{WHEEL}", "user name or password"),
        (f"https://files.pythonhosted.org/packages/../evil/{WHEEL}", "'..'"),
        (f"https://files.pythonhosted.org/packages/%2e%2e/evil/{WHEEL}", "'..'"),
        (f"https://files.pythonhosted.org/packages/./{WHEEL}", "'.' or '..' segments"),
        (f"https://files.pythonhosted.org/packages\\..\\{WHEEL}", "backslash"),
        # what a server decodes, or decodes once more, into a step out of the directory
        (f"https://files.pythonhosted.org/packages/%5c..%5c..%5cevil/{WHEEL}", "backslash"),
        (f"https://files.pythonhosted.org/packages/..;/evil/{WHEEL}", "'..'"),
        (f"https://files.pythonhosted.org/packages/..%00/evil/{WHEEL}", "control character"),
        (f"https://files.pythonhosted.org/packages/%252e%252e/evil/{WHEEL}", "encoded twice"),
        (f"https://files.pythonhosted.org/packages/%E2%80%A5/evil/{WHEEL}", "'..'"),
        (f"ftp://files.pythonhosted.org/packages/{WHEEL}", "https only"),
        ("https:///packages/x.whl", "no host"),
    ]:
        problem = url_problem(url, [PYPI])
        assert problem is not None and words in problem, (url, problem)
        assert "s3cret" not in problem
    assert url_problem("file:///etc/passwd", None) is not None  # also without mirror.yaml


def test_a_page_link_follows_the_lockfile_rule() -> None:
    """LinkRule: a project page's links as ``lock`` reads them (tests/test_hostile_upstream
    serves such pages): the lockfile's rule for the page's source; a ``file://`` link in
    any case of its scheme passes nowhere (mirror.yaml has no file:// source)."""
    from lockmirror.formats.url_policy import LinkRule

    loopback = SourceConfig(name="up", url="http://127.0.0.1:8080/simple/")
    assert LinkRule(loopback).problem(f"http://127.0.0.1:8080/files/{WHEEL}") is None
    assert LinkRule(PYPI).problem(f"https://files.pythonhosted.org/packages/{WHEEL}") is None
    for source, url in [(loopback, f"http://127.0.0.1:9090/files/{WHEEL}"),
                        (loopback, f"http://localhost:8080/files/{WHEEL}"),
                        (loopback, f"http://169.254.169.254/latest/{WHEEL}")]:
        problem = LinkRule(source).problem(url)
        assert problem is not None and "not under a file location" in problem, (url, problem)
    for url in (f"file:///tmp/outside/{WHEEL}", f"FILE:///tmp/outside/{WHEEL}",
                f"File://elsewhere/srv/wheels/files/{WHEEL}"):
        for source in (loopback, PYPI):
            assert LinkRule(source).problem(url) == "file:// URLs are never allowed in a lockfile"


@pytest.mark.parametrize("url", ["file:///tmp/x/simple/", "FILE:///tmp/x/simple"])
def test_mirror_yaml_refuses_a_file_source(url: str) -> None:
    """Nothing can be locked from a file:// source (a lockfile never carries a file://
    URL): mirror.yaml refuses one, saying what to serve instead. The old code took it,
    and lock failed on requests' 'No connection adapters were found'."""
    with pytest.raises(ValueError, match="is a file:// source") as raised:
        SourceConfig(name="local", url=url)
    assert ("serve the tree over http on loopback (python3 -m http.server --bind 127.0.0.1 "
            "8000 --directory /tmp/x) and give the source url: http://127.0.0.1:8000/simple/"
            ) in str(raised.value)


@pytest.mark.parametrize("command", [["validate"], ["validate", "--online"], ["lock"],
                                     ["lock", "--check", "--resolve"], ["outdated"]])
def test_every_command_refuses_a_file_source_up_front(tmp_path: Path,
                                                      command: list[str]) -> None:
    tree = tmp_path / "tree" / "simple" / "amqp"
    tree.mkdir(parents=True)
    (tree / "index.html").write_text(f'<a href="../../files/{WHEEL}">{WHEEL}</a>\n')
    repo(tmp_path, package())
    (tmp_path / "mirror.yaml").write_text(
        MIRROR.replace("https://pypi.org/simple/", (tmp_path / "tree" / "simple").as_uri()))
    done = run_cli(tmp_path, *command)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("lockmirror: error: ") and "mirror.yaml:5" in line, line
    assert (f"sources[0].url: '{(tmp_path / 'tree' / 'simple').as_uri()}' is a file:// "
            "source, which lockmirror cannot lock from") in line
    assert f"--directory {tmp_path / 'tree'}) and give" in line


def test_a_decoded_space_or_letter_outside_ascii_is_a_path_like_any_other() -> None:
    """Private indexes name projects with spaces (Azure DevOps) or other scripts:
    neither steps out of a directory."""
    source = SourceConfig(name="azure", url="https://pkgs.dev.azure.com/org/_packaging/f/pypi/simple/")
    for path in ("org/My%20Project/_apis/packaging/f/pypi/download", "pypi-%E2%82%AC/files"):
        assert url_problem(f"https://pkgs.dev.azure.com/{path}/{WHEEL}", [source]) is None


def test_plain_http_needs_an_http_source_that_says_so_or_loopback() -> None:
    lan = source(name="lan", url="http://10.0.0.5:8080/simple/")
    url = f"http://10.0.0.5:8080/files/{WHEEL}"
    problem = url_problem(url, [lan])
    assert problem is not None and "allow_http: true" in problem
    assert url_problem(url, [source(name="lan", url="http://10.0.0.5:8080/simple/",
                                    allow_http=True)]) is None
    # an https source never lends its name to http, even with the flag or a files_url
    https = source(allow_http=True, files_url=["http://idx.corp/"])
    assert url_problem(f"http://idx.corp/{WHEEL}", [https]) is not None
    # loopback (the fixture index in tests): the bytes never leave the machine
    local = SourceConfig(name="fixture", url="http://127.0.0.1:4321/simple/")
    assert url_problem(f"http://127.0.0.1:4321/files/x/{WHEEL}", [local]) is None
    assert url_problem(f"http://127.0.0.1:9999/files/x/{WHEEL}", [local]) is not None
    assert url_problem(f"http://[::1]/files/{WHEEL}",
                       [SourceConfig(name="v6", url="http://[::1]/simple/")]) is None
    # without mirror.yaml: https anywhere, http only to loopback
    assert url_problem(url, None) is not None
    assert url_problem(f"http://127.0.0.1:4321/files/{WHEEL}", None) is None


def package(url: str = PYPI_URL, index: str = "https://pypi.org/simple/", name: str = "amqp",
            sha256: str = "a" * 64, size: int = 1000) -> LockedPackage:
    wheel = LockedFile(filename=WHEEL, url=url, size=size, sha256=sha256)
    return LockedPackage(name=canonicalize_name(name), version=Version("5.4.2"),
                         targets=("linux",), index=index, wheels=(wheel,))


def problem_of(entry: LockedPackage, sources: list[SourceConfig]) -> tuple[str | None, str] | None:
    return package_problem(entries_of(lockfile(entry))[0], sources)


def test_a_pinned_package_must_come_from_its_source() -> None:
    private = source(projects=["amqp"])
    sources = [PYPI, private]
    problem = problem_of(package(), sources)  # pinned to private, index says pypi
    assert problem is not None and "not a source mirror.yaml declares for amqp" in problem[1]
    problem = problem_of(package(index="https://idx.corp/simple/"), sources)
    assert problem is not None and problem[0] == PYPI_URL  # a PyPI URL for a private package
    assert problem_of(package(f"https://idx.corp/f/{WHEEL}", "https://idx.corp/simple/"),
                           sources) is None
    # an unpinned package may come from any source, but its files from the one it names
    assert problem_of(package(name="kombu"), sources) is None
    assert problem_of(package(f"https://idx.corp/f/{WHEEL}", name="kombu"), sources) \
        is not None
    # the index is compared without the user info a source URL may carry
    secret = SourceConfig(name="pypi", url="https://u:pw@pypi.org/simple/")
    assert problem_of(package(), [secret]) is None


def test_the_error_is_one_line_naming_lockfile_package_and_url() -> None:
    lock = lockfile(package(url=EVIL_URL), package(url=EVIL_URL, name="kombu"))
    with pytest.raises(errors.UrlPolicyError) as info:
        check_lockfile_urls(lock, "lockfiles/pylock.core.toml", [PYPI])
    text = str(info.value)
    assert "\n" not in text and info.value.exit_code == 2
    assert text.startswith(f"lockfiles/pylock.core.toml: package amqp 5.4.2: {EVIL_URL}: ")
    assert text.endswith("(1 more packages refused)")
    with pytest.raises(errors.UrlPolicyError) as info:
        check_lockfile_urls(lockfile(package(url=PYPI_URL.replace("https://",
                                                                  "https://tok:pw@"))),
                            "x.toml", [PYPI])
    assert "pw" not in str(info.value).replace("password", "")


# --------------------------------------------------------------------------
# The front doors
# --------------------------------------------------------------------------

MIRROR = """\
version: 1
name: demo
sources:
  - name: pypi
    url: https://pypi.org/simple/
targets:
  linux:
    python: "3.11"
    platforms: [manylinux_2_28_x86_64]
sets:
  core:
    requirements: [amqp]
"""


def lockfile(*packages: LockedPackage) -> Lockfile:
    return Lockfile(set_name="core", requirements=("amqp",), targets=(TARGET,),
                    packages=packages, input_hash="sha256:" + "0" * 64)


def repo(tmp_path: Path, *packages: LockedPackage) -> Path:
    (tmp_path / "mirror.yaml").write_text(MIRROR)
    lockfile(*packages).write(tmp_path / "lockfiles" / "pylock.core.toml")
    return tmp_path / "lockfiles" / "pylock.core.toml"


def run_cli(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # a bound on a run that would block on the old code, not a timed assertion
    return subprocess.run([sys.executable, "-m", "lockmirror", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env=subprocess_env(SOURCE_DATE_EPOCH="0"))


def test_validate_refuses_a_host_swap_that_keeps_the_hash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = repo(tmp_path, package())
    assert cli.main(["validate"]) == 0
    capsys.readouterr()
    lock = Lockfile.read(path)
    swapped = dataclasses.replace(lock.packages[0], wheels=tuple(
        dataclasses.replace(w, url=EVIL_URL) for w in lock.packages[0].wheels))
    dataclasses.replace(lock, packages=(swapped,)).write(path)
    assert cli.main(["validate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{path}: package amqp 5.4.2: {EVIL_URL}" in err


@pytest.mark.parametrize("command", [["fetch"], ["index"], ["bundle", "--no-tool"]])
def test_stages_refuse_a_file_url_before_opening_it(tmp_path: Path, command: list[str]) -> None:
    secret = tmp_path / "outside" / "id_rsa"
    secret.parent.mkdir()
    secret.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    path = repo(tmp_path, package(url=secret.as_uri(), sha256=digest,
                                  size=secret.stat().st_size))
    done = run_cli(tmp_path, *command)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (f"lockmirror: error: {path.resolve()}: package amqp 5.4.2: "
                           f"{secret.as_uri()}: file:// URLs are never allowed in a lockfile\n")
    store = tmp_path / ".store"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))
    assert not (tmp_path / "dist-index").exists() and not (tmp_path / "dist").exists()


def test_fetch_never_opens_a_fifo_named_by_a_file_url(tmp_path: Path) -> None:
    # Opening a FIFO for reading blocks until a writer comes: a fetch that opened
    # it would hang (the old code did) instead of answering.
    fifo = tmp_path / "outside" / "pipe"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    repo(tmp_path, package(url=fifo.as_uri()))
    done = run_cli(tmp_path, "fetch", "--progress", "none")
    assert done.returncode == 2 and fifo.as_uri() in done.stderr
    assert "Traceback" not in done.stderr


def test_index_without_mirror_yaml_applies_the_rules_that_need_no_sources(
        tmp_path: Path) -> None:
    path = repo(tmp_path, package(url=f"http://10.1.1.1/{WHEEL}"))
    (tmp_path / "mirror.yaml").unlink()
    done = run_cli(tmp_path, "index", str(path), "--store", "s", "--out", "o")
    assert done.returncode == 2 and "plain http" in done.stderr and f"{WHEEL}" in done.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("key", "value", "words"), [
    ("archive", {"url": EVIL_URL, "hashes": {"sha256": "a" * 64}}, "a `archive` table"),
    ("vcs", {"type": "git", "url": "https://evil.example.com/x.git", "commit-id": "a" * 40},
     "a `vcs` table"),
    ("directory", {"path": "/etc"}, "a `directory` table"),
])
def test_validate_refuses_what_an_installer_would_follow_but_lockmirror_never_writes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        key: str, value: dict[str, object], words: str) -> None:
    import tomllib

    import tomli_w

    monkeypatch.chdir(tmp_path)
    path = repo(tmp_path, package())
    data = tomllib.loads(path.read_text())
    data["packages"][0][key] = value
    path.write_text(tomli_w.dumps(data))
    assert cli.main(["validate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: package amqp 5.4.2: {words}" in err, err


def test_validate_refuses_a_local_path_for_a_wheel(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tomllib

    import tomli_w

    monkeypatch.chdir(tmp_path)
    path = repo(tmp_path, package())
    data = tomllib.loads(path.read_text())
    wheel = data["packages"][0]["wheels"][0]
    del wheel["url"]
    wheel["path"] = "/etc/passwd"
    path.write_text(tomli_w.dumps(data))
    assert cli.main(["validate"]) == 2
    assert "a wheel or sdist with a local `path`" in capsys.readouterr().err


def test_validate_refuses_a_url_naming_another_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an outside tester: an entry named amqp-5.4.2 pointing at vine's wheel
    (its real URL, size and sha256) passed validate and fetch. PEP 503 has a link's
    text match the URL's file name; a percent-encoded one matches once decoded."""
    import tomllib

    import tomli_w

    monkeypatch.chdir(tmp_path)
    path = repo(tmp_path, package())
    data = tomllib.loads(path.read_text())
    wheel = data["packages"][0]["wheels"][0]
    wheel["url"] = PYPI_URL.replace(WHEEL, "vine-5.1.0-py3-none-any.whl")
    path.write_text(tomli_w.dumps(data))
    assert cli.main(["validate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (
        f"{path}: package amqp 5.4.2: the URL of {WHEEL} names another file "
        "(vine-5.1.0-py3-none-any.whl)") in err, err
    wheel["url"] = PYPI_URL.replace("amqp-5.4.2", "amqp-5.4%2E2")
    path.write_text(tomli_w.dumps(data))
    assert cli.main(["validate"]) == 0
    # a PEP 691 index may serve a file at a URL naming no file (found by a reviewer:
    # lock wrote such lockfiles, and every later stage refused them)
    wheel["url"] = PYPI_URL.replace(WHEEL, "content")
    path.write_text(tomli_w.dumps(data))
    assert cli.main(["validate"]) == 0


def test_validate_reads_the_lockfiles_as_pep_751_too(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an outside tester: a second entry named ``AMQP`` (not a normalized
    name; its URLs fine) passed validate, which the PR workflow runs to check the
    lockfiles; lock --check and fetch refused it later."""
    import tomllib

    import tomli_w

    monkeypatch.chdir(tmp_path)
    path = repo(tmp_path, package())
    data = tomllib.loads(path.read_text())
    data["packages"][0]["name"] = "AMQP"
    path.write_text(tomli_w.dumps(data))
    assert cli.main(["validate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "'AMQP' is not normalized" in err, err


def test_the_doit_stages_refuse_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror import doit_tasks

    path = repo(tmp_path, package(url=EVIL_URL))
    project = doit_tasks.Project(tmp_path / "mirror.yaml")
    for task in (doit_tasks.fetch_task(project), doit_tasks.index_task(project),
                 doit_tasks.bundle_task(project)):
        failed = task["actions"][0]()
        assert failed is not None, task["doc"]
        assert failed.message.startswith(f"{path.resolve()}: package amqp 5.4.2: {EVIL_URL}: ")
    assert not (tmp_path / "dist-index").exists() and not (tmp_path / "dist").exists()
    assert not (tmp_path / ".store").exists() or not any(
        p.is_file() for p in (tmp_path / ".store").rglob("*"))
    capsys.readouterr()
