"""Client configuration (``lockmirror pip-config``, ``serve``, the landing page):
copied as given, it makes pip and uv install from the mirror.

Found by an outside tester: a mirror on plain http at a LAN name
(``http://mirror.internal:8080/``, as ``lockmirror serve --host 0.0.0.0`` serves
it) was ignored by pip ("is not a trusted or secure host") wherever the
instructions lacked ``trusted-host``; and the "uv project" snippet listed one
``environments`` entry per target, which uv refuses in a project whose
requires-python leaves out one target's Python ("don't overlap with Python
requirement"). The runs here use real pip and uv against the fixture mirror
served on 127.0.0.1 and reached by :data:`servers.LAN_HOST`, a host pip does not
count as loopback.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtureindex import Catalogue
from helpers import subprocess_env
from index_mirror import HOST_PYTHON, FixtureMirror, make_built_mirror
from servers import LAN_HOST

from lockmirror.formats.client_config import (
    pip_config,
    pip_index_arguments,
    render_pip_config,
    trusted_host,
)
from lockmirror.formats.landing_page import LandingData, SetTarget, target_markers
from lockmirror.stages.serve import MirrorServer

REFUSED = "is not a trusted or secure host"

# url -> the host pip must be told to trust (None: pip trusts it already)
TRUST = {
    "http://mirror.internal:8080/simple/": "mirror.internal",
    "http://Mirror.Internal/simple/": "mirror.internal",
    "http://10.0.0.5:8080/simple/": "10.0.0.5",
    "http://[fd00::5]:8080/simple/": "[fd00::5]",
    f"http://{LAN_HOST}:8080/simple/": LAN_HOST,
    "http://localhost:8080/simple/": None,
    "http://127.0.0.1:8080/simple/": None,
    "http://127.0.0.2/simple/": None,
    "http://[::1]:8080/simple/": None,
    "https://mirror.internal/simple/": None,
    "file:///srv/mirror/simple/": None,
}


@pytest.mark.parametrize(("url", "host"), TRUST.items())
def test_trusted_host_is_what_pip_asks_for(url: str, host: str | None) -> None:
    """pip's own check (the pip this suite runs) agrees: the URL is secure to pip
    exactly when no host is named, and the named host (without its port) makes it so."""
    from pip._internal.models.link import Link
    from pip._internal.network.session import PipSession

    assert trusted_host(url) == host
    with PipSession() as session:
        assert session.is_secure_origin(Link(url)) is (host is None)
        if host is not None:
            session.add_trusted_host(host)
            assert session.is_secure_origin(Link(url))
            assert session.is_secure_origin(Link(url.replace(":8080/", ":9090/")))


def test_configuration_for_an_http_mirror_on_a_lan_name() -> None:
    url = "http://mirror.internal:8080/simple/"
    texts = {s.title: s.text for s in pip_config(url)}
    assert texts["pip"] == f"[global]\nindex-url = {url}\ntrusted-host = mirror.internal\n"
    assert texts["Environment variables"].splitlines()[:2] == [
        f"export PIP_INDEX_URL={url}", "export PIP_TRUSTED_HOST=mirror.internal"]
    assert texts["One command"] == (
        f"pip install --index-url {url} --trusted-host mirror.internal PACKAGE\n"
        f"uv pip install --default-index {url} PACKAGE\n")
    assert pip_index_arguments(url) == ["--index-url", url, "--trusted-host", "mirror.internal"]


@pytest.mark.parametrize("url", ["https://mirror.example/simple/", "http://127.0.0.1:8080/simple/",
                                 "http://localhost/simple/", "file:///srv/mirror/simple/"])
def test_configuration_for_a_mirror_pip_trusts_names_no_host(url: str) -> None:
    text = render_pip_config(url)
    assert "trusted-host" not in text and "TRUSTED_HOST" not in text
    assert f"pip install --index-url {url} PACKAGE\n" in text
    assert pip_index_arguments(url) == ["--index-url", url]


# --------------------------------------------------------------------------
# Real pip and uv, copying the snippets as they are
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mirror(catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> FixtureMirror:
    return make_built_mirror(catalogue, tmp_path_factory.mktemp("client-config"))


@pytest.fixture(scope="module")
def lan_url(mirror: FixtureMirror) -> Iterator[str]:
    """The mirror served on 127.0.0.1, as a client on the LAN names it."""
    with MirrorServer(mirror.out, "127.0.0.1", 0) as server:
        yield f"http://{LAN_HOST}:{server.port}/simple/"


def client_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No pip or uv settings of this machine or user (run in ``tmp_path``, so no
    project's either); nothing between the client and the mirror."""
    return subprocess_env(installers=True, HOME=str(tmp_path / "home"),
                          XDG_CONFIG_HOME=str(tmp_path / "xdg"),
                          NO_PROXY=f"{LAN_HOST},127.0.0.1", no_proxy=f"{LAN_HOST},127.0.0.1",
                          **extra)


