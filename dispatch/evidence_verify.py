"""Checking an evidence package (dispatch.evidence_package): every file's SHA-256 and
size against the manifest, the manifest's Ed25519 signature, and nothing added.

The zip is untrusted input. Nothing is extracted to disk (so no entry name can write
anywhere: names that would, absolute or with `..`, are reported as such), every entry
is read as a stream and hashed, and the sizes are bounded before anything is read: the
number of entries, each entry's size and compression ratio, the total (zip bombs), and
the manifest's size before it is parsed.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from gridwatch.dispatch.evidence_key import fingerprint, load_public, verifies
from gridwatch.dispatch.evidence_package import FORMAT, MANIFEST, PUBLIC_KEY, SIGNATURE

SHA256 = re.compile(r"[0-9a-f]{64}")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    entries: int = 4096
    total_bytes: int = 4 * 1024**3  # uncompressed, all entries together
    entry_bytes: int = 2 * 1024**3
    manifest_bytes: int = 8 * 1024**2
    ratio: float = 200.0  # uncompressed / compressed, for an entry over 1 MiB


class Unreadable(Exception):
    """Not a zip this can read at all (the message says why)."""


@dataclass
class Finding:
    name: str  # the file the finding is about ("manifest.json", a picture, "package")
    ok: bool
    message: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    key_fingerprint: str | None = None  # of the key the signature was checked with
    manifest_fingerprint: str | None = None  # the key the manifest names
    embedded_key: bool = True  # checked against the key inside the package (integrity only)
    ticket: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.findings) and all(f.ok for f in self.findings)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def add(self, name: str, ok: bool, message: str) -> None:
        self.findings.append(Finding(name, ok, message))


def _unsafe(name: str) -> str | None:
    """Why an entry name could write outside a folder it is extracted to, or None."""
    p = PurePosixPath(name)
    if "\\" in name or "\x00" in name:
        return "a backslash or NUL in its name"
    if p.is_absolute() or re.match(r"^[A-Za-z]:", name):
        return "an absolute name"
    if ".." in p.parts:
        return "a '..' in its name"
    return None


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> tuple[str, int, bytes | None]:
    """(SHA-256 hex, size, the bytes when keep_upto allows) of an entry, streamed.
    zipfile stops at the declared size and checks the CRC at the end."""
    digest, size, kept = hashlib.sha256(), 0, bytearray()
    with zf.open(info) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if size <= limit:
                kept += chunk
    return digest.hexdigest(), size, bytes(kept) if size <= limit else None


def verify(path: Path, public_pem: bytes | None = None, limits: Limits = Limits()) -> Report:
    """Check the package at `path`; `public_pem`: the key to check the signature with
    (None: the one inside the package, which proves integrity, not origin). Returns a
    Report naming each file that is altered, missing, added or unsafe. Raises
    Unreadable when the file is not a zip, and ValueError when `public_pem` is not an
    Ed25519 public key."""
    given = load_public(public_pem) if public_pem is not None else None
    report = Report(embedded_key=given is None)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise Unreadable(f"{path}: not a zip file this can read ({e})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.entries:
            report.add(
                "package",
                False,
                f"{len(infos)} entries, more than {limits.entries}: refused unread",
            )
            return report
        entries: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            name = info.filename
            if why := _unsafe(name):
                report.add(name, False, f"unsafe entry ({why}): not read")
                continue
            if name in entries:
                report.add(
                    name, False, "appears twice in the zip (which copy is meant cannot be told)"
                )
                continue
            mode = info.external_attr >> 16
            if mode and stat.S_ISLNK(mode):
                report.add(name, False, "a symbolic link, not a file: not read")
                continue
            if info.flag_bits & 0x1:
                report.add(name, False, "encrypted: not read")
                continue
            if info.file_size > limits.entry_bytes or (
                info.file_size > 1 << 20
                and info.file_size > limits.ratio * max(info.compress_size, 1)
            ):
                report.add(
                    name,
                    False,
                    f"declares {info.file_size} bytes from {info.compress_size} (a zip bomb?): not read",
                )
                continue
            total += info.file_size
            if total > limits.total_bytes:
                report.add(
                    "package",
                    False,
                    f"more than {limits.total_bytes} bytes uncompressed: the rest is not read",
                )
                break
            entries[name] = info
        seen: dict[str, tuple[str, int]] = {}
        raw: dict[str, bytes | None] = {}
        for name, info in entries.items():
            if info.is_dir():
                seen[name] = ("", 0)
                continue
            keep = limits.manifest_bytes if name in (MANIFEST, SIGNATURE, PUBLIC_KEY) else 0
            try:
                digest, size, data = _read(zf, info, keep)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as e:
                report.add(name, False, f"damaged or altered inside the zip: {e}")
                continue
            seen[name] = (digest, size)
            raw[name] = data
        _check(report, seen, raw, given)
    return report


def _check(
    report: Report, seen: dict[str, tuple[str, int]], raw: dict[str, bytes | None], given
) -> None:
    data = raw.get(MANIFEST)
    if MANIFEST not in seen:
        report.add(MANIFEST, False, "missing: nothing can be checked without it")
        return
    if data is None:
        report.add(MANIFEST, False, "too large to be a manifest: not parsed")
        return
    try:
        manifest = json.loads(data)
        files = manifest["files"]
        listed = {f["name"]: (f["sha256"], f["size"]) for f in files}
        if not all(isinstance(n, str) and isinstance(h, str) and SHA256.fullmatch(h) and isinstance(s, int)
                   for n, (h, s) in listed.items()):  # fmt: skip
            raise ValueError("a file without a name, SHA-256 or size")
    except (ValueError, KeyError, TypeError) as e:
        report.add(
            MANIFEST, False, f"not a manifest this can read ({e.__class__.__name__}: {e}): altered"
        )
        manifest, listed = {}, {}
    if manifest and manifest.get("format") != FORMAT:
        report.add(MANIFEST, False, f"format {manifest.get('format')!r}, not {FORMAT!r}")
    if isinstance(manifest.get("ticket"), dict):
        report.ticket = str(manifest["ticket"].get("id"))
    sig = manifest.get("signature") if isinstance(manifest.get("signature"), dict) else {}
    report.manifest_fingerprint = (
        sig.get("key_fingerprint") if isinstance(sig.get("key_fingerprint"), str) else None
    )

    # The signature: over the manifest's exact bytes.
    key = given
    if key is None:
        pem = raw.get(PUBLIC_KEY)
        if pem is None:
            report.add(
                PUBLIC_KEY, False, "missing: no key to check the signature with (pass --key)"
            )
        else:
            try:
                key = load_public(pem)
            except ValueError as e:
                report.add(PUBLIC_KEY, False, f"not a usable key: {e}")
    signature = raw.get(SIGNATURE)
    signed = False
    if key is not None:
        report.key_fingerprint = fingerprint(key)
        if report.manifest_fingerprint and report.manifest_fingerprint != report.key_fingerprint:
            whose = "the key given" if given is not None else f"the package's {PUBLIC_KEY}"
            report.add(MANIFEST, False, f"names signing key {report.manifest_fingerprint}, but {whose} is "
                                        f"{report.key_fingerprint}")  # fmt: skip
        if signature is None:
            report.add(SIGNATURE, False, "missing: the manifest is not signed")
        elif len(signature) != 64:
            report.add(SIGNATURE, False, f"{len(signature)} bytes, not an Ed25519 signature (64)")
        elif verifies(key, signature, data):
            signed = True
            report.add(
                MANIFEST, True, f"signature verifies (Ed25519, key {report.key_fingerprint})"
            )
        else:
            report.add(MANIFEST, False, "the signature does not verify: the manifest was altered "
                                        "after signing, or it was signed with another key")  # fmt: skip

    # Every file the manifest lists, as listed.
    for name, (digest, size) in listed.items():
        if name not in seen:
            if not any(f.name == name for f in report.findings):
                report.add(
                    name, False, "missing: listed in the manifest, not in the package (removed)"
                )
        elif seen[name] != (digest, size):
            got_digest, got_size = seen[name]
            what = (
                f"{got_size} bytes, the manifest says {size}" if got_size != size else "same size"
            )
            report.add(name, False, f"altered: SHA-256 {got_digest[:16]}..., the manifest says "
                                    f"{digest[:16]}... ({what})")  # fmt: skip
        elif signed:
            report.add(name, True, f"{size} bytes, SHA-256 matches")
        else:  # the manifest may have been rewritten to match it
            report.add(name, True, f"{size} bytes, SHA-256 matches a manifest whose signature "
                                   "does not hold: unproven")  # fmt: skip
    for name in seen if manifest else ():  # an unreadable manifest lists nothing to compare
        if name not in listed and name not in (MANIFEST, SIGNATURE):
            report.add(name, False, "not in the manifest: added to the package after it was signed")
