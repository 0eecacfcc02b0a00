"""WHEP (IETF WebRTC-HTTP Egress Protocol): POST an offer, get an answer and a resource."""

from __future__ import annotations

import logging

from aiohttp import web

from gridwatch.contracts.roles import DESK, WALL
from gridwatch.media.relay import relay_source
from gridwatch.media.stream import Stream
from gridwatch.media.webrtc import OfferError, TooManySessions
from gridwatch.signaling import keys
from gridwatch.signaling.access import may_watch
from gridwatch.signaling.auth import Principal
from gridwatch.signaling.http_errors import JsonError
from gridwatch.signaling.policy import allow
from gridwatch.signaling.sdp_http import answer_response, read_offer

log = logging.getLogger("gridwatch.whep")
routes = web.RouteTableDef()


@routes.post("/whep/{stream}")
@allow(*WALL, "officer", body_types=("application/sdp",), owner="An officer watches his own phone and his watch patterns.")
async def whep_offer(request: web.Request) -> web.Response:
    """WHEP: an SDP offer in, 201 with the answer and the session's Location."""
    principal: Principal = request["principal"]
    stream_id = request.match_info["stream"]
    if not may_watch(request.app[keys.CONFIG], principal, stream_id):
        raise JsonError(403, f"{principal.role} {principal.username!r} may not watch {stream_id!r}")
    if request.app[keys.CONFIG].cluster.viewers == "redirect":
        await redirect_to_owner(request, stream_id)
    offer = await read_offer(request)
    stream = await find_stream(request.app, stream_id)
    if stream is None:
        raise JsonError(404, f"no stream {stream_id!r}")
    viewers = request.app[keys.VIEWERS]
    limit = request.app[keys.CONFIG].media.max_egress_mbps
    # A node always serves its first viewer, however heavy the stream.
    busy = viewers.egress_bps()
    if limit is not None and busy and busy + stream.state.bitrate > limit * 1e6:
        log.warning("viewer refused: node at its egress limit",
                    extra={"stream": stream_id, "egress_mbps": round(busy / 1e6, 1)})  # fmt: skip
        raise JsonError(
            503, f"this node is at its limit of {limit:g} Mbit/s to viewers; try another node or later",
            "overloaded", retry_after_s=5,
        )  # fmt: skip
    try:
        session = await request.app[keys.VIEWERS].answer(stream, offer, principal.username)
    except OfferError as e:
        raise JsonError(400, str(e), "bad_sdp") from None
    except TooManySessions as e:
        raise JsonError(429, str(e), "too_many_sessions", retry_after_s=5) from None
    return answer_response(
        request, session.pc.localDescription.sdp, f"/whep/{stream_id}/{session.id}"
    )


async def find_stream(app: web.Application, stream_id: str) -> Stream | None:
    """The stream a viewer asks for, on this node: one a phone, drone or encoder publishes
    here; a camera (pulled here by its owner, relayed from the owner elsewhere); one
    published to another node, relayed from there; else one whose publisher left this
    node (its viewers wait for him). None: no such stream anywhere."""
    hub = app[keys.HUB]
    local = hub.get(stream_id)
    if local is not None and local.pushed and local.producer is not None:
        return local
    stream = await app[keys.CAMERAS].stream(stream_id)
    if stream is None:
        owner = await app[keys.PUBLISHED].node_of(stream_id)
        if owner is not None and owner != app[keys.NODES].me.node:
            stream = hub.upsert(stream_id, relay_source(stream_id))
    if stream is None and local is not None and local.pushed:
        stream = local
    return stream


async def redirect_to_owner(request: web.Request, stream_id: str) -> None:
    """cluster.viewers: redirect. A stream another live node owns: 307 Temporary Redirect to
    the same path on that node's public URL, where the client sends its offer again (as
    WHIP, RFC 9725, and WHEP, draft-ietf-wish-whep, allow). Nothing for this node's own
    streams, nor for one that has no owner (the request goes on, to its 404)."""
    app = request.app
    owner = await app[keys.RELAYS].owner(stream_id)
    node = app[keys.NODES].live.get(owner) if owner is not None else None
    if node is None or node.node == app[keys.NODES].me.node:
        return
    app[keys.METRICS].whep_redirects.inc()
    log.info("viewer redirected to the owner node", extra={"stream": stream_id, "owner": owner})
    raise web.HTTPTemporaryRedirect(node.public_url + request.path_qs)


@routes.delete("/whep/{stream}/{session}")
@allow(*WALL, "officer", owner="Only the viewer himself or a dispatcher ends a session.")
async def whep_delete(request: web.Request) -> web.Response:
    """End a WHEP session."""
    principal: Principal = request["principal"]
    viewers = request.app[keys.VIEWERS]
    session = viewers.sessions.get(request.match_info["session"])
    if session is None or session.stream.id != request.match_info["stream"]:
        raise JsonError(404, "no such WHEP session")
    if session.who != principal.username and principal.role not in DESK:
        raise JsonError(403, "only the viewer or a dispatcher ends a WHEP session")
    await viewers.close(session.id)
    return web.json_response({"ok": True})


@routes.patch("/whep/{stream}/{session}")
@allow(*WALL, "officer")
async def whep_patch(request: web.Request) -> web.Response:
    # The answer carries every candidate; trickle and ICE restarts are not offered.
    raise JsonError(405, "trickle ICE is not supported; send the offer with all candidates")
