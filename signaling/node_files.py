"""Files one node holds, served by every node: recording segments and evidence files.

A segment lies on the disk of the node that wrote it (the index names it: `node`), an
evidence file on the node that holds its folder (`gw:evidence:holders`). A node serves
what its own disk has; anything else it fetches from the holder over the nodes' internal
addresses (media/nodes.py), streamed, with HTTP Range passed through (RFC 9110 §14) so
that a player seeks. A holder that is not live: 503 `holder_unavailable`, naming it.
With `recordings.shared_storage` every node reads every file itself.

Internal routes (other nodes only, signaling/node_auth):
- `GET /internal/recordings/{path}`: a segment file on this disk (Range as usual).
- `GET /internal/evidence/{folder}/{name}`: an evidence file on this disk.
- `PUT /internal/evidence/{folder}/{name}`: an evidence file (a clip) to keep here, beside
  the rest of its folder; the body is the file, 201 once it is whole on disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from gridwatch.contracts.evidence import EvidenceStore, holder
from gridwatch.recordings.remote import Unreachable, evidence_path, recording_path
from gridwatch.signaling import keys
from gridwatch.signaling.http_errors import JsonError
from gridwatch.signaling.node_auth import node_headers
from gridwatch.signaling.policy import allow

log = logging.getLogger("gridwatch.node_files")
routes = web.RouteTableDef()

CHUNK = 1 << 16
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
PASSED = (
    "Content-Type",
    "Content-Length",
    "Content-Range",
    "Accept-Ranges",
    "Last-Modified",
    "ETag",
)
MAX_UPLOAD_BYTES = 4 << 30  # an evidence clip: at most pre_s + post_s of one camera


class NodeFiles:
    """The client side: fetches and sends files to the other nodes (recordings.remote.Peers)
    and relays them to this node's clients. Counters for /metrics."""

    def __init__(self, app: web.Application, session: aiohttp.ClientSession):
        self.app = app
        self.session = session
        self.counts = {"fetches": 0, "fetched_bytes": 0, "fetch_failures": 0, "uploads": 0,
                       "upload_failures": 0}  # fmt: skip

    def _url(self, node: str, path: str) -> str:
        url = self.app[keys.NODES].url_of(node)
        if url is None:
            raise Unreachable(node, f"node {node!r} is not live")
        return url.rstrip("/") + path

    def _failed(self, node: str, path: str, why: str, kind: str = "fetch_failures") -> Unreachable:
        self.counts[kind] += 1
        log.warning("node file transfer failed", extra={"node": node, "path": path, "why": why})
        return Unreachable(node, f"node {node!r}: {why}")

    async def relay(self, request: web.Request, node: str, path: str) -> web.StreamResponse:
        """Stream `path` from `node` to the client as the holder answers it (200, 206 or
        416; Range and If-Range passed on). JsonError 503 `holder_unavailable` naming the
        node when it is not live or does not answer; 404 when it has no such file."""
        headers = node_headers(self.app) | {h: request.headers[h] for h in ("Range", "If-Range")
                                            if h in request.headers}  # fmt: skip
        response: web.StreamResponse | None = None
        try:
            url = self._url(node, path)
            async with self.session.get(url, headers=headers, timeout=TIMEOUT) as up:
                if up.status == 404:
                    raise JsonError(404, f"node {node!r} no longer has that file")
                if up.status not in (200, 206, 416):
                    raise self._failed(node, path, f"answered {up.status}")
                response = web.StreamResponse(status=up.status, headers={h: up.headers[h] for h in PASSED
                                                                         if h in up.headers})  # fmt: skip
                await response.prepare(request)
                async for chunk in up.content.iter_chunked(CHUNK):
                    await response.write(chunk)
                    self.counts["fetched_bytes"] += len(chunk)
                await response.write_eof()
                self.counts["fetches"] += 1
                return response
        except (aiohttp.ClientError, TimeoutError) as e:
            failure = self._failed(node, path, str(e) or type(e).__name__)
            if response is None:
                raise _holder_down(failure) from None
            response.force_close()  # headers are out: the client sees a cut body, never a short file
            return response
        except Unreachable as e:
            raise _holder_down(e) from None
        except ConnectionResetError:
            log.info("client went away mid-download", extra={"path": request.path})
            assert response is not None
            return response

    async def download(self, node: str, path: str, dest: Path) -> None:
        """Copy `path` from `node` into `dest` (whole, or not at all). Unreachable."""
        url = self._url(node, path)
        part = dest.with_name(dest.name + ".part")
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
        try:
            async with self.session.get(url, headers=node_headers(self.app), timeout=TIMEOUT) as up:
                if up.status != 200:
                    raise self._failed(node, path, f"answered {up.status}")
                self.counts["fetched_bytes"] += await _save(up.content.iter_chunked(1 << 20), part)
            await asyncio.to_thread(part.replace, dest)
            self.counts["fetches"] += 1
        except (aiohttp.ClientError, TimeoutError) as e:
            raise self._failed(node, path, str(e) or type(e).__name__) from None
        finally:
            await asyncio.to_thread(part.unlink, missing_ok=True)

    async def upload(self, node: str, path: str, src: Path) -> None:
        """PUT the file `src` to `path` on `node`, streamed. Unreachable."""
        url = self._url(node, path)
        f = await asyncio.to_thread(src.open, "rb")
        try:
            headers = node_headers(self.app) | {"Content-Type": "application/octet-stream"}
            async with self.session.put(url, data=f, headers=headers, timeout=TIMEOUT) as up:
                if up.status // 100 != 2:
                    raise self._failed(node, path, f"answered {up.status}", "upload_failures")
            self.counts["uploads"] += 1
        except (aiohttp.ClientError, TimeoutError) as e:
            raise self._failed(node, path, str(e) or type(e).__name__, "upload_failures") from None
        finally:
            await asyncio.to_thread(f.close)


