"""Publishing to S3: moto's server mode for speed, SeaweedFS for credentials and checksums.

After each publish the real pip installs from the bucket's HTTP endpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import subprocess_env
from servers import S3Server, counting_client, pip_install, start_seaweed

from lockmirror.cli import main
from lockmirror.config_schema import S3Destination
from lockmirror.errors import IntegrityError, PublishError
from lockmirror.formats.manifest import Entry, Manifest, scan_tree
from lockmirror.fsutil import sha256_bytes
from lockmirror.publish import ProgressEvent, SourceTree, publish
from lockmirror.publish.s3 import LOCK_KEY, RECEIPT_KEY, S3Publisher

pytest_plugins = ["servers"]  # the server fixtures, shared by every publish test

INSTALL = ["beta", "native", "speedup"]  # beta pulls alpha and foo-bar-baz


def destination(server: S3Server, bucket: str, prefix: str = "pypi",
                **changes: Any) -> S3Destination:
    return S3Destination(kind="s3", bucket=bucket, prefix=prefix,
                         endpoint_url=server.endpoint_url, **changes)


def wanted_keys(tree: Path, prefix: str, *, directory_keys: bool = True) -> set[str]:
    manifest = Manifest.read(tree / "manifest.json")
    keys = {f"{prefix}/{path}" for path in manifest.files} | {f"{prefix}/manifest.json"}
    if directory_keys:
        keys |= {key[: -len("index.html")] for key in keys
                 if key.startswith(f"{prefix}/simple/") and key.endswith("/index.html")}
    return keys


def test_publish_installs_with_pip_then_noop_sends_two_requests(
        aws_env: S3Server, index_tree: Path, tmp_path: Path) -> None:
    bucket = aws_env.new_bucket()
    dest = destination(aws_env, bucket)
    result = publish(index_tree, dest)
    want = wanted_keys(index_tree, "pypi")
    assert len(result.uploaded) == len(want)
    assert set(aws_env.keys(bucket)) == want | {f"pypi/{RECEIPT_KEY}"}  # the lock is gone

    head = aws_env.client().head_object
    wheel = head(Bucket=bucket, Key="pypi/files/beta/beta-1.0-py3-none-any.whl")
    assert wheel["ContentType"] == "application/octet-stream"
    assert "immutable" in wheel["CacheControl"]
    assert wheel["Metadata"]["sha256"] == Manifest.read(index_tree / "manifest.json").files[
        "files/beta/beta-1.0-py3-none-any.whl"].sha256
    page = head(Bucket=bucket, Key="pypi/simple/beta/")
    assert page["ContentType"].startswith("text/html") and "max-age=60" in page["CacheControl"]
    assert head(Bucket=bucket, Key="pypi/simple/beta/index.json")["ContentType"] == \
        "application/vnd.pypi.simple.v1+json"

    pip_install(tmp_path / "site", INSTALL,
                index_url=f"{aws_env.endpoint_url}/{bucket}/pypi/simple/")
    installed = {p.name for p in (tmp_path / "site").iterdir()}
    assert {"alpha", "beta", "foo_bar_baz", "native", "speedup"} <= installed

    client, calls = counting_client(dest)
    again = S3Publisher(dest, client=client)
    tree = SourceTree.open(index_tree)
    plan = again.plan(tree)
    second = again.apply(tree, plan)
    assert second.uploaded == () and second.present_count == len(want)
    assert second.summary().startswith(f"0 uploaded (0 B), {len(want)} already present")
    # the listing and a HEAD of the receipt, whose digest vouches for every object listed
    assert [name for name, _ in calls] == ["ListObjectsV2", "HeadObject"]


def test_a_receipt_without_its_digest_is_written_again_once(
        aws_env: S3Server, index_tree: Path) -> None:
    """A receipt an older lockmirror wrote (no digest in its metadata) costs the
    next no-op a GET; that no-op writes it again, so the one after is back to
    the listing and a HEAD."""
    bucket = aws_env.new_bucket()
    dest = destination(aws_env, bucket)
    publish(index_tree, dest)
    key = f"pypi/{RECEIPT_KEY}"
    aws_env.client().copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                                 MetadataDirective="REPLACE", ContentType="application/json")
    runs = []
    for _ in range(2):
        client, calls = counting_client(dest)
        S3Publisher(dest, client=client).run(SourceTree.open(index_tree))
        runs.append([name for name, _ in calls])
    assert runs == [["ListObjectsV2", "HeadObject", "GetObject", "PutObject"],
                    ["ListObjectsV2", "HeadObject"]]


def test_phases_go_files_pages_root_manifest_and_lock_brackets_them(
        aws_env: S3Server, index_tree: Path) -> None:
    dest = destination(aws_env, aws_env.new_bucket(), prefix="")
    client, calls = counting_client(dest)
    tree = SourceTree.open(index_tree)
    publisher = S3Publisher(dest, client=client, jobs=4)
    publisher.apply(tree, publisher.plan(tree))
    puts = [key for name, key in calls if name == "PutObject"]
    assert puts[0] == LOCK_KEY and puts[-1] == RECEIPT_KEY
    body = puts[1:-1]
    rank = {"files/": 0, "constraints/": 0, "requirements/": 0, "lockfiles/": 0}  # one step: nothing links both

    def phase(key: str) -> int:
        if key == "manifest.json":
            return 4
        if key in {"index.html", "simple/", "simple/index.html", "simple/index.json"}:
            return 3
        if key.startswith("simple/"):
            return 2
        if key == "landing.json":  # a document, only the landing page's data
            return 0
        return rank[key.split("/")[0] + "/"]

    phases = [phase(key) for key in body]
    assert phases == sorted(phases) and phases[-1] == 4 and set(phases) == {0, 2, 3, 4}
    assert [name for name, key in calls if key == LOCK_KEY][-1] == "DeleteObject"


def test_dry_run_prints_counts_and_bytes_per_kind(aws_env: S3Server, index_tree: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bucket = aws_env.new_bucket()
    code = main(["publish", "--to", f"s3://{bucket}/mirror", "--from", str(index_tree),
                 "--endpoint-url", aws_env.endpoint_url, "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    manifest = Manifest.read(index_tree / "manifest.json")
    files = {p: e for p, e in manifest.files.items() if p.startswith("files/")}
    assert f"upload files: {len(files)} (" in out
    assert "upload project pages:" in out and "upload root pages: 4 (" in out
    assert "already present: 0" in out
    assert aws_env.keys(bucket) == {}


def test_changed_object_is_uploaded_again_and_prune_waits_for_pages(
        aws_env: S3Server, index_tree: Path, tmp_path: Path) -> None:
    bucket = aws_env.new_bucket()
    dest = destination(aws_env, bucket)
    publish(index_tree, dest)
    # someone replaces a wheel behind lockmirror's back (same size, other bytes, no metadata)
    key = "pypi/files/beta/beta-1.0-py3-none-any.whl"
    original = aws_env.get(bucket, key)
    aws_env.client().put_object(Bucket=bucket, Key=key, Body=bytes(reversed(original)))
    aws_env.client().put_object(Bucket=bucket, Key="pypi/files/old/old-0.1.tar.gz", Body=b"x")
    client, calls = counting_client(dest)
    repaired = S3Publisher(dest, client=client).run(SourceTree.open(index_tree))
    assert repaired.uploaded == ("files/beta/beta-1.0-py3-none-any.whl",)
    # its ETag no longer gives the receipt's digest: the receipt is read, the wheel asked
    assert [name for name, _ in calls][:4] == ["ListObjectsV2", "HeadObject", "GetObject",
                                               "HeadObject"]
    assert aws_env.get(bucket, key) == original
    assert repaired.plan.stale == () and repaired.plan.foreign == ("files/old/old-0.1.tar.gz",)

    # a smaller index: "speedup" and "yanky" leave; prune removes them only after the pages
    smaller = tmp_path / "smaller"
    shutil.copytree(index_tree, smaller)
    for project in ("speedup", "yanky"):
        shutil.rmtree(smaller / "files" / project)
        shutil.rmtree(smaller / "simple" / project)
    scan_tree(smaller).write(smaller / "manifest.json")
    client, calls = counting_client(dest)
    publisher = S3Publisher(dest, client=client)
    tree = SourceTree.open(smaller)
    result = publisher.apply(tree, publisher.plan(tree, prune=True), prune=True)
    assert "pypi/files/speedup/speedup-1.2-py3-none-any.whl" not in aws_env.keys(bucket)
    assert "simple/yanky/" in result.deleted
    assert "files/old/old-0.1.tar.gz" not in result.deleted  # not lockmirror's: left
    names = [name for name, _ in calls]
    manifest_put = calls.index(("PutObject", "pypi/manifest.json"))
    assert names.index("DeleteObjects") > manifest_put
    assert set(aws_env.keys(bucket)) == wanted_keys(smaller, "pypi") | {
        f"pypi/{RECEIPT_KEY}", "pypi/files/old/old-0.1.tar.gz"}


def test_a_hand_placed_wheel_of_the_same_name_is_a_conflict_not_overwritten(
        aws_env: S3Server, index_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wheel lockmirror did not put there (no receipt names it), with other bytes
    under an index file's name, is refused as the upload API refuses it: named with
    both sha256s where known, left as it is, the other files uploaded, no page (found
    by an outside tester: "1 uploaded, 19 already present", the wheel overwritten)."""
    bucket = aws_env.new_bucket()
    key = "pypi/files/beta/beta-1.0-py3-none-any.whl"
    ours = Manifest.read(index_tree / "manifest.json").files[
        "files/beta/beta-1.0-py3-none-any.whl"].sha256
    theirs = b"a hand-made wheel"
    aws_env.client().put_object(Bucket=bucket, Key=key, Body=theirs,
                                Metadata={"sha256": sha256_bytes(theirs)})
    with pytest.raises(PublishError) as caught:
        publish(index_tree, destination(aws_env, bucket))
    text = str(caught.value)
    assert text.startswith(f"s3://{bucket}/pypi/: 1 file not published (") and "\n" not in text
    assert (f"files/beta/beta-1.0-py3-none-any.whl: the destination holds other bytes under "
            f"this name (sha256 {sha256_bytes(theirs)}; the index has sha256 {ours})") in text
    assert "remove it from the destination if it is not needed" in text
    keys = aws_env.keys(bucket)
    assert aws_env.get(bucket, key) == theirs
    assert "pypi/files/alpha/alpha-1.1-py3-none-any.whl" in keys
    assert not any(k.startswith("pypi/simple/") for k in keys)  # no page links it
    assert f"pypi/{LOCK_KEY}" not in keys

    # without the sha256 metadata (as most hand uploads): its sha256 is not known
    aws_env.client().put_object(Bucket=bucket, Key=key, Body=theirs + b"!")
    assert main(["publish", "--to", f"s3://{bucket}/pypi", "--from", str(index_tree),
                 "--endpoint-url", aws_env.endpoint_url, "--dry-run"]) == 1
    assert ("  CONFLICT: files/beta/beta-1.0-py3-none-any.whl: the destination holds other "
            f"bytes under this name (18 bytes, sha256 not known; the index has sha256 {ours})"
            ) in capsys.readouterr().out


