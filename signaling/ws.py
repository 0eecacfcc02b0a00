"""/ws: live events for the wall and the officers' phones, and fixes from the phones."""

from __future__ import annotations

import json
import logging

import redis.asyncio as aioredis
from aiohttp import WSMsgType, web
from pydantic import ValidationError

from dispatch.officers import Fix
from signaling import keys
from signaling.auth import Principal
from signaling.config import format_errors
from signaling.sockets import Client

log = logging.getLogger("gridwatch.ws")
routes = web.RouteTableDef()

MAX_MESSAGE = 64 * 1024


async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    await ws.close(code=code, message=reason.encode()[:120])


@routes.get("/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    principal: Principal = request["principal"]
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    app = request.app
    redis = app[keys.REDIS]
    client = Client(ws, principal, redis)
    sockets = app[keys.SOCKETS]
    sockets.add(client)
    log.info(
        "socket open", extra={"user": client.user, "role": client.role, "peer": request.remote}
    )
    try:
        await client.send({"type": "hello", "user": client.user, "role": client.role})
        await client.start()
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
            if msg.type != WSMsgType.TEXT:
                await _close(ws, 1003, "text JSON messages only")
                break
            try:
                data = json.loads(msg.data)
            except json.JSONDecodeError:
                await _close(ws, 1007, "malformed JSON")
                break
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                await _close(ws, 1008, "a message is a JSON object with a string type")
                break
            await _handle(request, client, data)
    finally:
        sockets.remove(client)
        log.info("socket closed", extra={"user": client.user, "code": ws.close_code})
    return ws


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
        latest = await request.app[keys.OFFICERS].record([fix])
        await request.app[keys.DISPATCH].on_fixes(latest)
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
