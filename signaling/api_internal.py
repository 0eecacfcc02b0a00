"""Routes the centre's nodes call on each other (signaling/node_auth): the relay of a
stream from the node that owns it (media/relay.py)."""

from __future__ import annotations

from aiohttp import web

from gridwatch.media.relay import serve
from gridwatch.signaling import keys
from gridwatch.signaling.http_errors import JsonError
from gridwatch.signaling.policy import allow

routes = web.RouteTableDef()


@routes.get("/internal/relay/{stream}")
@allow(internal=True)
async def relay(request: web.Request) -> web.StreamResponse:
    """A stream this node owns, for another node, in the relay framing (media/relay.py).

    404 for no such stream anywhere; 409 `not_owner` (with `owner`, the node that owns
    it) when another node does: the caller asks that one."""
    app = request.app
    stream_id = request.match_info["stream"]
    owner = await app[keys.RELAYS].owner(stream_id)
    me = app[keys.NODES].me.node
    if owner is None:
        raise JsonError(404, f"no stream {stream_id!r} on any node")
    if owner != me:
        raise JsonError(409, f"{stream_id!r} is owned by node {owner!r}", "not_owner", owner=owner)
    hub = app[keys.HUB]
    stream = hub.get(stream_id)
    if stream is None or not stream.pushed:
        stream = await app[keys.CAMERAS].stream(stream_id)
    if stream is None:  # deleted since
        raise JsonError(404, f"no stream {stream_id!r} on any node")
    return await serve(request, stream, app[keys.RELAYS], request["node"])
