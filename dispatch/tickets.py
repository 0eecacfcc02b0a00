"""Tickets: the case lifecycle, kept in Redis with every transition in an audit log.

A transition is computed here and applied by one Lua script that checks the ticket's
version, so that two nodes (or a dispatcher and a timer) never both move one ticket;
the loser retries against the new state. Creation is idempotent by a client key.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from dispatch.deadlines import KEY as DEADLINES
from dispatch.detections import Detection
from dispatch.officers import GEO_LAT
from dispatch.records import load, load_all

State = Literal[
    "new", "dispatched", "accepted", "on_scene", "resolved", "verified", "closed",
    "rejected", "reassigned", "cancelled", "suspended",
]  # fmt: skip
STATES: tuple[str, ...] = State.__args__  # type: ignore[attr-defined]
TERMINAL = {"closed", "rejected", "cancelled"}
SUPERVISORS = frozenset({"admin", "dispatcher"})
SYSTEM = "system"  # deadline timers, detectors, track-based arrival
MAX_EVIDENCE = 32  # files a ticket lists
TICKET_ID = re.compile(r"T-\d{6,12}")


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


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: Annotated[float, Field(ge=-GEO_LAT, le=GEO_LAT, allow_inf_nan=False)]
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


class NewTicket(BaseModel):
    """What a client sends to open a ticket."""

    model_config = ConfigDict(extra="forbid")
    key: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    source: Literal["camera", "officer", "dispatcher", "api"] = "api"
    category: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")] = "other"
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    location: Location
    description: Annotated[str, Field(max_length=2000)] = ""
    camera: str | None = None
    detection: Detection | None = None  # camera tickets: the zone and box the detector saw
    evidence: Annotated[list[Annotated[str, Field(max_length=512)]], Field(max_length=MAX_EVIDENCE)] = []


class Ticket(NewTicket):
    id: str
    state: State = "new"
    grid: str | None = None
    assignee: str | None = None
    created_at: float
    updated_at: float
    times: dict[str, float] = {}  # state -> when the ticket last entered it (the log has all)
    declined_by: list[str] = []
    overdue: bool = False
    note: str | None = None  # why nobody could be dispatched, and the like


# Deadlines a transition sets (step -> due time) and clears, applied with it in one step.
DeadlinePlan = tuple[dict[str, float], list[str]]
Planner = Callable[["Ticket", "Ticket", str], DeadlinePlan]
NO_PLAN: DeadlinePlan = ({}, [])


class TransitionError(Exception):
    """An action that the ticket's state or the actor's role does not allow."""

    def __init__(self, status: int, message: str, allowed: list[str]):
        super().__init__(message)
        self.status = status
        self.allowed = allowed


_CREATE = """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {0, existing} end
local n = redis.call('INCR', KEYS[2])
local id = string.format('T-%06d', n)
local ticket = (string.gsub(ARGV[2], '__ID__', id))
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], ARGV[1], id) end
redis.call('HSET', 'gw:ticket:' .. id, 'data', ticket, 'state', 'new', 'assignee', '', 'version', 1)
redis.call('ZADD', 'gw:tickets:new', ARGV[3], id)
redis.call('XADD', 'gw:ticket:' .. id .. ':log', '*', 'entry', (string.gsub(ARGV[4], '__ID__', id)))
redis.call('PUBLISH', 'gw:events', (string.gsub(ARGV[5], '__ID__', id)))
return {1, id}
"""

_APPLY = """
local v = redis.call('HGET', KEYS[1], 'version')
if v ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[3], 'state', ARGV[4], 'assignee', ARGV[9], 'version', tonumber(v) + 1)
if ARGV[5] ~= ARGV[4] then
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
end
redis.call('XADD', KEYS[2], '*', 'entry', ARGV[7])
if ARGV[9] ~= '' then redis.call('ZADD', 'gw:assigned:' .. ARGV[9], ARGV[6], ARGV[1]) end
local plan = cjson.decode(ARGV[10])
for _, member in ipairs(plan.clear) do redis.call('ZREM', KEYS[5], member) end
for _, due in ipairs(plan.set) do redis.call('ZADD', KEYS[5], due[2], due[1]) end
redis.call('PUBLISH', 'gw:events', ARGV[8])
return 1
"""


def _event(kind: str, ticket: Ticket) -> str:
    return json.dumps({"type": f"ticket.{kind}", "ticket": ticket.model_dump(mode="json")})


class TicketStore:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self._create = redis.register_script(_CREATE)
        self._apply = redis.register_script(_APPLY)

    async def create(
        self, new: NewTicket, who: str, role: str, grid: str | None = None
    ) -> tuple[Ticket, bool]:
        """The ticket for `new`, and whether it was made now (False: the key was seen)."""
        now = time.time()
        ticket = Ticket(
            **new.model_dump(),
            id="__ID__",
            grid=grid,
            created_at=now,
            updated_at=now,
            times={"new": now},
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
            keys=["gw:ticket-keys", "gw:ticket-seq"],
            args=[
                new.key or "",
                ticket.model_dump_json(),
                now,
                json.dumps(entry),
                _event("created", ticket),
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
        if not TICKET_ID.fullmatch(ticket_id):
            return []
        entries = await self.redis.xrange(f"gw:ticket:{ticket_id}:log")
        return load_all(None, ((f"{ticket_id}:log:{i.decode()}", f.get(b"entry")) for i, f in entries), "audit entry")

    async def list(self, state: str | None = None, limit: int = 100) -> list[Ticket]:
        """The most recently changed tickets, newest first."""
        ids: list[tuple[bytes, float]] = []
        for s in [state] if state else STATES:
            ids += await self.redis.zrevrange(f"gw:tickets:{s}", 0, limit - 1, withscores=True)
        ids.sort(key=lambda x: -x[1])
        return await self.fetch([raw.decode() for raw, _ in ids[:limit]])

    async def assigned(self, officer: str, limit: int = 100) -> list[Ticket]:
        """The tickets ever assigned to `officer` (`gw:assigned:{officer}`), newest first."""
        ids = await self.redis.zrevrange(f"gw:assigned:{officer}", 0, limit - 1)
        return await self.fetch([raw.decode() for raw in ids])

    async def changed_since(self, since: float) -> list[Ticket]:
        ids: list[bytes] = []
        for s in STATES:
            ids += await self.redis.zrangebyscore(f"gw:tickets:{s}", since, "+inf")
        return await self.fetch([raw.decode() for raw in ids])

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
            return self._apply_to(ticket, action, transition.target, assignee)

        return await self._update(ticket_id, change, action, who, role, why, plan)

    async def annotate(
        self, ticket_id: str, who: str, label: str, why: str, **fields: object
    ) -> Ticket:
        """Change fields other than the state (overdue, note), logged like a transition."""

        def change(ticket: Ticket) -> Ticket:
            return ticket.model_copy(update={**fields, "updated_at": time.time()})

        return (await self._update(ticket_id, change, label, who, SYSTEM, why))[1]

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
            sets, clears = plan(ticket, updated, action) if plan else NO_PLAN
            deadlines = json.dumps({"set": [[f"{ticket_id}:{s}", due] for s, due in sets.items()],
                                    "clear": [f"{ticket_id}:{s}" for s in clears]})  # fmt: skip
            ok = await self._apply(
                keys=[f"gw:ticket:{ticket_id}", f"gw:ticket:{ticket_id}:log",
                      f"gw:tickets:{ticket.state}", f"gw:tickets:{updated.state}", DEADLINES],
                args=[ticket_id, version, updated.model_dump_json(), updated.state, ticket.state,
                      updated.updated_at, json.dumps(entry), _event(action, updated), updated.assignee or "",
                      deadlines],
            )  # fmt: skip
            if ok:
                return ticket, updated
        raise TransitionError(409, f"ticket {ticket_id} kept changing; try again", [])

    @staticmethod
    def _apply_to(ticket: Ticket, action: str, target: str, assignee: str | None) -> Ticket:
        now = time.time()
        t = ticket.model_copy(deep=True)
        t.state = target  # type: ignore[assignment]
        t.updated_at = now
        t.times[target] = now
        if action == "dispatch":
            t.assignee = assignee
        elif action in ("decline", "reassign"):
            if t.assignee and t.assignee not in t.declined_by:
                t.declined_by.append(t.assignee)
            t.assignee = None
        return t
