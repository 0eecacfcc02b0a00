"""REST for the cameras screen's ONVIF side: discovery scans, a test picture from a source
before it is saved, and PTZ: moves, status and presets."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field, model_validator

from gridwatch.contracts.config import CAMERA_ID, Strict
from gridwatch.contracts.roles import DESK
from gridwatch.media.config import Camera
from gridwatch.media.discover import Device, Scanner
from gridwatch.media.onvif import OnvifFailure, PtzCommand
from gridwatch.media.probe import ProbeFailure, probe_picture
from gridwatch.media.sources import Source, SourceError, parse_source, redact
from gridwatch.signaling import keys
from gridwatch.signaling.cameras import camera_or_404, check_api_source, with_stored_password
from gridwatch.signaling.http_errors import JsonError
from gridwatch.signaling.logs import scrub_secret
from gridwatch.signaling.policy import allow, body

log = logging.getLogger("gridwatch.api")
routes = web.RouteTableDef()
DISCOVERY = web.AppKey("discovery", Scanner)  # set by create_app: one scan at a time per node
# Set by create_app. A probe holds a thread for up to twice media.read_timeout_s: a few at
# a time, or probes of hosts that never answer would take the threads that name lookups
# and other blocking work of the whole node wait on.
PROBES = web.AppKey("probes", asyncio.Semaphore)
MAX_PROBES = 2

PROBE_KINDS = ("onvif", "rtsp")  # rtsp covers rtsps
TOKEN_MAX = 64  # ONVIF's ReferenceToken


class DiscoverBody(Strict):
    timeout_s: Annotated[float, Field(ge=0.5, le=10, strict=True)] = 3.0  # seconds


class ProbeBody(Strict):
    """A source to test; `id`: the camera it is for, whose stored password a `***` takes."""

    source: Annotated[str, Field(min_length=1, max_length=2048)]
    id: Annotated[str, Field(pattern=CAMERA_ID)] | None = None


Axis = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]


class PtzBody(Strict):
    """`move` (pan, tilt, zoom from -1 to 1), `stop`, or `goto_preset` (a preset token)."""

    action: Literal["move", "stop", "goto_preset"]
    pan: Axis = 0.0
    tilt: Axis = 0.0
    zoom: Axis = 0.0
    preset: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _preset(self) -> PtzBody:
        if self.action == "goto_preset" and self.preset is None:
            raise ValueError("preset: a preset token is required")
        return self


class PresetBody(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _device(device: Device) -> dict:
    return {
        "address": device.sender,
        "xaddrs": device.xaddrs,
        "name": device.scope("name"),
        "hardware": device.scope("hardware"),
        "scopes": device.scopes,
        "source": device.source(),
    }


@routes.post("/api/cameras/discover")
@allow("admin", body=DiscoverBody)
async def discover_cameras(request: web.Request) -> web.Response:
    """Scan the network for ONVIF cameras (WS-Discovery, from media.discover_interface).

    `{"timeout_s": 0.5..10}` (3 by default) -> `{"devices": [{address, xaddrs, name,
    hardware, scopes, source}]}`, `source` the onvif:// URL to add it by (no credentials).
    A scan already running on this node is joined rather than a second one started."""
    ask = await body(request, DiscoverBody, "bad_request")
    try:
        found = await request.app[DISCOVERY].scan(ask.timeout_s)
    except OSError as e:
        log.warning("discovery scan failed", extra={"error": str(e)})
        raise JsonError(503, f"the discovery scan could not be sent: {e.strerror or e} "
                             "(media.discover_interface)", "discovery_failed") from None  # fmt: skip
    return web.json_response({"devices": [_device(d) for d in found]})


def _probe_error(e: OnvifFailure | ProbeFailure, password: str | None) -> JsonError:
    """The 502/504 for a source that gave no picture; the message is scrubbed of the
    password whatever a library put into it."""
    message = scrub_secret(redact(str(e)), password)
    if e.reason in ("credentials", "auth"):
        return JsonError(502, "the camera refused the user name or password", "auth_refused")
    if e.reason == "clock":  # refused, and its clock could not be ruled out
        return JsonError(502, f"the camera refused the user name or password, or its clock is off: {message}",
                         "auth_refused")  # fmt: skip
    if e.reason == "timeout":
        return JsonError(504, message, "no_picture")
    return JsonError(502, message, "unreachable" if e.reason == "unreachable" else "device_error")


@routes.post("/api/cameras/probe")
@allow("admin", body=ProbeBody)
async def probe_camera(request: web.Request) -> web.Response:
    """One picture (JPEG) from a source before it is saved: the cameras form's test.

    `{"source": URL, "id"?: camera}`: onvif://, rtsp:// or rtsps://, under the same rules
    as a new camera (media.api_sources, media.deny_hosts). A password written `***` is the
    stored camera `id`'s, for the same scheme, user, host and port only. 502
    `auth_refused` / `unreachable` / `device_error`, 504 `no_picture` past the deadline
    (twice media.read_timeout_s)."""
    ask = await body(request, ProbeBody, "bad_request")
    media = request.app[keys.CONFIG].media
    try:
        source = parse_source(ask.source)
    except SourceError as e:
        raise JsonError(400, f"source: {e}", "bad_request") from None
    if source.kind not in PROBE_KINDS:
        raise JsonError(400, "source: a test picture comes from onvif://, rtsp:// or rtsps:// sources",
                        "bad_request")  # fmt: skip
    stored = await camera_or_404(request, ask.id) if ask.id is not None else None
    stored_urls = [stored.source, stored.detect_source] if stored is not None else []
    url = with_stored_password("source", ask.source, stored_urls)
    source = parse_source(url)
    if url not in stored_urls:  # the camera's own URL is not new input (check_api_camera)
        await check_api_source("source", url, media)
    # A typed password is not registered for the node's log scrubbing (a wrong guess
    # such as "admin" would blank that word out of every later line): the only text of
    # this attempt that is logged or answered is the error, scrubbed here.
    probes = request.app[PROBES]
    if probes.locked():
        raise JsonError(429, f"{MAX_PROBES} camera tests are running on this node: try again in a moment", "busy")
    try:
        async with probes:
            jpeg = await probe_picture(request.app[keys.ONVIF], source, media.read_timeout_s * 2)
    except (OnvifFailure, ProbeFailure) as e:
        error = _probe_error(e, source.password)
        log.info("camera probe failed", extra={"source": redact(url), "error": error.body["message"]})
        raise error from None
    return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def _ptz_source(request: web.Request) -> tuple[Camera, Source]:
    camera = await camera_or_404(request)
    source = parse_source(camera.source)
    if source.kind != "onvif":
        raise JsonError(409, "PTZ needs an onvif:// camera", "no_ptz")
    return camera, source


def _ptz_error(e: OnvifFailure) -> JsonError:
    if e.reason == "no_ptz":
        return JsonError(409, str(e), "no_ptz")
    if e.reason == "no_preset":
        return JsonError(404, str(e), "no_preset")
    return JsonError(502, str(e), "device_error")


@routes.post("/api/cameras/{id}/ptz")
@allow(*DESK, body=PtzBody)
async def camera_ptz(request: web.Request) -> web.Response:
    """Move, stop, or go to a preset (an onvif:// camera)."""
    ask = await body(request, PtzBody, "bad_request")  # a bad body is 400 whatever the camera
    camera, source = await _ptz_source(request)
    cmd = PtzCommand(ask.action, pan=ask.pan, tilt=ask.tilt, zoom=ask.zoom, preset=ask.preset)
    try:
        await request.app[keys.ONVIF].ptz(source, cmd)
    except OnvifFailure as e:
        raise _ptz_error(e) from None
    log.info(
        "ptz",
        extra={"camera": camera.id, "action": cmd.action, "user": request["principal"].username},
    )
    return web.json_response({"ok": True, "action": cmd.action})


@routes.get("/api/cameras/{id}/ptz")
@allow(*DESK)
async def ptz_status(request: web.Request) -> web.Response:
    """Where the camera points, whether it moves, and its presets.

    -> `{"position": {pan, tilt, zoom} | null, "moving": bool | null, "presets": [{token,
    name}]}` (pan and tilt -1..1, zoom 0..1; null where the device does not tell); 409
    `no_ptz` for a camera that is not onvif:// or has no PTZ, 502 when the device fails."""
    _, source = await _ptz_source(request)
    try:
        status = await request.app[keys.ONVIF].ptz_status(source)
    except OnvifFailure as e:
        raise _ptz_error(e) from None
    position = status.position
    return web.json_response({
        "position": None if position is None else {"pan": position.pan, "tilt": position.tilt, "zoom": position.zoom},
        "moving": status.moving,
        "presets": [{"token": p.token, "name": p.name} for p in status.presets],
    })  # fmt: skip


@routes.post("/api/cameras/{id}/ptz/presets")
@allow(*DESK, body=PresetBody)
async def set_ptz_preset(request: web.Request) -> web.Response:
    """Save where the camera points now as a preset: `{"name"}` (spaces around it dropped)
    -> 201 `{token, name}`; 400 for a blank name, 409 `preset_exists` when the device
    already lists a preset of that name, in any case (two would be told apart by nobody)."""
    camera, source = await _ptz_source(request)
    name = (await body(request, PresetBody, "bad_request")).name.strip()
    if not name:
        raise JsonError(400, "name: give the preset a name", "bad_request")
    onvif = request.app[keys.ONVIF]
    try:
        listed = (await onvif.ptz_status(source)).presets
        if any(p.name.casefold() == name.casefold() for p in listed):
            raise JsonError(409, f"name: the camera has a preset named {name!r} already", "preset_exists")
        preset = await onvif.set_preset(source, name)
    except OnvifFailure as e:
        raise _ptz_error(e) from None
    log.info("ptz preset set", extra={"camera": camera.id, "preset": preset.token,
                                      "user": request["principal"].username})  # fmt: skip
    return web.json_response({"token": preset.token, "name": preset.name}, status=201)


@routes.delete("/api/cameras/{id}/ptz/presets/{token}")
@allow(*DESK)
async def remove_ptz_preset(request: web.Request) -> web.Response:
    """Remove a preset (by its token); 404 `no_preset` when the camera has no such one."""
    token = request.match_info["token"]
    if len(token) > TOKEN_MAX:
        raise JsonError(400, f"token: at most {TOKEN_MAX} characters", "bad_request")
    camera, source = await _ptz_source(request)
    try:
        await request.app[keys.ONVIF].remove_preset(source, token)
    except OnvifFailure as e:
        raise _ptz_error(e) from None
    log.info("ptz preset removed", extra={"camera": camera.id, "preset": token,
                                          "user": request["principal"].username})  # fmt: skip
    return web.json_response({"deleted": token})
