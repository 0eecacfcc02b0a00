"""Zone rules on tracked objects: the scenarios of a parking and a stall zone, frame by frame."""

from __future__ import annotations

from datetime import datetime

from detectors.rules import Detection, RuleConfig, ZoneRule, ZoneRules

FPS = 2.0
NOON = datetime(2026, 11, 23, 12, 0, 0)
NIGHT = datetime(2026, 11, 23, 23, 30, 0)
PARKING = ZoneRule("np-1", "no_parking", [(100, 300), (600, 300), (600, 500), (100, 500)], dwell_s=60,
                   hours="07:00-19:00")  # fmt: skip
SIDEWALK = ZoneRule(
    "sw-1", "no_stall", [(700, 300), (1200, 300), (1200, 600), (700, 600)], dwell_s=120
)
GROUPS = {
    "car": "vehicle",
    "truck": "vehicle",
    "person": "person",
    "umbrella": "stall",
    "dining table": "stall",
}


def rules() -> ZoneRules:
    return ZoneRules("gate", [PARKING, SIDEWALK], RuleConfig(GROUPS, grace_s=10, cooldown_s=300))


def car(x: float, y: float = 320, track: int = 1, label: str = "car") -> Detection:
    return Detection(track, label, (x, y, x + 160, y + 100))


def run(r: ZoneRules, frames, wall=NOON, start: float = 1000.0) -> list:
    """frames: a list of detection lists, one per frame at FPS."""
    out = []
    for i, dets in enumerate(frames):
        out += r.update(start + i / FPS, dets, wall)
    return out


def seconds(s: float) -> int:
    return int(s * FPS)


def test_car_parked_past_dwell_is_one_violation():
    r = rules()
    found = run(r, [[car(200)]] * seconds(200))
    assert len(found) == 1
    v = found[0]
    assert (v.zone, v.kind, v.label, v.camera) == ("np-1", "no_parking", "car", "gate")
    assert v.confirmed - v.first_seen == 60
    assert v.id.startswith("gate:np-1:")


def test_passing_or_briefly_stopping_car_is_none():
    r = rules()
    passing = [[car(0 + 8 * i)] for i in range(seconds(40))]  # 16 px a second through the zone
    stop_short = [[car(300, track=2)]] * seconds(50) + [[]] * seconds(30)
    assert run(r, passing + stop_short) == []


def test_occluded_parked_car_found_again_is_still_one():
    r = rules()
    frames = (
        [[car(200, track=1)]] * seconds(30)
        + [[]] * seconds(6)
        + [[car(202, track=7)]] * seconds(60)
    )
    found = run(r, frames)
    assert len(found) == 1
    assert found[0].track_ids == (1, 7)
    assert (
        found[0].confirmed - found[0].first_seen == 60
    )  # the dwell counts from before the occlusion


def test_outside_active_hours_is_none():
    assert run(rules(), [[car(200)]] * seconds(200), wall=NIGHT) == []


def test_box_overlapping_the_zone_but_standing_outside_is_none():
    # A car nearer the camera: its box covers the zone's lower part, its wheels are below it.
    in_front = Detection(1, "car", (200, 420, 360, 560))
    assert run(rules(), [[in_front]] * seconds(200)) == []


def test_cooldown_and_dismissal_keep_a_spot_quiet():
    r = rules()
    first = run(r, [[car(200)]] * seconds(70) + [[]] * seconds(15))
    assert len(first) == 1
    # Another car at the same spot within the cooldown: nothing; elsewhere in the zone: one.
    again = run(r, [[car(205, track=3), car(420, track=4)]] * seconds(70), start=1100)
    assert [v.box[0] for v in again] == [420]
    r2 = rules()
    r2.dismiss("np-1", (200, 320, 360, 420), until=5000)
    assert run(r2, [[car(200)]] * seconds(100)) == []


def test_street_stall_needs_stall_objects_and_people_together():
    r = rules()
    umbrella = Detection(11, "umbrella", (800, 400, 900, 500))
    vendor = Detection(12, "person", (910, 380, 960, 520))
    walkers = [[Detection(20 + i, "person", (700 + 20 * k, 380, 750 + 20 * k, 520)) for i in range(3)]
               for k in range(seconds(30))]  # fmt: skip
    assert run(r, walkers) == []  # people walking through: no stall objects, no stall
    assert (
        run(rules(), [[umbrella]] * seconds(200)) == []
    )  # an umbrella left alone: nobody tends it
    found = run(r, [[umbrella, vendor]] * seconds(200), start=2000)
    assert len(found) == 1 and found[0].kind == "no_stall" and found[0].label == "umbrella"