def test_prune_deletes_only_what_lockmirror_uploaded_and_names_it(
        aws_env: S3Server, index_tree: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Objects put under the prefix by hand are not lockmirror's: --prune leaves them
    and says so; what a publish without --prune kept stale stays lockmirror's (the
    receipt keeps it), and the dry run names every key it would delete (found by an
    outside tester: pypi/files/inhouse/... and pypi/README.txt were deleted unnamed)."""
    bucket = aws_env.new_bucket()
    dest = destination(aws_env, bucket)
    publish(index_tree, dest)
    foreign = {"pypi/README.txt": b"ours, by hand",
               "pypi/files/inhouse/inhouse-1.0-py3-none-any.whl": b"an in-house wheel"}
    for key, body in foreign.items():
        aws_env.client().put_object(Bucket=bucket, Key=key, Body=body)
    smaller = tmp_path / "smaller"
    shutil.copytree(index_tree, smaller)
    shutil.rmtree(smaller / "files" / "yanky")
    shutil.rmtree(smaller / "simple" / "yanky")
    scan_tree(smaller).write(smaller / "manifest.json")
    kept = publish(smaller, dest)  # no --prune: yanky's objects stay, still lockmirror's
    assert kept.deleted == () and "simple/yanky/" in kept.plan.stale
    base = ["publish", "--to", f"s3://{bucket}/pypi", "--from", str(smaller),
            "--endpoint-url", aws_env.endpoint_url, "--prune"]
    assert main([*base, "--dry-run", "-v"]) == 0
    out = capsys.readouterr().out
    yanky = sorted(key[len("pypi/"):] for key in aws_env.keys(bucket)
                   if key.startswith(("pypi/files/yanky/", "pypi/simple/yanky/")))
    assert f"  stale, would delete: {len(yanky)}\n" in out
    assert all(f"    {key}\n" in out for key in yanky)
    assert "  not lockmirror's: left in place: 2 (README.txt, " \
           "files/inhouse/inhouse-1.0-py3-none-any.whl)\n" in out
    assert main(base) == 0
    out = capsys.readouterr().out
    assert f"deleted {len(yanky)}: " in out and "simple/yanky/" in out
    assert "not lockmirror's: left in place: 2" in out
    keys = aws_env.keys(bucket)
    assert all(key in keys for key in foreign) and not any(
        key.startswith("pypi/files/yanky/") for key in keys)


def test_large_file_goes_multipart_and_is_current_afterwards(
        aws_env: S3Server, index_tree: Path, tmp_path: Path) -> None:
    tree_dir = tmp_path / "tree"
    shutil.copytree(index_tree, tree_dir)
    big = tree_dir / "files" / "big" / "big-1.0-py3-none-any.whl"
    big.parent.mkdir()
    big.write_bytes(os.urandom(9 * 1024 * 1024 + 17))
    scan_tree(tree_dir).write(tree_dir / "manifest.json")
    bucket = aws_env.new_bucket()
    dest = destination(aws_env, bucket)
    client, calls = counting_client(dest)
    publisher = S3Publisher(dest, client=client)
    tree = SourceTree.open(tree_dir)
    publisher.apply(tree, publisher.plan(tree))
    assert ("CreateMultipartUpload", "pypi/files/big/big-1.0-py3-none-any.whl") in calls
    assert aws_env.get(bucket, "pypi/files/big/big-1.0-py3-none-any.whl") == big.read_bytes()
    assert publish(tree_dir, dest).uploaded == ()


def test_a_file_that_does_not_match_the_manifest_leaves_the_pages_alone(
        aws_env: S3Server, index_tree: Path, tmp_path: Path) -> None:
    tree_dir = tmp_path / "tree"
    shutil.copytree(index_tree, tree_dir)
    wheel = tree_dir / "files" / "beta" / "beta-1.0-py3-none-any.whl"
    data = wheel.read_bytes()
    wheel.unlink()  # the index hard-links into the store: never write through the link
    wheel.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    bucket = aws_env.new_bucket()
    with pytest.raises(PublishError, match=r"1 of \d+ uploads \(\d+ files and \d+ documents\) failed: "
                       r".*beta-1.0-py3-none-any.whl"
                       ".*does not match manifest.json.*pages were left as they were"):
        publish(tree_dir, destination(aws_env, bucket))
    keys = aws_env.keys(bucket)
    assert not [k for k in keys if k.startswith("pypi/simple/") or k == "pypi/manifest.json"]
    assert f"pypi/{LOCK_KEY}" not in keys
    # what did go up is in the receipt: the next run (a good tree) uploads only the rest
    receipt = json.loads(aws_env.get(bucket, f"pypi/{RECEIPT_KEY}"))["objects"]
    assert all(path.startswith(("files/", "constraints/", "requirements/", "lockfiles/",
                                "landing.json"))
               for path in receipt)
    assert "files/beta/beta-1.0-py3-none-any.whl" not in receipt
    repaired = publish(index_tree, destination(aws_env, bucket))
    assert not set(repaired.uploaded) & set(receipt)
    assert "files/beta/beta-1.0-py3-none-any.whl" in repaired.uploaded


def test_lock_keeps_a_second_publisher_out_until_the_first_is_done(
        aws_env: S3Server, index_tree: Path) -> None:
    bucket = aws_env.new_bucket()
    dest = destination(aws_env, bucket)
    inside = threading.Event()
    proceed = threading.Event()

    def hold(event: ProgressEvent) -> None:
        if event.detail and not inside.is_set():
            inside.set()
            proceed.wait(30)

    outcome: dict[str, Any] = {}

    def first() -> None:
        outcome["first"] = publish(index_tree, dest, progress=hold, jobs=2)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inside.wait(30)
        with pytest.raises(PublishError, match=r"locked by \S+@\S+ pid \d+ for \d+ s.*"
                                               "--break-lock"):
            publish(index_tree, dest)
    finally:
        proceed.set()
        thread.join(60)
    assert outcome["first"].uploaded
    assert set(aws_env.keys(bucket)) == wanted_keys(index_tree, "pypi") | {
        f"pypi/{RECEIPT_KEY}"}
    assert publish(index_tree, dest).uploaded == ()


def test_a_live_lock_names_its_holder_and_expiry_and_can_be_broken(aws_env: S3Server,
                                                                   index_tree: Path) -> None:
    bucket = aws_env.new_bucket()
    dest = destination(aws_env, bucket)
    now = datetime.now(UTC)
    created = (now - timedelta(hours=3)).isoformat(timespec="seconds")
    expires = (now + timedelta(minutes=30)).isoformat(timespec="seconds")
    aws_env.client().put_object(Bucket=bucket, Key=f"pypi/{LOCK_KEY}", Body=json.dumps(
        {"holder": "ci@runner-7 pid 4242", "created": created, "token": "t",
         "expires": expires}).encode())
    with pytest.raises(PublishError, match=r"locked by ci@runner-7 pid 4242 for 3 h 0 min, "
                                           r"expires in (29|30) min"):
        publish(index_tree, dest)
    assert set(aws_env.keys(bucket)) == {f"pypi/{LOCK_KEY}"}
    result = publish(index_tree, dest, break_lock=True)
    assert result.notes == ("broke the lock held by ci@runner-7 pid 4242 for 3 h 0 min",)
    assert f"pypi/{LOCK_KEY}" not in aws_env.keys(bucket)


def test_a_broken_lock_and_the_objects_checked_are_said_once(
        aws_env: S3Server, index_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The plan made again under the lock neither HEADs nor says again what this run
    already checked, and a broken lock is said once, -q or not (found by an outside
    tester: both lines were printed twice)."""
    bucket = aws_env.new_bucket()
    publish(index_tree, destination(aws_env, bucket))
    client = aws_env.client()
    client.delete_object(Bucket=bucket, Key=f"pypi/{RECEIPT_KEY}")  # nothing vouched for
    client.delete_object(Bucket=bucket, Key="pypi/index.html")  # something to upload
    client.put_object(Bucket=bucket, Key=f"pypi/{LOCK_KEY}", Body=json.dumps(
        {"holder": "ci@runner-7 pid 4242", "created": datetime.now(UTC).isoformat(),
         "token": "t"}).encode())
    argv = ["publish", "--to", f"s3://{bucket}/pypi", "--from", str(index_tree),
            "--endpoint-url", aws_env.endpoint_url, "--break-lock"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("the receipt does not vouch for") == 1, err
    assert err.count("broke the lock held by ci@runner-7 pid 4242") == 1, err

    client.put_object(Bucket=bucket, Key=f"pypi/{LOCK_KEY}", Body=json.dumps(
        {"holder": "ci@runner-7 pid 4242", "created": datetime.now(UTC).isoformat(),
         "token": "t"}).encode())
    client.delete_object(Bucket=bucket, Key="pypi/index.html")
    assert main([*argv, "-q"]) == 0
    err = capsys.readouterr().err
    assert err.count("broke the lock held by ci@runner-7 pid 4242") == 1, err  # -q too


def test_an_expired_lock_is_taken_over_and_said(aws_env: S3Server, index_tree: Path) -> None:
    bucket = aws_env.new_bucket()
    dest = destination(aws_env, bucket)
    # written by an older lockmirror (no expiry): it expires lock_ttl after it was taken
    created = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="seconds")
    aws_env.client().put_object(Bucket=bucket, Key=f"pypi/{LOCK_KEY}", Body=json.dumps(
        {"holder": "ci@runner-7 pid 4242", "created": created, "token": "t"}).encode())
    result = publish(index_tree, dest)
    assert result.notes == ("took over the expired lock of ci@runner-7 pid 4242 "
                            "(taken 2 h 0 min ago)",)
    assert set(aws_env.keys(bucket)) == wanted_keys(index_tree, "pypi") | {
        f"pypi/{RECEIPT_KEY}"}


