"""Who can take a ticket now, and how soon: the officers in reach of an incident who can
answer an offer, each with his ETA by his own mode and speed, along the centre's roads.

An officer is a candidate when he is on duty, his position is fresh (`stale_s`), his own
phone reported within `reachable_s` (a fix he sent, or a live /ws socket: someone is there
to answer), he holds no ticket (offered, accepted or on scene), and he has not declined
this ticket within `decline_bar_s`. His ETA is the road distance (or the straight line
times `road_factor`) over his speed: his profile's (`dispatch.speeds[mode]`), refined by
his own track's smoothed moving speed (`officers.mode_speed`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass

from gridwatch.dispatch.config import DispatchConfig
from gridwatch.dispatch.officers import Officers, OfficerState, mode_speed
from gridwatch.dispatch.routing import Router
from gridwatch.dispatch.tickets import Ticket

FIRST_RADIUS_M = 250.0
MAX_CANDIDATES = 4096
# Why an officer in reach is not a candidate, as the reason shown says it.
NOT = {"busy": "busy", "stale": "without a fresh position", "off_duty": "off duty",
       "unreachable": "with no phone online", "barred": "declined it", "no_road": "with no road to it"}  # fmt: skip


@dataclass(frozen=True)
class Candidate:
    """An officer who could take the ticket: metres in a straight line and by road, his
    speed (m/s) and ETA (s), and the why in words."""

    officer: str
    distance_m: float
    road_m: float
    speed_mps: float
    eta_s: float
    mode: str

    @property
    def why(self) -> str:
        return (f"ETA {self.eta_s:.0f} s: {self.road_m:.0f} m by road at {self.speed_mps:.1f} m/s "
                f"({self.mode}), {self.distance_m:.0f} m in a straight line")  # fmt: skip


class Reach:
    def __init__(self, officers: Officers, router: Router, cfg: DispatchConfig, modes: dict[str, str]):
        self.officers = officers
        self.router = router
        self.cfg = cfg
        self.modes = modes  # officer -> foot, bicycle, ebike, car (from the config)

    def speed(self, state: OfficerState) -> tuple[float, str]:
        """(m/s for his ETA, his mode)."""
        mode = self.modes.get(state.id, self.cfg.default_mode)
        return mode_speed(state.speed, self.cfg.speeds[mode]), mode

    def why_not(self, state: OfficerState, ticket: Ticket, now: float) -> str | None:
        """None when he can be offered the ticket now, else the key of NOT that says why."""
        status = state.status(self.cfg.stale_s, now)
        if status != "available":
            return status
        if not state.reachable(self.cfg.reachable_s or self.cfg.stale_s, now):
            return "unreachable"
        if ticket.barred.get(state.id, 0) > now:
            return "barred"
        return None

    async def candidates(self, ticket: Ticket) -> tuple[list[Candidate], str | None]:
        """Officers who can take `ticket`, fastest first; or none and the reason why.

        The search starts with a small circle and widens it: in a dense city the nearest
        officers are close, and a GEOSEARCH over the whole radius would sort thousands.
        """
        loc, max_r = ticket.location, self.cfg.search_radius_m
        radius, count = min(FIRST_RADIUS_M, max_r), self.cfg.search_count
        while True:
            near = await self.officers.nearby(loc.lat, loc.lon, radius, count)
            now = time.time()
            verdicts = [(s, d, self.why_not(s, ticket, now)) for s, d in near]
            counts = Counter(v for _, _, v in verdicts)
            free = [(s, d) for s, d, v in verdicts if v is None]
            if free:
                found = await asyncio.to_thread(self._timed, ticket, free)
                counts["no_road"] += len(free) - len(found)
                if found:
                    return found, None
            if len(near) >= count and count < MAX_CANDIDATES:
                count *= 2  # the nearest ones are all taken: look at more of them
            elif radius < max_r:
                radius = min(radius * 4, max_r)
            else:
                break
        if not near:
            return [], f"no officer within {max_r:.0f} m"
        # The kinds, not the counts: the reason is rewritten on the ticket when it changes,
        # and counts would change with every officer's step.
        why = ", ".join(NOT[k] for k in sorted(k for k, n in counts.items() if k and n))
        return [], f"no available officer within {max_r:.0f} m (those in reach: {why})"

    def _timed(self, ticket: Ticket, free: list[tuple[OfficerState, float]]) -> list[Candidate]:
        # A thread: the road search is CPU work.
        to = (ticket.location.lat, ticket.location.lon)
        roads = self.router.road_m(to, [(s.lat, s.lon) for s, _ in free])  # type: ignore[misc]
        out = []
        for (state, dist), road in zip(free, roads, strict=True):
            if math.isinf(road):
                continue
            speed, mode = self.speed(state)
            out.append(Candidate(state.id, dist, max(road, dist), speed, max(road, dist) / speed, mode))
        return sorted(out, key=lambda c: c.eta_s)
