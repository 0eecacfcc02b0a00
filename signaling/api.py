"""REST: login, cameras (CRUD, snapshot, PTZ, zones), health."""

from __future__ import annotations

import logging

from aiohttp import web

from media.onvif import OnvifFailure, PtzCommand
from media.snapshot import snapshot
from media.sources import parse_source
from signaling import keys
from signaling.auth import COOKIE, find_user, require
from signaling.cameras import public_view, validate_camera, validate_zones
from signaling.config import Camera
from signaling.http_errors import JsonError, read_json

log = logging.getLogger("gridwatch.api")
routes = web.RouteTableDef()

WATCH_ROLES = ("admin", "dispatcher", "viewer")
LOGIN_ATTEMPTS, LOGIN_WINDOW_S = 5, 300
CAMERA_ADMIN = ("admin",)
CAMERA_OPERATE = ("admin", "dispatcher")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[keys.REDIS].ping()
    except Exception as e:
        return web.json_response({"status": "degraded", "redis": str(e)}, status=503)
    return web.json_response({"status": "ok"})


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    data = await read_json(request)
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise JsonError(400, "username and password are required strings")
    redis = request.app[keys.REDIS]
    # Failures count per user and address, in Redis so that every node sees them.
    failures_key = f"gw:login-failures:{request.remote}:{username[:64]}"
    failures = int(await redis.get(failures_key) or 0)
    if failures >= LOGIN_ATTEMPTS:
        retry = max(1, await redis.ttl(failures_key))
        log.warning("login throttled", extra={"user": username[:64], "peer": request.remote})
        raise JsonError(429, f"too many failed logins; try again in {retry} s", retry_after_s=retry)
    user = find_user(request.app[keys.CONFIG].users, username, password)
    if user is None:
        async with redis.pipeline(transaction=True) as pipe:
            await pipe.incr(failures_key).expire(failures_key, LOGIN_WINDOW_S, nx=True).execute()
        log.warning("login failed", extra={"user": username[:64], "peer": request.remote})
        raise JsonError(401, "wrong username or password", "bad_credentials")
    await redis.delete(failures_key)
    token = request.app[keys.TOKENS].issue(user.username, user.role)
    log.info("login", extra={"user": user.username, "role": user.role, "peer": request.remote})
    response = web.json_response({"token": token, "role": user.role, "username": user.username})
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        max_age=request.app[keys.TOKENS].ttl_s,
        secure=request.secure,
    )
    return response


@routes.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    await request.app[keys.TOKENS].revoke(request["principal"])
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE)
    return response


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    """Who is signed in; an officer also gets his name, whether he is on duty, and how
    often his phone must send a fix (`heartbeat_s`)."""
    p = request["principal"]
    data: dict = {"username": p.username, "role": p.role}
    if p.role == "officer":
        cfg = request.app[keys.CONFIG]
        state = await request.app[keys.OFFICERS].state(p.username)
        named = next((o.name for o in cfg.officers if o.id == p.username), None)
        data |= {"name": named, "on_duty": state.on_duty, "heartbeat_s": cfg.tracks.heartbeat_s}
    return web.json_response(data)


async def _camera(request: web.Request) -> Camera:
    camera_id = request.match_info["id"]
    camera = await request.app[keys.CAMERAS].get(camera_id)
    if camera is None:
        raise JsonError(404, f"no camera {camera_id!r}")
    return camera


def _view(request: web.Request, camera: Camera) -> dict:
    app = request.app
    return public_view(camera, app[keys.HUB].get(camera.id), app[keys.VIEWERS].count(camera.id))


@routes.get("/api/cameras")
async def list_cameras(request: web.Request) -> web.Response:
    require(request, *WATCH_ROLES)
    wanted = request.query.getall("id", [])  # a wall polling the tiles it shows
    store = request.app[keys.CAMERAS]
    cameras = await store.many(wanted[:100]) if wanted else await store.all()
    return web.json_response({"cameras": [_view(request, c) for c in cameras]})


@routes.post("/api/cameras")
async def create_camera(request: web.Request) -> web.Response:
    require(request, *CAMERA_ADMIN)
    camera = validate_camera(await read_json(request))
    await request.app[keys.CAMERAS].put(camera, create=True)
    return web.json_response(_view(request, camera), status=201)


@routes.get("/api/cameras/{id}")
async def get_camera(request: web.Request) -> web.Response:
    require(request, *WATCH_ROLES)
    return web.json_response(_view(request, await _camera(request)))


