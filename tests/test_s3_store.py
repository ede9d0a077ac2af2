"""The store on S3 (``paths.store: s3://bucket/prefix``) against a real S3 server
(moto's server mode, started on 127.0.0.1 by tests/servers.py).

* fetch streams each verified file into its ``sha256/..`` key (the same bytes,
  the same keys as the local store), skips what is there, keeps the PEP 658
  metadata beside it;
* two fetch processes of overlapping sets writing one store at once lose
  nothing and leave no stray or duplicate key;
* the index built from the S3 store has the same bytes (pages, lockfiles,
  constraints, manifest) as the one built from the local store, and reads no
  object (list/head only); ``lockmirror index --store s3://...`` builds it too;
* ``serve`` and ``check-install`` refuse such an index up front (its files are
  in the store, not in the tree);
* bundle and publish hash every object they read out of the store and refuse
  one replaced by other bytes of the same size, leaving nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtureindex import Catalogue, FixtureIndex
from helpers import mirror_yaml, subprocess_env, tree_bytes
from index_mirror import FixtureMirror, make_fixture_mirror
from servers import S3Server, counting_client
from test_fetch import make_lockfile

from lockmirror.cli import main
from lockmirror.config_schema import DirectoryDestination, S3Destination
from lockmirror.errors import LockmirrorError
from lockmirror.formats.store import Store
from lockmirror.fsutil import sha256_bytes
from lockmirror.net.s3_client import make_client
from lockmirror.net.s3_store import S3Store, open_store, parse_s3_url
from lockmirror.publish import SourceTree, publish
from lockmirror.publish.s3 import RECEIPT_KEY, S3Publisher
from lockmirror.stages.fetch import fetch
from lockmirror.stages.fetch_plan import missing, plan
from lockmirror.stages.index import build_index
from lockmirror.stages.serve import MirrorServer

pytest_plugins = ["servers"]  # the S3 server fixtures


@pytest.fixture
def aws_env(aws_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """servers' aws_env, and the endpoint in AWS_ENDPOINT_URL too."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env.endpoint_url)
    return aws_env


def s3_store(server: S3Server, url: str, staging: Path) -> tuple[S3Store, list[str]]:
    """An S3 store whose client records every operation it sends."""
    bucket, _prefix = parse_s3_url(url)
    client = make_client(S3Destination(kind="s3", bucket=bucket,
                                       endpoint_url=server.endpoint_url))
    calls: list[str] = []
    client.meta.events.register("provide-client-params.s3.*",
                                lambda model, **_: calls.append(model.name))
    return S3Store(url, client, staging), calls


def objects(server: S3Server, bucket: str) -> dict[str, bytes]:
    client = server.client()
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", ()):
            found[entry["Key"]] = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
    return found


def local_objects(store: Store) -> dict[str, bytes]:
    return {rel: data for rel, data in tree_bytes(store.root).items()
            if rel.startswith("sha256/")}


def test_store_url_is_parsed_and_a_bucketless_one_refused(tmp_path: Path) -> None:
    assert parse_s3_url("s3://bucket/some/prefix/") == ("bucket", "some/prefix/")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(LockmirrorError, match="names no bucket"):
        parse_s3_url("s3:///prefix")
    assert open_store(str(tmp_path / "store"), tmp_path) == Store(tmp_path / "store")


def test_fetch_into_s3_gives_the_local_store_keys_and_skips_what_is_there(
        aws_env: S3Server, fixture_index: FixtureIndex, tmp_path: Path) -> None:
    lockfile = make_lockfile(fixture_index, "core", sorted(fixture_index.files))
    local = Store(tmp_path / "local")
    fetch([lockfile], local)
    bucket = aws_env.new_bucket(public=False)
    store, calls = s3_store(aws_env, f"s3://{bucket}/mirror/store", tmp_path / "staging")

    first = fetch([lockfile], store)

    stored = objects(aws_env, bucket)
    assert stored == {f"mirror/store/{rel}": data for rel, data in local_objects(local).items()}
    assert all(key.endswith(sha256_bytes(data)[2:]) for key, data in stored.items())
    metadata = [i for i in plan([lockfile]) if i.is_metadata]
    assert metadata and all(f"mirror/store/sha256/{i.sha256[:2]}/{i.sha256[2:]}" in stored
                            for i in metadata)  # PEP 658 metadata beside the wheels
    assert first.downloaded + first.derived == len(stored)
    assert not list((tmp_path / "staging" / "tmp").iterdir())  # nothing left staged
    # a second run (a new process: a fresh listing) skips every key: one listing, no write
    again, calls = s3_store(aws_env, f"s3://{bucket}/mirror/store", tmp_path / "staging")
    second = fetch([lockfile], again)
    assert (second.downloaded, second.present) == (0, second.files)
    assert set(calls) == {"ListObjectsV2"}
    assert missing(plan([lockfile]), again) == []


