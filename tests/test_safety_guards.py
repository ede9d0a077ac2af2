"""One test per safety check that no other test guarded (issue 19, point 7).

Each was found by removing the check by hand: the whole suite still passed.
Every test here fails when its check is removed (the README's mutation
section lists how each was verified). They use public APIs only (the
index stage is being rewritten: ``build_index`` is its contract).
"""

from __future__ import annotations

import base64
import gzip
import http.server
import signal
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fixtureindex import Catalogue, FixtureIndex
from helpers import QuietHandler, serving, subprocess_env
from index_mirror import make_fixture_mirror

from lockmirror.cli import main
from lockmirror.config import load_config
from lockmirror.config_schema import DirectoryDestination
from lockmirror.errors import BundleError
from lockmirror.formats import signing
from lockmirror.fsutil import atomic_write, atomic_writer
from lockmirror.net.body import iter_raw_body
from lockmirror.net.http import PrefixAuth, auth_prefix, make_session
from lockmirror.publish import publish
from lockmirror.redaction import redact_text, redact_url
from lockmirror.stages.lock import lock_sets, stale_sets

pytest_plugins = ["servers"]  # index_tree: a built dist-index/


# --------------------------------------------------------------------------
# index: a first build goes into a staging directory, renamed at the end
# --------------------------------------------------------------------------

_BUILD_KILLED_HALF_WAY = """
import os, signal, sys
from pathlib import Path
from lockmirror.stages.index import build_index

out = Path(sys.argv[1])
lockfiles = [Path(p) for p in sys.argv[3:]]
known = set(os.listdir(out.parent))

def progress(text: str) -> None:
    # SIGKILL (no cleanup runs) at the first report after a file was written
    for name in set(os.listdir(out.parent)) - known:
        if any(files for _, _, files in os.walk(out.parent / name)):
            os.kill(os.getpid(), signal.SIGKILL)

build_index(lockfiles, Path(sys.argv[2]), out, progress=progress)
"""


