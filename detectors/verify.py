"""Auto-verify: after an officer resolves a camera ticket, is the zone really clear?

The spot is clear when, for `clear_s` in a row, no object of the kind the ticket was
about (a vehicle for parking, a stall for a street stall) stands in the zone over the
spot the violation was raised for. If that has not happened within `window_s` of the
resolution, the answer is no, and the ticket goes back to the officer.
"""

from __future__ import annotations

from dataclasses import dataclass

from shapely.geometry import Point, Polygon
from shapely.prepared import prep

from gridwatch.contracts.detections import VerifyRequest
from gridwatch.detectors.rules import Detection, Group, ZoneRule, bottom_centre, iou

SAME_SPOT_IOU = 0.3  # looser than "stationary": the object may have been nudged, not moved on


@dataclass
class Check:
    request: VerifyRequest
    started: float | None = None  # first frame looked at
    clear_since: float | None = None


@dataclass(frozen=True)
class Outcome:
    request: VerifyRequest
    clear: bool
    why: str
    still_there: Detection | None


class Verifier:
    def __init__(self, zones: list[ZoneRule], groups: dict[str, Group], clear_s: float,
                 window_s: float):  # fmt: skip
        """`zones` in the pixels of the frames it will be given; `groups`: the model's class
        names -> vehicle / person / stall."""
        self.zones = {z.name: (z, prep(Polygon(z.polygon))) for z in zones}
        self.groups = groups
        self.clear_s = clear_s
        self.window_s = window_s
        self.pending: dict[str, Check] = {}

    def sync(self, requests: list[VerifyRequest]) -> None:
        wanted = {r.ticket: r for r in requests}
        for ticket in list(self.pending):
            if ticket not in wanted or wanted[ticket].since != self.pending[ticket].request.since:
                del self.pending[ticket]
        for ticket, request in wanted.items():
            self.pending.setdefault(ticket, Check(request))

    def _blocking(self, check: Check, detections: list[Detection]) -> Detection | None:
        det = check.request.detection
        if det.zone not in self.zones:  # the zone is gone: nothing of it can stand there
            return None
        zone, shape = self.zones[det.zone]
        for d in detections:
            if (zone.counts(d.label, self.groups) and shape.contains(Point(*bottom_centre(d.box)))
                    and iou(d.box, det.box) >= SAME_SPOT_IOU):  # fmt: skip
                return d
        return None

    def update(self, now: float, detections: list[Detection]) -> list[Outcome]:
        done = []
        for ticket, check in list(self.pending.items()):
            if check.started is None:
                check.started = now
            blocking = self._blocking(check, detections)
            if blocking is None:
                check.clear_since = check.clear_since or now
                if now - check.clear_since >= self.clear_s:
                    done.append(
                        Outcome(check.request, True, f"zone clear for {self.clear_s:g} s", None)
                    )
            else:
                check.clear_since = None
                # Looked long enough ourselves, and the officer's time is up.
                if (now - check.started >= self.clear_s
                        and now - check.request.since >= self.window_s):  # fmt: skip
                    why = f"{blocking.label} still in {check.request.detection.zone} " \
                          f"{now - check.request.since:.0f} s after it was resolved"  # fmt: skip
                    done.append(Outcome(check.request, False, why, blocking))
            if done and done[-1].request is check.request:
                del self.pending[ticket]
        return done
