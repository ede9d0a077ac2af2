"""Fill in a file's size and upload time when the simple page left them out.

PEP 700 puts ``size`` and ``upload-time`` in the JSON simple API, but many
indexes (and registry proxies) serve PEP 503 HTML only, which has neither.
A lockfile needs both for every file it lists, so for the files actually
locked lockmirror asks, in this order:

1. the index's PyPI-style JSON API, ``<root>/pypi/<project>/json`` (one
   request per project, answered by PyPI, devpi, Nexus and pypiserver-likes);
2. for a size still unknown, a ``HEAD`` of the file (``Content-Length``).

An upload time no source states stays unknown (PEP 751 allows that). Both
follow redirects only where :mod:`lockmirror.net.redirects` allows: a JSON API
that redirects elsewhere gives nothing, a file that does is an error.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import requests

from ..errors import NetworkError
from .index_client import DistFile, IndexClient
from .redirects import follow


def json_api_url(simple_url: str, project: str) -> str:
    """``https://pypi.org/simple/`` -> ``https://pypi.org/pypi/<project>/json``."""
    base = simple_url.rstrip("/")
    base = base.removesuffix("/simple")
    return f"{base}/pypi/{project}/json"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)  # 3.11 reads the "Z" suffix
    except ValueError:
        return None


def _json_details(client: IndexClient, url: str) -> dict[str, tuple[int | None, datetime | None]]:
    try:
        response = follow(client.session, url, auth=client.auth, sources=client.sources)
    except (requests.RequestException, NetworkError):  # a redirect refused too
        return {}
    if response.status_code != 200:
        return {}
    try:
        data = response.json()
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's limit
        return {}
    details: dict[str, tuple[int | None, datetime | None]] = {}
    releases = data.get("releases") if isinstance(data, dict) else None
    groups = releases.values() if isinstance(releases, dict) else [data.get("urls", [])]
    for files in groups:
        for item in files if isinstance(files, list) else []:
            if isinstance(item, dict) and isinstance(item.get("filename"), str):
                size = item.get("size") if isinstance(item.get("size"), int) else None
                moment = _parse_time(item.get("upload_time_iso_8601") or item.get("upload_time"))
                details[item["filename"]] = (size, moment)
    return details


def _head_size(client: IndexClient, file: DistFile) -> int | None:
    try:
        response = follow(client.session, file.url, method="HEAD", auth=client.auth,
                          sources=client.sources)
    except requests.RequestException as exc:
        raise NetworkError(f"cannot read the size of {file.filename}: {exc}",
                           where=file.url) from None
    length = response.headers.get("Content-Length")
    return int(length) if response.status_code == 200 and length and length.isdigit() else None


def complete(client: IndexClient, files: Iterable[DistFile], *,
             max_workers: int = 8) -> dict[str, DistFile]:
    """url -> the file with size and upload time filled in where they can be.

    Costs one JSON API request per project with a file lacking something,
    plus one HEAD per file whose size is still unknown; concurrently.
    """
    wanted = {f.url: f for f in files}
    lacking = [f for f in wanted.values() if f.size is None or f.upload_time is None]
    if not lacking:
        return wanted
    by_api: dict[str, list[DistFile]] = defaultdict(list)
    source_urls = {s.name: s.url for s in client.sources}
    for file in lacking:
        by_api[json_api_url(source_urls.get(file.source, ""), file.project)].append(file)
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        answers = dict(zip(by_api, pool.map(lambda u: _json_details(client, u), by_api),
                           strict=True))
        for url, group in by_api.items():
            details = answers[url]
            for file in group:
                size, moment = details.get(file.filename, (None, None))
                wanted[file.url] = dataclasses.replace(
                    file, size=file.size if file.size is not None else size,
                    upload_time=file.upload_time or moment)
        still = [f for f in wanted.values() if f.size is None]
        for file, size in zip(still, pool.map(lambda f: _head_size(client, f), still),
                              strict=True):
            wanted[file.url] = dataclasses.replace(file, size=size)
    return wanted
