"""Tickets: the case lifecycle, kept in Redis with every transition in an audit log.

A transition is computed here and applied by one Lua script that checks the ticket's
version, so that two nodes (or a dispatcher and a timer) never both move one ticket;
the loser retries against the new state. Creation is idempotent by a client key.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from gridwatch.contracts.detections import Sighting
from gridwatch.contracts.geo import Position
from gridwatch.contracts.plates import PlateSeen, plate_key
from gridwatch.contracts.records import load, load_all
from gridwatch.contracts.roles import DESK, SYSTEM
from gridwatch.contracts.states import ACTIVE, STATES, TERMINAL, State
from gridwatch.dispatch.deadlines import KEY as DEADLINES

SUPERVISORS = frozenset(DESK)
MAX_EVIDENCE = 32  # files a ticket lists
TICKET_ID = re.compile(r"T-\d{6,12}")
CREATED = "gw:tickets:created"  # sorted set: every ticket by creation time


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    target: str
    roles: frozenset[str]
    assignee_only: bool = False  # an officer may act only on his own ticket


_OPEN = frozenset(STATES) - TERMINAL
TRANSITIONS: dict[str, Transition] = {
    "dispatch": Transition(frozenset({"new", "reassigned"}), "dispatched", SUPERVISORS | {SYSTEM}),
    "accept": Transition(frozenset({"dispatched"}), "accepted", frozenset({"officer"}), True),
    "decline": Transition(
        frozenset({"dispatched"}), "reassigned", frozenset({"officer", SYSTEM}), True
    ),
    "arrive": Transition(frozenset({"accepted"}), "on_scene", frozenset({"officer", SYSTEM}), True),
    "resolve": Transition(frozenset({"on_scene"}), "resolved", frozenset({"officer"}), True),
    "verify": Transition(frozenset({"resolved"}), "verified", SUPERVISORS | {SYSTEM}),
    "reopen": Transition(frozenset({"resolved"}), "on_scene", SUPERVISORS | {SYSTEM}),
    "close": Transition(frozenset({"verified"}), "closed", SUPERVISORS),
    "reject": Transition(frozenset({"new"}), "rejected", SUPERVISORS),
    "reassign": Transition(
        frozenset({"dispatched", "accepted", "on_scene"}), "reassigned", SUPERVISORS | {SYSTEM}
    ),
    "suspend": Transition(frozenset({"accepted", "on_scene"}), "suspended", SUPERVISORS),
    "resume": Transition(frozenset({"suspended"}), "accepted", SUPERVISORS),
    "cancel": Transition(_OPEN, "cancelled", SUPERVISORS),
}


def allowed_actions(state: str) -> list[str]:
    return sorted(a for a, t in TRANSITIONS.items() if state in t.sources)


class NewTicket(BaseModel):
    """What a client sends to open a ticket."""

    model_config = ConfigDict(extra="forbid")
    key: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    source: Literal["camera", "officer", "dispatcher", "api"] = "api"
    category: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")] = "other"
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    location: Position
    description: Annotated[str, Field(max_length=2000)] = ""
    camera: str | None = None
    detection: Sighting | None = None  # camera tickets: the zone and box the detector saw
    plate: PlateSeen | None = None  # the vehicle's plate as read (camera tickets; indexed)
    evidence: Annotated[list[Annotated[str, Field(max_length=512)]], Field(max_length=MAX_EVIDENCE)] = []


class TicketFilter(BaseModel):
    """A ticket listing's query: states, category, grid, assignee, reported between `from`
    and `to` (Unix s), at most `limit`, after `cursor` (from the previous page)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    state: list[State] = []
    category: Annotated[str, Field(max_length=64)] | None = None
    grid: Annotated[str, Field(max_length=128)] | None = None
    assignee: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")] | None = None
    since: Annotated[float, Field(ge=0, le=1e10, allow_inf_nan=False)] | None = Field(None, alias="from")
    until: Annotated[float, Field(ge=0, le=1e10, allow_inf_nan=False)] | None = Field(None, alias="to")
    cursor: Annotated[str, Field(pattern=r"^[0-9.e+-]{1,32}/T-\d{6,12}$")] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100

    def matches(self, t: Ticket) -> bool:
        return ((not self.state or t.state in self.state) and self.category in (None, t.category)
                and self.grid in (None, t.grid) and self.assignee in (None, t.assignee))  # fmt: skip


def _seq(ticket_id: str) -> int:
    return int(ticket_id[2:])


