"""The landing page: what it says (sets, packages, versions per target, sizes,
provenance, client configuration), checked in the HTML and in headless Chromium."""

from __future__ import annotations

import html
import re
import shutil
import struct
import subprocess
from pathlib import Path

import helpers
import pytest
from fixtureindex import Catalogue
from index_mirror import SETS, SOURCE, FixtureMirror, make_fixture_mirror
from packaging.utils import canonicalize_name

from lockmirror.formats.client_config import pip_config
from lockmirror.formats.landing_page import (
    EXAMPLE_HTTP_URL,
    EXAMPLE_URL,
    LandingData,
    landing_html,
)
from lockmirror.formats.manifest import Manifest
from lockmirror.stages.index import build_index

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def git(repo: Path, *args: str) -> str:
    return helpers.git(repo, *args).strip()


@pytest.fixture(scope="module")
def mirror(catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> FixtureMirror:
    root = tmp_path_factory.mktemp("landing")
    built = make_fixture_mirror(catalogue, root)
    (root / "mirror.yaml").write_text("version: 1\nname: fixture\n")
    git(root, "init", "-q")
    git(root, "add", "mirror.yaml")
    git(root, "commit", "-q", "-m", "mirror")
    build_index(built.lockfiles, built.store, built.out, mirror_yaml=root / "mirror.yaml",
                title="Fixture mirror")
    return built


def page_text(mirror: FixtureMirror) -> str:
    return (mirror.out / "index.html").read_text()


def test_page_names_sets_packages_versions_and_sizes(mirror: FixtureMirror) -> None:
    visible = re.sub(r"<(style|script)\b.*?</\1>", " ", page_text(mirror), flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", visible))
    assert "Fixture mirror" in text
    for set_name, (requirements, targets, entries) in SETS.items():
        assert f"Set {set_name}" in " ".join(text.split())
        for requirement in requirements:
            assert requirement in text
        for target in targets:
            assert f"constraints/{set_name}-{target.name}.txt" in text
            assert f"requirements/{set_name}-{target.name}.txt" in text
        for project, version, *_ in entries:
            assert canonicalize_name(project) in text and version in text
    assert re.search(r"\d+(\.\d)? KiB", text)
    # the hashed requirements line over http guards against less than it seemed to
    assert ("Read from this server, that requirements file refuses a file altered here alone, "
            "not a server that alters both: take it from a copy you trust") in " ".join(text.split())
    # the yanked release carries its tag in its own row (not just the stylesheet)
    row = next(r for r in re.findall(r"<tr>.*?</tr>", page_text(mirror), flags=re.S)
               if ">yanky<" in r or "yanky</" in r)
    assert '1.1<span class="tag yanked">yanked</span>' in row


@pytest.mark.parametrize(("data", "reason"), [
    (b"[]\n", "AttributeError"),
    (b'{"format": 2}\n', "landing data format 2"),  # the audit said "(ValueError)"
])
def test_the_far_sides_audit_words_a_landing_json_that_does_not_read(
        tmp_path: Path, data: bytes, reason: str) -> None:
    """``audit --mirror`` (its kept revisions) words a landing.json that does not
    read as the far side's quarantine does (both through
    ``landing_page.reading_landing_data``): the file named, the reason, what to run."""
    from lockmirror.errors import LockmirrorError
    from lockmirror.stages.audit_kept import kept_revisions

    (tmp_path / "landing.json").write_bytes(data)
    with pytest.raises(LockmirrorError) as caught:
        kept_revisions(tmp_path)
    assert caught.value.message == f"not the index's own landing data ({reason})"
    assert caught.value.where == str(tmp_path / "landing.json")
    assert caught.value.hint == "run `lockmirror verify` on the mirror"


def test_landing_json_renders_the_same_page(mirror: FixtureMirror) -> None:
    """landing.json (what the far side re-renders the page from) holds everything
    the page shows but the counts, which the manifest gives."""
    data = (mirror.out / "landing.json").read_bytes()
    landing = LandingData.from_json(data)
    assert landing.to_json() == data
    assert landing.title == "Fixture mirror" and landing.provenance.commit
    assert b"secret-token" not in data  # published: the source's credentials are dropped
    assert [s.name for s in landing.sets] == sorted(SETS)
    files = Manifest.read(mirror.out / "manifest.json").files
    artifacts = [e for rel, e in files.items()
                 if rel.startswith("files/") and not rel.endswith(".metadata")]
    projects = {rel.split("/")[1] for rel in files if rel.startswith("simple/")
                and rel.count("/") == 2}
    page = landing.page(projects=len(projects), files=len(artifacts),
                        total_size=sum(e.size for e in artifacts))
    assert landing_html(page) == page_text(mirror)
    assert "landing.json" in files


def test_versions_are_shown_per_target(mirror: FixtureMirror) -> None:
    # alpha is 1.1 on host and 2.0 on arm in the core set
    row = re.search(r'<tr><td><a href="simple/alpha/">alpha</a></td>(.*?)</tr>', page_text(mirror))
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert cells[:2] == ["1.1", "2.0"]


def test_provenance_is_the_mirror_yaml_commit(mirror: FixtureMirror) -> None:
    commit = git(mirror.root, "log", "-1", "--format=%H", "--", "mirror.yaml")
    text = page_text(mirror)
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    assert commit in text
    assert "modified since this commit" not in text
    # credentials in a source URL never reach the page
    assert "secret-token" not in text and "user:" not in text
    assert SOURCE.replace("user:secret-token@", "") in text


def test_an_edited_mirror_yaml_is_flagged(mirror: FixtureMirror, tmp_path: Path) -> None:
    (mirror.root / "mirror.yaml").write_text("version: 1\nname: edited\n")
    try:
        out = tmp_path / "dist-index"
        build_index(mirror.lockfiles, mirror.store, out, mirror_yaml=mirror.root / "mirror.yaml")
        assert "modified since this commit" in (out / "index.html").read_text()
    finally:
        git(mirror.root, "checkout", "-q", "--", "mirror.yaml")


def test_links_are_relative(mirror: FixtureMirror) -> None:
    for link in re.findall(r'href="([^"]+)"', page_text(mirror)):
        assert "://" not in link and not link.startswith("/"), link
        target = link.split("#")[0]
        if target:
            assert (mirror.out / target).exists(), link


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-features=HttpsUpgrades", f"--user-data-dir={profile}",
         *args],
        capture_output=True, text=True, timeout=120, check=False)


