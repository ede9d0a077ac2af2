"""The fixture index itself: what it serves, its switches, and real installers against it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from fixtureindex import Catalogue, FixtureIndex, build_catalogue
from helpers import subprocess_env

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
REPO = Path(__file__).resolve().parents[1]


def fetch(url: str, headers: dict[str, str] | None = None,
          data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_catalogue_is_deterministic(catalogue: Catalogue, tmp_path: Path) -> None:
    again = build_catalogue(tmp_path)
    assert [(f.filename, f.sha256) for f in again] == [(f.filename, f.sha256) for f in catalogue]


def test_json_page_matches_the_files(fixture_index: FixtureIndex, catalogue: Catalogue) -> None:
    status, headers, body = fetch(fixture_index.url + "yanky/", {"Accept": JSON_ACCEPT})
    assert status == 200 and headers["Content-Type"] == JSON_ACCEPT
    page = json.loads(body)
    assert page["meta"]["api-version"] == "1.1"
    assert page["versions"] == ["1.0", "1.1"]
    by_name = {f["filename"]: f for f in page["files"]}
    yanked = catalogue.find("yanky", "1.1")
    assert by_name[yanked.filename]["yanked"] == "broken build, use 1.0"
    assert by_name[yanked.filename]["hashes"]["sha256"] == yanked.sha256
    assert by_name[yanked.filename]["size"] == yanked.size
    assert by_name[yanked.filename]["upload-time"] == yanked.upload_time.strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    # PEP 658: the advertised hash is the hash of the served .metadata file
    advertised = by_name[yanked.filename]["core-metadata"]["sha256"]
    status, _, metadata = fetch(by_name[yanked.filename]["url"] + ".metadata")
    assert status == 200 and metadata == yanked.metadata
    assert hashlib.sha256(metadata).hexdigest() == advertised


def test_html_page_and_html_only(fixture_index: FixtureIndex, catalogue: Catalogue) -> None:
    alpha2 = catalogue.find("alpha", "2.0")
    status, headers, body = fetch(fixture_index.url + "alpha/", {"Accept": "text/html"})
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    text = body.decode()
    assert f"{alpha2.filename}#sha256={alpha2.sha256}" in text
    assert 'data-requires-python="&gt;=3.12"' in text
    assert f'data-core-metadata="sha256={alpha2.metadata_sha256}"' in text
    fixture_index.html_only = True
    _, headers, _ = fetch(fixture_index.url + "alpha/", {"Accept": JSON_ACCEPT + ", text/html;q=0.1"})
    assert headers["Content-Type"].startswith("text/html")
    fixture_index.no_metadata = True
    _, _, body = fetch(fixture_index.url + "alpha/")
    assert b"data-core-metadata" not in body
    status, _, _ = fetch(f"{fixture_index.base_url}/files/alpha/{alpha2.filename}.metadata")
    assert status == 404


def test_normalized_names_redirect(fixture_index: FixtureIndex) -> None:
    status, _, body = fetch(fixture_index.url + "Foo.Bar_baz/", {"Accept": JSON_ACCEPT})
    assert status == 200 and json.loads(body)["name"] == "foo-bar-baz"
    assert fixture_index.count("/simple/Foo.Bar_baz/") == 1
    assert fixture_index.count("/simple/foo-bar-baz/") == 1


def test_conditional_requests_and_counting(fixture_index: FixtureIndex,
                                           catalogue: Catalogue) -> None:
    status, headers, _ = fetch(fixture_index.url + "gamma/", {"Accept": JSON_ACCEPT})
    assert status == 200
    status, _, _ = fetch(fixture_index.url + "gamma/",
                         {"Accept": JSON_ACCEPT, "If-None-Match": headers["ETag"]})
    assert status == 304
    status, _, _ = fetch(fixture_index.url + "gamma/",
                         {"Accept": JSON_ACCEPT, "If-Modified-Since": headers["Last-Modified"]})
    assert status == 304
    fixture_index.yank(catalogue.find("gamma", "1.0").filename, "oops")
    status, _, _ = fetch(fixture_index.url + "gamma/",
                         {"Accept": JSON_ACCEPT, "If-None-Match": headers["ETag"]})
    assert status == 200  # the page changed, so did its ETag
    assert fixture_index.count("/simple/gamma/") == 4
    assert len(fixture_index.conditional_requests()) == 3
    assert fixture_index.counts_by_method() == {"GET": 4}
    assert fixture_index.root_requests == []


def test_range_requests(fixture_index: FixtureIndex, catalogue: Catalogue) -> None:
    wheel = catalogue.find("beta", "1.0")
    url = f"{fixture_index.base_url}/files/beta/{wheel.filename}"
    status, headers, body = fetch(url, {"Range": "bytes=-22"})
    assert status == 206 and body == wheel.path.read_bytes()[-22:]
    assert headers["Content-Range"] == f"bytes {wheel.size - 22}-{wheel.size - 1}/{wheel.size}"
    status, _, _ = fetch(url, {"Range": f"bytes={wheel.size}-"})
    assert status == 416
    fixture_index.no_range = True
    status, headers, body = fetch(url, {"Range": "bytes=0-9"})
    assert status == 200 and len(body) == wheel.size and "Accept-Ranges" not in headers
    assert len(fixture_index.range_requests()) == 3


def test_failure_switches(fixture_index: FixtureIndex, catalogue: Catalogue) -> None:
    fixture_index.fail_next(2, status=503, path_prefix="/simple/", retry_after="0")
    assert fetch(fixture_index.url + "alpha/")[0] == 503
    assert fetch(f"{fixture_index.base_url}/pypi/alpha/json")[0] == 200  # prefix not matched
    assert fetch(fixture_index.url + "alpha/")[0] == 503
    assert fetch(fixture_index.url + "alpha/")[0] == 200
    wheel = catalogue.find("alpha", "1.0")
    fixture_index.alter(wheel.filename)
    _, _, body = fetch(f"{fixture_index.base_url}/files/alpha/{wheel.filename}")
    assert len(body) == wheel.size and hashlib.sha256(body).hexdigest() != wheel.sha256
    fixture_index.require_basic_auth("reader", "s3cret")
    assert fetch(fixture_index.url + "alpha/")[0] == 401
    token = "cmVhZGVyOnMzY3JldA=="  # base64("reader:s3cret")
    assert fetch(fixture_index.url + "alpha/", {"Authorization": f"Basic {token}"})[0] == 200


def test_json_api_and_osv(fixture_index: FixtureIndex) -> None:
    status, _, body = fetch(f"{fixture_index.base_url}/pypi/vulny/1.0/json")
    release = json.loads(body)
    assert status == 200 and release["info"]["version"] == "1.0"
    assert [v["id"] for v in release["vulnerabilities"]] == ["PYSEC-2023-0001"]
    assert release["urls"][0]["upload_time_iso_8601"] == "2023-02-03T03:04:05.000000Z"
    project = json.loads(fetch(f"{fixture_index.base_url}/pypi/gamma/json")[2])
    assert project["info"]["version"] == "1.0"  # the newest is a pre-release
    assert sorted(project["releases"]) == ["1.0", "2.0b1"]
    fixture_index.add_vulnerability("gamma", "1.0", "GHSA-aaaa-bbbb-cccc", fixed_in=["2.0"])
    query = {"queries": [{"package": {"name": "vulny", "ecosystem": "PyPI"}, "version": "1.1"},
                         {"package": {"name": "Gamma", "ecosystem": "PyPI"}, "version": "1.0"}]}
    status, _, body = fetch(f"{fixture_index.osv_url}/v1/querybatch",
                            {"Content-Type": "application/json"}, json.dumps(query).encode())
    results = json.loads(body)["results"]
    assert status == 200 and results[0] == {}
    assert [v["id"] for v in results[1]["vulns"]] == ["GHSA-aaaa-bbbb-cccc"]
    record = json.loads(fetch(f"{fixture_index.osv_url}/v1/vulns/GHSA-aaaa-bbbb-cccc")[2])
    assert record["affected"][0]["versions"] == ["1.0"]


def test_runtime_add_remove_and_custom_index(make_index: object, tmp_path: Path,
                                             catalogue: Catalogue) -> None:
    from fixtureindex import build_wheel

    build_wheel(tmp_path, "solo", "1.0")
    server = make_index(tmp_path)  # type: ignore[operator]
    assert fetch(server.url + "solo/")[0] == 200
    server.add_file(catalogue.find("alpha", "1.0").path)
    assert fetch(server.url + "alpha/")[0] == 200
    server.remove_file("solo-1.0-py3-none-any.whl")
    assert fetch(server.url + "solo/")[0] == 404
    assert fetch(server.url)[0] == 200
    assert len(server.root_requests) == 1  # served, and recorded as a violation


def _isolated_env(tmp_path: Path) -> dict[str, str]:
    return subprocess_env(installers=True, UV_CACHE_DIR=str(tmp_path / "uv-cache"),
                          UV_NO_CONFIG="1")


def test_pip_installs_wheels_and_builds_sdists_offline(fixture_index: FixtureIndex,
                                                       tmp_path: Path) -> None:
    """Real pip: wheels install; sdists build with fixture-backend and the stand-in setuptools."""
    target = tmp_path / "site"
    result = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target),
         "--index-url", fixture_index.url, "beta[fast]", "sdistonly", "legacy", "oldmeta"],
        env=_isolated_env(tmp_path), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    installed = sorted(p.name for p in target.glob("*.dist-info"))
    assert installed == ["alpha-1.1.dist-info", "beta-1.0.dist-info",
                         "foo_bar_baz-1.0.dist-info", "legacy-1.0.dist-info",
                         "oldmeta-1.0.dist-info", "sdistonly-1.0.dist-info",
                         "speedup-1.2.dist-info"]
    probe = subprocess.run([sys.executable, "-c", "import beta, legacy; print(beta.__version__)"],
                           env=subprocess_env(PYTHONPATH=str(target)),
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "1.0"
    assert fixture_index.root_requests == []


def test_uv_installs_platform_wheel(fixture_index: FixtureIndex, tmp_path: Path,
                                    catalogue: Catalogue) -> None:
    uv = Path(sys.executable).with_name("uv")
    target = tmp_path / "site"
    result = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [str(uv), "pip", "install", "--quiet", "--python", sys.executable, "--target",
         str(target), "--index-url", fixture_index.url, "native", "marked"],
        env=_isolated_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    if sys.platform == "linux" and os.uname().machine == "x86_64" and sys.version_info[:2] == (3, 11):
        native = catalogue.find("native", "1.0", tag="x86_64")
        assert fixture_index.count(f"/files/native/{native.filename}") == 1
    assert (target / "linuxdep").is_dir() == (sys.platform == "linux")
    assert fixture_index.root_requests == []
