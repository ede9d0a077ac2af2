"""Redirects, as fetch and lock follow them: to the same origin or a declared file
location only (lockmirror.net.redirects), against real servers on 127.0.0.1."""

from __future__ import annotations

from dataclasses import replace
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtureindex import Catalogue, FixtureIndex
from helpers import QuietHandler, RedirectingServer, serving
from servers import free_port
from test_fetch import make_lockfile

from lockmirror.config_schema import SourceConfig
from lockmirror.errors import NetworkError
from lockmirror.formats.lockfile import Lockfile
from lockmirror.formats.store import Store
from lockmirror.net.http import get, make_session
from lockmirror.net.index_client import IndexClient
from lockmirror.net.redirects import RedirectRefused
from lockmirror.stages.fetch import fetch


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def moved(lock: Lockfile, old: str, new: str) -> Lockfile:
    """``lock`` with every file URL's ``old`` prefix replaced by ``new``."""
    return replace(lock, packages=tuple(
        replace(p, wheels=tuple(replace(w, url=w.url.replace(old, new)) for w in p.wheels),
                sdist=p.sdist and replace(p.sdist, url=p.sdist.url.replace(old, new)))
        for p in lock.packages))


def source(url: str, *files_url: str) -> SourceConfig:
    return SourceConfig.model_validate({"name": "up", "url": url, "files_url": list(files_url)}
                                       if files_url else {"name": "up", "url": url})


def stored_files(store: Store) -> list[Path]:
    return [p for p in store.root.rglob("*") if p.is_file()] if store.root.exists() else []


def test_fetch_refuses_a_redirect_to_a_host_no_source_declares(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    sdist = catalogue.find("sdistonly", "1.0").filename  # one file, no .metadata
    other = RedirectingServer()
    with serving(other) as other_base:
        elsewhere = other_base.replace("127.0.0.1", "localhost")  # another host
        server = RedirectingServer(elsewhere)
        with serving(server) as base:
            lock = moved(make_lockfile(fixture_index, "core", [sdist]), fixture_index.base_url,
                         base)
            url = lock.packages[0].sdist.url  # type: ignore[union-attr]
            with pytest.raises(RedirectRefused) as caught:
                fetch([lock], store, sources=[source(f"{base}/simple/")])
    assert caught.value.message == (f"cannot fetch {url}: redirected to {elsewhere}/ "
                                    "which no source declares")
    assert "\n" not in str(caught.value)
    assert len(server.authorized) == 1  # not retried
    assert other.authorized == []  # the other host was never asked
    assert stored_files(store) == []


def test_fetch_follows_a_redirect_on_the_same_host(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    sdist = catalogue.find("sdistonly", "1.0")
    server = RedirectingServer(files={f"/files/sdistonly/{sdist.filename}":
                                      sdist.path.read_bytes()})
    with serving(server) as base:
        lock = moved(make_lockfile(fixture_index, "core", [sdist.filename]),
                     fixture_index.base_url, f"{base}/old")
        summary = fetch([lock], store)  # no sources: the same origin is always allowed
    assert summary.downloaded == 1 and store.has(sdist.sha256)
    assert len(server.authorized) == 2


def test_a_redirect_to_a_declared_file_location_gets_no_credentials(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    sdist = catalogue.find("sdistonly", "1.0").filename
    cdn = f"http://localhost:{fixture_index.port}"  # what a CDN would be
    server = RedirectingServer(cdn)
    with serving(server) as base:
        lock = moved(make_lockfile(fixture_index, "core", [sdist]), fixture_index.base_url, base)
        summary = fetch([lock], store, auth={f"{base}/": ("reader", "s3cret-pw")},
                        sources=[source(f"{base}/simple/", f"{base}/", f"{cdn}/files/")])
    assert summary.downloaded == 1 and store.has(catalogue.file(sdist).sha256)
    assert server.authorized == [True]  # the configured host got them
    served = [r for r in fixture_index.requests if r.path.endswith(sdist)]
    assert [r.authorized for r in served] == [False]  # the other host did not


def test_a_failure_after_a_redirect_names_the_url_that_failed(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    sdist = catalogue.find("sdistonly", "1.0").filename
    dead = f"http://127.0.0.1:{free_port()}"  # declared, but nobody listens
    server = RedirectingServer(dead)
    with serving(server) as base:
        lock = moved(make_lockfile(fixture_index, "core", [sdist]), fixture_index.base_url, base)
        path = lock.packages[0].sdist.url.removeprefix(base)  # type: ignore[union-attr]
        with pytest.raises(NetworkError) as caught:
            fetch([lock], store, retries=0,
                  sources=[source(f"{base}/simple/", f"{base}/", f"{dead}/files/")])
    assert caught.value.message == f"cannot fetch {dead}{path}: the connection was refused"
    assert stored_files(store) == []


def test_lock_refuses_a_page_redirect_to_a_host_no_source_declares() -> None:
    other = RedirectingServer()
    with serving(other) as other_base:
        elsewhere = other_base.replace("127.0.0.1", "localhost")
        with serving(RedirectingServer(elsewhere)) as base, \
                IndexClient([source(f"{base}/simple/")], session=make_session(retries=0),
                            environ={}) as client, pytest.raises(RedirectRefused) as caught:
            client.project("alpha")
    assert caught.value.message == (f"cannot fetch {base}/simple/alpha/: redirected to "
                                    f"{elsewhere}/ which no source declares")
    assert other.authorized == []


def test_lock_follows_a_page_redirect_to_a_declared_location(
        fixture_index: FixtureIndex) -> None:
    with serving(RedirectingServer(fixture_index.base_url)) as base, \
            IndexClient([source(f"{base}/simple/", f"{fixture_index.base_url}/")],
                        environ={}) as client:
        page = client.project("alpha")
    assert page.name == "alpha" and page.files


class _SignedUrlHandler(QuietHandler):
    """/file.whl redirects to a signed URL on the same host, which refuses (expired)."""

    def do_GET(self) -> None:
        if self.path.startswith("/blob/"):
            self.send_response(403)
        else:
            self.send_response(302)
            self.send_header("Location", "/blob/file.whl?X-Amz-Security-Token=SECRET"
                                         "&X-Amz-Signature=SIG")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_an_error_after_a_redirect_leaves_out_the_signed_urls_query() -> None:
    """A private index's file redirects to storage's signed URL, whose query is a bearer
    token: an error naming the URL that answered printed it (found by a reviewer)."""
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), _SignedUrlHandler)) as base:
        with pytest.raises(NetworkError) as caught:
            get(make_session(retries=0), f"{base}/file.whl")
    assert f"{base}/blob/file.whl" in caught.value.message
    assert "SECRET" not in str(caught.value) and "SIG" not in str(caught.value)
