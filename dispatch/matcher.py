"""The pending queue's matcher: offers the waiting tickets to the officers who can take
them, all at once, as one assignment problem.

Tickets without an officer wait in `gw:pending` (dispatch.tickets: priority, then age).
A round takes the queue's head, finds each ticket's candidates (dispatch.reach) and
solves the assignment (`scipy.optimize.linear_sum_assignment`, Hungarian method):
each officer gets at most one offer, and the offers maximise the sum over tickets of

    weight(priority) * (HORIZON_S + age_s - eta_s)

so an urgent ticket goes before a normal one whatever the ETAs, an older one before a
newer one unless the newer is that much nearer, and among equals the total ETA is the
least (one-at-a-time offers give the first ticket the nearest officer even when that
leaves the second one far worse off). A ticket left out keeps its current reason.

A round runs when something may have changed (`poke`: a ticket queued, an officer free,
on duty, back online or in range, a decline's bar ended) and at least every `tick_s`.
One node matches at a time (the lease `gw:lease:match:dispatch`); the claim of each officer is atomic with
the offer (dispatch.tickets), so a round that overlaps a manual dispatch loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np
import redis.asyncio as aioredis
from scipy.optimize import linear_sum_assignment

from gridwatch.contracts.node import node_id
from gridwatch.contracts.retry import forever
from gridwatch.contracts.states import WAITING
from gridwatch.dispatch.reach import Candidate, Reach
from gridwatch.dispatch.tickets import PENDING, Ticket, TicketStore
from gridwatch.media.leases import Leases

log = logging.getLogger("gridwatch.dispatch")

LEASE, LEASE_S = "dispatch", 15.0  # gw:lease:match:dispatch
MAX_BATCH = 500  # tickets a round looks at (the queue's head)
SEARCHES = 8  # candidate searches at once
HORIZON_S = 86400.0  # any offer beats none: values stay positive within a day
WEIGHT = {"urgent": 8.0, "high": 4.0, "normal": 2.0, "low": 1.0}
OUTBID = "waiting: the officers in reach were offered older or more urgent tickets"

Offer = Callable[[Ticket, Candidate], Awaitable[bool]]
Note = Callable[[Ticket, str], Awaitable[None]]


def assign(tickets: list[Ticket], found: list[list[Candidate]], now: float) -> list[tuple[int, Candidate]]:
    """The offers, as (index in `tickets`, candidate), best assignment first by priority."""
    officers = sorted({c.officer for cs in found for c in cs})
    if not officers:
        return []
    col = {o: j for j, o in enumerate(officers)}
    value = np.full((len(tickets), len(officers)), -np.inf)
    for i, (t, cs) in enumerate(zip(tickets, found, strict=True)):
        for c in cs:
            value[i, col[c.officer]] = WEIGHT[t.priority] * (HORIZON_S + (now - t.created_at) - c.eta_s)
    feasible = np.isfinite(value)
    rows, cols = linear_sum_assignment(np.where(feasible, value, -1e15), maximize=True)
    by_officer = [{c.officer: c for c in cs} for cs in found]
    pairs = [(int(i), by_officer[i][officers[j]]) for i, j in zip(rows, cols, strict=True) if feasible[i, j]]
    return sorted(pairs, key=lambda p: -value[p[0], col[p[1].officer]])


class Matcher:
    def __init__(self, redis: aioredis.Redis, tickets: TicketStore, reach: Reach, offer: Offer, note: Note,
                 *, tick_s: float = 1.0, debounce_s: float = 0.05):  # fmt: skip
        self.redis = redis
        self.tickets = tickets
        self.reach = reach
        self.offer = offer
        self.note = note
        self.tick_s = tick_s
        self.debounce_s = debounce_s  # tickets opened together are matched together
        self._poked = asyncio.Event()
        self._waiters: list[asyncio.Future] = []
        self.lease = Leases(redis, "match", node_id(), LEASE_S)  # one node matches at a time
        self.rounds = 0
        self.offers = 0

    def poke(self) -> None:
        """Something changed that may let a waiting ticket go: match soon."""
        self._poked.set()

    async def settle(self, timeout_s: float = 1.0) -> None:
        """Poke, and return when a round that started after now has finished (or after
        `timeout_s`: another node may hold the lock)."""
        done = asyncio.get_running_loop().create_future()
        self._waiters.append(done)
        self.poke()
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout_s)
        except TimeoutError:
            pass

    async def run(self) -> None:
        await forever(self._tick, "matcher", log)

    async def _tick(self) -> None:
        try:
            await asyncio.wait_for(self._poked.wait(), self.tick_s)
        except TimeoutError:
            pass
        await asyncio.sleep(self.debounce_s)
        self._poked.clear()
        waiters, self._waiters = self._waiters, []
        try:
            if not await self.round():
                await asyncio.sleep(0.2)  # another node is matching: look again soon
                self.poke()
        finally:
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def round(self) -> bool:
        """One round under the lease; False when another node holds it."""
        if not await self.lease.hold(LEASE):
            return False
        try:
            await self._match()
        finally:
            await self.lease.release(LEASE)
        return True

    async def _match(self) -> None:
        ids = [raw.decode() for raw in await self.redis.zrange(PENDING, 0, MAX_BATCH - 1)]
        if not ids:
            return
        self.rounds += 1
        tickets = [t for t in await self.tickets.fetch(ids) if t.state in WAITING and not t.assignee]
        gone = set(ids) - {t.id for t in tickets}
        if gone:  # moved on by hand, or a bad record: not waiting any more
            await self.redis.zrem(PENDING, *gone)
        gate = asyncio.Semaphore(SEARCHES)  # the connection pool is shared with the requests

        async def search(t: Ticket) -> tuple[list[Candidate], str | None]:
            async with gate:
                return await self.reach.candidates(t)

        searched = await asyncio.gather(*(search(t) for t in tickets))
        found = [cs for cs, _ in searched]
        pairs = await asyncio.to_thread(assign, tickets, found, time.time())
        offered = set()
        for i, cand in pairs:
            if await self.offer(tickets[i], cand):
                offered.add(i)
                self.offers += 1
        for i, t in enumerate(tickets):
            if i not in offered:
                reason = searched[i][1] or OUTBID
                if t.note != reason:
                    await self.note(t, reason)
