"""REST: login, cameras (CRUD, snapshot, zones), health. PTZ: api_onvif."""

from __future__ import annotations

import logging
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gridwatch.contracts.roles import DESK, ROLES, WALL
from gridwatch.detectors.rules import counted_classes
from gridwatch.media.camera_state import live_state
from gridwatch.media.cameras import CameraExists
from gridwatch.media.config import Camera, Zone
from gridwatch.media.onvif import OnvifFailure
from gridwatch.media.snapshot import snapshot
from gridwatch.media.sources import parse_source
from gridwatch.signaling import keys
from gridwatch.signaling.auth import COOKIE
from gridwatch.signaling.cameras import (
    camera_or_404,
    check_api_camera,
    check_zone_classes,
    keep_stored_passwords,
    public_view,
)
from gridwatch.signaling.http_errors import JsonError
from gridwatch.signaling.policy import allow, body, query

log = logging.getLogger("gridwatch.api")
routes = web.RouteTableDef()

LOGIN_ATTEMPTS, LOGIN_WINDOW_S = 5, 300  # wrong passwords per address and user, in 5 min
ADDRESS_FAILURES = 50  # wrong passwords per address, whatever the user, in 5 min


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class CameraQuery(BaseModel):
    id: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=100)] = []


class ZonesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    zones: Annotated[list[Zone], Field(max_length=64)]


@routes.get("/healthz")
@allow(public=True)
async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[keys.REDIS].ping()
    except Exception as e:
        return web.json_response({"status": "degraded", "redis": str(e)}, status=503)
    return web.json_response({"status": "ok"})


@routes.post("/api/login")
@allow(public=True, body=LoginBody)
async def login(request: web.Request) -> web.Response:
    """Sign in: a token, and the session cookie the pages use."""
    creds = await body(request, LoginBody, "bad_request")
    username, password = creds.username, creds.password
    redis = request.app[keys.REDIS]
    # Every attempt counts as a failure until its password is right, counted before the
    # check so that attempts made at once cannot slip past the limits: per address and
    # user, and per address whatever the user (random usernames are no way around it). In
    # Redis, so that every node sees them; a guesser elsewhere never locks the user out.
    address_key = f"gw:login-failures:{request.remote}"
    user_key = f"gw:login-failures:{request.remote}:{username}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(address_key).expire(address_key, LOGIN_WINDOW_S, nx=True)
        pipe.incr(user_key).expire(user_key, LOGIN_WINDOW_S, nx=True)
        by_address, _, by_user, _ = await pipe.execute()
    if by_address > ADDRESS_FAILURES or by_user > LOGIN_ATTEMPTS:
        retry = max(1, await redis.ttl(address_key if by_address > ADDRESS_FAILURES else user_key))
        log.warning("login throttled", extra={"user": username, "peer": request.remote})
        request.app[keys.METRICS].logins.labels("throttled").inc()
        raise JsonError(429, f"too many failed logins; try again in {retry} s", retry_after_s=retry)
    try:
        user = await request.app[keys.PASSWORDS].check(request.app[keys.CONFIG].users, username, password)
    except JsonError:
        request.app[keys.METRICS].logins.labels("throttled").inc()
        raise
    request.app[keys.METRICS].logins.labels("ok" if user else "failed").inc()
    if user is None:
        log.warning("login failed", extra={"user": username, "peer": request.remote})
        raise JsonError(401, "wrong username or password", "bad_credentials")
    await redis.pipeline(transaction=True).delete(user_key).decr(address_key).execute()
    token = request.app[keys.TOKENS].issue(user.username, user.role)
    log.info("login", extra={"user": user.username, "role": user.role, "peer": request.remote})
    response = web.json_response({"token": token, "role": user.role, "username": user.username})
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        max_age=request.app[keys.TOKENS].ttl_s,
        secure=request.secure or request.app[keys.CONFIG].server.tls_proxy,
    )
    return response


@routes.post("/api/logout")
@allow(*ROLES)
async def logout(request: web.Request) -> web.Response:
    await request.app[keys.TOKENS].revoke(request["principal"])
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE)
    return response


@routes.get("/api/me")
@allow(*ROLES)
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


async def _views(request: web.Request, cameras: list[Camera]) -> list[dict]:
    """The cameras as the API shows them, each with its state as its owner node sees it:
    this node's own stream for the cameras it owns, the state board for the others."""
    app = request.app
    placement, hub = app[keys.PLACEMENT], app[keys.HUB]
    others = await app[keys.STATE_BOARD].read([c.id for c in cameras if not placement.mine(c.id)])
    return [public_view(c, others.get(c.id) or live_state(hub.get(c.id) if placement.mine(c.id) else None),
                        app[keys.VIEWERS].count(c.id)) for c in cameras]  # fmt: skip