def test_a_first_index_build_killed_half_way_leaves_no_dist_index(
        catalogue: Catalogue, tmp_path: Path) -> None:
    mirror = make_fixture_mirror(catalogue, tmp_path / "m")
    done = subprocess.run(
        [sys.executable, "-c", _BUILD_KILLED_HALF_WAY, str(mirror.out), str(mirror.store.root),
         *map(str, mirror.lockfiles)], capture_output=True, text=True, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr  # killed with files written
    assert not mirror.out.exists()  # half a tree is never where readers look
    # the next build recovers and completes
    from lockmirror.stages.index import build_index
    build_index(mirror.lockfiles, mirror.store, mirror.out)
    assert (mirror.out / "manifest.json").is_file()


# --------------------------------------------------------------------------
# publish to a directory: a changed file is copied again, even at the same size
# --------------------------------------------------------------------------


def test_a_same_size_changed_file_at_a_directory_destination_is_copied_again(
        index_tree: Path, tmp_path: Path) -> None:
    web_root = tmp_path / "www"
    destination = DirectoryDestination(kind="directory", path=str(web_root), layout="tree")
    publish(index_tree, destination)
    page = "simple/alpha/index.html"
    wheel = next(p.relative_to(index_tree).as_posix()
                 for p in sorted((index_tree / "files").rglob("*.whl")))
    for rel in (page, wheel):
        original = (web_root / rel).read_bytes()
        (web_root / rel).write_bytes(bytes(b ^ 0xFF for b in original))  # same size
    again = publish(index_tree, destination)
    assert sorted(again.uploaded) == sorted([page, wheel])
    for rel in (page, wheel):
        assert (web_root / rel).read_bytes() == (index_tree / rel).read_bytes()
    assert publish(index_tree, destination).uploaded == ()


# --------------------------------------------------------------------------
# lock --check: every input of a set is in its fingerprint
# --------------------------------------------------------------------------


def _mirror_yaml(tmp_path: Path, index: FixtureIndex, *, source_extra: str = "",
                 policy: str = "") -> Path:
    path = tmp_path / "mirror.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        name: guards
        sources:
          - name: fixture
            url: {index.url}
        {source_extra}
        targets:
          host:
            python: "3.11"
            platforms: [manylinux_2_28_x86_64]
        sets:
          q:
            requirements: [alpha]
        paths:
          cache: {tmp_path / "cache"}
        """) + policy + "\n")
    return path


def _lock_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lockmirror", "lock", "--check", "--config",
                           str(config)], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("change", [
    {"policy": "policy:\n  yanked: warn"},
    {"policy": "policy:\n  sdists: deny"},
    {"source_extra": "    priority: 5"},
    {"source_extra": "    projects: [alpha]"},
], ids=["policy-yanked", "policy-sdists", "source-priority", "source-projects"])
def test_a_policy_or_source_change_makes_lock_check_fail(
        tmp_path: Path, fixture_index: FixtureIndex, change: dict[str, str]) -> None:
    config = _mirror_yaml(tmp_path, fixture_index)
    lock_sets(load_config(config))
    assert stale_sets(load_config(config)) == {}
    lockfile = load_config(config).lockfile_path("q")
    before = lockfile.read_bytes()
    _mirror_yaml(tmp_path, fixture_index, **change)
    assert "locked from other inputs" in stale_sets(load_config(config))["q"]
    done = _lock_check(config)
    assert done.returncode == 1 and "set 'q'" in done.stderr, done.stderr
    assert "locked from other inputs" in done.stderr and "Traceback" not in done.stderr
    assert lockfile.read_bytes() == before


@pytest.mark.parametrize(("old", "new", "stale"), [
    ("    url: {url}", "    url: {url}?moved", True),  # the source's URL
    ("  - name: fixture", "  - name: renamed", True),  # the source's name
    ('python: "3.11"', 'python: "3.12"', True),  # a target of the set
    ("    requirements: [alpha]", "    requirements: [alpha]\n    prereleases: true", True),
    ("    requirements: [alpha]", "    requirements: [alpha]\n    description: core", False),
    ("version: 1", "# reviewed\nversion: 1", False),
], ids=["source-url", "source-name", "target", "set-field", "description", "comment"])
def test_the_fingerprint_holds_what_shapes_the_lock_and_nothing_else(
        tmp_path: Path, fixture_index: FixtureIndex, old: str, new: str, stale: bool) -> None:
    """In-process (what the mutation run sees): no network, only recorded hashes."""
    config = _mirror_yaml(tmp_path, fixture_index)
    lock_sets(load_config(config))
    text = config.read_text()
    old, new = (part.format(url=fixture_index.url) for part in (old, new))
    assert old in text
    config.write_text(text.replace(old, new, 1))
    assert ("q" in stale_sets(load_config(config))) is stale


# --------------------------------------------------------------------------
# credentials in a server's reply never reach the output
# --------------------------------------------------------------------------

SECRET = "deploy:hunter2"


class _LeakyRepository(QuietHandler):
    """An upload API that refuses every upload, quoting a URL with credentials
    in its reason phrase and its body; every page is 404 (nothing there yet)."""

    def do_GET(self) -> None:
        self._answer(404, b"not found\n")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer(400, f"upload refused: mirror https://{SECRET}@repo.example/simple/ "
                          "is read-only\n".encode(),
                     reason=f"Bad https://{SECRET}@repo.example/")

    def _answer(self, status: int, body: bytes, reason: str | None = None) -> None:
        self.send_response(status, reason)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def leaky_repository() -> Iterator[str]:
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LeakyRepository)) as base:
        yield base + "/"


def test_a_credential_in_a_server_reply_never_reaches_output(
        leaky_repository: str, index_tree: Path) -> None:
    env = subprocess_env(TWINE_USERNAME="me", TWINE_PASSWORD="pw-not-shown")
    done = subprocess.run(
        [sys.executable, "-m", "lockmirror", "publish", "--to", leaky_repository,
         "--simple-url", leaky_repository + "simple/", "--from", str(index_tree)],
        capture_output=True, text=True, env=env, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "upload refused: mirror https://repo.example/simple/ is read-only" in output
    assert SECRET not in output and "hunter2" not in output
    assert "pw-not-shown" not in output and "Traceback" not in output


def test_a_credential_in_a_server_reply_never_reaches_output_in_process(
        leaky_repository: str, index_tree: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same through ``main`` in this process (what the mutation run can see)."""
    monkeypatch.setenv("TWINE_USERNAME", "me")
    monkeypatch.setenv("TWINE_PASSWORD", "pw-not-shown")
    code = main(["publish", "--to", leaky_repository, "--simple-url",
                 leaky_repository + "simple/", "--from", str(index_tree)])
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code != 0
    assert "upload refused: mirror https://repo.example/simple/ is read-only" in output
    assert "hunter2" not in output and "pw-not-shown" not in output


@pytest.mark.parametrize(("url", "shown"), [
    ("https://u:p@example.org:8443/simple/?q=1#f", "https://example.org:8443/simple/?q=1#f"),
    ("https://token@example.org/simple/", "https://example.org/simple/"),
    ("https://:secret@example.org/", "https://example.org/"),
    ("http://u:p@[::1]:8080/simple/", "http://[::1]:8080/simple/"),
    ("https://u:p@[::1/simple/", "https://[::1/simple/"),  # unparsable: the regex fallback
    ("https://example.org/simple/", "https://example.org/simple/"),
    ("https://u:p@/simple/", "https:///simple/"),  # no host at all
    # a port out of range with userinfo: no ValueError (a hand-edited lockfile's URL in diff)
    ("https://u:p@example.org:99999/a.whl", "https://example.org:99999/a.whl"),
    # without userinfo the URL is shown as written (host case, a bad port)
    ("https://Files.Example.org/a.whl", "https://Files.Example.org/a.whl"),
    ("https://example.org:99999/simple/", "https://example.org:99999/simple/"),
])
def test_redact_url_drops_every_form_of_userinfo(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_drops_userinfo_of_every_url_in_a_message() -> None:
    text = "see https://a:b@x.example/p and git+ssh://tok@y.example/r, not me@z.example"
    assert redact_text(text) == "see https://x.example/p and git+ssh://y.example/r, " \
        "not me@z.example"


def test_source_credentials_cover_its_prefix_only() -> None:
    assert auth_prefix("https://h.example/simple") == "https://h.example/"
    assert auth_prefix("https://h.example/pypi/simple/") == "https://h.example/pypi/"
    assert auth_prefix("https://h.example/repo") == "https://h.example/repo/"
    auth = PrefixAuth()
    auth.add("https://h.example/repo/", "u", "p")
    assert auth.for_url("https://h.example/repo/files/a.whl") == ("u", "p")
    assert auth.for_url("https://h.example/repository/x") is None
    assert auth.for_url("https://other.example/repo/") is None
    # credentials written into the URL itself are honoured, decoded
    assert auth.for_url("https://me:p%40ss@other.example/x") == ("me", "p@ss")
    assert auth.for_url("https://token@other.example/x") == ("token", "")


class _GzipFile(QuietHandler):
    """A .tar.gz served with ``Content-Encoding: gzip`` (as some servers do)."""

    body = gzip.compress(b"the sdist's bytes " * 1000, mtime=0)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


def test_the_body_is_read_as_sent_never_decoded() -> None:
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GzipFile)) as base, \
            make_session(retries=0) as session:
        response = session.get(f"{base}/a.tar.gz", stream=True)
        pieces = list(iter_raw_body(response, 1000, f"{base}/a.tar.gz"))
    assert b"".join(pieces) == _GzipFile.body  # what is hashed is what upstream stores
    assert max(len(p) for p in pieces) <= 1000


