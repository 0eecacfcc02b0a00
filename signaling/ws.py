"""/ws: live events for the wall and the officers' phones, and fixes from the phones."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from typing import Annotated

import redis.asyncio as aioredis
from aiohttp import WSMsgType, web
from pydantic import BaseModel, Field, ValidationError

from gridwatch.contracts.config import format_errors
from gridwatch.contracts.roles import ROLES, WALL
from gridwatch.dispatch.officers import Fix
from gridwatch.signaling import keys
from gridwatch.signaling.auth import Principal
from gridwatch.signaling.calls import MESSAGES, Refused, parse
from gridwatch.signaling.config import CallsConfig
from gridwatch.signaling.http_errors import JsonError, parse_json
from gridwatch.signaling.ice import ice_servers_for
from gridwatch.signaling.policy import allow, query
from gridwatch.signaling.sockets import Client

log = logging.getLogger("gridwatch.ws")
routes = web.RouteTableDef()

MAX_MESSAGE = 64 * 1024
KERNEL_SEND_BUFFER = 256 * 1024
WINDOW_S = 10.0
CLOSE_FACTOR = 3  # past this many times its limit in one window, a socket is closed


class TooFast(Exception):
    pass


class RateLimit:
    """Per socket, per 10 s window: over the limit a message is refused; far over, the
    socket is closed (a flood must not cost the server more than reading it)."""

    def __init__(self, calls: CallsConfig):
        self.limits = {"invite": calls.invites_per_10s, "any": calls.messages_per_10s}
        self.counts = dict.fromkeys(self.limits, 0)
        self.window = time.monotonic()

    def allow(self, kind: str) -> bool:
        now = time.monotonic()
        if now - self.window >= WINDOW_S:
            self.window, self.counts = now, dict.fromkeys(self.limits, 0)
        buckets = ["any"] + (["invite"] if kind in ("call.invite", "call.transfer") else [])
        allowed = True
        for b in buckets:
            self.counts[b] += 1
            if self.counts[b] > CLOSE_FACTOR * self.limits[b]:
                raise TooFast(f"rate limit: over {CLOSE_FACTOR}x {self.limits[b]} {b} per 10 s")
            allowed = allowed and self.counts[b] <= self.limits[b]
        return allowed


async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    await ws.close(code=code, message=reason.encode()[:120])


class WsQuery(BaseModel):
    device: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None


@routes.get("/ws")
@allow(*ROLES, query=WsQuery)
async def websocket(request: web.Request) -> web.WebSocketResponse:
    principal: Principal = request["principal"]
    device = query(request, WsQuery).device or uuid.uuid4().hex[:16]
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    if (
        sock := request.transport.get_extra_info("socket") if request.transport else None
    ) is not None:
        # The kernel would buffer megabytes for a client that stopped reading (per socket,
        # thousands of sockets); a bounded buffer makes a slow client show at once.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)
    app = request.app
    redis = app[keys.REDIS]
    client = Client(
        ws, principal, redis, device, request.transport, app[keys.CONFIG].server.ws_send_queue
    )
    sockets, presence = app[keys.SOCKETS], app[keys.PRESENCE]
    sockets.add(client)
    limit = RateLimit(app[keys.CONFIG].calls)
    log.info("socket open", extra={"user": client.user, "role": client.role,
                                   "device": device, "peer": request.remote})  # fmt: skip
    try:
        ice = ice_servers_for(app[keys.CONFIG].webrtc, client.user)
        await client.send({"type": "hello", "user": client.user, "role": client.role, "device": device,
                           "ice_servers": ice, "heartbeat_s": app[keys.CONFIG].tracks.heartbeat_s})  # fmt: skip
        await presence.online(client)
        await client.send({"type": "presence.list", "users": await presence.everyone()})
        await client.start()
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
            if msg.type != WSMsgType.TEXT:
                await _close(ws, 1003, "text JSON messages only")
                break
            try:
                data = parse_json(msg.data.encode("utf-8", "surrogatepass"))
            except JsonError as e:
                await _close(ws, 1007, str(e))
                break
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                await _close(ws, 1008, "a message is a JSON object with a string type")
                break
            try:
                if not limit.allow(data["type"]):
                    await client.send({"type": "error", "error": "rate_limited",
                                       "message": f"too many messages; {data['type']} dropped"})  # fmt: skip
                    continue
                await _handle(request, client, data)
            except TooFast as e:
                log.warning("socket flooding, closed", extra={"user": client.user, "error": str(e)})
                await _close(ws, 1008, str(e))
                break
            except ValidationError as e:
                reason = f"malformed {data['type'][:24]}: {'; '.join(format_errors(e))}"
                log.warning("malformed message, socket closed",
                            extra={"user": client.user, "error": reason})  # fmt: skip
                await _close(ws, 1008, reason)
                break
    finally:
        client.stop()
        sockets.remove(client)
        # The code we closed with (1001 at shutdown, 1013 slow), else the client's.
        code = client.closed_with or ws.close_code
        log.info("socket closed", extra={"user": client.user, "device": device,
                                         "code": code})  # fmt: skip
        await presence.offline(client)
        await app[keys.CALLS].socket_closed(client)
    return ws


@routes.get("/api/presence")
@allow(*WALL, "officer")
async def presence_list(request: web.Request) -> web.Response:
    """Who is online, on which devices, available or in a call (every node's users)."""
    return web.json_response({"users": await request.app[keys.PRESENCE].everyone()})


async def _handle(request: web.Request, client: Client, data: dict) -> None:
    kind = data["type"]
    if kind == "ping":
        await client.send({"type": "pong"})
    elif kind == "ack":
        entry = data.get("id")
        if isinstance(entry, str) and len(entry) < 64:
            # Only ever forward: an old ack from a second device must not replay the inbox.
            await _ack(client.redis, client.user, entry)
    elif kind == "track.fix":
        if client.role != "officer":
            await client.send(
                {"type": "error", "error": "forbidden", "message": "only officers send fixes"}
            )
            return
        try:
            fix = Fix.model_validate(
                {k: v for k, v in data.items() if k != "type"} | {"officer": client.user}
            )
        except ValidationError as e:
            await client.send(
                {"type": "error", "error": "invalid_fix", "message": "; ".join(format_errors(e))}
            )
            return
        latest = await request.app[keys.OFFICERS].record([fix], {client.user})
        await request.app[keys.DISPATCH].on_fixes(latest)
    elif kind in MESSAGES:
        message = parse(kind, data)  # ValidationError: the caller closes the socket
        try:
            await request.app[keys.CALLS].handle(client, message)
        except Refused as e:
            await client.send({"type": "error", "error": e.code, "message": str(e),
                               "request": kind, "call": data.get("call")})  # fmt: skip
    else:
        await client.send(
            {"type": "error", "error": "unknown_type", "message": f"unknown message type {kind!r}"}
        )


_ACK = """
local cur = redis.call('GET', KEYS[1])
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local nms, nseq = parse(ARGV[1])
if not nms then return 0 end
if cur then
  local cms, cseq = parse(cur)
  if cms and (cms > nms or (cms == nms and cseq >= nseq)) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


async def _ack(redis: aioredis.Redis, user: str, entry: str) -> None:
    await redis.eval(_ACK, 1, f"gw:inbox-ack:{user}", entry)
