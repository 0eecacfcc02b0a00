"""The dispatch loop: offer each ticket to the nearest available officer, follow his
track to the scene, and remind, escalate or pass the ticket on when a deadline passes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from dispatch import detections
from dispatch.alerts import Alerts
from dispatch.deadlines import Deadlines
from dispatch.events import Events
from dispatch.grids import Grids
from dispatch.officers import Fix, Officers, OfficerState, distance_m
from dispatch.tickets import SYSTEM, NewTicket, Ticket, TicketStore, TransitionError
from signaling.config import DispatchConfig

log = logging.getLogger("gridwatch.dispatch")

ACTIVE = {"dispatched", "accepted", "on_scene"}  # the assignee is busy with the ticket
ACTION_EVENTS = {"dispatch": "dispatched"}
FIRST_RADIUS_M = 250.0
MAX_CANDIDATES = 4096


@dataclass(frozen=True)
class Candidate:
    officer: str
    distance_m: float
    eta_s: float


class Dispatch:
    def __init__(
        self,
        tickets: TicketStore,
        officers: Officers,
        deadlines: Deadlines,
        events: Events,
        alerts: Alerts,
        grids: Grids,
        cfg: DispatchConfig,
        dismiss_s: float = 86400.0,
    ):
        self.tickets = tickets
        self.alerts = alerts
        self._changed: set[str] = set()  # officers the wall has not heard about yet
        self.dismiss_s = dismiss_s
        self.officers = officers
        self.deadlines = deadlines
        self.events = events
        self.grids = grids
        self.cfg = cfg

    # tickets ------------------------------------------------------------------

    async def open(self, new: NewTicket, who: str, role: str) -> tuple[Ticket, bool]:
        grid = self.grids.locate(new.location.lat, new.location.lon)
        ticket, made = await self.tickets.create(new, who, role, grid)
        if not made:
            return ticket, made
        if grid and (count := await self.grids.count(grid, ticket.id)):
            warning = {"type": "warning", "grid": grid, "count": count, "window_s": self.grids.window_s,
                       "threshold": self.grids.threshold, "ticket": ticket.id}  # fmt: skip
            await self.alerts.raise_(
                warning, "surge", key=f"surge:{grid}", grid=grid, ticket=ticket.id,
                message=f"grid {grid}: {count} tickets within {self.grids.window_s:.0f} s "
                        f"(threshold {self.grids.threshold})",
            )  # fmt: skip
            log.warning("grid surge", extra={"grid": grid, "count": count})
        if self.cfg.mode(ticket.category) == "auto":
            ticket = await self.offer_next(ticket)
        return ticket, made

    async def act(
        self,
        ticket_id: str,
        action: str,
        who: str,
        role: str,
        *,
        why: str = "",
        officer: str | None = None,
    ) -> Ticket:
        before, after = await self.tickets.act(
            ticket_id, action, who, role, why=why, assignee=officer, plan=self._deadlines
        )
        return await self._after(before, after, action)

    def _deadlines(self, before: Ticket, after: Ticket, action: str) -> tuple[dict[str, float], list[str]]:
        """The timers a transition sets and clears (applied with it, atomically). The clock
        starts at dispatch, as the centres measure it."""
        if after.state not in ACTIVE:
            return {}, list(self.cfg.steps())
        if action == "dispatch" and after.assignee:
            start = after.times.get("dispatched", time.time())
            sets = {}
            for step, limit in self.cfg.limits(after.category).items():
                sets[step] = start + limit
                if step != "accept" and self.cfg.remind_before_s < limit:
                    sets[f"{step}:remind"] = start + limit - self.cfg.remind_before_s
            return sets, []
        if action == "accept":
            return {}, ["accept"]
        if action == "arrive":
            return {}, ["arrive", "arrive:remind"]
        return {}, []

    async def _after(self, before: Ticket, after: Ticket, action: str) -> Ticket:
        tid = after.id
        # The officers concerned hear of it even when offline: it waits in their inbox.
        concerned = {o for o in (before.assignee, after.assignee) if o}
        self.note_officers(*concerned)  # busy or free again: the wall's map shows it
        if concerned:
            event = {
                "type": f"ticket.{ACTION_EVENTS.get(action, action)}",
                "ticket": after.model_dump(mode="json"),
            }
            await self.events.to_users(concerned, event)
        if before.assignee and (before.assignee != after.assignee or after.state not in ACTIVE):
            await self.officers.set_ticket(before.assignee, None)
        if action == "dispatch" and after.assignee:
            await self.officers.set_ticket(after.assignee, tid)
        elif action == "resume" and after.assignee:
            await self.officers.set_ticket(after.assignee, tid)
        if after.camera and after.detection:
            await self._tell_detector(after, action)
        if action in ("decline", "reassign"):
            return await self.offer_next(after)
        return after

    async def _tell_detector(self, ticket: Ticket, action: str) -> None:
        assert ticket.camera and ticket.detection
        redis = self.tickets.redis
        if action == "resolve":
            # The detector watching the camera checks that the spot is really clear.
            await detections.request_verify(redis, ticket.camera, ticket.id, ticket.detection)
        elif action in ("reject", "cancel"):
            # No case: the detectors leave this spot alone for a while.
            await detections.dismiss(
                redis, ticket.camera, ticket.id, ticket.detection, self.dismiss_s
            )

    # choosing an officer --------------------------------------------------------

    async def candidates(self, ticket: Ticket) -> tuple[list[Candidate], str | None]:
        """Available officers in reach, nearest (by ETA) first; or none and the reason why.

        The search starts with a small circle and widens it: in a dense city the nearest
        officers are close, and a GEOSEARCH over the whole radius would sort thousands.
        """
        loc, max_r = ticket.location, self.cfg.search_radius_m
        radius, count = min(FIRST_RADIUS_M, max_r), self.cfg.search_count
        while True:
            near = await self.officers.nearby(loc.lat, loc.lon, radius, count)
            found, counts = await self._available(ticket, near)
            if found:
                return sorted(found, key=lambda c: c.eta_s), None
            if len(near) >= count and count < MAX_CANDIDATES:
                count *= 2  # the nearest ones are all taken: look at more of them
            elif radius < max_r:
                radius = min(radius * 4, max_r)
            else:
                break
        if not near:
            return [], f"no officer within {max_r:.0f} m"
        why = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n)
        return [], f"no available officer within {max_r:.0f} m ({why})"

    async def _available(
        self, ticket: Ticket, near: list[tuple[OfficerState, float]]
    ) -> tuple[list[Candidate], dict[str, int]]:
        now = time.time()
        counts = {"busy": 0, "stale": 0, "off_duty": 0, "declined": 0}
        found = []
        for state, dist in near:
            if state.id in ticket.declined_by:
                counts["declined"] += 1
                continue
            status = state.status(self.cfg.stale_s, now)
            if status != "available":
                counts[status] += 1
                continue
            found.append(
                Candidate(state.id, dist, dist * self.cfg.road_factor / self.cfg.speed_mps)
            )
        return found, counts

    async def offer_next(self, ticket: Ticket) -> Ticket:
        found, reason = await self.candidates(ticket)
        for c in found:
            why = f"nearest available: {c.distance_m:.0f} m, ETA {c.eta_s:.0f} s"
            try:
                return await self.act(
                    ticket.id, "dispatch", SYSTEM, SYSTEM, why=why, officer=c.officer
                )
            except TransitionError as e:
                if e.status != 409:
                    raise
                current = await self.tickets.get(ticket.id)
                if current is None or current.state not in ("new", "reassigned"):
                    return current or ticket  # someone else moved it on meanwhile
        assert reason is not None or found
        ticket = await self.tickets.annotate(
            ticket.id, SYSTEM, "unassigned", reason or "", note=reason
        )
        await self.alerts.raise_(
            {"type": "ticket.unassigned", "ticket": ticket.model_dump(mode="json"), "reason": reason},
            "unassigned", f"{ticket.id}: nobody to send: {reason}", key=f"unassigned:{ticket.id}",
            ticket=ticket.id,
        )  # fmt: skip
        log.warning("no officer for ticket", extra={"ticket": ticket.id, "reason": reason})
        return ticket

    # tracks and arrival -----------------------------------------------------------

    def note_officers(self, *officers: str) -> None:
        """Officers whose position, duty or status changed: the walls hear of them within
        `run_officer_feed`'s interval, in one message per node."""
        self._changed.update(officers)

    async def run_officer_feed(self, interval_s: float = 0.5) -> None:
        """Publish the officers noted since the last round as one `officers` event."""
        while True:
            await asyncio.sleep(interval_s)
            if not self._changed:
                continue
            ids, self._changed = sorted(self._changed), set()
            try:
                states = await self.officers.states(ids)
                now = time.time()
                await self.events.to_walls({"type": "officers", "stale_s": self.cfg.stale_s,
                                            "officers": [s.view(self.cfg.stale_s, now) for s in states]})  # fmt: skip
            except (RedisError, OSError) as e:
                self._changed.update(ids)  # sent with the next round
                log.warning("officer feed: redis unavailable", extra={"error": str(e)})

    async def on_fixes(self, latest: dict[str, Fix]) -> None:
        """Mark officers on scene when their newest fix is within the arrival radius."""
        self.note_officers(*latest)
        for officer, fix in latest.items():
            state = await self.officers.state(officer)
            if not state.ticket:
                continue
            ticket = await self.tickets.get(state.ticket)
            if ticket is None or ticket.state != "accepted" or ticket.assignee != officer:
                continue
            d = distance_m(fix.lat, fix.lon, ticket.location.lat, ticket.location.lon)
            if d <= self.cfg.arrive_radius_m:
                try:
                    await self.act(
                        ticket.id,
                        "arrive",
                        officer,
                        SYSTEM,
                        why=f"track: {d:.0f} m from the incident",
                    )
                except TransitionError:
                    pass  # arrived by hand at the same moment

    async def track(self, ticket: Ticket) -> dict:
        """The assignee's fixes from dispatch to resolution as a GeoJSON Feature."""
        start = ticket.times.get("dispatched")
        if not ticket.assignee or start is None:
            return {
                "type": "Feature",
                "geometry": None,
                "properties": {"ticket": ticket.id, "officer": None},
            }
        end = ticket.times.get("resolved")
        fixes = await self.officers.track(ticket.assignee, start, end)
        travelled = sum(
            distance_m(a.lat, a.lon, b.lat, b.lon) for a, b in itertools.pairwise(fixes)
        )
        arrived = ticket.times.get("on_scene")
        arrive_limit = self.cfg.limits(ticket.category)["arrive"]
        return {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[f.lon, f.lat] for f in fixes]},
            "properties": {
                "ticket": ticket.id,
                "officer": ticket.assignee,
                "times": [f.time for f in fixes],
                "distance_m": round(travelled, 1),
                "dispatched_at": start,
                "arrived_at": arrived,
                "time_to_arrive_s": round(arrived - start, 1) if arrived else None,
                "arrive_deadline_met": (arrived - start <= arrive_limit) if arrived else None,
                "resolved_at": end,
            },
        }

    # deadlines -------------------------------------------------------------------

    async def on_deadline(self, ticket_id: str, step: str) -> None:
        ticket = await self.tickets.get(ticket_id)
        if ticket is None or ticket.state not in ACTIVE:
            return
        name, _, remind = step.partition(":")
        reached = {"accept": "accepted", "arrive": "on_scene", "resolve": "resolved"}[name]
        if reached in ticket.times and ticket.times[reached] >= ticket.times.get("dispatched", 0):
            return
        payload = {"ticket": ticket.model_dump(mode="json"), "step": name}
        if remind:
            reminder = {"type": "ticket.reminder", **payload}
            await self.events.to_users([ticket.assignee] if ticket.assignee else [], reminder)
            due = self.cfg.remind_before_s
            await self.alerts.raise_(
                reminder, "reminder", key=f"reminder:{ticket_id}:{name}", ticket=ticket_id,
                message=f"{ticket_id}: {name} due in {due:.0f} s ({ticket.assignee or 'unassigned'})",
            )  # fmt: skip
            return
        if name == "accept":
            await self.act(ticket_id, "decline", ticket.assignee or SYSTEM, SYSTEM,
                           why=f"not accepted within {self.cfg.limits(ticket.category)['accept']:.0f} s")  # fmt: skip
            return
        ticket = await self.tickets.annotate(
            ticket_id, SYSTEM, "overdue", f"{name} deadline passed", overdue=True
        )
        payload["ticket"] = ticket.model_dump(mode="json")
        await self.alerts.raise_(
            {"type": "ticket.escalation", **payload}, "escalation", level="critical",
            key=f"escalation:{ticket_id}:{name}", ticket=ticket_id,
            message=f"{ticket_id}: {name} deadline passed ({ticket.assignee or 'unassigned'})",
        )  # fmt: skip
        log.warning(
            "deadline passed", extra={"ticket": ticket_id, "step": name, "officer": ticket.assignee}
        )

    async def run_deadlines(self, interval_s: float = 0.25) -> None:
        while True:
            try:
                for ticket_id, step, lease in await self.deadlines.claim_due():
                    try:
                        await self.on_deadline(ticket_id, step)
                    except TransitionError as e:
                        log.info(
                            "deadline action not applied",
                            extra={"ticket": ticket_id, "step": step, "why": str(e)},
                        )
                    await self.deadlines.done(ticket_id, step, lease)
            except (RedisError, OSError) as e:
                # Redis away: the timers wait in Redis and fire once it is back.
                log.warning("deadline poll failed", extra={"error": str(e)})
            await asyncio.sleep(interval_s)