async def _save(chunks: AsyncIterator[bytes], part: Path, limit: int | None = None) -> int:
    """Write `chunks` to the file `part` (file writes in a thread); the bytes written.
    JsonError 413 past `limit` bytes."""
    f = await asyncio.to_thread(part.open, "wb")
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if limit is not None and size > limit:
                raise JsonError(413, f"an evidence file is at most {limit >> 30} GiB", "too_large")
            await asyncio.to_thread(f.write, chunk)
    finally:
        await asyncio.to_thread(f.close)
    return size


def _holder_down(e: Unreachable) -> JsonError:
    return JsonError(503, f"the file is on node {e.node!r}, which cannot serve it now: {e}",
                     "holder_unavailable", node=e.node)  # fmt: skip


FILES = web.AppKey("node_files", NodeFiles)


class FilesCollector(Collector):
    def __init__(self, files: NodeFiles):
        self.files = files

    def collect(self) -> Iterator[CounterMetricFamily]:
        helps = {"fetches": "files fetched from other nodes (segments, evidence)",
                 "fetched_bytes": "bytes of files fetched from other nodes",
                 "fetch_failures": "fetches from other nodes that failed (node not live, error)",
                 "uploads": "evidence files sent to the node holding their folder",
                 "upload_failures": "evidence files that could not be sent to their folder's node"}  # fmt: skip
        for name, n in self.files.counts.items():
            yield CounterMetricFamily(f"gridwatch_node_files_{name}", helps[name], n)