# as written, and as Chromium's DOM dump gives it back (data-mirror-config="")
CONFIG_NODE = re.compile(
    r'<(pre|code) data-mirror-config(?:="")? data-plain-http="([^"]*)">(.*?)</\1>', re.S)


def config_texts(url: str, environments: tuple[str, ...]) -> list[str]:
    """The configuration texts the page shows for the simple index ``url``: each
    snippet of ``pip-config``, then the constraints and hashed requirements lines."""
    from lockmirror.formats.client_config import pip_index_arguments

    root = url.removesuffix("simple/")
    return [*(s.text for s in pip_config(url, environments)),
            f"pip install {' '.join(pip_index_arguments(url))} -c "
            f"{root}constraints/SET-TARGET.txt PACKAGE",
            f"pip install {' '.join(pip_index_arguments(url))} --require-hashes -r "
            f"{root}requirements/SET-TARGET.txt"]


def test_the_page_carries_the_configuration_for_https_and_for_plain_http(
        mirror: FixtureMirror) -> None:
    """Each snippet as pip-config gives it for an https URL, and (for a page its
    script finds on plain http to a host pip does not trust) for an http one."""
    environments = LandingData.from_json((mirror.out / "landing.json").read_bytes()
                                         ).environments()
    nodes = CONFIG_NODE.findall(page_text(mirror))
    assert [html.unescape(text) for _, _, text in nodes] == config_texts(
        EXAMPLE_URL, environments)
    assert [html.unescape(http) for _, http, _ in nodes] == config_texts(
        EXAMPLE_HTTP_URL, environments)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_in_headless_chromium(mirror: FixtureMirror, tmp_path: Path) -> None:
    url = (mirror.out / "index.html").as_uri()
    dom = chromium("--dump-dom", url, profile=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    visible = re.sub(r"<(script|style)>.*?</\1>", " ", dom.stdout, flags=re.DOTALL)
    text = html.unescape(re.sub(r"<[^>]+>", " ", visible))
    for set_name, (_, _, entries) in SETS.items():
        assert set_name in text
        for project, version, *_ in entries:
            assert canonicalize_name(project) in text and version in text
    # the script put this mirror's own address into the snippets
    simple = (mirror.out / "simple").as_uri() + "/"
    assert f"index-url = {simple}" in text
    assert EXAMPLE_URL not in text
    # the constraints example names the served file, not a path on the client (found
    # by an outside tester: `-c constraints/...` pasted on a client found no file)
    root = mirror.out.as_uri() + "/"
    assert f"-c {root}constraints/SET-TARGET.txt" in text and "mirror.example.com" not in text

    shot = tmp_path / "landing.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1280,2000", url,
                    profile=tmp_path / "profile-shot")
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2000)
    assert len(data) > 50_000  # a rendered page, not a blank canvas


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
@pytest.mark.parametrize("host", ["mirror.internal", "127.0.0.1"])
def test_in_headless_chromium_over_http(mirror: FixtureMirror, tmp_path: Path,
                                        host: str) -> None:
    """Served on plain http, the page shows what ``lockmirror pip-config`` prints for
    its address: with trusted-host at a LAN name (found by an outside tester: pip
    ignored the mirror, "not a trusted or secure host"), without it at 127.0.0.1.
    Chromium reaches mirror.internal at 127.0.0.1 by its own resolver rule."""
    from lockmirror.stages.serve import MirrorServer

    environments = LandingData.from_json((mirror.out / "landing.json").read_bytes()
                                         ).environments()
    with MirrorServer(mirror.out, "127.0.0.1", 0) as server:
        url = f"http://{host}:{server.port}/"
        dom = chromium("--dump-dom", "--host-resolver-rules=MAP mirror.internal 127.0.0.1",
                       url, profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    shown = [html.unescape(text) for _, _, text in CONFIG_NODE.findall(dom.stdout)]
    assert shown == config_texts(f"{url}simple/", environments)
    assert ("trusted-host = mirror.internal\n" in shown[0]) is (host == "mirror.internal")


def test_serve_takes_a_landing_json_that_is_no_object_as_none(tmp_path: Path) -> None:
    """Found by a reviewer: `[]` made serve fail with an internal error."""
    from lockmirror.commands.serve import _environments

    for data in ("[]", '"x"', "3", "{}"):
        (tmp_path / "landing.json").write_text(data)
        assert _environments(tmp_path) == ()