def _short_object(aws_env: S3Server, fixture_index: FixtureIndex, tmp_path: Path,
                  store_class: type[S3Store] = S3Store) -> tuple[Path, S3Store, str]:
    """A one-wheel lockfile, and a store (of ``store_class``) whose object for that wheel
    holds five wrong bytes: (lockfile, store, the wheel's sha256)."""
    name = sorted(f for f in fixture_index.files if f.endswith(".whl"))[0]
    lockfile = make_lockfile(fixture_index, "core", [name])
    bucket = aws_env.new_bucket(public=False)
    plain, _calls = s3_store(aws_env, f"s3://{bucket}", tmp_path / "staging")
    store = store_class(f"s3://{bucket}", plain.client, tmp_path / "staging")
    sha = fixture_index.files[name].sha256
    aws_env.client().put_object(Bucket=bucket, Key=store.key(sha), Body=b"short")
    return lockfile, store, sha


def test_a_wrong_size_object_is_fetched_again(
        aws_env: S3Server, fixture_index: FixtureIndex, tmp_path: Path) -> None:
    lockfile, store, sha = _short_object(aws_env, fixture_index, tmp_path)

    fetch([lockfile], store)

    data = aws_env.client().get_object(Bucket=store.bucket, Key=store.key(sha))["Body"].read()
    assert sha256_bytes(data) == sha


class GcAfterSizing(S3Store):
    """An S3 store whose objects gc removes right after their size is first read: the
    race between a fetch's look at an object and its read of it."""

    removed: set[str]

    def size_of(self, sha256: str) -> int | None:
        size = super().size_of(sha256)
        if size is not None and sha256 not in self.removed:
            self.removed.add(sha256)
            self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))
        return size


def test_an_object_gc_removes_while_fetch_reads_it_is_fetched_again(
        aws_env: S3Server, fixture_index: FixtureIndex, tmp_path: Path) -> None:
    lockfile, store, sha = _short_object(aws_env, fixture_index, tmp_path, GcAfterSizing)
    assert isinstance(store, GcAfterSizing)
    store.removed = set()

    fetch([lockfile], store)

    assert sha in store.removed
    data = aws_env.client().get_object(Bucket=store.bucket, Key=store.key(sha))["Body"].read()
    assert sha256_bytes(data) == sha


CONCURRENT_FETCH = textwrap.dedent("""
    import sys
    from pathlib import Path
    from lockmirror.formats.lockfile import Lockfile
    from lockmirror.net.s3_store import open_store
    from lockmirror.stages.fetch import fetch

    url, staging, *lockfiles = sys.argv[1:]
    summary = fetch([Lockfile.read(Path(p)) for p in lockfiles], open_store(url, Path(staging)),
                    max_workers=4)
    print(summary.downloaded, summary.derived, summary.present)
""")