async def files_ctx(app: web.Application) -> AsyncIterator[None]:
    """The client session to the other nodes; after media_ctx (the live nodes)."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        app[FILES] = NodeFiles(app, session)
        app[keys.METRICS].registry.register(FilesCollector(app[FILES]))
        yield


def shared(app: web.Application) -> bool:
    return app[keys.CONFIG].recordings.shared_storage


def recording_file(root: Path, rel: str) -> Path | None:
    """The segment file `rel` (relative to the recordings root `root`) on this disk; None
    for a name that is not one, or a file that is not here. Resolved (symlinks followed),
    it must still be inside the root, in the folder of the camera `rel` names. Blocking."""
    if "\0" in rel or "\\" in rel or rel.startswith("/") or ".." in rel.split("/"):
        return None
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file() or path.suffix != ".mp4":
        return None
    # The camera whose watch rules were checked is the one its real path names.
    return path if path.relative_to(root).parts[0] == rel.split("/", 1)[0] else None


async def serve_recording(request: web.Request, rel: str) -> web.StreamResponse:
    """A segment file: from this disk, else relayed from the node the index names."""
    recordings = request.app[keys.RECORDINGS]
    path = await asyncio.to_thread(recording_file, recordings.root, rel)
    if path is not None:
        return web.FileResponse(path, headers={"Content-Type": "video/mp4"})  # Range: aiohttp's
    seg = await recordings.index.get(rel.split("/", 1)[0], rel)
    if seg is None or seg.node in (None, recordings.node) or shared(request.app):
        raise JsonError(404, "no such recording")
    return await request.app[FILES].relay(request, seg.node, recording_path(rel))


async def serve_evidence(request: web.Request, rel: str) -> web.StreamResponse:
    """An evidence file a ticket lists: from this disk, else relayed from its holder."""
    path = await asyncio.to_thread(request.app[keys.EVIDENCE].path, rel)
    if path is not None:
        return web.FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})
    node = await holder(request.app[keys.REDIS], rel)
    if node is None or node == request.app[keys.NODES].me.node or shared(request.app):
        raise JsonError(404, f"no evidence file {rel!r}")
    return await request.app[FILES].relay(request, node, evidence_path(rel))


async def available(app: web.Application, names: list[str]) -> set[str]:
    """Those evidence files of `names` that some node can serve: on this disk, or held by
    another node (live or not: it serves them when it is back)."""
    store = app[keys.EVIDENCE]
    here = {n for n in names if await asyncio.to_thread(store.path, n) is not None}
    if shared(app):
        return here
    me = app[keys.NODES].me.node
    return here | {
        n for n in set(names) - here if await holder(app[keys.REDIS], n) not in (None, me)
    }


async def gathered(app: web.Application, names: list[str], work: Path) -> EvidenceStore:
    """An evidence store holding every one of `names` that exists anywhere: this node's
    own when it has them all, else `work` with this node's files linked (or copied) in and
    the others fetched from their holders. JsonError 503 naming a holder that is down."""
    store = app[keys.EVIDENCE]
    local = {n: await asyncio.to_thread(store.path, n) for n in names}
    if shared(app) or all(local.values()):
        return store
    files, me = app[FILES], app[keys.NODES].me.node
    for name, path in local.items():
        dest = work / name
        if path is not None:
            await asyncio.to_thread(_link, path, dest)
            continue
        node = await holder(app[keys.REDIS], name)
        if node is None or node == me:
            continue  # nowhere: the package says it is missing
        try:
            await files.download(node, evidence_path(name), dest)
        except Unreachable as e:
            raise _holder_down(e) from None
    return EvidenceStore(work)


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:  # another file system
        shutil.copyfile(src, dest)


def _evidence_rel(request: web.Request) -> str:
    """`folder/name` from the path, as EvidenceStore names files; 404 for anything else."""
    rel = request.match_info["path"]
    folder, _, name = rel.partition("/")
    unsafe = {"", ".", ".."} & {folder, name}
    if unsafe or EvidenceStore.name(folder, name) != rel or name.endswith(".part"):
        raise JsonError(404, "no such evidence file")
    return rel


@routes.get("/internal/recordings/{path:.+}")
@allow(internal=True)
async def internal_recording(request: web.Request) -> web.StreamResponse:
    """A segment file on this node's disk, for another node (Range requests as usual)."""
    path = await asyncio.to_thread(
        recording_file, request.app[keys.RECORDINGS].root, request.match_info["path"]
    )
    if path is None:
        raise JsonError(404, "no such recording on this node")
    return web.FileResponse(path, headers={"Content-Type": "video/mp4"})


@routes.get("/internal/evidence/{path:.+}")
@allow(internal=True)
async def internal_evidence(request: web.Request) -> web.StreamResponse:
    """An evidence file on this node's disk, for another node."""
    path = await asyncio.to_thread(request.app[keys.EVIDENCE].path, _evidence_rel(request))
    if path is None:
        raise JsonError(404, "no such evidence file on this node")
    return web.FileResponse(path)


@routes.put("/internal/evidence/{path:.+}")
@allow(internal=True, body_types=("application/octet-stream",))
async def internal_evidence_put(request: web.Request) -> web.Response:
    """Keep an evidence file here, beside its folder (the clip of a ticket whose pictures
    this node holds): written whole under a temporary name, then renamed. 201 {name}."""
    rel = _evidence_rel(request)
    store = request.app[keys.EVIDENCE]
    _, path = await asyncio.to_thread(store.place, *rel.split("/", 1))
    part = path.with_name(path.name + ".part")
    try:
        size = await _save(request.content.iter_chunked(1 << 20), part, MAX_UPLOAD_BYTES)
        await asyncio.to_thread(part.replace, path)
    finally:
        await asyncio.to_thread(part.unlink, missing_ok=True)
    log.info("evidence file received", extra={"file": rel, "from": request["node"], "bytes": size})
    return web.json_response({"name": rel}, status=201)
