"""Zone rules: illegal parking and street stalls from tracked objects, one violation per incident.

An incident is something stationary in a zone: its anchor box is where it came to
rest, and its dwell counts from then. Every later box of the same group that is the
same thing at the same place (`same_place`: the box overlaps the anchor, or is a
piece of it, or holds it whole) is that incident, whatever the tracker's id and
whatever passes in front: a car that a walker half hides (its box shrunk, shifted or
split in two) or that the model boxes together with the walker is still one incident.
Where two records turn out to be one object, they merge and the one that came to rest
first survives, with its dwell. It becomes a violation once its dwell has passed,
once; after it clears, a cooldown keeps the same spot from raising another at once.
An object enters a zone when the bottom centre of its box is in it; once followed, a
partial view of it counts wherever its bottom edge is hidden.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from datetime import time as dtime
from typing import Literal, Protocol

from shapely.geometry import Point, Polygon
from shapely.prepared import prep

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels
Group = Literal["vehicle", "person", "stall"]

# What each kind of zone is about: the group of the model's classes its rule follows.
WANTED: dict[str, Group] = {"no_parking": "vehicle", "no_stall": "stall"}


class ZoneLike(Protocol):
    """What class_faults reads of a zone (media.config.Zone, ZoneRule)."""

    kind: str
    classes: list[str] | None



def counted_classes(groups: dict[str, Group]) -> dict[str, list[str]]:
    """The model class names the rules count for each kind of zone, in the config's
    order: `groups` is detectors.classes (class name -> vehicle/person/stall) ->
    {"no_parking": [names of vehicle], "no_stall": [names of stall]}."""
    return {kind: [name for name, group in groups.items() if group == wanted] for kind, wanted in WANTED.items()}


def class_faults(zones: Sequence[ZoneLike], groups: dict[str, Group]) -> list[tuple[int, int, str]]:
    """Each class a zone names that its kind's rule never counts (it would keep the zone
    from ever firing), as (zone index, class index, `'carr' is not a class the detectors
    count for no_parking (vehicle, car, ...)`); [] when there is none."""
    counted = counted_classes(groups)

    def why(kind: str) -> str:
        names = ", ".join(counted[kind]) or f"none: detectors.classes maps no class to {WANTED[kind]}"
        return f"is not a class the detectors count for {kind} ({names})"

    return [(i, j, f"{name!r} {why(zone.kind)}")
            for i, zone in enumerate(zones) for j, name in enumerate(zone.classes or ())
            if name not in counted[zone.kind]]  # fmt: skip


# Frigate's approach: a box that keeps this much overlap with where it stopped is
# stationary. People shift about more than parked cars do.
STATIONARY_IOU: dict[str, float] = {"vehicle": 0.6, "stall": 0.5, "person": 0.3}


# A partial view: the box lies this much inside the anchor and keeps at least this share
# of its area (a walker hides a car's half, or splits its box in two).
PART_INSIDE = 0.85
PART_MIN_AREA = 0.15
# A merged view: the anchor lies this much inside a box at most this many times its area
# (the model boxes the car and the person in front of it together).
WHOLE_INSIDE = 0.85
WHOLE_MAX_AREA = 2.5


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy


def iou(a: Box, b: Box) -> float:
    inter = intersection(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def same_place(anchor: Box, box: Box, threshold: float) -> bool:
    """Whether `box` shows what stands at `anchor`, whole or in part (boxes in pixels).

    True when the boxes overlap by at least `threshold` IoU (the object, with its box's
    jitter), when `box` lies inside the anchor and keeps a fair share of its area (a
    part of the object, the rest hidden), or when `box` holds the anchor whole and is
    not much larger (the object boxed together with something in front of it).
    """
    a, b = area(anchor), area(box)
    if a <= 0 or b <= 0:
        return False
    if iou(anchor, box) >= threshold:
        return True
    inter = intersection(anchor, box)
    if inter / b >= PART_INSIDE and b >= PART_MIN_AREA * a:
        return True
    return inter / a >= WHOLE_INSIDE and b <= WHOLE_MAX_AREA * a


def bottom_centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, box[3]


@dataclass(frozen=True)
class Detection:
    track_id: int | None
    label: str  # the model's class name
    box: Box
    confidence: float = 1.0
    # Since when (s, on the frames' clock) what is in the box has stood still, where the
    # motion gate knows (ZoneGate.rest_since): a record opened for it counts its dwell
    # from then, not from the frame the model happened to look at.
    since: float | None = None


@dataclass(frozen=True)
class ZoneRule:
    name: str
    kind: Literal["no_parking", "no_stall"]
    polygon: list[tuple[float, float]]
    dwell_s: float
    hours: str | None = None  # "HH:MM-HH:MM", may run past midnight
    classes: frozenset[str] | None = None  # the model's classes that count; None: the whole group

    def counts(self, label: str, groups: dict[str, Group]) -> bool:
        """Whether an object of the model's class `label` is what this zone is about: of
        its kind's group (`groups`: class name -> group), and of its `classes` if it has any."""
        return groups.get(label) == WANTED[self.kind] and (self.classes is None or label in self.classes)

    def active(self, when: datetime) -> bool:
        if not self.hours:
            return True
        start, end = (dtime.fromisoformat(t) for t in self.hours.split("-"))
        now = when.time()
        return start <= now < end if start <= end else now >= start or now < end