def _parse_cursor(cursor: str | None) -> tuple[float, int] | None:
    if cursor is None:
        return None
    at, ticket_id = cursor.split("/")
    return float(at), _seq(ticket_id)


class Ticket(NewTicket):
    id: str
    state: State = "new"
    grid: str | None = None
    assignee: str | None = None
    created_at: float
    updated_at: float
    times: dict[str, float] = {}  # state -> when the ticket last entered it (the log has all)
    first: dict[str, float] = {}  # state -> when the ticket first entered it (the report's clock)
    barred: dict[str, float] = {}  # officer -> until when he is not offered it again (he declined)
    overdue: bool = False
    note: str | None = None  # why nobody could be dispatched, and the like


PENDING = "gw:pending"  # sorted set: tickets waiting for an officer, by priority then age
PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


def pending_score(ticket: Ticket) -> float:
    """Urgent before high before normal before low, then the oldest first."""
    return PRIORITY_RANK[ticket.priority] * 1e10 + ticket.created_at


@dataclass
class Effects:
    """What a transition changes besides the ticket, in the same atomic step: deadlines
    (step -> due time, steps to clear), whether it waits in the pending queue, and, for a
    dispatch, the officer claimed (refused if he holds a ticket already)."""

    set: dict[str, float] = field(default_factory=dict)
    clear: list[str] = field(default_factory=list)
    pending: bool | None = None  # True: queue it, False: take it out, None: leave as is
    claim: str | None = None


Planner = Callable[["Ticket", "Ticket", str], Effects]


def busy_sets(before: Ticket | None, after: Ticket) -> tuple[str, str]:
    """(officer whose active set loses the ticket, officer whose set gains it) or ''."""
    held = before is not None and before.state in ACTIVE and before.assignee
    holds = after.state in ACTIVE and after.assignee
    drop = before.assignee if held and (not holds or before.assignee != after.assignee) else ""
    add = after.assignee if holds and (not held or before.assignee != after.assignee) else ""
    return drop or "", add or ""


class Busy(Exception):
    """The officer chosen took another ticket meanwhile."""


class _Unchanged(Exception):
    def __init__(self, ticket: Ticket):
        self.ticket = ticket


class TransitionError(Exception):
    """An action that the ticket's state or the actor's role does not allow."""

    def __init__(self, status: int, message: str, allowed: list[str]):
        super().__init__(message)
        self.status = status
        self.allowed = allowed


# The effects of a transition, applied with it (ARGV[1] the ticket id; plan JSON:
# {set: [[step, due]], clear: [steps], pending: score|false|null, drop: officer, add: officer}).
_EFFECTS = """
local function effects(id, plan)
  for _, step in ipairs(plan.clear) do redis.call('ZREM', KEYS[5], id .. ':' .. step) end
  for _, due in ipairs(plan.set) do redis.call('ZADD', KEYS[5], due[2], id .. ':' .. due[1]) end
  if plan.pending == false then redis.call('ZREM', KEYS[6], id)
  elseif type(plan.pending) == 'number' then redis.call('ZADD', KEYS[6], plan.pending, id) end
  if plan.drop ~= '' then redis.call('SREM', 'gw:active:' .. plan.drop, id) end
  if plan.add ~= '' then redis.call('SADD', 'gw:active:' .. plan.add, id) end
end
"""

_CREATE = _EFFECTS + """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {0, existing} end
local n = redis.call('INCR', KEYS[2])
local id = string.format('T-%06d', n)
local ticket = (string.gsub(ARGV[2], '__ID__', id))
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], ARGV[1], id) end
redis.call('HSET', 'gw:ticket:' .. id, 'data', ticket, 'state', 'new', 'assignee', '', 'version', 1)
redis.call('ZADD', 'gw:tickets:new', ARGV[3], id)
redis.call('ZADD', KEYS[3], ARGV[3], id)
redis.call('XADD', 'gw:ticket:' .. id .. ':log', '*', 'entry', (string.gsub(ARGV[4], '__ID__', id)))
if ARGV[7] ~= '' then redis.call('ZADD', ARGV[7], ARGV[3], id) end
effects(id, cjson.decode(ARGV[6]))
redis.call('PUBLISH', 'gw:events', (string.gsub(ARGV[5], '__ID__', id)))
return {1, id}
"""

