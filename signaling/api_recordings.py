"""Recordings over HTTP: the index by time range, a camera's timeline (segments, marks,
tickets), playback with range requests, clip export, marks. Every path from a request is
resolved inside the recordings folder and checked against the camera's watch rules.
Any node serves any segment and cuts any clip: a segment on another node's disk is
fetched from it (signaling/node_files); 503 `holder_unavailable` naming the node that
holds a needed segment and is down."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gridwatch.contracts.roles import DESK, WALL
from gridwatch.recordings.clips import NoFootage, export
from gridwatch.signaling import keys
from gridwatch.signaling.access import may_watch
from gridwatch.signaling.api_tickets import _visible
from gridwatch.signaling.auth import Principal
from gridwatch.signaling.http_errors import JsonError, stream_file
from gridwatch.signaling.node_files import serve_recording
from gridwatch.signaling.policy import allow, body, query

log = logging.getLogger("gridwatch.recordings")
routes = web.RouteTableDef()
MAX_CLIP_S = 3600
MAX_TIMELINE_S = 7 * 86400
MAX_MARKS = 5000  # a timeline's marks; `truncated` says when there were more
WATCH = "A user sees the recordings of the streams he may watch only."
# A stream id; anything else ("x:meta") would land on another Redis key.
StreamId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")]
When = Annotated[str, Field(min_length=1, max_length=40)]  # Unix seconds or ISO 8601 with a zone


class RangeQuery(BaseModel):
    camera: StreamId
    since: When = Field(alias="from")
    until: When = Field(alias="to")


class MarkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    camera: StreamId
    at: Annotated[float, Field(allow_inf_nan=False, gt=0, le=1e11)] | None = None


def _time(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        try:
            t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise JsonError(400, f"{name}: {raw[:40]!r} is neither Unix seconds nor ISO 8601") from None
        if t.tzinfo is None:
            raise JsonError(400, f"{name}: give a time zone (Z or +08:00)") from None
        value = t.timestamp()
    if not 0 <= value < 1e11:  # NaN and infinities too
        raise JsonError(400, f"{name}: {raw[:40]!r} is not a time")
    return value


def _range(request: web.Request) -> tuple[str, float, float]:
    q = query(request, RangeQuery)
    principal: Principal = request["principal"]
    if not may_watch(request.app[keys.CONFIG], principal, q.camera):
        raise JsonError(403, f"{principal.role} {principal.username!r} may not see {q.camera!r}")
    start, end = _time("from", q.since), _time("to", q.until)
    if end <= start:
        raise JsonError(400, "to must be after from")
    return q.camera, start, end


@routes.get("/api/recordings")
@allow(*WALL, "officer", query=RangeQuery, owner=WATCH)
async def list_recordings(request: web.Request) -> web.Response:
    camera, start, end = _range(request)
    segments = await request.app[keys.RECORDINGS].index.between(camera, start, end)
    return web.json_response({"segments": [
        {**s.as_json(), "url": f"/recordings/{s.path}"} for s in segments]})  # fmt: skip


@routes.get("/api/recordings/timeline")
@allow(*WALL, "officer", query=RangeQuery,
       owner=f"{WATCH} An officer sees only his own tickets on it.")  # fmt: skip
async def timeline(request: web.Request) -> web.Response:
    """A camera's timeline between `from` and `to` (at most 7 days): its segments (`end`
    null while written), its marks and its tickets (at the time the camera confirmed
    them), oldest first. 404 for a stream that is neither a camera nor recorded."""
    camera, start, end = _range(request)
    if end - start > MAX_TIMELINE_S:
        days = MAX_TIMELINE_S // 86400
        raise JsonError(400, f"to: a timeline spans at most {days} days after from")
    index = request.app[keys.RECORDINGS].index
    if await request.app[keys.CAMERAS].get(camera) is None and not await index.known(camera):
        raise JsonError(404, f"no camera {camera!r}")
    segments = await index.between(camera, start, end)
    marks = await index.marks(camera, start, end, MAX_MARKS + 1)
    truncated, marks = len(marks) > MAX_MARKS, marks[:MAX_MARKS]
    at = {m.ticket: m.at for m in marks if m.ticket is not None}
    principal: Principal = request["principal"]
    tickets = [t for t in await request.app[keys.TICKETS].fetch(list(at)) if _visible(principal, t)]
    return web.json_response({
        "camera": camera, "from": start, "to": end, "truncated": truncated,
        "segments": [{"start": s.start, "end": s.end, "bytes": s.size, "url": f"/recordings/{s.path}"}
                     for s in segments],
        "marks": [{"at": m.at} for m in marks if m.ticket is None],
        "tickets": [{"id": t.id, "state": t.state, "at": at[t.id],
                     "zone": t.detection.zone if t.detection else None,
                     "kind": t.category} for t in tickets],
    })  # fmt: skip


@routes.get("/api/recordings/clip")
@allow(*WALL, "officer", query=RangeQuery, owner=WATCH)
async def clip(request: web.Request) -> web.StreamResponse:
    camera, start, end = _range(request)
    if end - start > MAX_CLIP_S:
        raise JsonError(400, f"a clip is at most {MAX_CLIP_S} s; ask for a shorter range")
    recordings = request.app[keys.RECORDINGS]
    segments = await recordings.index.between(camera, start, end)
    tmp_dir = request.app[keys.CONFIG].server.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    name = f"{camera}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(start))}.mp4"
    # Segments written on other nodes (a camera that moved) are fetched in here, and the
    # clip cut here; all deleted once sent.
    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="clip-") as work:
        sources, missing = await recordings.sources(segments, Path(work))
        if missing:
            nodes = sorted({s.node for s in missing if s.node})
            raise JsonError(503, f"{camera}: part of that time is on node(s) {', '.join(nodes)}, "
                            "which cannot serve it now", "holder_unavailable", node=nodes[0],
                            segments=[s.path for s in missing])  # fmt: skip
        tmp = Path(work) / "clip.mp4"
        try:
            seconds = await asyncio.to_thread(export, sources, start, end, tmp)
        except NoFootage as e:
            raise JsonError(404, f"{camera}: {e}") from None
        with tmp.open("rb") as f:
            response = web.StreamResponse(headers={
                "Content-Type": "video/mp4", "Content-Disposition": f'attachment; filename="{name}"',
                "X-Clip-Duration": f"{seconds:.3f}"})  # fmt: skip
            response.content_length = tmp.stat().st_size
            return await stream_file(request, response, f)


@routes.get("/recordings/{path:.+}")
@allow(*WALL, "officer", owner=WATCH)
async def playback(request: web.Request) -> web.StreamResponse:
    """A segment file (video/mp4, HTTP Range requests), from whichever node holds it."""
    rel = request.match_info["path"]
    camera = rel.split("/", 1)[0]
    principal: Principal = request["principal"]
    if not may_watch(request.app[keys.CONFIG], principal, camera):
        raise JsonError(403, f"{principal.role} {principal.username!r} may not see {camera!r}")
    return await serve_recording(request, rel)


@routes.post("/api/recordings/marks")
@allow(*DESK, body=MarkBody)
async def mark(request: web.Request) -> web.Response:
    """A dispatcher keeps what a camera saw around now (events mode writes it)."""
    principal = request["principal"]
    ask = await body(request, MarkBody, "bad_request")
    camera, at = ask.camera, ask.at if ask.at is not None else time.time()
    if await request.app[keys.CAMERAS].get(camera) is None:
        raise JsonError(404, f"no camera {camera!r}")
    if abs(at - time.time()) > 3600:
        raise JsonError(400, "at: Unix seconds within the last hour")
    await request.app[keys.RECORDINGS].mark(camera, float(at))
    log.info("recording mark", extra={"camera": camera, "by": principal.username})
    return web.json_response({"camera": camera, "at": at}, status=201)
