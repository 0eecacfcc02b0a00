"""This node's /ws connections, and the one Redis subscriber that feeds them.

`gw:events` (every ticket change, officers' positions) goes to those who watch the
wall, `gw:alerts` to those who answer alerts, `gw:user:{name}`
wake-ups to that user's sockets. What is addressed to a user lives in his inbox
stream until he acknowledges it, so a phone that was offline gets everything when it
reconnects. What only matters now (a call ringing, an SDP answer, presence) is not
kept: `gw:to:{name}` carries it to the user's sockets, or to one of his devices, on
whichever node they are, and `gw:presence` to everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict

import redis.asyncio as aioredis
from aiohttp import web

from gridwatch.contracts.channels import WALL
from gridwatch.contracts.roles import WALL as WALL_ROLES
from gridwatch.dispatch.alerts import ALERT_ROLES
from gridwatch.dispatch.alerts import CHANNEL as ALERTS
from gridwatch.signaling.auth import Principal

log = logging.getLogger("gridwatch.ws")

REPLAY_MAX = 500
SEND_TIMEOUT_S = 10.0  # one event not taken by the client in this long: dropped too
SLOW = 1013  # "try again later": the client reconnects and its inbox replays what it missed
GOING_AWAY = 1001  # the node shuts down: the client reconnects (to another node, or this one)
CLOSE_WAIT_S = 1.0  # for the client's answer to our close frame, before the connection is cut


class Client:
    """One /ws connection. Everything sent to it goes through its own bounded queue and
    writer task, so a client that stops reading is dropped (close code 1013) and never
    holds up the events of anyone else; what it missed of its inbox comes again on its
    next connection, and a wall reloads its snapshot then."""

    def __init__(
        self, ws: web.WebSocketResponse, principal: Principal, redis: aioredis.Redis, device: str,
        transport: asyncio.BaseTransport | None = None, queue: int = 2000,
    ):  # fmt: skip
        self.ws = ws
        self.user = principal.username
        self.role = principal.role
        self.device = device  # the phone or browser; stable across its reconnects
        self.since = 0.0  # when presence saw it come online
        self.redis = redis
        self.sent = b"0-0"  # last inbox entry sent on this socket
        self._lock = asyncio.Lock()
        self.transport = transport
        self.out: asyncio.Queue[dict] = asyncio.Queue(queue)
        self.dropped: str | None = None
        self.closed_with: int | None = None  # the code this side closed with, if it did
        self.writer = asyncio.create_task(self._write())

    async def start(self) -> None:
        """Begin after the last entry the user acknowledged (on any device, any node)."""
        acked = await self.redis.get(f"gw:inbox-ack:{self.user}")
        self.sent = acked or b"0-0"
        await self.drain_inbox()

    async def drain_inbox(self) -> None:
        async with self._lock:  # a wake-up during a replay must not send entries twice
            entries = await self.redis.xrange(
                f"gw:inbox:{self.user}", min=b"(" + self.sent, count=REPLAY_MAX
            )
            for entry_id, fields in entries:
                event = json.loads(fields[b"event"])
                event["id"] = entry_id.decode()
                await self.send(event)
                self.sent = entry_id

    async def send(self, event: dict) -> None:
        """Queue an event for this socket; never waits for the client."""
        if self.ws.closed or self.dropped:
            return
        try:
            self.out.put_nowait(event)
        except asyncio.QueueFull:
            self.drop(f"fell {self.out.maxsize} events behind")

    async def _write(self) -> None:
        while True:
            event = await self.out.get()
            try:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await self.ws.send_json(event)
            except TimeoutError:
                self.drop(f"took no event for {SEND_TIMEOUT_S:.0f} s")
                return
            except (ConnectionResetError, RuntimeError):
                return  # closing under us: the reader notices

    def drop(self, why: str) -> None:
        """Close a client that does not keep up, without waiting on it."""
        if self.dropped:
            return
        self.dropped = why
        log.warning(
            "slow socket dropped", extra={"user": self.user, "device": self.device, "why": why}
        )
        asyncio.get_running_loop().create_task(self._close(why))

    async def _close(self, why: str) -> None:
        await self.close(SLOW, f"too slow: {why}")

    async def close(self, code: int, reason: str) -> None:
        """Close with `code`, waiting at most CLOSE_WAIT_S for the client's answer; the
        handler's `async for` then ends. Events still queued are not sent: what was
        addressed to the user stays in his inbox for his next connection."""
        self.closed_with = code
        self.writer.cancel()
        try:  # the close code, if it can still get through ...
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self.ws.close(code=code, message=reason.encode()[:120])
        except (TimeoutError, ConnectionResetError, RuntimeError):
            pass
        finally:  # ... but a client that does not read is not waited for: its reply never comes
            if self.transport is not None:
                self.transport.abort()

    def stop(self) -> None:
        self.writer.cancel()


class Sockets:
    """This node's sockets, and the one Redis subscriber that feeds them."""

    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self.by_user: dict[str, set[Client]] = defaultdict(set)
        self.dropped = 0  # sockets dropped for not reading

    def add(self, client: Client) -> None:
        self.by_user[client.user].add(client)

    def remove(self, client: Client) -> None:
        self.dropped += client.dropped is not None
        self.by_user[client.user].discard(client)
        if not self.by_user[client.user]:
            del self.by_user[client.user]

    def count(self) -> int:
        return sum(len(c) for c in self.by_user.values())

    def clients(self) -> list[Client]:
        return [c for clients in self.by_user.values() for c in clients]

    async def close_all(self, code: int = GOING_AWAY, reason: str = "server shutting down") -> None:
        """Close every socket of this node at once (the node shuts down): each client sees
        `code` within CLOSE_WAIT_S, not an abnormal closure, and reconnects."""
        await asyncio.gather(*(c.close(code, reason) for c in self.clients()))

    async def to_user(self, user: str, event: dict, device: str | None = None) -> None:
        """Send now, to every socket of `user` (or only those of `device`), on any node."""
        await self.redis.publish(f"gw:to:{user}", json.dumps({"device": device, "event": event}))

    async def _direct(self, user: str, message: dict) -> None:
        device = message.get("device")
        for c in list(self.by_user.get(user, ())):
            if device is None or c.device == device:
                await c.send(message["event"])

    async def _everyone(self, event: dict) -> None:
        for c in self.clients():
            await c.send(event)

    async def run(self) -> None:
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(WALL, ALERTS, "gw:presence")
                await pubsub.psubscribe("gw:user:*", "gw:to:*")
                # Anything sent while we were not subscribed is in the inboxes.
                await self._wake(list(self.by_user))
                async for message in pubsub.listen():
                    channel = message["channel"].decode() if message.get("channel") else ""
                    if message["type"] == "message" and channel == "gw:presence":
                        await self._everyone(json.loads(message["data"]))
                    elif message["type"] == "message" and channel == ALERTS:
                        await self._roles(json.loads(message["data"]), ALERT_ROLES)
                    elif message["type"] == "message":
                        await self._roles(json.loads(message["data"]), WALL_ROLES)
                    elif message["type"] == "pmessage" and channel.startswith("gw:to:"):
                        await self._direct(channel[6:], json.loads(message["data"]))
                    elif message["type"] == "pmessage":
                        await self._wake([channel.removeprefix("gw:user:")])
            except (ConnectionError, OSError, aioredis.ConnectionError) as e:
                log.warning("event subscriber lost redis; retrying", extra={"error": str(e)})
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _roles(self, event: dict, roles: tuple[str, ...]) -> None:
        for clients in list(self.by_user.values()):
            for c in list(clients):
                if c.role in roles:
                    await c.send(event)

    async def _wake(self, users: list[str]) -> None:
        for user in users:
            for c in list(self.by_user.get(user, ())):
                await c.drain_inbox()