_APPLY = _EFFECTS + """
local v = redis.call('HGET', KEYS[1], 'version')
if v ~= ARGV[2] then return 0 end
if ARGV[11] ~= '' and redis.call('SCARD', 'gw:active:' .. ARGV[11]) > 0 then return -1 end
redis.call('HSET', KEYS[1], 'data', ARGV[3], 'state', ARGV[4], 'assignee', ARGV[9], 'version', tonumber(v) + 1)
if ARGV[5] ~= ARGV[4] then
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
end
redis.call('XADD', KEYS[2], '*', 'entry', ARGV[7])
if ARGV[9] ~= '' then redis.call('ZADD', 'gw:assigned:' .. ARGV[9], ARGV[6], ARGV[1]) end
effects(ARGV[1], cjson.decode(ARGV[10]))
redis.call('PUBLISH', 'gw:events', ARGV[8])
return 1
"""


def _plan(effects: Effects, before: Ticket | None, after: Ticket) -> str:
    drop, add = busy_sets(before, after)
    pending = None if effects.pending is None else (pending_score(after) if effects.pending else False)
    return json.dumps({"set": [[s, due] for s, due in effects.set.items()], "clear": effects.clear,
                       "pending": pending, "drop": drop, "add": add})  # fmt: skip


def _event(kind: str, ticket: Ticket) -> str:
    return json.dumps({"type": f"ticket.{kind}", "ticket": ticket.model_dump(mode="json")})


