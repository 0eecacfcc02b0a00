"""WHIP (IETF WebRTC-HTTP Ingestion Protocol): phones, drones and encoders publish a stream.

The stream is then an ordinary one: WHEP viewers, the detectors' sampler and the
recorder take it like a camera's.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from gridwatch.contracts.config import CAMERA_ID
from gridwatch.contracts.roles import DESK
from gridwatch.media.publish import push_source
from gridwatch.media.webrtc import OfferError
from gridwatch.signaling import keys
from gridwatch.signaling.access import may_publish
from gridwatch.signaling.auth import Principal
from gridwatch.signaling.calls import may_publish_call
from gridwatch.signaling.http_errors import JsonError
from gridwatch.signaling.policy import allow
from gridwatch.signaling.sdp_http import answer_response, read_offer

log = logging.getLogger("gridwatch.whip")
routes = web.RouteTableDef()


async def check_publish(app: web.Application, principal: Principal, stream_id: str) -> None:
    """The rules for any publisher (WHIP or RTMP), as JsonErrors."""
    if not re.fullmatch(CAMERA_ID, stream_id):
        raise JsonError(400, f"stream id {stream_id[:80]!r} must match {CAMERA_ID}", "bad_stream")
    if stream_id.startswith("call-"):
        if not await may_publish_call(app[keys.REDIS], principal.username, stream_id):
            raise JsonError(403, f"{stream_id!r} is not a side of a call of yours")
    elif not may_publish(app[keys.CONFIG], principal, stream_id):
        raise JsonError(
            403, f"{principal.role} {principal.username!r} may not publish to {stream_id!r}"
        )
    if await app[keys.CAMERAS].get(stream_id) is not None:
        raise JsonError(409, f"{stream_id!r} is a camera; it cannot be published to", "exists")


@routes.post("/whip/{stream}")
@allow(*DESK, "officer", "device", body_types=("application/sdp",),
       owner="An officer publishes his own phone stream, a device its publish patterns.")
async def whip_offer(request: web.Request) -> web.Response:
    principal: Principal = request["principal"]
    stream_id = request.match_info["stream"]
    await check_publish(request.app, principal, stream_id)
    offer = await read_offer(request)
    stream = request.app[keys.HUB].upsert(stream_id, push_source(stream_id, "whip"))
    try:
        session = await request.app[keys.PUBLISHERS].answer(stream, offer, principal.username)
    except OfferError as e:
        raise JsonError(400, str(e), "bad_sdp") from None
    return answer_response(
        request, session.pc.localDescription.sdp, f"/whip/{stream_id}/{session.id}"
    )


@routes.delete("/whip/{stream}/{session}")
@allow(*DESK, "officer", "device", owner="Only the publisher himself or a dispatcher ends a session.")
async def whip_delete(request: web.Request) -> web.Response:
    principal: Principal = request["principal"]
    publishers = request.app[keys.PUBLISHERS]
    session = publishers.sessions.get(request.match_info["session"])
    if session is None or session.stream.id != request.match_info["stream"]:
        raise JsonError(404, "no such WHIP session")
    if session.who != principal.username and principal.role not in DESK:
        raise JsonError(403, "only the publisher or a dispatcher ends a WHIP session")
    await publishers.close(session.id)
    return web.json_response({"ok": True})


@routes.patch("/whip/{stream}/{session}")
@allow(*DESK, "officer", "device")
async def whip_patch(request: web.Request) -> web.Response:
    raise JsonError(405, "trickle ICE is not supported; send the offer with all candidates")


def rtmp_authorizer(app: web.Application):
    """RTMP has no HTTP headers: the token rides in the stream URL's query."""

    async def authorize(stream_id: str, token: str | None) -> str | None:
        principal = await app[keys.TOKENS].verify(token) if token else None
        if principal is None:
            return "a valid token is required: rtmp://HOST/live/STREAM?token=TOKEN"
        try:
            await check_publish(app, principal, stream_id)
        except JsonError as e:
            return str(e)
        return None

    return authorize