@dataclass
class Incident:
    zone: str
    kind: str
    group: str
    anchor: Box
    box: Box
    label: str
    first_seen: float
    last_seen: float
    track_ids: set[int] = field(default_factory=set)
    reported: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    apart: set[str] = field(default_factory=set)  # records seen beside it in one frame: others


@dataclass(frozen=True)
class Violation:
    id: str
    camera: str
    zone: str
    kind: str
    label: str
    box: Box  # where it is at confirmation
    anchor: Box  # where it was first seen at rest
    first_seen: float
    confirmed: float
    track_ids: tuple[int, ...]
    incident: str  # the Incident's id (its first-seen picture is kept by that key)


@dataclass
class RuleConfig:
    groups: dict[str, Group]  # model class name -> vehicle / person / stall
    grace_s: float = (
        10.0  # an incident unseen this long is over (occlusion shorter than this is not)
    )
    cooldown_s: float = 300.0  # after an incident that was reported clears
    stall_person_radius: float = 2.0  # a person within this many stall-box widths tends the stall


class ZoneRules:
    """The rules of one camera: feed it each frame's tracked objects, get violations."""

    def __init__(self, camera: str, zones: list[ZoneRule], cfg: RuleConfig):
        self.camera = camera
        self.zones = zones
        self.cfg = cfg
        self._shapes = {z.name: prep(Polygon(z.polygon)) for z in zones}
        self.incidents: dict[str, list[Incident]] = {z.name: [] for z in zones}
        self._cooling: dict[str, list[tuple[Box, float]]] = {z.name: [] for z in zones}
        self._dismissed: dict[str, list[tuple[Box, float]]] = {z.name: [] for z in zones}

    def dismiss(self, zone: str, box: Box, until: float) -> None:
        """A dispatcher said this is no violation: nothing at this spot is reported until `until`."""
        self._dismissed.setdefault(zone, []).append((box, until))

    def active(self) -> list[Incident]:
        return [inc for incidents in self.incidents.values() for inc in incidents]

    def export(self) -> dict:
        """The incidents and cooling spots, for another worker to carry on from (`restore`)."""
        return {
            "incidents": [
                {**asdict(inc), "track_ids": [], "apart": sorted(inc.apart)} for inc in self.active()
            ],
            "cooling": [[zone, list(box), until] for zone, spots in self._cooling.items()
                        for box, until in spots],
        }  # fmt: skip

    def restore(self, state: dict, now: float) -> None:
        """Carry on from another worker's `export`: dwell times, what was reported, cooldowns.

        Track ids are not carried over (they belong to the other worker's tracker); the
        incidents are matched again by where they stand, and each has its grace period
        from `now`: nobody looked while the camera changed hands.
        """
        for data in state.get("incidents", []):
            if data["zone"] in self.incidents:
                inc = Incident(**{**data, "anchor": tuple(data["anchor"]), "box": tuple(data["box"]),
                                  "last_seen": max(data["last_seen"], now), "track_ids": set(),
                                  "apart": set(data.get("apart", []))})  # fmt: skip
                self.incidents[inc.zone].append(inc)
        for zone, box, until in state.get("cooling", []):
            if zone in self._cooling:
                self._cooling[zone].append((tuple(box), until))

    def update(
        self, now: float, detections: list[Detection], wall: datetime | None = None
    ) -> list[Violation]:
        wall = wall or datetime.fromtimestamp(now)
        found: list[Violation] = []
        for zone in self.zones:
            if not zone.active(wall):
                self.incidents[zone.name].clear()  # nothing carries over from outside the hours
                continue
            people = [d for d in detections
                      if self.cfg.groups.get(d.label) == "person" and self._in(zone, d)]  # fmt: skip
            seen = [self._observe(zone, d, now) for d in detections
                    if zone.counts(d.label, self.cfg.groups)]  # fmt: skip
            records = {r.id: r for r in seen if r is not None}
            for r in records.values():  # side by side in one frame: two objects, never one
                r.apart |= records.keys() - {r.id}
            found += self._confirm(zone, now, people)
            self._expire(zone, now)
        return found

    def _in(self, zone: ZoneRule, d: Detection) -> bool:
        return self._shapes[zone.name].contains(Point(*bottom_centre(d.box)))

    def _observe(self, zone: ZoneRule, d: Detection, now: float) -> Incident | None:
        """The record `d` is (updated, merged or opened), or None: not a record's, outside."""
        group = self.cfg.groups[d.label]
        threshold = STATIONARY_IOU[group]
        incidents = self.incidents[zone.name]
        matched = [
            i for i in incidents if i.group == group and same_place(i.anchor, d.box, threshold)
        ]
        if matched:
            inc = self._merge(zone.name, matched)
            inc.box, inc.last_seen = d.box, now
            if d.track_id is not None:
                inc.track_ids.add(d.track_id)
            return inc
        if not self._in(zone, d):
            return None
        rested = now if d.since is None else min(now, d.since)
        inc = Incident(zone.name, zone.kind, group, d.box, d.box, d.label, rested, now,
                       {d.track_id} if d.track_id is not None else set())  # fmt: skip
        incidents.append(inc)
        return inc

    def _merge(self, zone: str, records: list[Incident]) -> Incident:
        """The record a box is, among those it matches: the one that came to rest first
        (it has the dwell to lose). Records the box shows to be one object (one was opened
        on a part of it while it was half hidden) merge into it, with whether they were
        reported. Records once seen side by side in one frame are two objects, whatever box
        later holds both (two cars boxed together): they stay apart."""
        survivor = min(records, key=lambda i: (i.first_seen, not i.reported))
        one = [r for r in records if r is survivor or r.id not in survivor.apart]
        for other in one:
            if other is not survivor:
                survivor.reported |= other.reported
                survivor.last_seen = max(survivor.last_seen, other.last_seen)
                survivor.track_ids |= other.track_ids
                survivor.apart |= other.apart
                self.incidents[zone].remove(other)
        return survivor

    def _confirm(self, zone: ZoneRule, now: float, people: list[Detection]) -> list[Violation]:
        out = []
        for inc in self.incidents[zone.name]:
            # Only what is seen in this very frame (a restored incident is not, until matched).
            if inc.reported or inc.last_seen != now or now - inc.first_seen < zone.dwell_s:
                continue
            if zone.kind == "no_stall" and not self._tended(inc, people):
                continue
            if self._blocked(zone.name, inc.anchor, now):
                inc.reported = True  # remembered, so that it is not checked again
                continue
            inc.reported = True
            out.append(
                Violation(f"{self.camera}:{zone.name}:{inc.id}", self.camera, zone.name, zone.kind, inc.label,
                          inc.box, inc.anchor, inc.first_seen, now, tuple(sorted(inc.track_ids)), inc.id)
            )  # fmt: skip
        return out

    def _tended(self, inc: Incident, people: list[Detection]) -> bool:
        cx, cy = bottom_centre(inc.box)
        reach = self.cfg.stall_person_radius * max(1.0, inc.box[2] - inc.box[0])
        return any(
            (px - cx) ** 2 + (py - cy) ** 2 <= reach**2
            for px, py in (bottom_centre(p.box) for p in people)
        )

    def _blocked(self, zone: str, box: Box, now: float) -> bool:
        spots = self._cooling[zone] + self._dismissed.get(zone, [])
        # The spot itself, by overlap: another vehicle in part of it is not the one let go.
        return any(until > now and iou(b, box) >= STATIONARY_IOU["vehicle"] for b, until in spots)

    def _expire(self, zone: ZoneRule, now: float) -> None:
        keep = []
        for inc in self.incidents[zone.name]:
            if now - inc.last_seen <= self.cfg.grace_s:
                keep.append(inc)
            elif inc.reported:
                self._cooling[zone.name].append((inc.anchor, inc.last_seen + self.cfg.cooldown_s))
        self.incidents[zone.name] = keep
        self._cooling[zone.name] = [(b, t) for b, t in self._cooling[zone.name] if t > now]
        self._dismissed[zone.name] = [
            (b, t) for b, t in self._dismissed.get(zone.name, []) if t > now
        ]
