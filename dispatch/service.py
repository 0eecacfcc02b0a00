"""The dispatch loop: queue each ticket for the officer who can be there soonest, follow
his track to the scene, and remind, escalate or pass the ticket on when a deadline passes.

Which officer is offered what is the matcher's (dispatch.matcher): every transition that
may free an officer or queue a ticket pokes it. Deadlines (dispatch.deadlines) are set
and cleared with the transition itself, in one Lua script (`_effects`).
"""

from __future__ import annotations

import itertools
import logging
import time

from redis.exceptions import RedisError

from gridwatch.contracts import detections
from gridwatch.contracts.retry import forever
from gridwatch.contracts.roles import SYSTEM
from gridwatch.contracts.states import ACTIVE, WAITING
from gridwatch.dispatch.alerts import Alerts
from gridwatch.dispatch.config import DispatchConfig
from gridwatch.dispatch.deadlines import Deadlines
from gridwatch.dispatch.events import Events
from gridwatch.dispatch.grids import Grids
from gridwatch.dispatch.matcher import Matcher
from gridwatch.dispatch.officers import Fix, Officers
from gridwatch.dispatch.reach import Candidate, Reach
from gridwatch.dispatch.routing import distance_m
from gridwatch.dispatch.tickets import (
    Busy,
    Effects,
    NewTicket,
    Ticket,
    TicketStore,
    TransitionError,
)

log = logging.getLogger("gridwatch.dispatch")

# step -> the state that meets it (a deadline that finds it reached does nothing)
SUGGEST = "suggest mode: waiting for a dispatcher to choose the officer"
REACHED = {"accept": "accepted", "arrive": "on_scene", "resolve": "resolved"}


