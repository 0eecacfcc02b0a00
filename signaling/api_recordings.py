"""Recordings over HTTP: the index by time range, playback with range requests, clip
export, marks. Every path from a request is resolved inside the recordings folder and
checked against the camera's watch rules."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime
from pathlib import Path

from aiohttp import web

from recordings.clips import NoFootage, export
from signaling import keys
from signaling.access import may_watch
from signaling.auth import Principal, require
from signaling.http_errors import JsonError, read_json

log = logging.getLogger("gridwatch.recordings")
routes = web.RouteTableDef()

MAX_CLIP_S = 3600


def _time(request: web.Request, name: str) -> float:
    raw = request.query.get(name)
    if raw is None:
        raise JsonError(400, f"{name} is required (Unix seconds or ISO 8601)")
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise JsonError(400, f"{name}: {raw[:40]!r} is neither Unix seconds nor ISO 8601") from None
    if t.tzinfo is None:
        raise JsonError(400, f"{name}: give a time zone (Z or +08:00)")
    return t.timestamp()


def _camera(request: web.Request) -> str:
    camera = request.query.get("camera")
    if not camera:
        raise JsonError(400, "camera is required")
    principal: Principal = request["principal"]
    if not may_watch(request.app[keys.CONFIG], principal, camera):
        raise JsonError(403, f"{principal.role} {principal.username!r} may not see {camera!r}")
    return camera


def _range(request: web.Request) -> tuple[str, float, float]:
    camera, start, end = _camera(request), _time(request, "from"), _time(request, "to")
    if end <= start:
        raise JsonError(400, "to must be after from")
    return camera, start, end


@routes.get("/api/recordings")
async def list_recordings(request: web.Request) -> web.Response:
    camera, start, end = _range(request)
    segments = await request.app[keys.RECORDINGS].index.between(camera, start, end)
    return web.json_response({"segments": [
        {**s.as_json(), "url": f"/recordings/{s.path}"} for s in segments]})  # fmt: skip


@routes.get("/api/recordings/clip")
async def clip(request: web.Request) -> web.StreamResponse:
    camera, start, end = _range(request)
    if end - start > MAX_CLIP_S:
        raise JsonError(400, f"a clip is at most {MAX_CLIP_S} s; ask for a shorter range")
    recordings = request.app[keys.RECORDINGS]
    segments = await recordings.index.between(camera, start, end)
    tmp_dir = request.app[keys.CONFIG].server.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"clip-{uuid.uuid4().hex}.mp4"
    try:
        seconds = await asyncio.to_thread(export, recordings.root, segments, start, end, tmp)
    except NoFootage as e:
        tmp.unlink(missing_ok=True)
        raise JsonError(404, f"{camera}: {e}") from None
    name = f"{camera}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(start))}.mp4"
    response = web.FileResponse(tmp, headers={
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Clip-Duration": f"{seconds:.3f}"})  # fmt: skip
    try:
        await response.prepare(request)  # sends the file; then it can go
    finally:
        tmp.unlink(missing_ok=True)
    return response


def _file(request: web.Request) -> tuple[str, Path]:
    root: Path = request.app[keys.RECORDINGS].root
    rel = request.match_info["path"]
    if "\0" in rel or "\\" in rel or rel.startswith("/") or ".." in rel.split("/"):
        raise JsonError(404, "no such recording")
    path = (root / rel).resolve()
    # Resolved (symlinks followed) it must still be inside the folder, and the camera
    # checked is the one its real path names.
    if not path.is_relative_to(root) or not path.is_file() or path.suffix != ".mp4":
        raise JsonError(404, "no such recording")
    return path.relative_to(root).parts[0], path


@routes.get("/recordings/{path:.+}")
async def playback(request: web.Request) -> web.StreamResponse:
    camera, path = _file(request)
    principal: Principal = request["principal"]
    if not may_watch(request.app[keys.CONFIG], principal, camera):
        raise JsonError(403, f"{principal.role} {principal.username!r} may not see {camera!r}")
    return web.FileResponse(path, headers={"Content-Type": "video/mp4"})  # Range: aiohttp's


@routes.post("/api/recordings/marks")
async def mark(request: web.Request) -> web.Response:
    """A dispatcher keeps what a camera saw around now (events mode writes it)."""
    principal = require(request, "admin", "dispatcher")
    data = await read_json(request)
    camera = data.get("camera")
    if not isinstance(camera, str) or await request.app[keys.CAMERAS].get(camera) is None:
        raise JsonError(404, f"no camera {str(camera)[:64]!r}")
    at = data.get("at", time.time())
    if not isinstance(at, int | float) or abs(at - time.time()) > 3600:
        raise JsonError(400, "at: Unix seconds within the last hour")
    await request.app[keys.RECORDINGS].mark(camera, float(at))
    log.info("recording mark", extra={"camera": camera, "by": principal.username})
    return web.json_response({"camera": camera, "at": at}, status=201)