async def _view(request: web.Request, camera: Camera) -> dict:
    return (await _views(request, [camera]))[0]


@routes.get("/api/cameras")
@allow(*WALL, query=CameraQuery)
async def list_cameras(request: web.Request) -> web.Response:
    """Every camera with its live state; `?id=A&id=B`: just those (a wall polling its tiles)."""
    wanted = query(request, CameraQuery).id
    store = request.app[keys.CAMERAS]
    cameras = await store.many(wanted) if wanted else await store.all()
    return web.json_response({"cameras": await _views(request, cameras)})


@routes.post("/api/cameras")
@allow("admin", body=Camera)
async def create_camera(request: web.Request) -> web.Response:
    """Add a camera (network sources only, see media.api_sources and media.deny_hosts)."""
    camera = keep_stored_passwords(await body(request, Camera, "invalid_camera"), None)
    check_zone_classes(camera.zones, request.app[keys.CONFIG].detectors.classes)
    await check_api_camera(camera, request.app[keys.CONFIG].media)
    try:
        await request.app[keys.CAMERAS].put(camera, create=True)
    except CameraExists as e:
        raise JsonError(409, str(e), "exists") from None
    return web.json_response(await _view(request, camera), status=201)


@routes.get("/api/cameras/{id}")
@allow(*WALL)
async def get_camera(request: web.Request) -> web.Response:
    return web.json_response(await _view(request, await camera_or_404(request)))


@routes.put("/api/cameras/{id}")
@allow("admin", body=Camera)
async def put_camera(request: web.Request) -> web.Response:
    """Change a camera (its id is the URL's)."""
    camera = await body(request, Camera, "invalid_camera")
    camera_id = request.match_info["id"]
    if camera.id != camera_id:
        raise JsonError(400, "id: does not match the URL")
    stored = await request.app[keys.CAMERAS].get(camera_id)
    camera = keep_stored_passwords(camera, stored)  # passwords are write-only: *** keeps them
    check_zone_classes(camera.zones, request.app[keys.CONFIG].detectors.classes)
    await check_api_camera(camera, request.app[keys.CONFIG].media, stored)
    await request.app[keys.CAMERAS].put(camera)
    return web.json_response(await _view(request, camera))


@routes.delete("/api/cameras/{id}")
@allow("admin")
async def delete_camera(request: web.Request) -> web.Response:
    camera_id = request.match_info["id"]
    await request.app[keys.VIEWERS].close_stream(camera_id)
    if not await request.app[keys.CAMERAS].delete(camera_id):
        raise JsonError(404, f"no camera {camera_id!r}")
    await request.app[keys.STATE_BOARD].forget(camera_id)
    return web.json_response({"deleted": request.match_info["id"]})


def _zones_view(request: web.Request, camera: Camera) -> dict:
    """{"zones": [...], "classes": {kind: [class names the detectors count for it]}}."""
    return {
        "zones": [z.model_dump(mode="json") for z in camera.zones],
        "classes": counted_classes(request.app[keys.CONFIG].detectors.classes),
    }


@routes.get("/api/cameras/{id}/zones")
@allow(*WALL)
async def get_zones(request: web.Request) -> web.Response:
    """The camera's zones, and the class names a zone of each kind may list."""
    return web.json_response(_zones_view(request, await camera_or_404(request)))


@routes.put("/api/cameras/{id}/zones")
@allow(*DESK, body=ZonesBody)
async def put_zones(request: web.Request) -> web.Response:
    """Replace a camera's zones; answers as GET does."""
    camera = await camera_or_404(request)
    # Relative points, or pixels with the frame they were drawn on: the model's checks are
    # the whole check, whatever size the streams have (the detector scales to its frames).
    zones = (await body(request, ZonesBody, "invalid_zones")).zones
    check_zone_classes(zones, request.app[keys.CONFIG].detectors.classes)
    camera.zones = zones
    await request.app[keys.CAMERAS].put(camera)
    return web.json_response(_zones_view(request, camera))


@routes.get("/api/cameras/{id}/snapshot.jpg")
@allow(*WALL)
async def camera_snapshot(request: web.Request) -> web.Response:
    """The camera's picture now (ONVIF snapshot, or the last key frame) as JPEG."""
    camera = await camera_or_404(request)
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