class TicketStore:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self._create = redis.register_script(_CREATE)
        self._apply = redis.register_script(_APPLY)

    async def create(
        self, new: NewTicket, who: str, role: str, grid: str | None = None,
        plan: Callable[[Ticket], Effects] | None = None, note: str | None = None,
    ) -> tuple[Ticket, bool]:  # fmt: skip
        """The ticket for `new`, and whether it was made now (False: the key was seen).
        `plan(ticket)`: its effects (the pending queue, a waiting deadline), applied with it;
        `note`: why it waits, from the start."""
        now = time.time()
        ticket = Ticket(
            **new.model_dump(),
            id="__ID__",
            grid=grid,
            created_at=now,
            updated_at=now,
            times={"new": now},
            first={"new": now},
            note=note,
        )
        entry = {
            "at": now,
            "who": who,
            "role": role,
            "action": "create",
            "from": None,
            "to": "new",
            "why": "",
        }
        made, ticket_id = await self._create(
            keys=["gw:ticket-keys", "gw:ticket-seq", CREATED, "", DEADLINES, PENDING],
            args=[
                new.key or "",
                ticket.model_dump_json(),
                now,
                json.dumps(entry),
                _event("created", ticket),
                _plan(plan(ticket) if plan else Effects(), None, ticket),
                plate_key(new.plate.text) if new.plate else "",  # the repeat offenders' index
            ],
        )
        found = await self.get(ticket_id.decode())
        assert found is not None
        return found, bool(made)

    async def _load(self, ticket_id: str) -> tuple[Ticket, str] | None:
        if not TICKET_ID.fullmatch(ticket_id):  # "T-000001:log" would land on another key
            return None
        data, version = await self.redis.hmget(f"gw:ticket:{ticket_id}", "data", "version")
        ticket = load(Ticket, data, "ticket", ticket_id)
        return (ticket, version.decode()) if ticket is not None and version is not None else None

    async def get(self, ticket_id: str) -> Ticket | None:
        loaded = await self._load(ticket_id)
        return loaded[0] if loaded else None

    async def log(self, ticket_id: str) -> list[dict]:
        return (await self.logs([ticket_id]))[ticket_id] if TICKET_ID.fullmatch(ticket_id) else []

    async def page(self, f: TicketFilter) -> tuple[list[Ticket], str | None]:
        """One page of tickets matching `f`, newest reported first, and the cursor of the
        next page (None: this is the last). A cursor stays valid while tickets change."""
        newest = f.until if f.until is not None else math.inf
        after = _parse_cursor(f.cursor)
        if after is not None and after[0] < newest:
            newest = after[0]
        oldest = f.since if f.since is not None else -math.inf
        out: list[Ticket] = []
        batch: list[str] = []

        async def take() -> None:
            out.extend(t for t in await self.fetch(batch) if f.matches(t))
            batch.clear()

        async for ticket_id, created in self._reported(f, oldest, newest):
            if after is None or (created, _seq(ticket_id)) < after:
                batch.append(ticket_id)
            if len(batch) >= 200:
                await take()
                if len(out) > f.limit:
                    break
        await take()
        more = len(out) > f.limit
        out = out[: f.limit]
        return out, (f"{out[-1].created_at!r}/{out[-1].id}" if more else None)

    async def _reported(self, f: TicketFilter, oldest: float, newest: float):
        """(id, reported at) newest first, from the smallest index that covers `f`."""
        if f.assignee or f.state:
            keys = [f"gw:assigned:{f.assignee}"] if f.assignee else [f"gw:tickets:{s}" for s in f.state]
            ids = sorted({raw for k in keys for raw in await self.redis.zrange(k, 0, -1)})
            scores = await self.redis.zmscore(CREATED, ids) if ids else []
            rows = sorted(((float(sc), raw.decode()) for raw, sc in zip(ids, scores, strict=True)
                           if sc is not None and oldest <= float(sc) <= newest),
                          key=lambda r: (r[0], _seq(r[1])), reverse=True)  # fmt: skip
            for created, ticket_id in rows:
                yield ticket_id, created
            return
        offset = 0
        while True:
            chunk = await self.redis.zrevrangebyscore(CREATED, newest, oldest, start=offset, num=500, withscores=True)
            for raw, created in sorted(chunk, key=lambda r: (r[1], _seq(r[0].decode())), reverse=True):
                yield raw.decode(), created
            if len(chunk) < 500:
                return
            offset += len(chunk)

    async def logs(self, ids: list[str]) -> dict[str, list[dict]]:
        """Several tickets' audit logs in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for ticket_id in ids:
            pipe.xrange(f"gw:ticket:{ticket_id}:log")
        return {ticket_id: load_all(None, ((f"{ticket_id}:log:{i.decode()}", e.get(b"entry")) for i, e in entries),
                                    "audit entry")
                for ticket_id, entries in zip(ids, await pipe.execute(), strict=True)}  # fmt: skip

    async def by_plate(self, text: str, limit: int = 100) -> tuple[list[Ticket], int]:
        """The newest `limit` tickets that carry plate `text` (stored form, no dot), newest
        first, and how many there are in all. The index is written with each ticket."""
        key = plate_key(text)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrevrange(key, 0, limit - 1)
        pipe.zcard(key)
        ids, total = await pipe.execute()
        return await self.fetch([raw.decode() for raw in ids]), total

    async def queue(self) -> tuple[int, float | None]:
        """(tickets waiting for an officer, when the oldest of them was reported)."""
        length = await self.redis.zcard(PENDING)
        ids = await self.redis.zrange(PENDING, 0, -1)
        created = [float(c) for c in await self.redis.zmscore(CREATED, ids) if c is not None] if ids else []
        return length, min(created, default=None)

    async def reported(self, since: float, until: float) -> list[Ticket]:
        """Every ticket reported in [since, until]."""
        ids = await self.redis.zrangebyscore(CREATED, since, until)
        return await self.fetch([raw.decode() for raw in ids])

    async def open_now(self) -> list[Ticket]:
        """Every ticket not closed, rejected or cancelled."""
        pipe = self.redis.pipeline(transaction=False)
        for state in STATES:
            if state not in TERMINAL:
                pipe.zrange(f"gw:tickets:{state}", 0, -1)
        return await self.fetch([raw.decode() for ids in await pipe.execute() for raw in ids])

    async def fetch(self, ids: list[str]) -> list[Ticket]:
        """Tickets by id in one round trip; unknown ids are left out."""
        pipe = self.redis.pipeline(transaction=False)
        for ticket_id in ids:
            pipe.hget(f"gw:ticket:{ticket_id}", "data")
        return load_all(Ticket, zip(ids, await pipe.execute(), strict=True), "ticket")

    async def act(
        self,
        ticket_id: str,
        action: str,
        who: str,
        role: str,
        *,
        why: str = "",
        assignee: str | None = None,
        plan: Planner | None = None,
        bar_s: float = 0.0,
    ) -> tuple[Ticket, Ticket]:
        """Apply `action`; returns (before, after). `plan(before, after, action)` gives the
        deadlines to set and clear, written in the same atomic step as the transition (a
        ticket is never moved without its timers). Raises TransitionError (400/403/404/409)."""
        transition = TRANSITIONS.get(action)
        if transition is None:
            raise TransitionError(400, f"unknown action {action!r}", sorted(TRANSITIONS))

        def change(ticket: Ticket) -> Ticket:
            allowed = allowed_actions(ticket.state)
            if ticket.state not in transition.sources:
                raise TransitionError(
                    409,
                    f"ticket {ticket_id} is {ticket.state}: {action} is not allowed; "
                    f"allowed: {', '.join(allowed) or 'none'}",
                    allowed,
                )
            if role not in transition.roles:
                raise TransitionError(403, f"role {role!r} may not {action} a ticket", allowed)
            if transition.assignee_only and role == "officer" and ticket.assignee != who:
                raise TransitionError(403, f"ticket {ticket_id} is not assigned to {who}", allowed)
            if action == "dispatch" and not assignee:
                raise TransitionError(400, "dispatch needs an officer to assign", allowed)
            if action == "dispatch" and ticket.barred.get(assignee, 0) > time.time():
                raise TransitionError(409, f"{assignee} declined ticket {ticket_id} a moment ago", allowed)
            return self._apply_to(ticket, action, transition.target, assignee, bar_s)

        return await self._update(ticket_id, change, action, who, role, why, plan)

    async def annotate(
        self, ticket_id: str, who: str, label: str, why: str,
        only_if: Callable[[Ticket], bool] | None = None, **fields: object,
    ) -> Ticket:  # fmt: skip
        """Change fields other than the state (overdue, note), logged like a transition
        (event `ticket.{label}`). `only_if(ticket)` false on the newest version: nothing
        is written and that version is returned."""

        def change(ticket: Ticket) -> Ticket:
            if only_if is not None and not only_if(ticket):
                raise _Unchanged(ticket)
            return ticket.model_copy(update={**fields, "updated_at": time.time()})

        try:
            return (await self._update(ticket_id, change, label, who, SYSTEM, why))[1]
        except _Unchanged as e:
            return e.ticket

    async def add_evidence(self, ticket_id: str, who: str, role: str, names: list[str], why: str) -> Ticket:
        """Append evidence files (logged as `evidence`); applied to the newest version on
        every retry, so two uploads at once both stay. TransitionError 409 when the ticket
        would hold more than MAX_EVIDENCE files: evidence is never dropped to make room."""

        def change(ticket: Ticket) -> Ticket:
            new = [n for n in names if n not in ticket.evidence]
            if len(ticket.evidence) + len(new) > MAX_EVIDENCE:
                raise TransitionError(409, f"ticket {ticket_id} holds {MAX_EVIDENCE} evidence files already", [])
            return ticket.model_copy(update={"evidence": [*ticket.evidence, *new], "updated_at": time.time()})

        return (await self._update(ticket_id, change, "evidence", who, role, why))[1]

    async def _update(
        self, ticket_id, change, action, who, role, why, plan: Planner | None = None, retries: int = 8
    ) -> tuple[Ticket, Ticket]:
        for _ in range(retries):
            loaded = await self._load(ticket_id)
            if loaded is None:
                raise TransitionError(404, f"no ticket {ticket_id!r}", [])
            ticket, version = loaded
            updated = change(ticket)
            entry = {"at": updated.updated_at, "who": who, "role": role, "action": action, "from": ticket.state,
                     "to": updated.state, "why": why, "assignee": updated.assignee}  # fmt: skip
            effects = plan(ticket, updated, action) if plan else Effects()
            ok = await self._apply(
                keys=[f"gw:ticket:{ticket_id}", f"gw:ticket:{ticket_id}:log",
                      f"gw:tickets:{ticket.state}", f"gw:tickets:{updated.state}", DEADLINES, PENDING],
                args=[ticket_id, version, updated.model_dump_json(), updated.state, ticket.state,
                      updated.updated_at, json.dumps(entry), _event(action, updated), updated.assignee or "",
                      _plan(effects, ticket, updated), effects.claim or ""],
            )  # fmt: skip
            if ok == -1:
                raise Busy(effects.claim)
            if ok:
                return ticket, updated
        raise TransitionError(409, f"ticket {ticket_id} kept changing; try again", [])

    @staticmethod
    def _apply_to(ticket: Ticket, action: str, target: str, assignee: str | None, bar_s: float) -> Ticket:
        now = time.time()
        t = ticket.model_copy(deep=True)
        t.state = target  # type: ignore[assignment]
        t.updated_at = now
        t.times[target] = now
        t.first.setdefault(target, now)
        if action == "dispatch":
            t.assignee = assignee
            t.note = None  # why it waited: it does not any more
        elif action in ("decline", "reassign"):
            # He is not offered it again for a while (not for ever: he may be the only one).
            t.barred = {o: until for o, until in t.barred.items() if until > now}
            if t.assignee and bar_s > 0:
                t.barred[t.assignee] = now + bar_s
            t.assignee = None
        return t