class Dispatch:
    def __init__(
        self,
        tickets: TicketStore,
        officers: Officers,
        deadlines: Deadlines,
        events: Events,
        alerts: Alerts,
        grids: Grids,
        reach: Reach,
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
        self.reach = reach
        self.cfg = cfg
        self.matcher = Matcher(tickets.redis, tickets, reach, self.offer, self.note_waiting,
                               debounce_s=cfg.match_window_s)

    # tickets ------------------------------------------------------------------

    async def open(self, new: NewTicket, who: str, role: str) -> tuple[Ticket, bool]:
        """Create the ticket (idempotent by key) and, in auto mode, queue it and wait for
        the matcher's next round (at most a second), so the answer shows the offer."""
        grid = self.grids.locate(new.location.lat, new.location.lon)
        auto = self.cfg.mode(new.category) == "auto"
        ticket, made = await self.tickets.create(new, who, role, grid, plan=lambda t: self._waiting(t, auto),
                                                 note=None if auto else SUGGEST)  # fmt: skip
        if not made:
            return ticket, made
        if grid and (count := await self.grids.count(grid, ticket.id)):
            warning = {"type": "warning", "grid": grid, "count": count, "window_s": self.grids.window_s,
                       "threshold": self.grids.threshold, "ticket": ticket.model_dump(mode="json")}  # fmt: skip
            await self.alerts.raise_(
                warning, "surge", key=f"surge:{grid}", grid=grid, ticket=ticket.id,
                message=f"grid {grid}: {count} tickets within {self.grids.window_s:.0f} s "
                        f"(threshold {self.grids.threshold})",
            )  # fmt: skip
            log.warning("grid surge", extra={"grid": grid, "count": count})
        if auto:
            await self.matcher.settle()
            ticket = await self.tickets.get(ticket.id) or ticket
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
        """Apply a transition with its effects. Raises TransitionError, and Busy for a
        system dispatch to an officer who took another ticket meanwhile."""
        before, after = await self.tickets.act(
            ticket_id, action, who, role, why=why, assignee=officer,
            plan=lambda b, a, act: self._effects(b, a, act, claim=role == SYSTEM),
            bar_s=self.cfg.decline_bar_s,
        )  # fmt: skip
        return await self._after(before, after, action)

    def _waiting(self, ticket: Ticket, auto: bool) -> Effects:
        """A ticket waiting for an officer: in the queue (auto mode), with its own deadline."""
        start, limit = ticket.updated_at, self.cfg.wait_s
        sets = {"wait": start + limit}
        if self.cfg.remind_before_s < limit:
            sets["wait:remind"] = start + limit - self.cfg.remind_before_s
        return Effects(set=sets, clear=[s for s in self.cfg.steps() if not s.startswith("wait")], pending=auto)

    def _effects(self, before: Ticket, after: Ticket, action: str, claim: bool) -> Effects:
        """The timers and queue a transition sets and clears (applied with it, atomically).
        Accept runs from this offer; arrive and resolve from the first dispatch, as the
        centres measure it (a re-dispatch does not restart the incident's clock)."""
        if after.state in WAITING:
            return self._waiting(after, self.cfg.mode(after.category) == "auto")
        if after.state not in ACTIVE:
            return Effects(clear=list(self.cfg.steps()), pending=False)
        if action == "dispatch" and after.assignee:
            now = after.times["dispatched"]
            start = after.first.get("dispatched", now)
            limits = self.cfg.limits(after.category)
            sets = {"accept": now + limits["accept"]}
            for step in ("arrive", "resolve"):
                sets[step] = start + limits[step]
                if self.cfg.remind_before_s < limits[step]:
                    sets[f"{step}:remind"] = start + limits[step] - self.cfg.remind_before_s
            return Effects(set=sets, clear=["wait", "wait:remind"], pending=False,
                           claim=after.assignee if claim else None)  # fmt: skip
        if action == "accept":
            return Effects(clear=["accept"])
        if action == "arrive":
            return Effects(clear=["arrive", "arrive:remind"])
        return Effects()

    async def _after(self, before: Ticket, after: Ticket, action: str) -> Ticket:
        # The officers concerned hear of it even when offline: it waits in their inbox.
        concerned = {o for o in (before.assignee, after.assignee) if o}
        self.note_officers(*concerned)  # busy or free again: the wall's map shows it
        if concerned:
            event = {"type": f"ticket.{action}", "ticket": after.model_dump(mode="json")}
            await self.events.to_users(concerned, event)
        if after.camera and after.detection:
            await self._tell_detector(after, action)
        freed = before.state in ACTIVE and after.state not in ACTIVE
        if freed or after.state in WAITING:
            self.matcher.poke()  # an officer free, or a ticket to place
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
        """Officers who can take `ticket` now, fastest first, or the reason there are none."""
        return await self.reach.candidates(ticket)

    async def offer(self, ticket: Ticket, cand: Candidate) -> bool:
        """Offer `ticket` to `cand` (the matcher's choice); False when he or the ticket
        moved on meanwhile (the next round looks again)."""
        why = cand.why
        if ticket.note:  # it waited: say for how long and why, in the log
            since = ticket.times.get(ticket.state, ticket.created_at)
            why += f"; after waiting {time.time() - since:.0f} s ({ticket.note})"
        try:
            await self.act(ticket.id, "dispatch", SYSTEM, SYSTEM, why=why, officer=cand.officer)
        except Busy:
            return False
        except TransitionError as e:
            if e.status != 409:
                raise
            return False
        return True

    async def note_waiting(self, ticket: Ticket, reason: str) -> Ticket:
        """Write why the ticket waits on it (logged, sent to the walls); only a change."""
        if ticket.note == reason:
            return ticket
        log.info("ticket waits", extra={"ticket": ticket.id, "reason": reason})
        return await self.tickets.annotate(
            ticket.id, SYSTEM, "waiting", reason, note=reason,
            only_if=lambda t: t.state in WAITING and t.note != reason,
        )  # fmt: skip

    # tracks and arrival -----------------------------------------------------------

    def note_officers(self, *officers: str) -> None:
        """Officers whose position, duty or status changed: the walls hear of them within
        `run_officer_feed`'s interval, in one message per node."""
        self._changed.update(officers)

    async def run_officer_feed(self, interval_s: float = 0.5) -> None:
        """Publish the officers noted since the last round as one `officers` event."""
        await forever(self._feed, "officer feed", log, period_s=interval_s)

    async def _feed(self) -> None:
        if not self._changed:
            return
        ids, self._changed = sorted(self._changed), set()
        try:
            states = await self.officers.states(ids)
            now = time.time()
            await self.events.to_walls({"type": "officers", "stale_s": self.cfg.stale_s,
                                        "officers": [s.view(self.cfg.stale_s, now) for s in states]})  # fmt: skip
        except (RedisError, OSError):
            self._changed.update(ids)  # sent with the next round
            raise

    async def on_fixes(self, by_officer: dict[str, list[Fix]]) -> None:
        """Judge arrival from each officer's new fixes in time order: a ticket he has
        accepted is on scene from the first fix since its dispatch within the arrival
        radius (a phone back from offline sends the walk whole; the last fix alone may
        already have left the place). An officer free after these fixes may take a
        waiting ticket: the matcher looks again."""
        self.note_officers(*by_officer)
        states = await self.officers.states(list(by_officer))
        held = {s.id: s.tickets for s in states if s.tickets}
        if any(not s.tickets and s.on_duty for s in states):
            self.matcher.poke()
        tickets = {t.id: t for t in await self.tickets.fetch(sorted({t for ts in held.values() for t in ts}))}
        for officer, ids in held.items():
            for ticket in (tickets[i] for i in ids if i in tickets):
                if ticket.state == "accepted" and ticket.assignee == officer:
                    await self._arrive_by_track(ticket, by_officer[officer])

    async def _arrive_by_track(self, ticket: Ticket, fixes: list[Fix]) -> None:
        since, loc = ticket.times.get("dispatched", 0.0), ticket.location
        for fix in fixes:
            d = distance_m(fix.lat, fix.lon, loc.lat, loc.lon)
            if fix.time >= since and d <= self.cfg.arrive_radius_m:
                try:
                    await self.act(ticket.id, "arrive", ticket.assignee or SYSTEM, SYSTEM,
                                   why=f"track: {d:.0f} m from the incident, fix of "
                                       f"{time.strftime('%H:%M:%S', time.localtime(fix.time))}")  # fmt: skip
                except TransitionError:
                    pass  # arrived by hand at the same moment
                return

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
        # Met or not on the incident's clock: from the first dispatch to the first arrival.
        first_in, first_out = ticket.first.get("on_scene"), ticket.first.get("dispatched", start)
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
                "arrive_deadline_met": (first_in - first_out <= arrive_limit) if first_in else None,
                "resolved_at": end,
            },
        }

    # deadlines -------------------------------------------------------------------

    async def on_deadline(self, ticket_id: str, step: str) -> None:
        """A deadline came due: remind (the officer and the walls), pass an offer not
        accepted in time on, or escalate once (the ticket is marked overdue)."""
        ticket = await self.tickets.get(ticket_id)
        name, _, remind = step.partition(":")
        if ticket is None or ticket.state not in (WAITING if name == "wait" else ACTIVE):
            return
        reached = REACHED.get(name)
        if reached and ticket.times.get(reached, -1.0) >= ticket.times.get("dispatched", 0.0):
            return
        payload = {"ticket": ticket.model_dump(mode="json"), "step": name}
        who = ticket.assignee or "unassigned"
        if remind:
            if ticket.assignee:
                await self.events.to_users([ticket.assignee], {"type": "ticket.reminder", **payload})
            due = self.cfg.remind_before_s
            what = f"still waiting for an officer ({ticket.note})" if name == "wait" else f"{name} due"
            await self.alerts.raise_(
                {"type": "alert", **payload}, "reminder", key=f"reminder:{ticket_id}:{name}", ticket=ticket_id,
                message=f"{ticket_id}: {what}, {due:.0f} s before escalation ({who})",
            )  # fmt: skip
            return
        if name == "accept":
            await self.act(ticket_id, "decline", ticket.assignee or SYSTEM, SYSTEM,
                           why=f"not accepted within {self.cfg.limits(ticket.category)['accept']:.0f} s")  # fmt: skip
            return
        limit = self.cfg.wait_s if name == "wait" else self.cfg.limits(ticket.category)[name]
        what = f"waited {limit:.0f} s for an officer: {ticket.note}" if name == "wait" else f"{name} deadline passed"
        ticket = await self.tickets.annotate(ticket_id, SYSTEM, "overdue", what, overdue=True)
        payload["ticket"] = ticket.model_dump(mode="json")
        await self.alerts.raise_(
            {"type": "alert", **payload}, "escalation", level="critical",
            key=f"escalation:{ticket_id}:{name}", ticket=ticket_id, message=f"{ticket_id}: {what} ({who})",
        )  # fmt: skip
        log.warning("deadline passed", extra={"ticket": ticket_id, "step": name, "officer": ticket.assignee})

    async def run_deadlines(self, interval_s: float = 0.25) -> None:
        # Redis away: the timers wait in Redis and fire once it is back.
        await forever(self._fire_due, "deadlines", log, period_s=interval_s)

    async def _fire_due(self) -> None:
        for ticket_id, step, lease in await self.deadlines.claim_due():
            try:
                await self.on_deadline(ticket_id, step)
            except TransitionError as e:
                log.info("deadline action not applied", extra={"ticket": ticket_id, "step": step, "why": str(e)})
            await self.deadlines.done(ticket_id, step, lease)
