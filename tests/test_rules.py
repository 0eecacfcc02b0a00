"""Zone rules on tracked objects: the scenarios of a parking and a stall zone, frame by frame."""

from __future__ import annotations

import json
from datetime import datetime

from gridwatch.contracts.detections import Sighting, VerifyRequest
from gridwatch.detectors.rules import Detection, RuleConfig, ZoneRule, ZoneRules
from gridwatch.detectors.verify import Verifier

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


def test_another_worker_carries_on_from_the_exported_state():
    # Worker A follows a car for 40 s of its 60 s dwell, then dies; B restores A's state.
    a = rules()
    assert run(a, [[car(200)]] * seconds(40)) == []
    b = rules()
    b.restore(json.loads(json.dumps(a.export())), 1000 + 40)  # through Redis, as JSON
    found = run(b, [[car(201, track=99)]] * seconds(30), start=1000 + 40)
    assert len(found) == 1 and found[0].first_seen == 1000  # the dwell ran on
    # And a third worker after the report raises nothing for the same car.
    c = rules()
    c.restore(json.loads(json.dumps(b.export())), 1000 + 70)
    assert run(c, [[car(200, track=5)]] * seconds(60), start=1000 + 70) == []


def test_verifier_clear_after_clear_s_and_not_clear_after_the_window():
    request = VerifyRequest(
        ticket="T-1", since=1000.0,
        detection=Sighting(zone="np-1", kind="no_parking", label="car", box=(200, 320, 360, 420)),
    )  # fmt: skip
    v = Verifier({"np-1": PARKING.polygon}, GROUPS, clear_s=5, window_s=30)
    v.sync([request])
    # Still there at first, then gone: clear once it has been gone 5 s.
    outcomes = [v.update(1000 + t / FPS, [car(200)] if t < seconds(10) else [])
                for t in range(seconds(20))]  # fmt: skip
    done = [(i, o) for i, out in enumerate(outcomes) for o in out]
    assert len(done) == 1 and done[0][1].clear and done[0][0] == seconds(15)
    assert v.pending == {}
    # A car elsewhere in the zone does not block; the one on the spot does, until the window ends.
    v.sync([request])
    elsewhere = Detection(5, "car", (440, 320, 580, 420))
    out = [v.update(1000 + t / FPS, [car(205), elsewhere]) for t in range(seconds(40))]
    done = [(i, o) for i, o_list in enumerate(out) for o in o_list]
    assert len(done) == 1 and not done[0][1].clear and done[0][0] == seconds(30)
    assert "car still in np-1" in done[0][1].why