def run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
                          check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and REFUSED not in output, output[-3000:]
    return output


def pip(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "pip", *arguments]


def uv(*arguments: str) -> list[str]:
    from uv import find_uv_bin

    return [find_uv_bin(), *arguments]


# sdistonly is an sdist: its build requirement comes from the mirror too, through
# the pip that pip starts for the isolated build
PACKAGES = ("sdistonly", "beta")


def installed(target: Path) -> set[str]:
    return {p.name.split("-")[0].lower() for p in target.glob("*.dist-info")}


def test_pip_conf_snippet(lan_url: str, tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(pip_config(lan_url)[0].text)
    run(pip("install", "--no-cache-dir", "--target", str(tmp_path / "t"), *PACKAGES),
        client_env(tmp_path, PIP_CONFIG_FILE=str(conf)), tmp_path)
    assert installed(tmp_path / "t") >= {"sdistonly", "beta"}


def test_environment_snippet(lan_url: str, tmp_path: Path) -> None:
    exports = dict(shlex.split(line, comments=True)[1].split("=", 1)
                   for line in pip_config(lan_url)[1].text.splitlines())
    env = client_env(tmp_path, **exports)
    run(pip("install", "--no-cache-dir", "--target", str(tmp_path / "pip"), *PACKAGES), env,
        tmp_path)
    run(uv("pip", "install", "--target", str(tmp_path / "uv"), "--python", sys.executable,
           "--cache-dir", str(tmp_path / "uv-cache"), *PACKAGES), env, tmp_path)
    assert installed(tmp_path / "pip") == installed(tmp_path / "uv") >= {"sdistonly", "beta"}


def test_one_command_snippet(lan_url: str, tmp_path: Path) -> None:
    for line in pip_config(lan_url)[4].text.splitlines():  # a pip line, a uv line
        program, *arguments = shlex.split(line.replace("PACKAGE", " ".join(PACKAGES)))
        target = ("--target", str(tmp_path / program))
        command = (pip(*arguments, "--no-cache-dir", *target) if program == "pip" else
                   uv(*arguments, "--python", sys.executable, "--cache-dir",
                      str(tmp_path / "cache"), *target))
        run(command, client_env(tmp_path), tmp_path)
    assert installed(tmp_path / "pip") == installed(tmp_path / "uv") >= {"sdistonly", "beta"}


def test_uv_toml_snippet(lan_url: str, tmp_path: Path) -> None:
    config = tmp_path / "uv.toml"
    config.write_text(pip_config(lan_url)[2].text)
    run(uv("pip", "install", "--config-file", str(config), "--target", str(tmp_path / "t"),
           "--python", sys.executable, "--cache-dir", str(tmp_path / "cache"), *PACKAGES),
        client_env(tmp_path), tmp_path)
    assert installed(tmp_path / "t") >= {"sdistonly", "beta"}


def test_uv_project_snippet_in_a_project_newer_than_one_target(
        mirror: FixtureMirror, lan_url: str, tmp_path: Path) -> None:
    """A project as ``uv init`` writes it on this Python (requires-python >= this
    minor) locks with the snippet of a mirror that also serves an older Python:
    uv refused each entry outside requires-python, now the snippet's one entry
    joins the targets, and uv still resolves each target apart (alpha 1.1 on
    the host, 2.0 on the Python 3.12 target)."""
    data = LandingData.from_json((mirror.out / "landing.json").read_bytes())
    minor = int(HOST_PYTHON.split(".")[1])
    older = SetTarget("old", f"3.{minor - 2}", "cp", ("manylinux_2_28_x86_64",))
    markers = target_markers([older, *(t for s in data.sets for t in s.targets)])
    snippet = next(s.text for s in pip_config(lan_url, markers) if s.title == "uv project")
    project = tmp_path / "app"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "app"\nversion = "0.1.0"\nrequires-python = ">={HOST_PYTHON}"\n'
        f'dependencies = ["beta"]\n\n{snippet}')
    run(uv("lock", "--cache-dir", str(tmp_path / "cache")), client_env(tmp_path), project)
    locked = tomllib.loads((project / "uv.lock").read_text())
    versions = {(p["name"], p["version"]) for p in locked["package"]}
    assert {("beta", "1.0"), ("alpha", "1.1"), ("alpha", "2.0")} <= versions
