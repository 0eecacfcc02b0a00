"""Point-to-point calls between dispatchers and officers, negotiated over /ws.

The server only signals: it rings every device of the callee, lets the first accept win,
and relays SDP and ICE between the two devices in the call, so that media flows browser
to browser. A call lives in Redis (`gw:call:{id}`, and `gw:busy:{user}` for each party),
so the two parties may be on different nodes; every transition is one Lua script, so two
devices accepting at once, or an accept racing the ring timeout, have one outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Annotated, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from gridwatch.contracts.roles import DESK
from gridwatch.signaling.access import phone_stream
from gridwatch.signaling.config import Config
from gridwatch.signaling.ice import ice_servers_for
from gridwatch.signaling.presence import Presence, busy_key
from gridwatch.signaling.sockets import Client, Sockets

log = logging.getLogger("gridwatch.calls")

ACTIVE_TTL_S = 12 * 3600  # a call nobody hangs up is forgotten after this
CALLERS = ("admin", "dispatcher", "officer")

UserName = Annotated[str, Field(min_length=1, max_length=64)]
CallId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str


class Invite(Message):
    to: UserName


class CallRef(Message):
    call: CallId


class Description(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["offer", "answer"]
    sdp: Annotated[str, Field(min_length=1, max_length=48 * 1024)]


class Sdp(CallRef):
    sdp: Description


class IceCandidate(BaseModel):
    model_config = ConfigDict(extra="ignore")  # browsers add fields as the spec grows
    candidate: Annotated[str, Field(max_length=1024)]
    sdpMid: Annotated[str, Field(max_length=64)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=64)] | None = None
    usernameFragment: Annotated[str, Field(max_length=256)] | None = None


class Ice(CallRef):
    candidate: IceCandidate | None  # None: end of candidates


class Transfer(CallRef):
    to: UserName


class PublishRequest(Message):
    to: UserName
    stop: bool = False


class PublishAnswer(Message):
    """The officer's answer to a camera request (or his own stop): to the dispatcher."""

    to: UserName
    accepted: bool
    reason: Annotated[str, Field(max_length=200)] = ""


class CallMedia(CallRef):
    """What a party sends in a call (his camera failed, he muted): told to the other."""

    audio: bool
    video: bool


MESSAGES: dict[str, type[Message]] = {
    "call.invite": Invite,
    "call.accept": CallRef,
    "call.decline": CallRef,
    "call.hangup": CallRef,
    "call.transfer": Transfer,
    "sdp": Sdp,
    "ice": Ice,
    "publish.request": PublishRequest,
    "publish.answer": PublishAnswer,
    "call.media": CallMedia,
}

_INVITE = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[7] then return 'caller_busy' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'busy' end
if ARGV[7] == '' then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[3], 'id', ARGV[1], 'caller', ARGV[3], 'caller_device', ARGV[4],
  'callee', ARGV[5], 'state', 'ringing', 'created', ARGV[6], 'transfer_of', ARGV[7],
  'transferred_by', ARGV[8])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 'ok'
"""

_ACCEPT = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'gone' end
if redis.call('HGET', KEYS[1], 'callee') ~= ARGV[1] then return 'not_callee' end
if state ~= 'ringing' then return 'answered' end
redis.call('HSET', KEYS[1], 'state', 'active', 'callee_device', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
for _, field in ipairs({'caller', 'callee'}) do
  redis.call('SET', 'gw:busy:' .. redis.call('HGET', KEYS[1], field), ARGV[4], 'EX', ARGV[3])
end
return 'ok'
"""

# Ends the call (only if in state ARGV[2], when given) and frees both parties.
_END = """
local call = redis.call('HGETALL', KEYS[1])
if #call == 0 then return nil end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'state') ~= ARGV[2] then return nil end
for _, field in ipairs({'caller', 'callee'}) do
  local key = 'gw:busy:' .. redis.call('HGET', KEYS[1], field)
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
redis.call('DEL', KEYS[1])
return call
"""


def record_stream(call_id: str, side: str) -> str:
    return f"call-{call_id[:16]}-{side}"


async def may_publish_call(redis: aioredis.Redis, username: str, stream: str) -> bool:
    """A recorded call's side is published by the party it belongs to, and nobody else."""
    owner = await redis.get(f"gw:callrec:{stream}")
    return owner is not None and owner.decode() == username


