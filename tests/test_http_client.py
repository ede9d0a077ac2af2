"""lockmirror.net.http and lockmirror.net.index_client against the real fixture index server."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtureindex import Catalogue, FixtureIndex, build_wheel

from lockmirror.config_schema import SourceConfig
from lockmirror.errors import IntegrityError, LockmirrorError, NetworkError, NotFoundError
from lockmirror.net.http import make_session
from lockmirror.net.index_client import IndexClient
from lockmirror.redaction import redact_url

MakeIndex = Callable[..., FixtureIndex]


def source(index: FixtureIndex, name: str = "fixture", **fields: object) -> SourceConfig:
    return SourceConfig.model_validate({"name": name, "url": index.url, **fields})


def quick_client(*sources: SourceConfig, cache_dir: Path | None = None, retries: int = 2,
                 timeout: tuple[float, float] = (5, 10),
                 environ: dict[str, str] | None = None) -> IndexClient:
    session = make_session(retries=retries, backoff=0, timeout=timeout)
    return IndexClient(sources, session=session, cache_dir=cache_dir, environ=environ or {})


def test_json_page_describes_every_file(fixture_index: FixtureIndex,
                                        catalogue: Catalogue) -> None:
    with IndexClient([source(fixture_index)], cache_dir=None, environ={}) as client:
        page = client.project("ALPHA")
    assert page.name == "alpha" and page.source == "fixture"
    assert [str(v) for v in page.versions] == ["1.0", "1.1", "2.0"]
    expected = {f.filename: f for f in catalogue.project("alpha")}
    assert sorted(f.filename for f in page.files) == sorted(expected)
    for file in page.files:
        built = expected[file.filename]
        assert (file.sha256, file.size, file.upload_time) == (built.sha256, built.size,
                                                              built.upload_time)
        assert file.requires_python == built.requires_python
        assert file.url == f"{fixture_index.base_url}/files/alpha/{file.filename}"
        assert file.has_metadata == file.is_wheel
        assert file.metadata_sha256 == (built.metadata_sha256 if file.is_wheel else None)
    wheel = next(f for f in page.files if f.filename == "alpha-2.0-py3-none-any.whl")
    assert str(wheel.version) == "2.0" and {str(t) for t in wheel.tags} == {"py3-none-any"}
    [record] = fixture_index.requests
    assert record.accept is not None and record.accept.startswith(
        "application/vnd.pypi.simple.v1+json")
    assert fixture_index.root_requests == []


def test_html_fallback_gives_the_same_answers(fixture_index: FixtureIndex,
                                              catalogue: Catalogue) -> None:
    fixture_index.html_only = True
    with IndexClient([source(fixture_index)], environ={}) as client:
        page = client.project("yanky")
        metadata = client.metadata(page.files[1])
    yanked = catalogue.find("yanky", "1.1")
    assert [(f.filename, f.yanked, f.yanked_reason) for f in page.files] == [
        ("yanky-1.0-py3-none-any.whl", False, None),
        (yanked.filename, True, "broken build, use 1.0")]
    assert page.files[1].sha256 == yanked.sha256
    assert page.files[1].metadata_sha256 == yanked.metadata_sha256
    assert metadata == yanked.metadata
    with IndexClient([source(fixture_index)], environ={}) as client:
        newest = next(f for f in client.project("alpha").files if str(f.version) == "2.0")
    assert newest.requires_python == ">=3.12"


def test_altered_metadata_is_refused(fixture_index: FixtureIndex, catalogue: Catalogue) -> None:
    wheel = catalogue.find("beta", "1.0")
    fixture_index.alter(wheel.filename + ".metadata")
    with IndexClient([source(fixture_index)], environ={}) as client:
        file = client.project("beta").files[0]
        with pytest.raises(IntegrityError, match="core metadata of beta-1.0") as caught:
            client.metadata(file)
    assert f"/files/beta/{wheel.filename}.metadata" in str(caught.value)


def test_metadata_without_pep658_reads_the_wheel(fixture_index: FixtureIndex,
                                                 catalogue: Catalogue, tmp_path: Path) -> None:
    big = build_wheel(tmp_path, "bigwheel", "1.0", files={
        "bigwheel/__init__.py": "", "bigwheel/blob.bin": hashlib.sha512(b"x").digest() * 8000})
    fixture_index.add_file(big)
    fixture_index.no_metadata = True
    with IndexClient([source(fixture_index)], environ={}) as client:
        file = client.project("bigwheel").files[0]
        assert not file.has_metadata
        metadata = client.metadata(file)
        beta = client.project("beta").files[0]
        assert client.metadata(beta) == catalogue.find("beta", "1.0").metadata
    assert metadata.startswith(b"Metadata-Version: 2.1\nName: bigwheel\nVersion: 1.0\n")
    ranged = [r for r in fixture_index.range_requests() if r.path.endswith("bigwheel-1.0-py3-none-any.whl")]
    assert ranged and all(r.status == 206 for r in ranged)
    # without Range support the wheel is downloaded, and its hash checked
    fixture_index.no_range = True
    fixture_index.alter(beta.filename)
    with IndexClient([source(fixture_index)], environ={}) as client:
        with pytest.raises(IntegrityError, match="beta-1.0-py3-none-any.whl has sha256"):
            client.metadata(client.project("beta").files[0])
        assert client.metadata(client.project("alpha").files[0]).startswith(b"Metadata")


def test_a_500_is_retried(fixture_index: FixtureIndex) -> None:
    fixture_index.fail_next(2, status=500, path_prefix="/simple/gamma/")
    with quick_client(source(fixture_index), retries=2) as client:
        assert [str(v) for v in client.project("gamma").versions] == ["1.0", "2.0b1"]
    assert [r.status for r in fixture_index.requests] == [500, 500, 200]


def test_persistent_failure_names_url_and_retries(fixture_index: FixtureIndex) -> None:
    fixture_index.fail_next(10, status=503, retry_after="0")
    with quick_client(source(fixture_index), retries=2) as client, pytest.raises(NetworkError) as caught:
        client.project("gamma")
    message = str(caught.value)
    assert f"{fixture_index.url}gamma/" in message
    assert "HTTP 503" in message and "after 2 retries" in message
    assert fixture_index.count("/simple/gamma/") == 3


def test_stalled_server_gives_a_clear_error(fixture_index: FixtureIndex) -> None:
    fixture_index.stall = 5
    with quick_client(source(fixture_index), retries=1, timeout=(2, 0.3)) as client, pytest.raises(NetworkError) as caught:
        client.project("alpha")
    fixture_index.stall = 0
    assert str(caught.value) == (f"cannot fetch {fixture_index.url}alpha/: the server did not "
                                 "answer within 0.3 s after 1 retry")


def test_truncated_body_is_fetched_again_then_reported(fixture_index: FixtureIndex,
                                                       catalogue: Catalogue) -> None:
    with quick_client(source(fixture_index)) as client:
        file = client.project("alpha").files[0]
        fixture_index.truncate = True
        with pytest.raises(NetworkError, match="connection broke during the transfer"):
            client.metadata(file)
    assert fixture_index.count(f"/files/alpha/{file.filename}.metadata") == 3


def test_second_run_only_revalidates(fixture_index: FixtureIndex, tmp_path: Path) -> None:
    names = ["alpha", "beta", "foo-bar-baz", "native"]

    def run() -> list[bytes]:
        with IndexClient([source(fixture_index)], cache_dir=tmp_path / "http",
                         environ={}) as client:
            client.prefetch_projects(names)
            wheels = [f for n in names for f in client.project(n).files if f.is_wheel]
            client.prefetch_metadata(wheels)
            return [client.metadata(f) for f in wheels]

    first = run()
    assert fixture_index.count(conditional=True) == 0
    fixture_index.reset_counts()
    assert run() == first
    second = fixture_index.requests
    assert sorted(r.path for r in second) == sorted(f"/simple/{n}/" for n in names)
    assert all(r.conditional and r.status == 304 for r in second)


def test_concurrent_use_fetches_each_page_once(fixture_index: FixtureIndex,
                                               catalogue: Catalogue) -> None:
    projects = catalogue.projects()
    with IndexClient([source(fixture_index)], environ={}, max_workers=4) as client:
        client.prefetch_projects([*projects, "no-such-project"])
        results: list[int] = []

        def work() -> None:
            results.extend(len(client.project(p).files) for p in projects)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with pytest.raises(NotFoundError, match="no source has a project named 'no-such-project'"):
            client.project("No_Such.Project")
    assert len(results) == 6 * len(projects)
    assert all(count == 1 for count in fixture_index.counts_by_path().values())
    assert fixture_index.root_requests == []


@pytest.fixture
def second_index(make_index: MakeIndex, tmp_path: Path) -> FixtureIndex:
    files = tmp_path / "second"
    build_wheel(files, "alpha", "99.0")
    build_wheel(files, "private-tool", "1.0")
    return make_index(files)


def test_source_priority(fixture_index: FixtureIndex, second_index: FixtureIndex) -> None:
    primary = source(fixture_index, "primary", priority=1)
    secondary = source(second_index, "secondary", priority=5)
    with quick_client(secondary, primary) as client:  # file order must not matter
        assert client.project("alpha").source == "primary"
        tool = client.project("private-tool")
        assert tool.source == "secondary" and tool.files[0].source == "secondary"
        with pytest.raises(NotFoundError) as caught:
            client.project("nowhere")
    assert "primary" in str(caught.value) and "secondary" in str(caught.value)
    assert second_index.count("/simple/alpha/") == 0
    assert fixture_index.count("/simple/private-tool/") == 1  # a 404 moved on
    # equal priorities keep file order
    with quick_client(source(second_index, "second"), source(fixture_index, "first")) as client:
        assert client.project("alpha").source == "second"


def test_failing_source_does_not_fall_through(fixture_index: FixtureIndex,
                                              second_index: FixtureIndex) -> None:
    fixture_index.fail_next(10, status=500)
    client = quick_client(source(fixture_index, "primary", priority=1),
                          source(second_index, "secondary", priority=5), retries=0)
    with client, pytest.raises(NetworkError, match="HTTP 500"):
        client.project("alpha")
    assert second_index.requests == []


def test_pinned_project_comes_from_its_source_only(fixture_index: FixtureIndex,
                                                   second_index: FixtureIndex) -> None:
    primary = source(fixture_index, "primary", priority=1)
    pinned = source(second_index, "secondary", priority=5, projects=["Alpha", "ghost"])
    with quick_client(primary, pinned) as client:
        page = client.project("alpha")
        assert page.source == "secondary" and [str(v) for v in page.versions] == ["99.0"]
        with pytest.raises(NotFoundError, match="pinned to source secondary"):
            client.project("ghost")
        assert client.project("beta").source == "primary"
    assert fixture_index.count("/simple/alpha/") == 0
    assert fixture_index.count("/simple/ghost/") == 0


def test_basic_auth_from_environment(fixture_index: FixtureIndex,
                                     second_index: FixtureIndex) -> None:
    second_index.require_basic_auth("reader", "s3cret")
    private = source(second_index, "private", priority=1, username_env="PRIV_USER",
                     password_env="PRIV_PASS", projects=["private-tool"])
    public = source(fixture_index, "public", priority=2)
    environ = {"PRIV_USER": "reader", "PRIV_PASS": "s3cret"}
    with quick_client(private, public, environ=environ) as client:
        tool = client.project("private-tool")
        assert client.metadata(tool.files[0]).startswith(b"Metadata-Version")
        client.project("beta")
    assert all(r.authorized for r in second_index.requests)
    assert [r.status for r in second_index.requests] == [200, 200, 404]  # beta: not there
    assert not any(r.authorized for r in fixture_index.requests)  # never sent elsewhere

    with pytest.raises(LockmirrorError, match="PRIV_PASS is not set"):
        IndexClient([private], environ={"PRIV_USER": "reader"})
    with quick_client(private, environ={**environ, "PRIV_PASS": "wrong-pw"}) as client, pytest.raises(NetworkError) as caught:
        client.project("private-tool")
    assert "HTTP 401" in str(caught.value) and "username_env" in str(caught.value)
    assert "the credentials sent were refused" in str(caught.value)  # not "set them"
    assert "wrong-pw" not in str(caught.value)


def test_credentials_in_urls_never_reach_messages(second_index: FixtureIndex) -> None:
    second_index.require_basic_auth("reader", "s3cret")
    second_index.fail_next(5, status=502)
    embedded = SourceConfig(name="inline", url=second_index.url_with_auth("reader", "s3cret"))
    with quick_client(embedded, retries=1) as client, pytest.raises(NetworkError) as caught:
        client.project("alpha")
    assert "s3cret" not in str(caught.value) and "reader" not in str(caught.value)
    assert str(caught.value).startswith(f"cannot fetch {second_index.url}alpha/: HTTP 502")
    assert redact_url("https://u:p@example.org:8443/simple/?q=1") == \
        "https://example.org:8443/simple/?q=1"
    assert second_index.requests[0].authorized  # the URL's credentials were used


def test_session_defaults_and_environment(fixture_index: FixtureIndex,
                                          monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert make_session().verify == str(bundle)
    monkeypatch.delenv("SSL_CERT_FILE")
    # the fixture index answers absolute-URI requests too, so it can stand in for a proxy
    for name in ("NO_PROXY", "no_proxy", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", fixture_index.base_url)
    behind_proxy = SourceConfig(name="far", url="http://index.invalid/simple/")
    with IndexClient([behind_proxy], environ={}) as client:
        assert client.project("gamma").source == "far"
    [record] = fixture_index.requests
    assert record.path == "/simple/gamma/"
    assert record.user_agent is not None and record.user_agent.startswith("lockmirror/")
