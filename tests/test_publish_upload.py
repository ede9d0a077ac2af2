"""Publishing through the upload API to a real pypiserver (htpasswd) and devpi-server.

After each publish the real pip installs from the repository's simple index.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import requests
from fixtureindex import build_wheel
from helpers import QuietHandler, serving, subprocess_env
from servers import Devpi, UploadServer, pip_install

from lockmirror.cli import main
from lockmirror.config_schema import UploadDestination
from lockmirror.errors import PublishError
from lockmirror.formats.manifest import Manifest, scan_tree
from lockmirror.fsutil import sha256_file
from lockmirror.publish import ProgressEvent, SourceTree, publish
from lockmirror.publish.upload import UploadPublisher

pytest_plugins = ["servers"]  # the server fixtures, shared by every publish test

INSTALL = ["beta", "native", "speedup"]


def destination(server: UploadServer) -> UploadDestination:
    return UploadDestination(kind="upload", url=server.url, simple_url=server.simple_url,
                             username_env="REPO_USER", password_env="REPO_PASSWORD")


def credentials(server: UploadServer, password: str | None = None) -> dict[str, str]:
    return {"REPO_USER": server.username, "REPO_PASSWORD": password or server.password}


def with_credentials(url: str, server: UploadServer) -> str:
    return url.replace("http://", f"http://{server.username}:{server.password}@")


def artifacts(tree: Path) -> list[str]:
    return sorted(path.rsplit("/", 1)[-1] for path in Manifest.read(tree / "manifest.json").files
                  if path.startswith("files/") and not path.endswith(".metadata"))


def tree_of(root: Path, wheels: list[Path]) -> Path:
    """A minimal index tree (files and manifest) holding ``wheels``."""
    for wheel in wheels:
        project = wheel.name.split("-")[0].replace("_", "-")
        target = root / "files" / project / wheel.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wheel, target)
    scan_tree(root).write(root / "manifest.json")
    return root


@pytest.fixture
def license_expression_wheel(tmp_path: Path) -> Path:
    """Built the way beautifulsoup4 4.12.2 was: Metadata-Version 2.1 with License-Expression."""
    from twine.exceptions import InvalidDistribution
    from twine.package import PackageFile

    wheel = build_wheel(tmp_path / "built", "licexpr", "1.0", metadata_version="2.1",
                        extra_metadata=[("License-Expression", "MIT"),
                                        ("Classifier", "Programming Language :: Python :: 3"),
                                        ("Classifier", "License :: OSI Approved :: MIT License")])
    with pytest.raises(InvalidDistribution, match="license-expression"):
        PackageFile.from_filename(str(wheel), comment=None)  # twine itself refuses it
    return wheel


def test_pypiserver_publish_installs_with_pip_then_noop(pypiserver: UploadServer,
                                                        index_tree: Path,
                                                        tmp_path: Path) -> None:
    dest = destination(pypiserver)
    env = credentials(pypiserver)
    result = publish(index_tree, dest, environ=env)
    names = artifacts(index_tree)
    assert sorted(p.rsplit("/", 1)[-1] for p in result.uploaded) == names
    assert pypiserver.packages is not None
    assert sorted(p.name for p in pypiserver.packages.iterdir()) == names
    pip_install(tmp_path / "site", INSTALL,
                index_url=with_credentials(pypiserver.simple_url, pypiserver))
    assert (tmp_path / "site" / "native").is_dir()

    again = publish(index_tree, dest, environ=env)
    assert again.uploaded == ()
    assert again.summary() == f"0 uploaded (0 B), {len(names)} already present"


def test_a_wheel_twine_refuses_is_uploaded_directly_to_pypiserver(
        pypiserver: UploadServer, license_expression_wheel: Path, tmp_path: Path) -> None:
    tree = tree_of(tmp_path / "tree", [license_expression_wheel])
    result = publish(tree, destination(pypiserver), environ=credentials(pypiserver))
    assert result.uploaded == (f"files/licexpr/{license_expression_wheel.name}",)
    pip_install(tmp_path / "site", ["licexpr==1.0"],
                index_url=with_credentials(pypiserver.simple_url, pypiserver))
    assert (tmp_path / "site" / "licexpr" / "__init__.py").is_file()


def test_devpi_takes_the_index_and_the_wheel_twine_refuses(
        devpi: Devpi, index_tree: Path, license_expression_wheel: Path,
        tmp_path: Path) -> None:
    server = devpi.new_index()
    dest = destination(server)
    env = credentials(server)
    tree = tmp_path / "tree"
    shutil.copytree(index_tree, tree)
    target = tree / "files" / "licexpr" / license_expression_wheel.name
    target.parent.mkdir()
    shutil.copyfile(license_expression_wheel, target)
    scan_tree(tree).write(tree / "manifest.json")
    result = publish(tree, dest, environ=env)
    assert len(result.uploaded) == len(artifacts(tree))
    pip_install(tmp_path / "site", [*INSTALL, "licexpr"], index_url=server.simple_url)
    assert (tmp_path / "site" / "licexpr").is_dir()
    # without simple_url: the default <url>/simple/ is not devpi's; its +simple/ is found
    guessed = UploadDestination(kind="upload", url=server.url, username_env="REPO_USER",
                                password_env="REPO_PASSWORD")
    said: list[str] = []
    again = publish(tree, guessed, environ=env, progress=lambda event: said.append(event.message))
    assert again.uploaded == () and again.present_count == len(artifacts(tree))
    # and says so, naming the URL it reads (found by an outside tester: only the
    # guessed one, which devpi answers 404, was named)
    plus_simple = server.url.rstrip("/") + "/+simple/"
    assert (f"{server.url.rstrip('/')}/simple/ is not found: devpi's pages are at "
            f"{plus_simple}, reading those") in said, said


def test_wrong_credentials_fail_cleanly_with_nothing_uploaded(
        pypiserver: UploadServer, index_tree: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINE_USERNAME", pypiserver.username)
    monkeypatch.setenv("TWINE_PASSWORD", "wrong-password")
    code = main(["publish", "--to", pypiserver.url, "--from", str(index_tree)])
    err = capsys.readouterr().err.splitlines()[-1]  # after the progress line
    assert code == 1 and err.startswith("lockmirror: error: ")
    assert "credentials were refused" in err and "(HTTP 403)" in err  # pypiserver's answer
    assert "wrong-password" not in err
    assert pypiserver.packages is not None and list(pypiserver.packages.iterdir()) == []


def test_credentials_rejected_only_at_upload_stop_at_the_first_file(
        devpi: Devpi, index_tree: Path) -> None:
    # devpi lets anyone read the index, so the wrong password shows only on upload
    server = devpi.new_index()
    with pytest.raises(PublishError, match=r"credentials were refused uploading .* \(HTTP 401"):
        publish(index_tree, destination(server), environ=credentials(server, "wrong"), jobs=1)
    assert UploadPublisher(destination(server), environ=credentials(server)).repository_files(
        "beta") == {}


def test_same_name_other_bytes_is_a_loud_error_and_the_rest_still_goes(
        pypiserver: UploadServer, index_tree: Path, tmp_path: Path) -> None:
    impostor = build_wheel(tmp_path / "other", "beta", "1.0", requires_dist=["nothing-else"])
    assert pypiserver.packages is not None
    shutil.copyfile(impostor, pypiserver.packages / impostor.name)
    with pytest.raises(PublishError, match=r"1 file not published \(\d+ uploaded .*\): "
                                           r"beta-1.0-py3-none-any.whl: the repository holds "
                                           "other bytes under this name"):
        publish(index_tree, destination(pypiserver), environ=credentials(pypiserver))
    assert (pypiserver.packages / "alpha-1.1-py3-none-any.whl").is_file()
    assert (pypiserver.packages / impostor.name).read_bytes() == impostor.read_bytes()
    # the dry run says so and fails as the real run does (a CI gate can stop on it)
    assert main(["publish", "--to", with_credentials(pypiserver.url, pypiserver), "--from",
                 str(index_tree), "--dry-run"]) == 1


def test_already_exists_answer_counts_only_with_the_same_sha256(
        pypiserver: UploadServer, index_tree: Path) -> None:
    dest = destination(pypiserver)
    env = credentials(pypiserver)
    publisher = UploadPublisher(dest, environ=env)
    tree = SourceTree.open(index_tree)
    plan = publisher.plan(tree)
    # between plan and upload, someone else uploads one of the files with plain twine
    wheel = index_tree / "files" / "beta" / "beta-1.0-py3-none-any.whl"
    done = subprocess.run(
        [sys.executable, "-m", "twine", "upload", "--repository-url", pypiserver.url,
         "--non-interactive", "--disable-progress-bar", str(wheel)],
        env=subprocess_env(TWINE_USERNAME=pypiserver.username,
                           TWINE_PASSWORD=pypiserver.password), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = publisher.apply(tree, plan)
    assert result.found_present == ("files/beta/beta-1.0-py3-none-any.whl",)
    assert "files/beta/beta-1.0-py3-none-any.whl" not in result.uploaded
    assert result.present_count == 1


def test_unset_credential_variable_and_unreachable_repository(index_tree: Path) -> None:
    dest = UploadDestination(kind="upload", url="http://127.0.0.1:9/",
                             username_env="NOT_SET_USER", password_env="NOT_SET_PASSWORD")
    with pytest.raises(PublishError, match="environment variable NOT_SET_USER is not set"):
        publish(index_tree, dest, environ={})
    with pytest.raises(PublishError, match=r"^http://127.0.0.1:9/: cannot fetch "
                                           r"http://127.0.0.1:9/simple/alpha/: [^\n]*$"):
        publish(index_tree, UploadDestination(kind="upload", url="http://127.0.0.1:9/"),
                environ={})


def test_missing_credentials_are_named_not_called_refused(
        pypiserver: UploadServer, index_tree: Path) -> None:
    """pypiserver asks for credentials (401): with none set, the error names the
    variables that are missing instead of saying they were refused."""
    anonymous = UploadDestination(kind="upload", url=pypiserver.url,
                                  simple_url=pypiserver.simple_url)
    with pytest.raises(PublishError) as info:
        publish(index_tree, anonymous, environ={})
    text = str(info.value)
    assert "TWINE_USERNAME and TWINE_PASSWORD are not set" in text and "(HTTP 401)" in text
    assert "refused" not in text
    with pytest.raises(PublishError) as info:
        publish(index_tree, anonymous, environ={"TWINE_USERNAME": pypiserver.username})
    text = str(info.value)
    assert "TWINE_PASSWORD is not set" in text and "TWINE_USERNAME" not in text
    assert pypiserver.packages is not None and list(pypiserver.packages.iterdir()) == []


def test_keyring_without_a_user_name_says_it_needs_one(
        pypiserver: UploadServer, index_tree: Path) -> None:
    """keyring: true with no user name set: the keyring is looked up by the upload URL
    and a user name, so the error says that name is what is missing, not only that
    TWINE_USERNAME/TWINE_PASSWORD are unset (found by an outside tester)."""
    import keyring
    from keyring.backends.null import Keyring as EmptyKeyring

    dest = UploadDestination(kind="upload", url=pypiserver.url,
                             simple_url=pypiserver.simple_url, keyring=True)
    before = keyring.get_keyring()
    keyring.set_keyring(EmptyKeyring())  # a real backend that holds nothing
    try:
        with pytest.raises(PublishError) as info:
            publish(index_tree, dest, environ={})
        text = str(info.value)
        assert "keyring: true looks the password up by the upload URL and a user name, " \
               "and TWINE_USERNAME is not set" in text and "(HTTP 401)" in text
        assert "export TWINE_USERNAME=..." in text
        with pytest.raises(PublishError) as info:
            publish(index_tree, dest, environ={"TWINE_USERNAME": pypiserver.username})
        text = str(info.value)
        assert "the keyring holds no password for the upload URL and the user name in " \
               "TWINE_USERNAME" in text and pypiserver.username not in text
    finally:
        keyring.set_keyring(before)


def test_a_refused_upload_prints_the_servers_message_not_its_page(
        open_pypiserver: UploadServer, index_tree: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    raw = requests.post(open_pypiserver.url, auth=(open_pypiserver.username, "wrong"),
                        files={":action": (None, "file_upload")}, timeout=30)
    assert raw.status_code == 403 and "background-color" in raw.text  # what it answers
    monkeypatch.setenv("TWINE_USERNAME", open_pypiserver.username)
    monkeypatch.setenv("TWINE_PASSWORD", "wrong-password")
    code = main(["publish", "--to", open_pypiserver.url, "--from", str(index_tree)])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 1 and len(errors) == 1, errors
    assert "the credentials were refused uploading" in errors[0] and "(HTTP 403)" in errors[0]
    assert "{" not in errors[0] and "<" not in errors[0] and "wrong-password" not in errors[0]


@pytest.mark.parametrize(("content_type", "body", "message"), [
    ("text/html", "<html><head><title>Error: 400 Bad Request</title><style>html {color: red}"
     "</style></head><body><h1>Error: 400 Bad Request</h1><p>Sorry:</p>"
     "<pre>Missing &#039;content&#039; file-field!</pre></body></html>",
     "Missing 'content' file-field!"),
    ("text/html", "<html><head><style>p {x: y}</style></head><body><h1>Error: 403 Forbidden"
     "</h1><pre>None</pre></body></html>", "Forbidden"),
    ("application/json", '{"status": 409, "message": "release file already exists"}',
     "release file already exists"),
    ("text/plain", "\n  Invalid distribution file.\nmore\n", "Invalid distribution file."),
])
def test_server_message_keeps_the_words_and_drops_the_markup(
        content_type: str, body: str, message: str) -> None:
    from lockmirror.publish.upload_answer import server_message

    response = requests.Response()
    response.status_code, response.reason = 400, "Bad Request"
    response.headers["Content-Type"] = content_type
    response._content = body.encode()  # noqa: SLF001 - a response as a server sends it
    assert server_message(response) == message


def test_prune_is_refused_for_upload_apis(pypiserver: UploadServer, index_tree: Path) -> None:
    with pytest.raises(PublishError, match="upload API cannot delete"):
        publish(index_tree, destination(pypiserver), environ=credentials(pypiserver),
                prune=True)


def test_a_file_the_repository_refuses_does_not_block_the_others(devpi: Devpi,
                                                                 tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "built", "realname", "1.0")
    tree = tmp_path / "tree"
    (tree / "files" / "other").mkdir(parents=True)
    shutil.copyfile(wheel, tree / "files" / "other" / "other-1.0-py3-none-any.whl")
    (tree / "files" / "realname").mkdir()
    shutil.copyfile(wheel, tree / "files" / "realname" / wheel.name)
    scan_tree(tree).write(tree / "manifest.json")
    server = devpi.new_index()
    with pytest.raises(PublishError) as refused:
        publish(tree, destination(server), environ=credentials(server), jobs=1)
    message = str(refused.value)
    assert "\n" not in message
    assert "1 file not published (1 uploaded" in message
    assert "other-1.0-py3-none-any.whl: refused (HTTP 400: filename " in message
    assert wheel.name in UploadPublisher(destination(server), environ=credentials(server)
                                         ).repository_files("realname")


def test_files_changed_after_the_manifest_are_not_uploaded_by_either_path(
        pypiserver: UploadServer, tmp_path: Path) -> None:
    """Each file is hashed once, before its upload, on the twine path and the direct
    one alike: bytes that are not the manifest's never reach the repository."""
    licexpr = [("License-Expression", "MIT")]  # twine refuses it: the direct path
    built = {name: build_wheel(tmp_path / "built", name, "1.0",
                               extra_metadata=licexpr if name == "licexpr" else ())
             for name in ("licexpr", "plain", "kept")}
    tree = tree_of(tmp_path / "tree", list(built.values()))
    for name in ("licexpr", "plain"):  # same size, other bytes, still a valid wheel:
        target = tree / "files" / name / built[name].name  # a central directory time
        data = bytearray(target.read_bytes())
        entry = data.index(b"PK\x01\x02") + 12
        data[entry:entry + 2] = bytes(255 - byte for byte in data[entry:entry + 2])
        target.write_bytes(bytes(data))
        with zipfile.ZipFile(target) as archive:
            assert archive.testzip() is None
    with pytest.raises(PublishError) as failed:
        publish(tree, destination(pypiserver), environ=credentials(pypiserver))
    message = str(failed.value)
    assert "2 files not published (1 uploaded" in message
    assert message.count("manifest.json says") == 2
    assert pypiserver.packages is not None
    assert sorted(path.name for path in pypiserver.packages.iterdir()) == [
        built["kept"].name]