class Refused(Exception):
    """A well-formed message that may not be done; the sender gets an error event."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _key(call_id: str) -> str:
    return f"gw:call:{call_id}"


def _decode(flat: list | dict) -> dict[str, str]:
    if isinstance(flat, dict):
        return {k.decode(): v.decode() for k, v in flat.items()}
    it = iter(x.decode() for x in flat)
    return dict(zip(it, it, strict=True))


class Calls:
    def __init__(
        self, redis: aioredis.Redis, sockets: Sockets, presence: Presence, config: Config
    ):
        self.redis = redis
        self.sockets = sockets
        self.presence = presence
        self.config = config
        self.roles = {u.username: u.role for u in config.users}
        self._invite = redis.register_script(_INVITE)
        self._accept = redis.register_script(_ACCEPT)
        self._end = redis.register_script(_END)
        self._timers: set[asyncio.Task] = set()
        self.counts = {"invites": 0, "accepted": 0, "declined": 0, "busy": 0, "timeouts": 0}

    # plumbing --------------------------------------------------------------

    def _later(self, delay: float, coro_fn, *args) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            await coro_fn(*args)

        task = asyncio.create_task(run())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def close(self) -> None:
        for task in list(self._timers):
            task.cancel()
        for task in list(self._timers):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _get(self, call_id: str) -> dict[str, str]:
        call = _decode(await self.redis.hgetall(_key(call_id)))
        if not call:
            raise Refused("no_call", f"no call {call_id}")
        return call

    async def _end_call(self, call_id: str, only_if: str = "") -> dict[str, str] | None:
        ended = await self._end(keys=[_key(call_id)], args=[call_id, only_if])
        return _decode(ended) if ended else None

    @staticmethod
    def _side(call: dict[str, str], client: Client) -> str | None:
        if client.user == call["caller"] and client.device == call["caller_device"]:
            return "caller"
        if client.user == call["callee"] and (
            call["state"] == "ringing" or client.device == call.get("callee_device")
        ):
            return "callee"
        return None

    @staticmethod
    def _peer(call: dict[str, str], side: str) -> tuple[str, str | None]:
        if side == "caller":
            return call["callee"], call.get("callee_device")
        return call["caller"], call["caller_device"]

    async def _callee_devices(self, call: dict[str, str], event: dict, skip: str | None) -> None:
        for device in await self.presence.devices(call["callee"]):
            if device != skip:
                await self.sockets.to_user(call["callee"], event, device)

    async def _ended(self, call: dict[str, str]) -> None:
        for user in (call["caller"], call["callee"]):
            await self.presence.announce(user)

    # messages --------------------------------------------------------------

    async def handle(self, client: Client, message: Message) -> None:
        if client.role not in CALLERS:
            raise Refused("forbidden", f"role {client.role!r} takes no part in calls")
        handler = {
            Invite: self.invite,
            Sdp: self.relay,
            Ice: self.relay,
            CallMedia: self.relay,
            Transfer: self.transfer,
            PublishRequest: self.publish_request,
            PublishAnswer: self.publish_answer,
        }.get(type(message))
        if handler is None:
            handler = {
                "call.accept": self.accept,
                "call.decline": self.decline,
                "call.hangup": self.hangup,
            }[message.type]
        await handler(client, message)

    def _check_pair(self, caller: str, caller_role: str, callee: str) -> str:
        callee_role = self.roles.get(callee)
        if callee_role is None:
            raise Refused("unknown_user", f"no user {callee!r}")
        if callee == caller:
            raise Refused("forbidden", "a user cannot call himself")
        if not ((caller_role == "officer") ^ (callee_role == "officer")) or callee_role not in CALLERS:
            raise Refused("forbidden", f"a {caller_role} cannot call a {callee_role}")
        return callee_role

    async def _ring(
        self, caller: str, caller_device: str, callee: str, transfer_of: str = "", by: str = ""
    ) -> str | None:
        """Create the call and ring every device of the callee; the call id, or None if busy."""
        if not await self.presence.devices(callee):
            raise Refused("unavailable", f"{callee} is not online")
        call_id = uuid.uuid4().hex
        ttl = int(self.config.calls.ring_s) + 30
        outcome = await self._invite(
            keys=[busy_key(caller), busy_key(callee), _key(call_id)],
            args=[call_id, ttl, caller, caller_device, callee, time.time(), transfer_of, by],
        )
        if outcome == b"caller_busy":
            raise Refused("in_call", "you are already in a call; hang up first")
        if outcome == b"busy":
            self.counts["busy"] += 1
            return None
        self.counts["invites"] += 1
        ring = {"type": "call.ring", "call": call_id, "from": caller,
                "from_role": self.roles.get(caller), "ice_servers": ice_servers_for(self.config.webrtc, callee)}  # fmt: skip
        if by:
            ring["transferred_by"] = by
        await self._callee_devices({"callee": callee}, ring, None)
        self._later(self.config.calls.ring_s, self._timeout, call_id)
        log.info("call ringing", extra={"call": call_id, "caller": caller, "callee": callee})
        await self.presence.announce(callee)
        return call_id

    async def invite(self, client: Client, msg: Invite) -> None:
        self._check_pair(client.user, client.role, msg.to)
        call_id = await self._ring(client.user, client.device, msg.to)
        if call_id is None:
            await client.send({"type": "call.busy", "to": msg.to})
            return
        await client.send({"type": "call.ringing", "call": call_id, "to": msg.to,
                           "ice_servers": ice_servers_for(self.config.webrtc, client.user)})  # fmt: skip
        await self.presence.announce(client.user)

    async def accept(self, client: Client, msg: CallRef) -> None:
        outcome = await self._accept(
            keys=[_key(msg.call)], args=[client.user, client.device, ACTIVE_TTL_S, msg.call]
        )
        if outcome == b"answered":
            raise Refused("already_answered", "the call was answered on another device")
        if outcome != b"ok":
            raise Refused("no_call", f"no call {msg.call} ringing for you")
        call = await self._get(msg.call)
        self.counts["accepted"] += 1
        if call.get("transfer_of"):
            old = await self._end_call(call["transfer_of"])
            if old is not None:
                await self._hangup_notice(old, "transferred", new_call=msg.call)
        await self.sockets.to_user(
            call["caller"],
            {"type": "call.accept", "call": msg.call, "by": client.user, "device": client.device},
            call["caller_device"],
        )
        stop = {"type": "call.hangup", "call": msg.call, "reason": "answered_elsewhere"}
        await self._callee_devices(call, stop, client.device)
        log.info("call accepted", extra={"call": msg.call, "device": client.device})
        if self.config.calls.record:
            await self._record(msg.call, call["caller"], call["caller_device"], "caller")
            await self._record(msg.call, client.user, client.device, "callee")

    async def _record(self, call_id: str, user: str, device: str, side: str) -> None:
        """Ask a party to publish its side of the call to the server, to be recorded."""
        stream = record_stream(call_id, side)
        await self.redis.set(f"gw:callrec:{stream}", user, ex=ACTIVE_TTL_S)
        await self.sockets.to_user(user, {"type": "call.record", "call": call_id, "stream": stream},
                                   device)  # fmt: skip

    async def _hangup_notice(self, call: dict[str, str], reason: str, **extra: str) -> None:
        event = {"type": "call.hangup", "call": call["id"], "reason": reason, **extra}
        await self.sockets.to_user(call["caller"], event, call["caller_device"])
        await self.sockets.to_user(call["callee"], event, call.get("callee_device"))
        await self._ended(call)

    async def decline(self, client: Client, msg: CallRef) -> None:
        call = await self._get(msg.call)
        if client.user != call["callee"]:
            raise Refused("forbidden", "only the callee declines a call")
        ended = await self._end_call(msg.call, "ringing")
        if ended is None:
            raise Refused("no_call", f"call {msg.call} is not ringing")
        self.counts["declined"] += 1
        await self._to_caller_side(ended, {"type": "call.decline", "call": msg.call, "by": client.user})
        await self._callee_devices(
            ended, {"type": "call.hangup", "call": msg.call, "reason": "declined"}, client.device
        )
        await self._ended(ended)

    async def _to_caller_side(self, call: dict[str, str], event: dict) -> None:
        await self.sockets.to_user(call["caller"], event, call["caller_device"])
        if call.get("transferred_by"):
            await self.sockets.to_user(call["transferred_by"], event)

    async def hangup(self, client: Client, msg: CallRef) -> None:
        call = await self._get(msg.call)
        side = self._side(call, client)
        if side is None:
            raise Refused("forbidden", "you are not in this call")
        if side == "callee" and call["state"] == "ringing":
            await self.decline(client, msg)
            return
        ended = await self._end_call(msg.call)
        if ended is None:
            return
        await self._hang_up_peer(ended, side, "hangup", client.user)

    async def _hang_up_peer(self, call: dict[str, str], side: str, reason: str, by: str) -> None:
        event = {"type": "call.hangup", "call": call["id"], "by": by}
        if side == "caller" and call["state"] == "ringing":
            await self._callee_devices(call, {**event, "reason": "cancelled"}, None)
        else:
            user, device = self._peer(call, side)
            await self.sockets.to_user(user, {**event, "reason": reason}, device)
        log.info("call ended", extra={"call": call["id"], "reason": reason, "by": by})
        await self._ended(call)

    async def _timeout(self, call_id: str) -> None:
        ended = await self._end_call(call_id, "ringing")
        if ended is None:
            return
        self.counts["timeouts"] += 1
        event = {"type": "call.timeout", "call": call_id}
        await self._to_caller_side(ended, event)
        await self._callee_devices(ended, event, None)
        log.info("call not answered", extra={"call": call_id, "callee": ended["callee"]})
        await self._ended(ended)

    async def relay(self, client: Client, msg: Sdp | Ice | CallMedia) -> None:
        call = await self._get(msg.call)
        side = self._side(call, client)
        if side is None:
            raise Refused("forbidden", "you are not in this call")
        if call["state"] != "active":
            raise Refused("not_active", "SDP and ICE flow once the call is accepted")
        user, device = self._peer(call, side)
        await self.sockets.to_user(user, {**msg.model_dump(), "from": client.user}, device)

    async def transfer(self, client: Client, msg: Transfer) -> None:
        if client.role not in DESK:
            raise Refused("forbidden", "only a dispatcher hands a call over")
        call = await self._get(msg.call)
        side = self._side(call, client)
        if side is None or call["state"] != "active":
            raise Refused("forbidden", "you can hand over only a call you are in")
        if self.roles.get(msg.to) not in DESK:
            raise Refused("forbidden", f"{msg.to!r} is not a dispatcher")
        user, device = self._peer(call, side)
        new = await self._ring(user, device or "", msg.to, transfer_of=msg.call, by=client.user)
        if new is None:
            await client.send({"type": "call.busy", "to": msg.to, "call": msg.call})
            return
        notice = {"type": "call.transfer", "call": msg.call, "new_call": new, "to": msg.to}
        await self.sockets.to_user(user, notice, device)
        await client.send(notice)

    async def publish_request(self, client: Client, msg: PublishRequest) -> None:
        if client.role not in DESK:
            raise Refused("forbidden", "only a dispatcher asks for an officer's camera")
        if self.roles.get(msg.to) != "officer":
            raise Refused("forbidden", f"{msg.to!r} is not an officer")
        if not await self.presence.devices(msg.to):
            raise Refused("unavailable", f"{msg.to} is not online")
        stream = phone_stream(msg.to)
        event = {"type": "publish.request", "stream": stream, "by": client.user, "stop": msg.stop}
        await self.sockets.to_user(msg.to, event)
        await client.send({"type": "publish.requested", "to": msg.to, "stream": stream,
                           "stop": msg.stop})  # fmt: skip
        log.info("camera requested", extra={"officer": msg.to, "by": client.user, "stop": msg.stop})

    async def publish_answer(self, client: Client, msg: PublishAnswer) -> None:
        """Consent: the officer shares his camera, refuses (with a reason) or stops."""
        if client.role != "officer":
            raise Refused("forbidden", "only an officer answers for his camera")
        if self.roles.get(msg.to) not in DESK:
            raise Refused("forbidden", f"{msg.to!r} is not a dispatcher")
        event = {"type": "publish.answer", "officer": client.user, "stream": phone_stream(client.user),
                 "accepted": msg.accepted, "reason": msg.reason}  # fmt: skip
        await self.sockets.to_user(msg.to, event)
        log.info("camera request answered", extra={"officer": client.user, "to": msg.to,
                                                   "accepted": msg.accepted, "reason": msg.reason})  # fmt: skip

    # sockets coming and going ----------------------------------------------

    async def socket_closed(self, client: Client) -> None:
        """A party's device dropped: a ringing caller cancels, an active call waits for it."""
        call_id = await self.redis.get(busy_key(client.user))
        if call_id is None:
            return
        call = _decode(await self.redis.hgetall(_key(call_id.decode())))
        if not call:
            return
        side = self._side(call, client)
        if side is None or (side == "callee" and call["state"] == "ringing"):
            return
        if call["state"] == "ringing":
            ended = await self._end_call(call["id"], "ringing")
            if ended:
                await self._hang_up_peer(ended, side, "cancelled", client.user)
            return
        self._later(self.config.calls.reconnect_s, self._drop_if_gone, call["id"], client, side)

    async def _drop_if_gone(self, call_id: str, client: Client, side: str) -> None:
        if client.device in await self.presence.devices(client.user):
            return  # it came back (and restarts ICE with its peer)
        ended = await self._end_call(call_id, "active")
        if ended is not None:
            await self._hang_up_peer(ended, side, "connection_lost", client.user)

    def ringing(self) -> int:
        """Ring timeouts pending (and reconnect grace timers) on this node."""
        return len(self._timers)


def parse(kind: str, data: dict) -> Message:
    """The message as its model; ValidationError names the field that is wrong."""
    return MESSAGES[kind].model_validate(data)
