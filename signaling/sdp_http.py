"""What WHEP and WHIP share: reading an SDP offer, and the 201 answer with its ICE servers."""

from __future__ import annotations

from aiohttp import web

from signaling import keys
from signaling.http_errors import JsonError

MAX_SDP = 64 * 1024


def ice_links(request: web.Request) -> list[str]:
    links = []
    for server in request.app[keys.CONFIG].webrtc.ice_servers:
        for url in [server.urls] if isinstance(server.urls, str) else server.urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username:
                link += f'; username="{server.username}"; credential="{server.credential or ""}"'
            links.append(link)
    return links


async def read_offer(request: web.Request) -> str:
    if request.content_type != "application/sdp":
        raise JsonError(415, "the offer must be sent as application/sdp")
    if (request.content_length or 0) > MAX_SDP:
        raise JsonError(413, f"an SDP offer is at most {MAX_SDP} bytes", "too_large")
    try:
        offer = await request.text()
    except UnicodeDecodeError:
        raise JsonError(400, "the offer is not UTF-8 text") from None
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