def file_part(body: bytes, content_type: str) -> bytes:
    """The ``content`` part of a multipart/form-data body, parsed by the standard library."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts = [part for part in message.iter_parts() if part.get_param(
        "name", header="content-disposition") == "content"]
    assert len(parts) == 1
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def test_a_post_answered_503_is_sent_again_by_the_session_retry(tmp_path: Path) -> None:
    """Transient answers are retried by make_session's urllib3 Retry (the one retry
    policy): the body streamed from the file is rewound and sent again whole, with a
    Content-Length (no chunked encoding); an upload server that fails once still gets
    the file."""
    from http.server import ThreadingHTTPServer

    posts: list[tuple[dict[str, str], bytes]] = []

    class Flaky(QuietHandler):
        timeout = 20  # a body shorter than its Content-Length fails the test, not hangs it

        def do_GET(self) -> None:  # no project page: nothing uploaded yet
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            headers = {name.lower(): value for name, value in self.headers.items()}
            posts.append((headers, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(503 if len(posts) == 1 else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Flaky)) as base:
        wheel = build_wheel(tmp_path / "built", "flaky", "1.0",
                            files={"flaky/data.bin": bytes(range(256)) * 1200})
        tree = tree_of(tmp_path / "tree", [wheel])
        result = publish(tree, UploadDestination(kind="upload", url=base + "/"), environ={})
    assert result.uploaded == (f"files/flaky/{wheel.name}",)
    assert len(posts) == 2 and posts[0][1] == posts[1][1]
    headers, body = posts[1]
    assert "transfer-encoding" not in headers and int(headers["content-length"]) == len(body)
    received = file_part(body, headers["content-type"])
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(wheel.read_bytes()).hexdigest()


def big_wheel(directory: Path, name: str, size: int) -> Path:
    """A valid wheel of about ``size`` bytes, cheap to make: its payload is a stored
    (uncompressed) member of zeros written in 1 MiB chunks."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    dist_info = f"{name}-1.0.dist-info"
    record: list[str] = []

    def entry(member: str, digest: bytes, length: int) -> str:
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return f"{member},sha256={encoded},{length}"

    with zipfile.ZipFile(wheel, "w") as archive:  # ZIP_STORED: no compression
        small = {f"{name}/__init__.py": b"",
                 f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\n"
                                          "Version: 1.0\n".encode(),
                 f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
                                       b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
        for member, data in small.items():
            archive.writestr(member, data)
            record.append(entry(member, hashlib.sha256(data).digest(), len(data)))
        chunk, payload = bytes(1 << 20), hashlib.sha256()
        with archive.open(f"{name}/payload.bin", "w", force_zip64=True) as stream:
            for _ in range(size // len(chunk)):
                stream.write(chunk)
                payload.update(chunk)
        record.append(entry(f"{name}/payload.bin", payload.digest(),
                            size // len(chunk) * len(chunk)))
        archive.writestr(f"{dist_info}/RECORD", "\n".join([*record, f"{dist_info}/RECORD,,"]))
    return wheel


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads Linux's VmHWM")
def test_a_large_file_is_posted_in_memory_independent_of_its_size(
        pypiserver: UploadServer, tmp_path: Path) -> None:
    """A 300 MB wheel goes to pypiserver from a `lockmirror publish` process whose peak
    RSS stays far below the file's size (the body streams from the disk)."""
    size = 300 << 20
    wheel = big_wheel(tmp_path / "built", "bigpayload", size)
    tree = tree_of(tmp_path / "tree", [wheel])
    wheel.unlink()  # one copy on disk is enough
    # the peak RSS of the process's own address space (VmHWM): ru_maxrss would also
    # count the forking parent's (pytest's) RSS, which Linux folds in at exec
    measured = ("import re, sys\nfrom pathlib import Path\nfrom lockmirror.cli import main\n"
                "code = main(sys.argv[1:])\n"
                "status = Path('/proc/self/status').read_text()\n"
                "print('peak_kib', re.search(r'VmHWM:\\s*(\\d+) kB', status).group(1))\n"
                "sys.exit(code)\n")
    done = subprocess.run(
        [sys.executable, "-c", measured, "publish", "--to", pypiserver.url,
         "--from", str(tree)], capture_output=True, text=True, check=False,
        env=subprocess_env(TWINE_USERNAME=pypiserver.username,
                           TWINE_PASSWORD=pypiserver.password))
    assert done.returncode == 0, done.stderr
    peak_mib = int(done.stdout.split("peak_kib")[-1]) / 1024
    print(f"peak RSS of the publishing process: {peak_mib:.0f} MiB for a "
          f"{size >> 20} MiB file")
    assert peak_mib < 150
    assert pypiserver.packages is not None
    stored = pypiserver.packages / wheel.name
    posted = tree / "files" / "bigpayload" / wheel.name
    assert stored.stat().st_size == posted.stat().st_size
    assert sha256_file(stored) == sha256_file(posted)


def test_a_password_in_the_upload_url_is_never_printed(
        pypiserver: UploadServer, index_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = with_credentials(pypiserver.url, pypiserver)
    for extra in (["--dry-run"], ["-v"], []):  # the plan, every progress line, the summary
        assert main(["publish", "--to", url, "--from", str(index_tree), *extra]) == 0
        out, err = capsys.readouterr()
        assert pypiserver.password not in out + err
        assert f"publish {pypiserver.url}" in out


def test_ctrl_c_leaves_the_queued_uploads_unstarted(pypiserver: UploadServer,
                                                    index_tree: Path) -> None:
    """Ctrl-C (here: from the progress line after the first upload) stops the publish
    at once: the uploads under way finish, the queued ones are never started."""
    def interrupt(event: ProgressEvent) -> None:
        if event.message.startswith("uploaded "):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish(index_tree, destination(pypiserver), environ=credentials(pypiserver), jobs=1,
                progress=interrupt)
    assert pypiserver.packages is not None
    assert len(list(pypiserver.packages.iterdir())) <= 2 < len(artifacts(index_tree))


def test_an_unreachable_repository_stops_the_upload_at_the_first_file(
        pypiserver: UploadServer, index_tree: Path) -> None:
    """The pages answer, the upload URL does not (a server gone mid-publish): one
    error, and no other file pays the retries again."""
    dest = destination(pypiserver).model_copy(update={"url": "http://127.0.0.1:9/"})
    events: list[str] = []
    with pytest.raises(PublishError) as error:
        publish(index_tree, dest, environ=credentials(pypiserver),
                progress=lambda event: events.append(event.message))
    assert str(error.value).startswith("http://127.0.0.1:9/: cannot upload to "
                                       "http://127.0.0.1:9/: the connection was refused")
    assert "not published" not in str(error.value) and "nothing more was tried" in str(error.value)
    # -v's line for the file: nobody refused it, it failed to reach the server (found by
    # an outside tester: it said "refused")
    failed = [message for message in events if message.startswith("failed ")]
    assert failed and all(": cannot upload to http://127.0.0.1:9/: the connection was refused"
                          in message for message in failed), events
    assert not any(message.startswith("refused ") for message in events)


def test_credentials_in_the_url_that_are_refused_are_called_so(
        pypiserver: UploadServer, index_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong password written into the upload URL (no variables set): the error says
    the URL's credentials were refused, not that TWINE_* are unset, and never shows them
    (found by an outside tester)."""
    url = with_credentials(pypiserver.url, pypiserver).replace(pypiserver.password, "wr0ng-pw")
    assert main(["publish", "--to", url, "--from", str(index_tree)]) == 1
    err = capsys.readouterr().err
    assert "credentials in the upload URL were refused" in err and "(HTTP 403)" in err
    assert "not set" not in err and "wr0ng-pw" not in err
    assert pypiserver.packages is not None and list(pypiserver.packages.iterdir()) == []


def test_a_url_that_takes_no_uploads_stops_at_the_first_file(
        pypiserver: UploadServer, index_tree: Path) -> None:
    """Every POST answered 405 (a wrong upload URL): one error after the first file,
    not every file streamed and refused in turn (found by an outside tester)."""
    dest = destination(pypiserver).model_copy(update={"url": pypiserver.url + "nonexist/"})
    refused: list[str] = []

    def record(event: ProgressEvent) -> None:
        if event.message.startswith("refused "):
            refused.append(event.message)

    with pytest.raises(PublishError) as error:
        publish(index_tree, dest, environ=credentials(pypiserver), jobs=1, progress=record)
    text = str(error.value)
    assert "the URL takes no uploads" in text and "HTTP 405" in text
    assert "not published" not in text and "\n" not in text
    assert len(refused) == 1 < len(artifacts(index_tree))


def test_the_first_progress_line_comes_before_the_first_page_read(
        index_tree: Path) -> None:
    """A repository that accepts connections but never answers keeps the user waiting
    through the session's timeouts: the stage says where it waits before the first
    read (found by an outside tester)."""
    from http.server import ThreadingHTTPServer

    gets: list[str] = []

    class Empty(QuietHandler):
        def do_GET(self) -> None:
            gets.append(self.path)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    seen: list[tuple[str, int]] = []
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Empty)) as base:
        publish(index_tree, UploadDestination(kind="upload", url=base + "/"), environ={},
                dry_run=True, progress=lambda event: seen.append((event.message, len(gets))))
    assert seen and seen[0][1] == 0
    assert seen[0][0].startswith("reading what the repository holds (")
    assert f"{base}/simple/" in seen[0][0]


class SilentListener:
    """A server on 127.0.0.1 that accepts every connection and never answers: each
    connection is read and held open until the block ends; ``connections`` counts them."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.1)  # accept() wakes to see the block has ended
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/"
        self.connections: list[socket.socket] = []
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self.ended.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.connections.append(connection)

    def __enter__(self) -> SilentListener:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.ended.set()
        self.thread.join()
        self.socket.close()
        for connection in self.connections:
            connection.close()


def test_a_repository_that_never_answers_fails_by_the_publish_timeout_policy(
        tmp_path: Path) -> None:
    """A repository that takes the connection and then says nothing held the publish
    ~245 s (four tries of 60 s at the first page read; a POST waited 600 s), S3 ~90 s
    (found by an outside tester). Both follow net/publish_timeouts.py now: ATTEMPTS
    tries, each ended by READ_TIMEOUT seconds of silence (set small here), then one
    line naming the server."""
    from lockmirror.net.publish_timeouts import ATTEMPTS

    wheel = build_wheel(tmp_path / "built", "silent", "1.0")
    tree = SourceTree.open(tree_of(tmp_path / "tree", [wheel]))
    with SilentListener() as server:
        publisher = UploadPublisher(UploadDestination(kind="upload", url=server.url),
                                    environ={}, read_timeout=0.3)
        with pytest.raises(PublishError) as error:
            publisher.plan(tree)
        tries = len(server.connections)
    text = str(error.value)
    assert text == (f"{server.url}: cannot fetch {server.url}simple/silent/: the server did "
                    f"not answer within 0.3 s after {ATTEMPTS - 1} retries (check the "
                    "repository URL and that it is running)"), text
    assert tries == ATTEMPTS  # it gave up after the policy's tries


def test_an_upload_that_is_never_answered_fails_by_the_publish_timeout_policy(
        tmp_path: Path) -> None:
    """The pages answer, the POSTs never do: the first upload is given up after
    UPLOAD_ANSWER_TIMEOUT (set small here) and not sent again (its body was sent), and
    the publish stops in one line naming the file: no other file is sent to wait the same."""
    from http.server import ThreadingHTTPServer

    release = threading.Event()
    posts: list[str] = []

    class AnswersPagesOnly(QuietHandler):
        def do_GET(self) -> None:  # no project page: nothing uploaded yet
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            posts.append(self.path)
            release.wait(60)  # silent until the test ends

    wheels = [build_wheel(tmp_path / "built", name, "1.0") for name in ("silent", "quiet")]
    tree = tree_of(tmp_path / "tree", wheels)
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), AnswersPagesOnly)) as base:
        try:
            with pytest.raises(PublishError) as error:
                UploadPublisher(UploadDestination(kind="upload", url=base + "/"), environ={},
                                jobs=1, upload_answer_timeout=0.3).run(SourceTree.open(tree))
        finally:
            release.set()
    text = str(error.value)
    assert "\n" not in text, text
    assert f"{wheels[1].name}: cannot upload to {base}/: the server did not answer within 0.3 s" \
        in text or f"{wheels[0].name}: cannot upload to {base}/: the server did not answer " \
        "within 0.3 s" in text, text
    assert "retries" not in text, text
    assert "nothing more was tried" in text, text
    assert len(posts) == 1, posts  # not sent again, and the other file not sent to wait


def test_an_upload_answered_after_the_page_read_timeout_is_sent_once(tmp_path: Path) -> None:
    """A repository that checks a wheel before it answers the POST (Nexus, Artifactory,
    devpi hash or scan it) answers later than pages should: that answer has its own,
    longer wait, so the file is not given up on and sent again (the POST is retried)."""
    from http.server import ThreadingHTTPServer

    posts: list[bytes] = []
    never = threading.Event()

    class ChecksBeforeAnswering(QuietHandler):
        def do_GET(self) -> None:  # no project page: nothing uploaded yet
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            posts.append(self.rfile.read(int(self.headers["Content-Length"])))
            never.wait(1.5)  # checking the file: longer than the pages' read timeout
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    wheel = build_wheel(tmp_path / "built", "checked", "1.0")
    tree = tree_of(tmp_path / "tree", [wheel])
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), ChecksBeforeAnswering)) as base:
        result = UploadPublisher(UploadDestination(kind="upload", url=base + "/"), environ={},
                                 read_timeout=0.3).run(SourceTree.open(tree))
    assert result.uploaded == (f"files/checked/{wheel.name}",)
    assert len(posts) == 1
