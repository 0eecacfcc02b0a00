"""The node's evidence signing key (Ed25519, through `cryptography`).

The private key is a PKCS#8 PEM file, made once (mode 0600, in a folder of mode 0700)
and never logged, served or copied; the public key and its fingerprint are what the
node publishes. A fingerprint is `SHA256:` and the hex SHA-256 of the public key's DER
SubjectPublicKeyInfo, which anyone can reproduce from the PEM:
`openssl pkey -pubin -in key.pem -outform DER | sha256sum`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "Ed25519"
MAX_KEY_BYTES = 16 * 1024


class KeyFileError(Exception):
    """A key file that cannot be used; the message says why (never the key itself)."""


def fingerprint(public: Ed25519PublicKey) -> str:
    """`SHA256:` + 64 hex digits of the DER SubjectPublicKeyInfo."""
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM. ValueError when it is not one."""
    if len(pem) > MAX_KEY_BYTES:
        raise ValueError("too large for a public key")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as e:
        raise ValueError(f"not a PEM public key ({e.__class__.__name__})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 key ({type(key).__name__})")
    return key


def verifies(public: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False
    return True


class SigningKey:
    """A loaded private key: `sign(data) -> 64 bytes`, `public`, `public_pem`, `fingerprint`."""

    def __init__(self, private: Ed25519PrivateKey, path: Path):
        self._private = private
        self.path = path
        self.public = private.public_key()
        self.public_pem = public_pem(self.public)
        self.fingerprint = fingerprint(self.public)

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def __repr__(self) -> str:  # never the key material, whatever logs it
        return f"SigningKey({self.fingerprint}, {self.path})"


def check_key_file(path: Path) -> SigningKey:
    """The key in an existing file. KeyFileError when it is not a regular file, is
    readable or writable by group or others, or is not an unencrypted Ed25519 PKCS#8 PEM."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path}: not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(
                f"{path}: group or others may access it (mode {stat.S_IMODE(st.st_mode):04o}): chmod 600 it"
            )
        data = path.read_bytes()[: MAX_KEY_BYTES + 1]
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:  # the message names no key bytes
        raise KeyFileError(
            f"{path}: not an unencrypted PEM private key ({e.__class__.__name__})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    return SigningKey(key, path)


def load_or_create(path: Path) -> tuple[SigningKey, bool]:
    """The key at `path`, made there first when there is no file: (key, made now).

    Made atomically: written to a private temporary file and linked into place, so two
    nodes that start at once on shared storage end up with the same one key. Raises
    KeyFileError (see check_key_file, or the folder cannot be written)."""
    if not path.exists():
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )  # fmt: skip
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(pem)
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    os.link(tmp, path)
                    made = True
                except FileExistsError:
                    made = False  # another node made it meanwhile: that one is the key
            finally:
                tmp.unlink(missing_ok=True)
            return check_key_file(path), made
        except OSError as e:
            raise KeyFileError(f"{path}: cannot create: {e.strerror}") from None
    return check_key_file(path), False