HOLD_AND_HANG = """\
import sys, time
from lockmirror.config_schema import S3Destination
from lockmirror.publish.s3 import S3Publisher
dest = S3Destination(kind="s3", bucket=sys.argv[1], prefix="pypi", endpoint_url=sys.argv[2],
                     lock_ttl=10)
with S3Publisher(dest)._lock().held(wait=0, break_lock=False, notes=[],
                                    progress=lambda e: None, ttl=10):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_killed_publisher_leaves_the_bucket_locked_only_until_its_lock_expires(
        aws_env: S3Server, index_tree: Path) -> None:
    bucket = aws_env.new_bucket()
    dest = destination(aws_env, bucket, lock_ttl=600)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_HANG, bucket, aws_env.endpoint_url],
                              env=subprocess_env(**aws_env.env()), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    finally:
        holder.kill()  # SIGKILL: no finally block, no release
        holder.wait(30)
    lock = S3Publisher(dest)._lock()
    held = lock.read()
    assert held is not None and held.expires is not None
    with pytest.raises(PublishError, match=r"locked by .* expires in \d+ (s|min)"):
        publish(index_tree, dest)
    # its expiry passes (the dead holder's lock, back-dated rather than waited for;
    # written with naive times, as another writer might: read as UTC)
    stale = json.loads(aws_env.get(bucket, f"pypi/{LOCK_KEY}"))
    past = (datetime.now(UTC) - timedelta(minutes=1)).replace(tzinfo=None)
    stale.update(created=(past - timedelta(minutes=10)).isoformat(), expires=past.isoformat())
    aws_env.client().put_object(Bucket=bucket, Key=f"pypi/{LOCK_KEY}",
                                Body=json.dumps(stale).encode())
    result = publish(index_tree, dest)
    assert len(result.notes) == 1 and result.notes[0].startswith("took over the expired lock")
    assert set(aws_env.keys(bucket)) == wanted_keys(index_tree, "pypi") | {
        f"pypi/{RECEIPT_KEY}"}


def tree_with_a_fifo(index_tree: Path, into: Path) -> Path:
    """A copy of the index with one more file: an empty FIFO, whose upload blocks in
    open() until a writer comes (:func:`sigterm_publish` comes after SIGTERM)."""
    shutil.copytree(index_tree, into)
    manifest = Manifest.read(into / "manifest.json")
    manifest.files["files/zzz/zzz-0.1.tar.gz"] = Entry(sha256=sha256_bytes(b""), size=0)
    manifest.write(into / "manifest.json")
    (into / "files" / "zzz").mkdir()
    os.mkfifo(into / "files" / "zzz" / "zzz-0.1.tar.gz")
    return into


def unblock(fifo: Path) -> None:
    """Let an upload blocked opening the FIFO read it (empty) and go on."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader (yet, or any more)
        pass