# --------------------------------------------------------------------------
# atomic writes: a failed write leaves the old file
# --------------------------------------------------------------------------


class _DiskFull(OSError):
    pass


def test_a_failed_page_write_leaves_the_old_page(tmp_path: Path) -> None:
    page = tmp_path / "simple" / "alpha" / "index.html"
    atomic_write(page, "<a>old</a>\n")
    with pytest.raises(_DiskFull), atomic_writer(page) as out:
        out.write(b"<a>new, half")
        out.flush()
        raise _DiskFull(28, "No space left on device")
    assert page.read_text() == "<a>old</a>\n"
    assert sorted(p.name for p in page.parent.iterdir()) == ["index.html"]  # no temp file
    assert atomic_write(page, "<a>new</a>\n") and page.read_text() == "<a>new</a>\n"


def test_a_failed_write_names_the_file_not_its_temporary_name(tmp_path: Path) -> None:
    """``diff -o DIR`` and the like: the error names what the user gave."""
    taken = tmp_path / "out"
    taken.mkdir()
    with pytest.raises(IsADirectoryError) as error:
        atomic_write(taken, "text\n")
    assert error.value.filename == str(taken)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary file left


# --------------------------------------------------------------------------
# signing: every malformed signature is refused, naming what and where
# (mutants of signing.py that survived the suite; see the README)
# --------------------------------------------------------------------------


def _armor(blob: bytes) -> str:
    text = base64.b64encode(blob).decode()
    return f"{signing._ARMOR_BEGIN}\n{text}\n{signing._ARMOR_END}\n"


def _blob(signature: str) -> bytes:
    lines = signature.strip().splitlines()
    return base64.b64decode("".join(lines[1:-1]))