@routes.put("/api/cameras/{id}")
async def put_camera(request: web.Request) -> web.Response:
    require(request, *CAMERA_ADMIN)
    data = await read_json(request)
    camera_id = request.match_info["id"]
    if data.setdefault("id", camera_id) != camera_id:
        raise JsonError(400, "id: does not match the URL")
    camera = validate_camera(data)
    await request.app[keys.CAMERAS].put(camera)
    return web.json_response(_view(request, camera))


@routes.delete("/api/cameras/{id}")
async def delete_camera(request: web.Request) -> web.Response:
    require(request, *CAMERA_ADMIN)
    camera_id = request.match_info["id"]
    await request.app[keys.VIEWERS].close_stream(camera_id)
    if not await request.app[keys.CAMERAS].delete(camera_id):
        raise JsonError(404, f"no camera {camera_id!r}")
    return web.json_response({"deleted": request.match_info["id"]})


@routes.get("/api/cameras/{id}/zones")
async def get_zones(request: web.Request) -> web.Response:
    require(request, *WATCH_ROLES)
    camera = await _camera(request)
    return web.json_response({"zones": [z.model_dump(mode="json") for z in camera.zones]})


@routes.put("/api/cameras/{id}/zones")
async def put_zones(request: web.Request) -> web.Response:
    require(request, *CAMERA_OPERATE)
    camera = await _camera(request)
    data = await read_json(request)
    camera.zones = validate_zones(data.get("zones"))
    stream = request.app[keys.HUB].get(camera.id)
    if stream is not None and stream.state.width and stream.state.height:
        # The frame size is known once the camera has been seen: zones must lie inside it.
        for i, zone in enumerate(camera.zones):
            try:
                zone.check_frame(stream.state.width, stream.state.height, i)
            except ValueError as e:
                raise JsonError(400, str(e), "invalid_zones") from None
    await request.app[keys.CAMERAS].put(camera)
    return web.json_response({"zones": [z.model_dump(mode="json") for z in camera.zones]})


@routes.get("/api/cameras/{id}/snapshot.jpg")
async def camera_snapshot(request: web.Request) -> web.Response:
    require(request, *WATCH_ROLES)
    camera = await _camera(request)
    source = parse_source(camera.source)
    jpeg = None
    if source.kind == "onvif":
        try:
            jpeg = await request.app[keys.ONVIF].snapshot(source)
        except OnvifFailure as e:
            log.warning("onvif snapshot failed", extra={"camera": camera.id, "error": str(e)})
    if jpeg is None:
        stream = await request.app[keys.CAMERAS].stream(camera.id)
        timeout = request.app[keys.CONFIG].media.read_timeout_s * 2
        jpeg = await snapshot(stream, timeout) if stream else None
    if jpeg is None:
        raise JsonError(503, "the camera gave no picture in time", "no_picture")
    return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


def _ptz_command(data: dict) -> PtzCommand:
    action = data.get("action")
    if action == "move":
        values = {}
        for axis in ("pan", "tilt", "zoom"):
            v = data.get(axis, 0.0)
            if isinstance(v, bool) or not isinstance(v, int | float) or not -1.0 <= v <= 1.0:
                raise JsonError(400, f"{axis}: must be a number from -1 to 1")
            values[axis] = float(v)
        return PtzCommand("move", **values)
    if action == "stop":
        return PtzCommand("stop")
    if action == "goto_preset":
        preset = data.get("preset")
        if not isinstance(preset, str | int) or isinstance(preset, bool) or str(preset) == "":
            raise JsonError(400, "preset: a preset token is required")
        return PtzCommand("goto_preset", preset=str(preset))
    raise JsonError(400, "action: must be one of move, stop, goto_preset")


@routes.post("/api/cameras/{id}/ptz")
async def camera_ptz(request: web.Request) -> web.Response:
    require(request, *CAMERA_OPERATE)
    camera = await _camera(request)
    cmd = _ptz_command(await read_json(request))
    source = parse_source(camera.source)
    if source.kind != "onvif":
        raise JsonError(409, "PTZ needs an onvif:// camera", "no_ptz")
    try:
        await request.app[keys.ONVIF].ptz(source, cmd)
    except OnvifFailure as e:
        raise JsonError(502, str(e), "device_error") from None
    log.info(
        "ptz",
        extra={"camera": camera.id, "action": cmd.action, "user": request["principal"].username},
    )
    return web.json_response({"ok": True, "action": cmd.action})