def start_holding_lock(argv: list[str], server: S3Server, bucket: str, cwd: Path) -> subprocess.Popen[str]:
    """``argv``, a publish to ``bucket``/pypi, once it holds the lock and uploaded a file
    (an upload blocked on the FIFO holds it there)."""
    child = subprocess.Popen(argv, cwd=cwd, env=subprocess_env(**server.env()),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = S3Publisher(destination(server, bucket))._lock()
    deadline = time.monotonic() + 60
    while (not any("/files/" in key for key in server.keys(bucket)) or lock.read() is None) \
            and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if lock.read() is None:  # no caller's clean-up holds it yet: stop it here
        child.kill()
        child.communicate()
    assert lock.read() is not None, "the publish never took its lock"
    return child


def sigterm_publish(argv: list[str], server: S3Server, bucket: str, fifo: Path,
                    cwd: Path) -> tuple[int, str]:
    """Run ``argv`` (a publish to ``bucket``'s prefix pypi that blocks on ``fifo``),
    SIGTERM it once it holds the lock and uploaded a file (so there is something to
    remember), then unblock the upload under way (as Ctrl-C lets it finish); its exit
    status and stderr."""
    child = start_holding_lock(argv, server, bucket, cwd)
    return stop_and_finish(child, fifo, lambda: child.send_signal(signal.SIGTERM))


def stop_and_finish(child: subprocess.Popen[str], fifo: Path, stop: Callable[[], object], *,
                    wait: float = 60, timeout: float = 30) -> tuple[int, str]:
    """``stop()`` the publish ``child`` blocked on ``fifo``, then unblock its upload
    under way until it ends (within ``wait`` s, then ``timeout`` s more); its exit
    status and stderr. A child still running then is killed."""
    try:
        stop()
        deadline = time.monotonic() + wait
        while child.poll() is None and time.monotonic() < deadline:
            unblock(fifo)  # the blocked upload reads its (empty) file and ends
            time.sleep(0.05)
        _out, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, err


def doit_publish_project(directory: Path, source: Path, bucket: str,
                         server: S3Server) -> list[str]:
    """A mirror.yaml in ``directory`` whose index is ``source`` and whose publish
    ``bucket`` (prefix pypi) is on ``server``; the doit command that runs one of its
    tasks alone (the task's name to add)."""
    (directory / "mirror.yaml").write_text(f"""\
version: 1
sources: [{{name: pypi, url: "https://pypi.org/simple/"}}]
targets: {{host: {{python: "3.11", platforms: [manylinux_2_28_x86_64]}}}}
sets: {{core: {{requirements: [beta]}}}}
paths: {{index: "{source}"}}
publish: {{bucket: {{kind: s3, bucket: {bucket}, prefix: pypi, endpoint_url: "{server.endpoint_url}"}}}}
""")
    dodo = Path(__file__).resolve().parent.parent / "dodo.py"
    return [sys.executable, "-m", "doit", "-f", str(dodo), "-d", str(directory), "run",
            "--single"]


def test_a_sigtermed_publish_releases_its_lock_as_ctrl_c_does(
        aws_env: S3Server, index_tree: Path, tmp_path: Path) -> None:
    """SIGTERM (timeout, docker stop, systemd, Kubernetes) takes Ctrl-C's path at
    both doors: the lock is released and the receipt written, one line, exit 143
    (found by an outside tester: the lock stayed held for its hour)."""
    source = tree_with_a_fifo(index_tree, tmp_path / "tree")
    fifo = source / "files" / "zzz" / "zzz-0.1.tar.gz"
    bucket = aws_env.new_bucket()
    code, err = sigterm_publish(
        [sys.executable, "-m", "lockmirror", "publish", "--to", f"s3://{bucket}/pypi",
         "--from", str(source), "--endpoint-url", aws_env.endpoint_url, "--jobs", "1", "-q"],
        aws_env, bucket, fifo, tmp_path)
    assert code == 143, err
    assert err.splitlines()[-1].startswith("lockmirror: terminated: ") and "Traceback" not in err
    assert S3Publisher(destination(aws_env, bucket))._lock().read() is None  # released
    assert f"pypi/{RECEIPT_KEY}" in aws_env.keys(bucket)  # what got uploaded is remembered

    # `doit publish:<name>` (alone: --single, the index is the tree above)
    bucket = aws_env.new_bucket()
    code, err = sigterm_publish(
        [*doit_publish_project(tmp_path, source, bucket, aws_env), "publish:bucket"],
        aws_env, bucket, fifo, tmp_path)
    assert code == 143, err
    assert err.splitlines()[-1].startswith("lockmirror: terminated: ") and "Traceback" not in err
    assert S3Publisher(destination(aws_env, bucket))._lock().read() is None


def test_a_lease_renews_itself_and_a_taken_over_lock_is_not_released(
        aws_env: S3Server) -> None:
    bucket = aws_env.new_bucket()
    lock = S3Publisher(destination(aws_env, bucket))._lock()
    notes: list[str] = []
    with lock.held(wait=0, break_lock=False, notes=notes, progress=lambda e: None,
                   ttl=30) as lease:
        first = lock.read()
        assert first is not None and first.token == lease.token
        lease.renew()  # within a third of the lifetime: nothing written
        assert lock.read() == first
        lease._renewed -= 11  # as if 11 s had passed
        lease.renew()
        renewed = lock.read()
        assert renewed is not None and renewed.expires is not None and first.expires is not None
        assert renewed.expires >= first.expires and renewed.etag == lease.etag
        assert renewed.created == first.created  # its age still counts from the take
        # another publisher takes the lock over (as after an expiry)
        aws_env.client().put_object(Bucket=bucket, Key=f"pypi/{LOCK_KEY}", Body=json.dumps(
            {"holder": "other", "created": "2026-01-01T00:00:00+00:00", "token": "o",
             "expires": "2999-01-01T00:00:00+00:00"}).encode())
        lease._renewed -= 11
        with pytest.raises(PublishError, match="lost the publish lock: it expired and another"):
            lease.renew()
    after = lock.read()
    assert after is not None and after.holder == "other"  # not ours to release


def test_two_cli_publishes_at_once_leave_the_bucket_consistent(
        aws_env: S3Server, index_tree: Path, tmp_path: Path) -> None:
    bucket = aws_env.new_bucket()
    argv = [sys.executable, "-m", "lockmirror", "publish", "--to", f"s3://{bucket}/pypi",
            "--from", str(index_tree), "--endpoint-url", aws_env.endpoint_url, "--jobs", "2"]
    env = subprocess_env(**aws_env.env())
    runs = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    answers = [(run.wait(60), *run.communicate()) for run in runs]
    assert any(code == 0 for code, _, _ in answers)
    for code, out, err in answers:
        if code != 0:
            assert "Traceback" not in err
            assert err.splitlines()[-1].startswith("lockmirror: error: ")  # one line, last
            assert "locked by" in err.splitlines()[-1]
        else:
            assert "uploaded" in out
    assert set(aws_env.keys(bucket)) == wanted_keys(index_tree, "pypi") | {
        f"pypi/{RECEIPT_KEY}"}


def test_missing_bucket_and_unreachable_endpoint_are_one_line_errors(
        aws_env: S3Server, index_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["publish", "--to", "s3://no-such-bucket-here/p", "--from", str(index_tree),
                 "--endpoint-url", aws_env.endpoint_url])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1
    assert "bucket 'no-such-bucket-here' does not exist" in err
    with pytest.raises(PublishError, match="cannot reach http://127.0.0.1:9/"):
        publish(index_tree, S3Destination(kind="s3", bucket="b", endpoint_url="http://127.0.0.1:9/"))


def test_publish_from_a_bundle_without_mirror_yaml(aws_env: S3Server, index_tree: Path,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from lockmirror.stages.bundle import build_bundle

    lockfiles = index_tree.parent / "lockfiles"
    mirror_yaml = tmp_path / "mirror.yaml"
    mirror_yaml.write_text("version: 1\n")
    result = build_bundle(index_tree, lockfile_dir=lockfiles, mirror_yaml=mirror_yaml,
                          out_dir=tmp_path / "dist", name="fixture", tool=False)
    far_side = tmp_path / "far"
    far_side.mkdir()
    monkeypatch.chdir(far_side)
    bucket = aws_env.new_bucket()
    code = main(["publish", "--to", f"s3://{bucket}/inside", "--from", str(result.path),
                 "--endpoint-url", aws_env.endpoint_url, "-q"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"{len(wanted_keys(index_tree, 'inside'))} uploaded" in out
    assert set(aws_env.keys(bucket)) == wanted_keys(index_tree, "inside") | {
        f"inside/{RECEIPT_KEY}"}


# ----------------------------------------------------------------------
# SeaweedFS: checks credentials and checksums
# ----------------------------------------------------------------------


@pytest.fixture
def weed_env(seaweed_s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    seaweed_s3.export(monkeypatch)
    yield seaweed_s3


def test_seaweedfs_publish_installs_with_pip_and_noop(weed_env: S3Server, index_tree: Path,
                                                      tmp_path: Path) -> None:
    bucket = weed_env.new_bucket()
    # SeaweedFS turns keys ending in "/" into folders, so no directory keys here
    dest = destination(weed_env, bucket, directory_keys=False)
    result = publish(index_tree, dest)
    want = wanted_keys(index_tree, "pypi", directory_keys=False)
    assert len(result.uploaded) == len(want)
    # pip cannot GET .../simple/<p>/ here: the project pages go in as find-links
    base = f"{weed_env.endpoint_url}/{bucket}/pypi/simple"
    pages = [f"{base}/{p}/index.html" for p in ("alpha", "beta", "foo-bar-baz", "native",
                                                "speedup")]
    pip_install(tmp_path / "site", INSTALL, find_links=pages)
    assert (tmp_path / "site" / "beta").is_dir()
    again = publish(index_tree, dest)
    assert again.uploaded == () and again.present_count == len(want)


def test_noop_plan_against_a_server_that_checks_signatures(
        weed_env: S3Server, index_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SeaweedFS checks signatures: the no-op's listing and receipt read are signed right
    bucket = weed_env.new_bucket()
    dest = destination(weed_env, bucket, prefix="quick/path", directory_keys=False)
    publish(index_tree, dest)
    tree = SourceTree.open(index_tree)
    plan = S3Publisher(dest).plan(tree)
    assert plan.upload == () and len(plan.present) == len(
        wanted_keys(index_tree, "quick/path", directory_keys=False))
    # credentials the server refuses are reported as such
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(PublishError, match="credentials were refused"):
        S3Publisher(dest).plan(tree)


def test_seaweedfs_wrong_credentials_publish_nothing(weed_env: S3Server, index_tree: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = weed_env.new_bucket()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(PublishError, match="credentials were refused while listing the bucket "
                                           r"\(SignatureDoesNotMatch\)"):
        publish(index_tree, destination(weed_env, bucket, directory_keys=False))
    assert weed_env.keys(bucket) == {}


def test_seaweedfs_read_only_credentials_stop_at_the_lock(weed_env: S3Server, index_tree: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = weed_env.new_bucket()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "READER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "READER-SECRET")
    dest = destination(weed_env, bucket, directory_keys=False)
    assert len(publish(index_tree, dest, dry_run=True).plan.upload) > 0  # reading is allowed
    with pytest.raises(PublishError, match=r"credentials were refused while taking the publish "
                                           r"lock \(AccessDenied\)"):
        publish(index_tree, dest)
    assert weed_env.keys(bucket) == {}


def test_seaweedfs_checksum_refusal_becomes_an_integrity_error(weed_env: S3Server) -> None:
    # lockmirror sends each small object's sha256 (from the manifest) as its S3 checksum;
    # a server that checks it refuses other bytes, and that answer is an IntegrityError
    import base64
    import hashlib

    import botocore.exceptions  # type: ignore[import-untyped]

    from lockmirror.publish.s3 import convert_error

    bucket = weed_env.new_bucket()
    promised = base64.b64encode(hashlib.sha256(b"the bytes in the manifest").digest()).decode()
    try:
        weed_env.client().put_object(Bucket=bucket, Key="files/x.whl", Body=b"other bytes",
                                     ChecksumSHA256=promised)
    except botocore.exceptions.ClientError as error:  # as S3Publisher sees it
        converted = convert_error(error, action="uploading", bucket=bucket,
                                  where=f"s3://{bucket}/files/x.whl",
                                  endpoint=weed_env.endpoint_url)
    else:
        pytest.fail("SeaweedFS accepted bytes that do not match their checksum")
    assert isinstance(converted, IntegrityError)
    assert "the server received other bytes than were sent (BadDigest)" in str(converted)
    assert weed_env.keys(bucket) == {}


def test_seaweedfs_takes_over_an_expired_lock_by_its_etag(weed_env: S3Server,
                                                           index_tree: Path) -> None:
    bucket = weed_env.new_bucket()
    dest = destination(weed_env, bucket, directory_keys=False)
    created = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="seconds")
    expired = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
    weed_env.client().put_object(Bucket=bucket, Key=f"pypi/{LOCK_KEY}", Body=json.dumps(
        {"holder": "ci@runner-7 pid 4242", "created": created, "token": "t",
         "expires": expired}).encode())
    lock = S3Publisher(dest)._lock()
    dead = lock.read()
    assert dead is not None
    # a write conditional on another ETag is refused: the takeover cannot race
    assert lock._put(b"{}", if_match='"0000"', action="test") is None
    result = publish(index_tree, dest)
    assert result.notes == ("took over the expired lock of ci@runner-7 pid 4242 "
                            "(taken 2 h 0 min ago)",)
    assert f"pypi/{LOCK_KEY}" not in weed_env.keys(bucket)


def test_seaweedfs_leaves_nothing_outside_its_directory(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # weed's defaults put its log files in $TMPDIR and its unix sockets in /tmp, and
    # it is killed (its graceful stop takes seconds): each run left them behind
    temp = tmp_path / "tmpdir"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    workdir = tmp_path / "w"
    workdir.mkdir()
    before = set(Path("/tmp").glob("seaweedfs-*.sock"))  # another run's, on other ports
    server = start_seaweed(workdir)
    server.process.stop()
    assert list(temp.iterdir()) == []
    assert server.ports and [path for port in server.ports
                             for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")
                             if path not in before] == []