def _field(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _tampered(key: Ed25519PrivateKey) -> dict[str, tuple[str, str]]:
    good = signing.sign(b"payload", key)
    blob = _blob(good)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    head = b"SSHSIG" + struct.pack(">I", 1)
    rsa_key = _field(_field(b"ssh-rsa") + _field(public))
    ed_key = _field(_field(b"ssh-ed25519") + _field(public))
    rest = _field(b"lockmirror-bundle") + _field(b"")
    return {
        "no END line": (good.replace(signing._ARMOR_END, ""),
                        "not an SSH signature (no BEGIN/END SSH SIGNATURE lines)"),
        "no BEGIN line": (good.replace(signing._ARMOR_BEGIN, ""),
                          "not an SSH signature (no BEGIN/END SSH SIGNATURE lines)"),
        "truncated": (_armor(blob[:-5]), "malformed SSH signature: truncated"),
        "not base64": (good.replace("\n", "\n!", 2), "malformed SSH signature: "),
        "bad magic": (_armor(b"SSHSIX" + blob[6:]),
                      "malformed SSH signature: bad magic or version"),
        "bad version": (_armor(b"SSHSIG" + struct.pack(">I", 2) + blob[10:]),
                        "malformed SSH signature: bad magic or version"),
        "rsa key": (_armor(head + rsa_key + blob[10 + len(rsa_key):]),
                    "malformed SSH signature: the signing key is not ssh-ed25519"),
        "md5 hash": (_armor(head + ed_key + rest + _field(b"md5") + _field(b"")),
                     "malformed SSH signature: unknown hash 'md5'"),
        "rsa signature": (_armor(head + ed_key + rest + _field(b"sha512")
                                 + _field(_field(b"ssh-rsa") + _field(b"x" * 64))),
                          "malformed SSH signature: the signature is not ssh-ed25519"),
    }


@pytest.mark.parametrize("case", ["no END line", "no BEGIN line", "truncated", "not base64",
                                  "bad magic", "bad version", "rsa key", "md5 hash",
                                  "rsa signature"])
def test_a_malformed_signature_is_refused_naming_what_and_where(
        key: Ed25519PrivateKey, case: str) -> None:
    text, message = _tampered(key)[case]
    with pytest.raises(BundleError) as caught:
        signing.verify(b"payload", text, key.public_key(), where="b/bundle.json.sig")
    assert caught.value.message.startswith(message), caught.value.message
    assert caught.value.where == "b/bundle.json.sig"


def test_a_signature_by_another_key_or_namespace_or_of_other_data_is_refused(
        key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    text = signing.sign(b"payload", other)
    with pytest.raises(BundleError) as caught:
        signing.verify(b"payload", text, key.public_key(), where="w")
    error = caught.value
    assert error.message == (f"signed by key {signing.fingerprint(other.public_key())}, not by "
                             f"the trusted key {signing.fingerprint(key.public_key())}")
    assert error.where == "w"
    assert error.hint == "wrong --pubkey, or the bundle was not made by who you think"
    with pytest.raises(BundleError) as caught:
        signing.verify(b"payload", signing.sign(b"payload", key, namespace="file"),
                       key.public_key(), where="w")
    assert caught.value.message == ("signature is for namespace 'file', expected "
                                    "'lockmirror-bundle'") and caught.value.where == "w"
    with pytest.raises(BundleError) as caught:
        signing.verify(b"payload!", signing.sign(b"payload", key), key.public_key(), where="w")
    assert caught.value.message.startswith("signature does not match the signed data")
    assert caught.value.where == "w"
    info = signing.verify(b"payload", signing.sign(b"payload", key), key.public_key(), where="w")
    assert (info.namespace, info.hash_name) == ("lockmirror-bundle", "sha512")
    # the reserved field is empty, as OpenSSH writes it
    blob = _blob(signing.sign(b"payload", key))
    assert _field(b"lockmirror-bundle") + _field(b"") + _field(b"sha512") in blob


def test_fingerprints_are_openssh_s(tmp_path: Path) -> None:
    public = signing.generate_keypair(tmp_path / "k", comment="ops@example")
    shown = subprocess.run(["ssh-keygen", "-l", "-f", str(public)], capture_output=True,
                           text=True, check=True).stdout.split()
    assert shown[1] == signing.fingerprint(signing.load_public_key(public))
    assert shown[1] == signing.fingerprint(signing.load_private_key(tmp_path / "k").public_key())