def test_two_fetch_processes_of_overlapping_sets_lose_nothing_and_duplicate_no_key(
        aws_env: S3Server, fixture_index: FixtureIndex, tmp_path: Path) -> None:
    names = sorted(fixture_index.files)
    half = len(names) * 2 // 3
    one = make_lockfile(fixture_index, "one", names[:half])
    two = make_lockfile(fixture_index, "two", names[len(names) - half:])
    paths = []
    for lockfile in (one, two):
        paths.append(tmp_path / f"pylock.{lockfile.set_name}.toml")
        lockfile.write(paths[-1])
    assert set(names[:half]) & set(names[len(names) - half:])  # they overlap
    bucket = aws_env.new_bucket(public=False)
    url = f"s3://{bucket}/store"
    env = subprocess_env()  # the aws_env fixture exported the endpoint and keys
    # two "machines": separate staging directories, so no local lock is shared
    processes = [subprocess.Popen([sys.executable, "-c", CONCURRENT_FETCH, url,
                                   str(tmp_path / f"staging-{n}"), str(path)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for n, path in enumerate(paths)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs

    stored = objects(aws_env, bucket)
    wanted = {i.sha256 for i in plan([one, two])}
    keys = [key.removeprefix("store/sha256/").replace("/", "") for key in stored]
    assert sorted(keys) == sorted(wanted)  # every file once, nothing else (no temp keys)
    assert all(sha256_bytes(data) == key.removeprefix("store/sha256/").replace("/", "")
               for key, data in stored.items())


def upload_store(server: S3Server, local: Store, bucket: str, prefix: str) -> None:
    client = server.client()
    for rel, data in local_objects(local).items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=data)


@dataclass
class S3Mirror:
    """The fixture mirror (in tmp_path/mirror) with its store uploaded to ``bucket``
    under ``store/``, and its index built from the local store in tmp_path/local-index."""

    mirror: FixtureMirror
    bucket: str
    store: S3Store       # s3://<bucket>/store, staging in tmp_path/staging
    calls: list[str]     # every operation the store's client sent


@pytest.fixture
def s3_mirror(aws_env: S3Server, catalogue: Catalogue, tmp_path: Path) -> S3Mirror:
    mirror = make_fixture_mirror(catalogue, tmp_path / "mirror")
    build_index(mirror.lockfiles, mirror.store, tmp_path / "local-index", title="Fixture")
    bucket = aws_env.new_bucket(public=False)
    upload_store(aws_env, mirror.store, bucket, "store")
    store, calls = s3_store(aws_env, f"s3://{bucket}/store", tmp_path / "staging")
    return S3Mirror(mirror, bucket, store, calls)


def test_index_from_the_s3_store_has_the_local_index_bytes_and_reads_no_object(
        s3_mirror: S3Mirror, tmp_path: Path) -> None:
    mirror, store, calls = s3_mirror.mirror, s3_mirror.store, s3_mirror.calls

    result = build_index(mirror.lockfiles, store, tmp_path / "s3-index", title="Fixture")

    local, remote = tree_bytes(tmp_path / "local-index"), tree_bytes(tmp_path / "s3-index")
    assert {rel: data for rel, data in local.items() if not rel.startswith("files/")} == remote
    assert result.files and not any(rel.startswith("files/") for rel in remote)
    assert set(calls) == {"ListObjectsV2"}  # no GetObject: no package byte to the runner
    # a no-op run asks the store nothing
    calls.clear()
    assert build_index(mirror.lockfiles, store, tmp_path / "s3-index", title="Fixture").noop
    assert calls == []


def test_index_names_files_missing_from_the_s3_store(
        aws_env: S3Server, catalogue: Catalogue, tmp_path: Path) -> None:
    from lockmirror.errors import NotFoundError

    mirror = make_fixture_mirror(catalogue, tmp_path / "mirror")
    bucket = aws_env.new_bucket(public=False)
    store, _calls = s3_store(aws_env, f"s3://{bucket}/store", tmp_path / "staging")
    with pytest.raises(NotFoundError, match=f"s3://{bucket}/store: .*not in the store"):
        build_index(mirror.lockfiles, store, tmp_path / "s3-index")
    assert not (tmp_path / "s3-index").exists()


def test_index_takes_an_s3_store_url(s3_mirror: S3Mirror, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    lockfiles = [str(path) for path in s3_mirror.mirror.lockfiles]
    build_index(s3_mirror.mirror.lockfiles, s3_mirror.store, tmp_path / "stage-index",
                title="Fixture")

    assert main(["index", *lockfiles, "--store", f"s3://{s3_mirror.bucket}/store",
                 "--out", str(tmp_path / "cli-index"), "--title", "Fixture"]) == 0, \
        capsys.readouterr()

    assert tree_bytes(tmp_path / "cli-index") == tree_bytes(tmp_path / "stage-index")
    # a bucket with nothing in it: the files are named missing from the store
    assert main(["index", *lockfiles, "--store", f"s3://{s3_mirror.bucket}/elsewhere",
                 "--out", str(tmp_path / "empty-index")]) != 0
    assert f"s3://{s3_mirror.bucket}/elsewhere" in capsys.readouterr().err


def test_serve_and_check_install_refuse_an_index_whose_files_are_in_the_store(
        s3_mirror: S3Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = tmp_path / "s3-index"
    build_index(s3_mirror.mirror.lockfiles, s3_mirror.store, index, title="Fixture")
    files = sum(1 for rel in tree_bytes(tmp_path / "local-index") if rel.startswith("files/"))

    with pytest.raises(LockmirrorError, match=f"needs the index's files here, and none of "
                       f"the {files} files manifest.json lists is"):
        MirrorServer(index, "127.0.0.1", 0)
    assert main(["check-install", str(index), "--file"]) == 1
    err = capsys.readouterr().err  # up front: no installer ran, nothing else was said
    assert len(err.splitlines()) == 1 and "an index built from an S3 store leaves them in " \
        "the store" in err and "lockmirror import BUNDLE.tar --into DIR" in err
    # the index with its files (the local store's) is served as before
    with MirrorServer(tmp_path / "local-index", "127.0.0.1", 0) as server:
        assert server.port


def test_publish_from_the_s3_store_streams_checked_the_objects_of_a_local_publish(
        aws_env: S3Server, s3_mirror: S3Mirror, tmp_path: Path) -> None:
    bucket, store, store_calls = s3_mirror.bucket, s3_mirror.store, s3_mirror.calls
    build_index(s3_mirror.mirror.lockfiles, store, tmp_path / "s3-index", title="Fixture")
    out = aws_env.new_bucket()
    publish(tmp_path / "local-index", S3Destination(kind="s3", bucket=out, prefix="local",
                                                    endpoint_url=aws_env.endpoint_url))
    dest = S3Destination(kind="s3", bucket=out, prefix="remote",
                         endpoint_url=aws_env.endpoint_url)
    client, calls = counting_client(dest)

    S3Publisher(dest, client=client).run(SourceTree.open(tmp_path / "s3-index", store=store))

    published = objects(aws_env, out)
    local = {k.removeprefix("local/"): v for k, v in published.items()
             if k.startswith("local/") and RECEIPT_KEY not in k}
    remote = {k.removeprefix("remote/"): v for k, v in published.items()
              if k.startswith("remote/") and RECEIPT_KEY not in k}
    assert local == remote and any(k.startswith("files/") for k in remote)
    head = aws_env.client().head_object
    wheel = "files/beta/beta-1.0-py3-none-any.whl"
    assert {k: head(Bucket=out, Key=f"remote/{wheel}")[k] for k in ("ContentType", "Metadata")} \
        == {k: head(Bucket=out, Key=f"local/{wheel}")[k] for k in ("ContentType", "Metadata")}
    # every file streamed through the runner, once, to be hashed: one GET from the
    # store and one PUT each (a server-side copy checks nothing)
    files = {k for k in remote if k.startswith("files/")}
    assert {key.removeprefix("remote/") for name, key in calls if name == "PutObject"} >= files
    assert not any(name in ("CopyObject", "UploadPartCopy") for name, _ in calls)
    assert store_calls.count("GetObject") == len(files)

    # a no-op publish: a listing of the store, a listing and a HEAD of the destination's receipt
    again, again_calls = s3_store(aws_env, f"s3://{bucket}/store", tmp_path / "staging")
    client, calls = counting_client(dest)
    publisher = S3Publisher(dest, client=client)
    tree = SourceTree.open(tmp_path / "s3-index", store=again)
    result = publisher.apply(tree, publisher.plan(tree))
    assert result.uploaded == ()
    assert [name for name, _ in calls] == ["ListObjectsV2", "HeadObject"]  # HEAD: the receipt
    assert again_calls == ["ListObjectsV2"]


def test_publish_of_an_s3_store_index_to_a_directory_is_refused(
        s3_mirror: S3Mirror, tmp_path: Path) -> None:
    store = s3_mirror.store
    build_index(s3_mirror.mirror.lockfiles, store, tmp_path / "s3-index", title="Fixture")
    with pytest.raises(LockmirrorError, match="only an S3 destination"):
        publish(tmp_path / "s3-index", DirectoryDestination(kind="directory",
                                                           path=str(tmp_path / "out")),
                store=store)
    assert not (tmp_path / "out").exists()


def test_bundle_from_the_s3_store_has_the_local_bundle_bytes(
        s3_mirror: S3Mirror, tmp_path: Path) -> None:
    from lockmirror.stages.bundle import build_bundle
    from lockmirror.stages.importer import import_bundle

    store, calls = s3_mirror.store, s3_mirror.calls
    (tmp_path / "mirror" / "mirror.yaml").write_text("name: demo\n")
    build_index(s3_mirror.mirror.lockfiles, store, tmp_path / "s3-index", title="Fixture")
    options: dict[str, Any] = {"lockfile_dir": tmp_path / "mirror" / "lockfiles",
                               "mirror_yaml": tmp_path / "mirror" / "mirror.yaml",
                               "name": "demo", "source_date_epoch": 0, "tool": False,
                               "split": "64K"}

    local = build_bundle(tmp_path / "local-index", out_dir=tmp_path / "local-dist", **options)
    remote = build_bundle(tmp_path / "s3-index", out_dir=tmp_path / "s3-dist", store=store,
                          **options)

    assert len(remote.parts) == len(local.parts) > 1
    assert [p.read_bytes() for p in remote.parts] == [p.read_bytes() for p in local.parts]
    assert calls.count("GetObject") == sum(1 for rel in tree_bytes(tmp_path / "local-index")
                                           if rel.startswith("files/"))  # one GET each
    import_bundle(list(remote.parts), tmp_path / "far")  # every hash checked
    imported = {rel: data for rel, data in tree_bytes(tmp_path / "far").items()
                if not rel.startswith(".lockmirror/")}  # the far side's own import state
    assert imported == tree_bytes(tmp_path / "local-index")


WHEEL = "files/beta/beta-1.0-py3-none-any.whl"


def replace_object(server: S3Server, store: S3Store, sha256: str, size: int) -> bytes:
    """Put other bytes of the same size under ``sha256``'s key; the bytes."""
    other = bytes(byte ^ 0xFF for byte in server.get(store.bucket, store.key(sha256)))
    assert len(other) == size and sha256_bytes(other) != sha256
    server.client().put_object(Bucket=store.bucket, Key=store.key(sha256), Body=other)
    return other


def refusal_of(error: pytest.ExceptionInfo[LockmirrorError], store: S3Store, sha256: str,
               other: bytes, name: str = WHEEL) -> str:
    """The one-line error: the store's key, the file, both hashes."""
    text = str(error.value)
    assert "\n" not in text and f"{name} has sha256" in text
    assert f"s3://{store.bucket}/{store.key(sha256)}" in text
    assert sha256 in text and sha256_bytes(other) in text
    return text


def test_bundle_refuses_a_store_object_replaced_by_other_bytes_of_its_size(
        aws_env: S3Server, s3_mirror: S3Mirror, tmp_path: Path) -> None:
    from lockmirror.errors import IntegrityError
    from lockmirror.stages.bundle import build_bundle

    store = s3_mirror.store
    (tmp_path / "mirror" / "mirror.yaml").write_text("name: demo\n")
    build_index(s3_mirror.mirror.lockfiles, store, tmp_path / "s3-index", title="Fixture")
    options: dict[str, Any] = {"lockfile_dir": tmp_path / "mirror" / "lockfiles",
                               "mirror_yaml": tmp_path / "mirror" / "mirror.yaml",
                               "name": "demo", "source_date_epoch": 0, "tool": False,
                               "out_dir": tmp_path / "dist", "store": store}
    good = build_bundle(tmp_path / "s3-index", split="64K", **options)
    before = tree_bytes(tmp_path / "dist")
    data = (tmp_path / "local-index" / WHEEL).read_bytes()
    sha = sha256_bytes(data)
    other = replace_object(aws_env, store, sha, len(data))

    # the same bundle unsplit: written anew, so every object is read again
    with pytest.raises(IntegrityError) as error:
        build_bundle(tmp_path / "s3-index", **options)

    refusal_of(error, store, sha, other)
    assert tree_bytes(tmp_path / "dist") == before  # no temp file; the good volumes kept
    assert len(good.parts) > 1
    # the store repaired, the bundle is written
    aws_env.client().put_object(Bucket=store.bucket, Key=store.key(sha), Body=data)
    assert build_bundle(tmp_path / "s3-index", **options).changed


def test_publish_refuses_a_store_object_replaced_by_other_bytes_of_its_size(
        aws_env: S3Server, s3_mirror: S3Mirror, tmp_path: Path) -> None:
    from lockmirror.errors import PublishError

    store = s3_mirror.store
    build_index(s3_mirror.mirror.lockfiles, store, tmp_path / "s3-index", title="Fixture")
    data = (tmp_path / "local-index" / WHEEL).read_bytes()
    sha = sha256_bytes(data)
    other = replace_object(aws_env, store, sha, len(data))
    out = aws_env.new_bucket()
    dest = S3Destination(kind="s3", bucket=out, prefix="pypi",
                         endpoint_url=aws_env.endpoint_url)

    with pytest.raises(PublishError) as error:
        publish(tmp_path / "s3-index", dest, store=store)

    refusal_of(error, store, sha, other)
    published = aws_env.keys(out)
    assert f"pypi/{WHEEL}" not in published
    assert not any(key.startswith(("pypi/simple/", "pypi/index.html", "pypi/manifest.json"))
                   for key in published)  # no page names the bad object
    assert not aws_env.client().list_multipart_uploads(Bucket=out).get("Uploads")
    # the store repaired, the next publish brings the object and the pages
    aws_env.client().put_object(Bucket=store.bucket, Key=store.key(sha), Body=data)
    result = publish(tmp_path / "s3-index", dest, store=store)
    assert f"{WHEEL}" in result.uploaded
    assert aws_env.get(out, f"pypi/{WHEEL}") == data


def test_publish_checks_a_store_object_above_the_multipart_threshold(
        aws_env: S3Server, tmp_path: Path) -> None:
    """A streamed multipart upload of bad bytes is never completed (nor left open)."""
    from lockmirror.errors import IntegrityError
    from lockmirror.publish.tree import Item

    bucket = aws_env.new_bucket(public=False)
    store, _calls = s3_store(aws_env, f"s3://{bucket}/store", tmp_path / "staging")
    data = os.urandom(13 << 20)
    sha = sha256_bytes(data)
    aws_env.client().put_object(Bucket=bucket, Key=store.key(sha), Body=data)
    other = replace_object(aws_env, store, sha, len(data))
    dest = S3Destination(kind="s3", bucket=bucket, prefix="pypi",
                         endpoint_url=aws_env.endpoint_url)
    client, calls = counting_client(dest)
    item = Item("files/big/big-1.0-py3-none-any.whl", "files/big/big-1.0-py3-none-any.whl",
                sha, len(data))

    with pytest.raises(IntegrityError) as error:
        S3Publisher(dest, client=client)._copy_from_store(store, item, "pypi/" + item.path,
                                                          {"Metadata": {"sha256": sha}})

    refusal_of(error, store, sha, other, item.path)
    assert "CreateMultipartUpload" in {name for name, _ in calls}
    assert "CompleteMultipartUpload" not in {name for name, _ in calls}
    assert not any(key.startswith("pypi/") for key in aws_env.keys(bucket))
    assert not aws_env.client().list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_the_fixture_mirror_builds_end_to_end_with_an_s3_store(
        aws_env: S3Server, fixture_index: FixtureIndex, tmp_path: Path, reproducible_build: None,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from test_front_doors import SETS

    bucket = aws_env.new_bucket(public=False)
    # the same mirror.yaml (the landing page and the bundle carry its hash); the S3
    # store named by $LOCKMIRROR_STORE, as a CI job would (paths.store takes it too)
    for name, store in {"local": None, "s3": f"s3://{bucket}/mirror/store"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "mirror.yaml").write_text(mirror_yaml(fixture_index.url, SETS))
        monkeypatch.chdir(tmp_path / name)
        if store:
            monkeypatch.setenv("LOCKMIRROR_STORE", store)
        for command in ("lock", "fetch", "index", "bundle"):
            assert main([command, "--config", str(tmp_path / name / "mirror.yaml")]) == 0, \
                (name, command, capsys.readouterr())
    capsys.readouterr()

    local, remote = tree_bytes(tmp_path / "local"), tree_bytes(tmp_path / "s3")
    index = {rel: data for rel, data in local.items()
             if rel.startswith("dist-index/") and not rel.startswith("dist-index/files/")}
    assert index == {rel: data for rel, data in remote.items() if rel.startswith("dist-index/")}
    dist = {rel: data for rel, data in local.items() if rel.startswith(("dist/", "lockfiles/"))}
    assert dist and dist == {rel: data for rel, data in remote.items()
                             if rel.startswith(("dist/", "lockfiles/"))}
    assert not any(rel.startswith((".store/", "s3:")) for rel in remote)  # no local store
    stored = {k.removeprefix("mirror/store/") for k in objects(aws_env, bucket)}
    assert stored == {rel.removeprefix(".store/") for rel in local if rel.startswith(".store/")}
    # diff runs with the store on S3 and needs no local one (the lockfiles are the same,
    # so no release's license is read from it)
    assert main(["diff", "--config", str(tmp_path / "s3" / "mirror.yaml"),
                 str(tmp_path / "local" / "lockfiles"), str(tmp_path / "s3" / "lockfiles")]) == 0
    assert "no changes to the lockfiles" in capsys.readouterr().out
    # sbom reads each release's PEP 658 file from the S3 store: the index's document
    assert main(["sbom", "--config", str(tmp_path / "s3" / "mirror.yaml")]) == 0
    assert capsys.readouterr().out == \
        (tmp_path / "s3" / "dist-index" / "sbom" / "mirror.cdx.json").read_text()
    # gc needs a local store: refused in one line, nothing touched
    assert main(["gc", "--config", str(tmp_path / "s3" / "mirror.yaml")]) == 1
    assert "paths.store is on S3" in capsys.readouterr().err
    # `lockmirror publish` (the matrix workflow's gather job) copies the store's objects,
    # as `doit publish` does: the index's files/ are not on the runner
    out = aws_env.new_bucket()
    assert main(["publish", "--config", str(tmp_path / "s3" / "mirror.yaml"), "--to",
                 f"s3://{out}/pypi", "--endpoint-url", aws_env.endpoint_url]) == 0, \
        capsys.readouterr()
    published = {k.removeprefix("pypi/") for k in objects(aws_env, out)}
    assert {rel.removeprefix("dist-index/") for rel in local
            if rel.startswith("dist-index/files/")} <= published
    # --from the index directory built on the S3 store: its files come from the store
    # too (found by an outside tester: "listed in manifest.json but missing")
    again = aws_env.new_bucket()
    assert main(["publish", "--config", str(tmp_path / "s3" / "mirror.yaml"), "--from",
                 "dist-index", "--to", f"s3://{again}/pypi", "--endpoint-url",
                 aws_env.endpoint_url]) == 0, capsys.readouterr()
    assert {k.removeprefix("pypi/") for k in objects(aws_env, again)} == published


def test_seaweedfs_multipart_upload_and_streamed_multipart_copy_keep_the_bytes(
        seaweed_s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A real server: fetch's upload of a verified file above boto3's multipart
    threshold (with its SHA-256 checksum) arrives whole, and so does publish's
    checked copy of it above the same threshold (a streamed multipart upload)."""
    from lockmirror.publish.tree import Item

    seaweed_s3.export(monkeypatch)
    bucket = seaweed_s3.new_bucket(public=False)
    store, store_calls = s3_store(seaweed_s3, f"s3://{bucket}/store", tmp_path / "staging")
    data = os.urandom(13 << 20)
    digest = sha256_bytes(data)
    verified = store.partial_path(digest)
    verified.write_bytes(data)

    store.adopt(verified, digest)

    assert "UploadPart" in store_calls and not verified.exists()
    assert store.has(digest, len(data))
    with store.open(digest) as reader:
        reader.seek(len(data) - 10)
        assert reader.read() == data[-10:]
    dest = S3Destination(kind="s3", bucket=bucket, prefix="pypi",
                         endpoint_url=seaweed_s3.endpoint_url)
    client, calls = counting_client(dest)
    publisher = S3Publisher(dest, client=client)
    item = Item("files/big/big-1.0-py3-none-any.whl", "files/big/big-1.0-py3-none-any.whl",
                digest, len(data))
    publisher._copy_from_store(store, item, "pypi/" + item.path, {"Metadata": {"sha256": digest}})

    assert "UploadPart" in {name for name, _ in calls}
    assert not {"CopyObject", "UploadPartCopy"} & {name for name, _ in calls}
    copied = seaweed_s3.client().get_object(Bucket=bucket, Key="pypi/" + item.path)
    assert sha256_bytes(copied["Body"].read()) == digest
