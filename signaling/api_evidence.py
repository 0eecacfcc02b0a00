"""Evidence packages over HTTP: a ticket's signed zip, and the keys that sign them.

Each node signs with its own Ed25519 key (server.evidence_key, or made once under
data_dir/keys) and publishes the public half in `gw:evidence:keys` (hash: fingerprint
-> {public_key, node, published}), so that any node can hand out the key of a package
another node exported; a key is never removed from it (old packages stay checkable).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, BinaryIO

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gridwatch.contracts.evidence import EvidenceStore
from gridwatch.contracts.node import node_id
from gridwatch.dispatch.evidence_key import ALGORITHM, KeyFileError, SigningKey, load_or_create
from gridwatch.dispatch.evidence_package import build
from gridwatch.dispatch.violations import DETECTION
from gridwatch.signaling import keys
from gridwatch.signaling.api_tickets import OWN, READ, _ticket
from gridwatch.signaling.http_errors import JsonError, stream_file
from gridwatch.signaling.node_files import gathered
from gridwatch.signaling.policy import allow, query

log = logging.getLogger("gridwatch.evidence")
routes = web.RouteTableDef()

KEYS = "gw:evidence:keys"  # hash: fingerprint -> {public_key, node, published}
EXPORTS_AT_ONCE = 2  # packages built at once on a node (pictures are re-encoded, clips hashed)
STALE_EXPORT_S = 3600  # a half-built package left by a crash is removed at the next start


class Signer:
    """The node's signing key, or why there is none (exports then answer 503)."""

    def __init__(self, key: SigningKey | None, error: str | None, exports: Path):
        self.key = key
        self.error = error
        self.exports = exports
        self.slots = asyncio.Semaphore(EXPORTS_AT_ONCE)


SIGNER = web.AppKey("evidence_signer", Signer)


class KeyQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fingerprint: Annotated[str, Field(pattern=r"^SHA256:[0-9a-f]{64}$")] | None = None


def _software() -> str:
    try:
        return f"gridwatch {version('gridwatch')}"
    except PackageNotFoundError:
        return "gridwatch"


def _sweep(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in [*folder.glob("*.part"), *folder.glob("gather-*")]:
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < time.time() - STALE_EXPORT_S:
                shutil.rmtree(path) if path.is_dir() else path.unlink()


async def signer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load (or make) the node's key and publish its public half; after redis_ctx."""
    cfg = app[keys.CONFIG].server
    path = cfg.evidence_key_path()
    exports = cfg.data_dir / "exports"
    await asyncio.to_thread(_sweep, exports)
    try:
        key, made = await asyncio.to_thread(load_or_create, path)
    except KeyFileError as e:
        # The node serves video and tickets without it; only exports are refused.
        log.error(
            "evidence signing key unusable: packages cannot be exported", extra={"why": str(e)}
        )
        app[SIGNER] = Signer(None, str(e), exports)
    else:
        app[SIGNER] = Signer(key, None, exports)
        record = {"public_key": key.public_pem, "node": node_id(), "published": time.time()}
        await app[keys.REDIS].hsetnx(KEYS, key.fingerprint, json.dumps(record))
        log.info("evidence signing key " + ("made" if made else "loaded"),
                 extra={"fingerprint": key.fingerprint, "path": str(path)})  # fmt: skip
    yield


@routes.get("/api/evidence/key")
@allow(*READ, query=KeyQuery)
async def evidence_key(request: web.Request) -> web.Response:
    """The public keys that sign evidence packages: {algorithm, fingerprint, public_key
    (PEM), node} of this node's key, and `keys`: every node's ([{fingerprint,
    public_key, node, published}]). `?fingerprint=SHA256:...`: that key alone (404 if
    no node ever published it). Fingerprint: SHA-256 of the key's DER SubjectPublicKeyInfo."""
    want = query(request, KeyQuery).fingerprint
    redis = request.app[keys.REDIS]
    if want is not None:
        raw = await redis.hget(KEYS, want)
        if raw is None:
            raise JsonError(404, f"no node published the evidence key {want}")
        return web.json_response({"algorithm": ALGORITHM, "fingerprint": want, **_record(raw)})
    signer = request.app[SIGNER]
    published = [
        {"fingerprint": fp.decode(), **_record(raw)}
        for fp, raw in (await redis.hgetall(KEYS)).items()
    ]
    published.sort(key=lambda k: k.get("published") or 0)
    if signer.key is None:
        raise JsonError(
            503, f"this node has no usable evidence key: {signer.error}", keys=published
        )
    return web.json_response({"algorithm": ALGORITHM, "fingerprint": signer.key.fingerprint,
                              "public_key": signer.key.public_pem, "node": node_id(), "keys": published})  # fmt: skip


def _record(raw: bytes) -> dict:
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return (
        {k: found.get(k) for k in ("public_key", "node", "published")}
        if isinstance(found, dict)
        else {}
    )


@routes.get("/api/tickets/{id}/evidence.zip")
@allow(*READ, owner=OWN)
async def evidence_package(request: web.Request) -> web.StreamResponse:
    """The ticket's evidence package (application/zip): numbered pictures with time,
    camera and place burned in, the clip, the plate crop, the originals, manifest.json
    (every file's SHA-256 and size) and its Ed25519 signature; check it with
    `gridwatch verify-evidence`. Built in a thread into data_dir/exports, then streamed;
    by any node: files another node holds are fetched from it first (503
    `holder_unavailable` naming a holder that is down)."""
    principal = request["principal"]
    ticket = await _ticket(request, principal)
    signer = request.app[SIGNER]
    if signer.key is None:
        raise JsonError(503, f"this node has no usable evidence key: {signer.error}")
    log_entries = await request.app[keys.TICKETS].log(ticket.id)
    opened = next((e for e in log_entries if e.get("action") == "create"), None)
    camera = await request.app[keys.CAMERAS].get(ticket.camera) if ticket.camera else None
    names = [*ticket.evidence, *([EvidenceStore.name(ticket.key, DETECTION)] if ticket.key else [])]
    async with signer.slots:
        # Files held by other nodes are fetched beside links to this node's own, and the
        # package built from there (gone once it is built).
        with tempfile.TemporaryDirectory(dir=signer.exports, prefix="gather-") as work:
            store = await gathered(request.app, names, Path(work))
            args = (ticket, opened, camera, store, signer.key, node_id(), _software())
            try:
                f, manifest = await asyncio.to_thread(_built, signer.exports, *args)
            except OSError as e:
                raise JsonError(503, f"the package could not be written: {e.strerror}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        resp = web.StreamResponse(headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{ticket.id}-evidence.zip"',
            "Cache-Control": "private, no-store",
        })  # fmt: skip
        resp.content_length = size
        await stream_file(request, resp, f)
    log.info("evidence package exported",
             extra={"ticket": ticket.id, "user": principal.username, "bytes": size,
                    "pictures": manifest["requirements"]["pictures"], "key": signer.key.fingerprint})  # fmt: skip
    return resp


def _built(folder: Path, ticket, *args) -> tuple[BinaryIO, dict]:
    """Build the package into a temporary file and open it: (the open file, already
    unlinked so that nothing is left behind however the download ends; the manifest)."""
    fd, name = tempfile.mkstemp(suffix=".part", prefix=f"{ticket.id}-", dir=folder)
    os.close(fd)
    path = Path(name)
    try:
        manifest = build(path, ticket, *args)
        return path.open("rb"), manifest
    finally:
        path.unlink(missing_ok=True)
