"""Ed25519 signatures over a bundle's ``bundle.json``, in OpenSSH's SSHSIG format.

The signature is the armored ``-----BEGIN SSH SIGNATURE-----`` text that
``ssh-keygen -Y sign`` writes (PROTOCOL.sshsig), with the namespace
:data:`NAMESPACE`. So an operator can check a bundle by hand with OpenSSH
alone::

    echo "release@example ssh-ed25519 AAAA..." > allowed_signers
    ssh-keygen -Y verify -f allowed_signers -I release@example \\
        -n lockmirror-bundle -s bundle.json.sig < bundle.json

and a signature made by ``ssh-keygen -Y sign -n lockmirror-bundle`` verifies
here. Keys are read with the ``cryptography`` library: private keys in
OpenSSH or PEM (PKCS#8) form, public keys as an OpenSSH ``ssh-ed25519 ...``
line, PEM, or a private key file (its public half is used). A passphrase is
read from the environment variable :data:`PASSPHRASE_ENV`, never from the
command line.

Everything here is pure computation on small inputs: no network, no state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import BundleError, LockmirrorError
from ..fsutil import atomic_write, make_parent

NAMESPACE = "lockmirror-bundle"
PASSPHRASE_ENV = "LOCKMIRROR_KEY_PASSPHRASE"

_MAGIC = b"SSHSIG"
_VERSION = 1
_KEY_TYPE = b"ssh-ed25519"
_HASHES = {"sha512": hashlib.sha512, "sha256": hashlib.sha256}
_ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_ARMOR_END = "-----END SSH SIGNATURE-----"


# --------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------


def _read_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LockmirrorError(f"cannot read key: {exc.strerror}", where=str(path)) from None


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key (OpenSSH or PEM); passphrase from the environment.

    Raises LockmirrorError when the file is unreadable, not a private key,
    not Ed25519, or encrypted without (or with the wrong) passphrase.
    """
    data = _read_key_file(path)
    password = _passphrase()
    key: object
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password)
        else:
            key = serialization.load_pem_private_key(data, password)
    except UnsupportedAlgorithm:
        raise LockmirrorError(
            "encrypted OpenSSH keys need the 'bcrypt' package", where=str(path),
            hint="pip install bcrypt, or convert the key to PEM: "
                 "ssh-keygen -p -m PKCS8 -f KEY") from None
    except TypeError:
        hint = (f"set {PASSPHRASE_ENV}" if password is None
                else f"{PASSPHRASE_ENV} is set but the key is not encrypted; unset it")
        raise LockmirrorError("cannot decrypt the private key", where=str(path),
                              hint=hint) from None
    except ValueError as exc:
        wrong = "bad decrypt" in str(exc).lower() or "incorrect password" in str(exc).lower()
        message = "wrong passphrase" if wrong else "not an OpenSSH or PEM private key"
        raise LockmirrorError(message, where=str(path)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise LockmirrorError(f"only Ed25519 keys are supported, not {type(key).__name__}",
                              where=str(path), hint="ssh-keygen -t ed25519, or lockmirror keygen")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key: ``ssh-ed25519 AAAA...`` line, PEM, or a private key file.

    An ``allowed_signers`` style line (``principal ssh-ed25519 AAAA...``) is
    accepted too. Raises LockmirrorError naming the file when none of these fit.
    """
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        return load_private_key(path).public_key()
    key: object
    try:
        if b"BEGIN PUBLIC KEY" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = _ssh_public_key_from_text(data.decode("ascii", "replace"))
    except (ValueError, UnsupportedAlgorithm):
        raise LockmirrorError("not an OpenSSH or PEM public key", where=str(path)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise LockmirrorError(f"only Ed25519 keys are supported, not {type(key).__name__}",
                              where=str(path))
    return key


def _ssh_public_key_from_text(text: str) -> object:
    for line in text.splitlines():
        fields = line.split()
        if "ssh-ed25519" in fields:
            at = fields.index("ssh-ed25519")
            if at + 1 < len(fields):
                return serialization.load_ssh_public_key(
                    f"ssh-ed25519 {fields[at + 1]}".encode())
        elif fields and not line.lstrip().startswith("#"):
            return serialization.load_ssh_public_key(line.strip().encode())
    raise ValueError("no key found")


def _public_blob(key: Ed25519PublicKey) -> bytes:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _string(_KEY_TYPE) + _string(raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(_public_blob(key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def generate_keypair(private_path: Path, *, comment: str = "lockmirror") -> Path:
    """Write a new Ed25519 key pair: the private key (mode 0600) and ``.pub``.

    The private key is in OpenSSH form, or, when :data:`PASSPHRASE_ENV` is
    set, encrypted PKCS#8 PEM (OpenSSH's encrypted form needs the optional
    ``bcrypt`` package). The public key is an OpenSSH ``ssh-ed25519`` line.
    Refuses to overwrite an existing private key (LockmirrorError). Returns
    the public key's path.
    """
    public_path = private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise LockmirrorError("a key already exists here; refusing to overwrite it",
                                  where=str(path))
    key = Ed25519PrivateKey.generate()
    password = _passphrase()
    if password:
        private_pem = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.BestAvailableEncryption(password))
    else:
        private_pem = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.OpenSSH,
                                        serialization.NoEncryption())
    public_line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                serialization.PublicFormat.OpenSSH)
    created = False
    try:
        make_parent(private_path)
        # O_EXCL with 0600 from the start: the secret is never readable by
        # others, not even for the instant before a chmod.
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        created = True
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_pem)
        atomic_write(public_path, public_line + b" " + comment.encode() + b"\n")
    except OSError as exc:
        if created:  # half a key pair would block the next attempt
            private_path.unlink(missing_ok=True)
        raise LockmirrorError(f"cannot write the key: {exc.strerror}",
                              where=str(exc.filename or private_path)) from None
    return public_path


# --------------------------------------------------------------------------
# SSHSIG
# --------------------------------------------------------------------------


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise ValueError("truncated")
        chunk = self.data[self.at:self.at + count]
        self.at += count
        return chunk

    def uint32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def string(self) -> bytes:
        return self.take(self.uint32())


def _signed_data(message: bytes, namespace: str, hash_name: str) -> bytes:
    digest = _HASHES[hash_name](message).digest()
    return (_MAGIC + _string(namespace.encode()) + _string(b"")
            + _string(hash_name.encode()) + _string(digest))


def sign(message: bytes, key: Ed25519PrivateKey, *, namespace: str = NAMESPACE) -> str:
    """The armored SSHSIG signature of ``message`` (deterministic: Ed25519)."""
    signature = key.sign(_signed_data(message, namespace, "sha512"))
    blob = (_MAGIC + struct.pack(">I", _VERSION) + _string(_public_blob(key.public_key()))
            + _string(namespace.encode()) + _string(b"") + _string(b"sha512")
            + _string(_string(_KEY_TYPE) + _string(signature)))
    text = base64.b64encode(blob).decode()
    lines = [text[i:i + 70] for i in range(0, len(text), 70)]
    return "\n".join([_ARMOR_BEGIN, *lines, _ARMOR_END]) + "\n"


@dataclass(frozen=True)
class SignatureInfo:
    """What a parsed signature claims: the signer's key and the namespace."""

    public_key: Ed25519PublicKey
    namespace: str
    hash_name: str
    signature: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


