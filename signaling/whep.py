"""WHEP (IETF WebRTC-HTTP Egress Protocol): POST an offer, get an answer and a resource."""

from __future__ import annotations

import logging

from aiohttp import web

from media.webrtc import OfferError
from signaling import keys
from signaling.api import WATCH_ROLES
from signaling.auth import require
from signaling.http_errors import JsonError

log = logging.getLogger("gridwatch.whep")
routes = web.RouteTableDef()


def _ice_links(request: web.Request) -> list[str]:
    links = []
    for server in request.app[keys.CONFIG].webrtc.ice_servers:
        for url in [server.urls] if isinstance(server.urls, str) else server.urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username:
                link += f'; username="{server.username}"; credential="{server.credential or ""}"'
            links.append(link)
    return links


@routes.post("/whep/{stream}")
async def whep_offer(request: web.Request) -> web.Response:
    principal = require(request, *WATCH_ROLES)
    if request.content_type != "application/sdp":
        raise JsonError(415, "the offer must be sent as application/sdp")
    try:
        offer = await request.text()
    except UnicodeDecodeError:
        raise JsonError(400, "the offer is not UTF-8 text") from None
    if not offer.startswith("v=0"):
        raise JsonError(400, "malformed SDP offer: it must start with v=0", "bad_sdp")
    stream_id = request.match_info["stream"]
    stream = await request.app[keys.CAMERAS].stream(stream_id)
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
    headers = {"Location": f"/whep/{stream_id}/{session.id}"}
    response = web.Response(
        status=201,
        text=session.pc.localDescription.sdp,
        content_type="application/sdp",
        headers=headers,
    )
    for link in _ice_links(request):
        response.headers.add("Link", link)
    return response


@routes.delete("/whep/{stream}/{session}")
async def whep_delete(request: web.Request) -> web.Response:
    require(request, *WATCH_ROLES)
    if not await request.app[keys.VIEWERS].close(request.match_info["session"]):
        raise JsonError(404, "no such WHEP session")
    return web.json_response({"ok": True})


@routes.patch("/whep/{stream}/{session}")
async def whep_patch(request: web.Request) -> web.Response:
    # The answer carries every candidate; trickle and ICE restarts are not offered.
    raise JsonError(405, "trickle ICE is not supported; send the offer with all candidates")
