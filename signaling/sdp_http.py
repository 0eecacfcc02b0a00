"""What WHEP and WHIP share: reading an SDP offer, and the 201 answer with its ICE servers."""

from __future__ import annotations

from aiohttp import web

from gridwatch.signaling import keys
from gridwatch.signaling.http_errors import JsonError, read_body
from gridwatch.signaling.ice import ice_servers_for

MAX_SDP = 64 * 1024


def ice_links(request: web.Request) -> list[str]:
    links = []
    for server in ice_servers_for(request.app[keys.CONFIG].webrtc, request["principal"].username):
        for url in [server["urls"]] if isinstance(server["urls"], str) else server["urls"]:
            link = f'<{url}>; rel="ice-server"'
            if server.get("username"):
                link += f'; username="{server["username"]}"; credential="{server.get("credential", "")}"'
            links.append(link)
    return links


async def read_offer(request: web.Request) -> str:
    if request.content_type != "application/sdp":
        raise JsonError(415, "the offer must be sent as application/sdp")
    raw = await read_body(request, MAX_SDP)  # read as it streams: chunked bodies count too
    try:
        offer = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonError(400, "the offer is not UTF-8 text") from None
    if "\x00" in offer:
        raise JsonError(400, "malformed SDP offer: NUL in it", "bad_sdp")
    if not offer.startswith("v=0"):
        raise JsonError(400, "malformed SDP offer: it must start with v=0", "bad_sdp")
    return offer


def answer_response(request: web.Request, sdp: str, location: str) -> web.Response:
    response = web.Response(
        status=201, text=sdp, content_type="application/sdp", headers={"Location": location}
    )
    for link in ice_links(request):
        response.headers.add("Link", link)
    return response