def parse_signature(text: str, *, where: str) -> SignatureInfo:
    """Decode an armored SSHSIG signature; BundleError if it is malformed."""
    body = text.strip()
    if not (body.startswith(_ARMOR_BEGIN) and body.endswith(_ARMOR_END)):
        raise BundleError("not an SSH signature (no BEGIN/END SSH SIGNATURE lines)", where=where)
    encoded = "".join(body[len(_ARMOR_BEGIN):-len(_ARMOR_END)].split())
    try:
        reader = _Reader(base64.b64decode(encoded, validate=True))
        if reader.take(6) != _MAGIC or reader.uint32() != _VERSION:
            raise ValueError("bad magic or version")
        key_blob = _Reader(reader.string())
        if key_blob.string() != _KEY_TYPE:
            raise ValueError("the signing key is not ssh-ed25519")
        public_key = Ed25519PublicKey.from_public_bytes(key_blob.string())
        namespace = reader.string().decode()
        reader.string()  # reserved
        hash_name = reader.string().decode()
        if hash_name not in _HASHES:
            raise ValueError(f"unknown hash {hash_name!r}")
        sig_blob = _Reader(reader.string())
        if sig_blob.string() != _KEY_TYPE:
            raise ValueError("the signature is not ssh-ed25519")
        signature = sig_blob.string()
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BundleError(f"malformed SSH signature: {exc}", where=where) from None
    return SignatureInfo(public_key, namespace, hash_name, signature)


def verify(message: bytes, signature_text: str, trusted: Ed25519PublicKey, *,
           where: str, namespace: str = NAMESPACE) -> SignatureInfo:
    """Check that ``trusted`` signed ``message`` under ``namespace``.

    Raises BundleError saying whether the signature is malformed, made by
    another key (with both fingerprints), for another namespace, or simply
    does not match the data (tampered).
    """
    info = parse_signature(signature_text, where=where)
    if _public_blob(info.public_key) != _public_blob(trusted):
        raise BundleError(
            f"signed by key {info.fingerprint}, not by the trusted key {fingerprint(trusted)}",
            where=where, hint="wrong --pubkey, or the bundle was not made by who you think")
    if info.namespace != namespace:
        raise BundleError(f"signature is for namespace {info.namespace!r}, "
                          f"expected {namespace!r}", where=where)
    try:
        trusted.verify(info.signature, _signed_data(message, namespace, info.hash_name))
    except InvalidSignature:
        raise BundleError("signature does not match the signed data (tampered?)",
                          where=where) from None
    return info


def check_bundle_signature(info_bytes: bytes, signature_text: str | None,
                           trusted: Ed25519PublicKey | None, *, bundle: str,
                           where: str) -> str | None:
    """The fingerprint of ``trusted`` once it verified a bundle's ``bundle.json``
    (``info_bytes``, not yet parsed); None without a key. Raises BundleError naming
    ``bundle`` when it carries no signature, else as :func:`verify` does (``where``)."""
    if trusted is None:
        return None
    if signature_text is None:
        raise BundleError("bundle is not signed, but a public key was given; refusing it",
                          where=bundle, hint="the build side must sign it (its signing key "
                          "matching your --pubkey); nothing was changed")
    return verify(info_bytes, signature_text, trusted, where=where).fingerprint
