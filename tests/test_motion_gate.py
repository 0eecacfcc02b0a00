"""The zone gate on scenario frames (real street footage with real images composed in):
the model is woken when something comes to rest in a zone, leaves it, or is uncovered,
and not by people walking about, traffic passing or anything outside the zones."""

from __future__ import annotations

import dataclasses

import cv2

from gridwatch.detectors.motion import ZoneGate
from gridwatch.detectors.scenarios import PAVEMENT, ROAD, SCENARIOS, frames
from gridwatch.detectors.worker import rested
from gridwatch.media.config import Zone

TRUCK = (240, 335, 500, 445)  # where the scenarios' vehicle stops


def pixels(polygon: list) -> list[tuple[float, float]]:
    """A zone relative to the picture, in pixels of the scenarios' 640x480 frames."""
    return Zone(name="z", kind="no_parking", polygon=polygon).pixels(640, 480)


def woken(name: str, zones: list, fps: float = 2, busy: bool = False) -> list[float]:
    """Scenario times (s) at which the gate wakes the model (which then looks)."""
    gate, out = ZoneGate([pixels(z) for z in zones], (640, 480)), []
    scenario = dataclasses.replace(SCENARIOS[name], busy=busy)
    step = round(10 / fps)
    for i, img in enumerate(frames(scenario)):
        if i % step == 0:
            jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1]
            if gate.look(cv2.imdecode(jpeg, cv2.IMREAD_REDUCED_GRAYSCALE_4), i / 10):
                gate.looked()
                out.append(i / 10)
    return out


def test_a_vehicle_coming_to_rest_in_a_zone_wakes_it_within_a_second_and_leaving_again():
    times = woken("park-leave", [ROAD])  # stops at 5 s, drives off at 22 s
    assert times[0] == 0  # the first frame is always looked at
    assert any(5 <= t <= 6 for t in times), times
    assert any(22 <= t <= 24 for t in times), times
    assert not [t for t in times if 7 < t < 22 or t > 26.5], times  # nothing while it stands


FAR_SIDE = [[0, 0.25], [1, 0.25], [1, 0.375], [0, 0.375]]  # across the street, away from the road


def test_the_same_outside_every_zone_wakes_nothing():
    assert woken("park-leave", [FAR_SIDE]) == [0]


def test_passing_traffic_and_walkers_wake_nothing():
    assert woken("pass", [ROAD]) == [0]
    assert woken("walkers", [PAVEMENT]) == [0]


def test_a_walker_crossing_in_front_of_a_parked_vehicle_wakes_nothing():
    times = woken("walker-in-front-0ms", [ROAD])
    assert not [t for t in times if t > 12], times


def test_a_busy_street_wakes_it_for_a_small_share_of_frames():
    # vtest.avi's own people walk, stop and talk in both zones in every frame; the old
    # gate woke the model on every one of them.
    for fps in (1, 2):
        frames_n = sum(round(SCENARIOS[n].seconds * fps) for n in ("park", "walkers", "stall"))
        looks = sum(
            len(woken(n, [ROAD, PAVEMENT], fps, busy=True)) for n in ("park", "walkers", "stall")
        )
        assert looks <= 0.2 * frames_n, (fps, looks, frames_n)


def test_rest_since_is_when_the_vehicle_stopped_and_calm_says_when_it_can_be_seen():
    gate = ZoneGate([pixels(ROAD)], (640, 480))
    scenario = SCENARIOS["walker-in-front-0ms"]  # stops at 8 s; walker in front 30.5-34 s
    calm = {}
    for i, img in enumerate(frames(scenario)):
        if i % 5 == 0:
            t = i / 10
            if gate.look(cv2.resize(img, (160, 120)), t):
                gate.looked()
            if t == 10:
                assert gate.rest_since(TRUCK) == 8.0
            calm[t] = gate.calm(TRUCK)
    assert all(calm[t] for t in (12, 20, 29, 36, 40))
    assert not all(calm[t] for t in (31, 31.5, 32, 32.5, 33))


def test_a_rest_is_never_dated_before_the_models_last_look():
    # A grey car on a grey road changes few pixels as it parks: the gate may date its rest
    # from long before. The model's previous look did not find it, so it was not there.
    assert rested(1000.0, looked_at=1030.0) == 1030.0
    assert rested(1040.0, looked_at=1030.0) == 1040.0
    assert rested(None, looked_at=1030.0) is None and rested(1000.0, None) == 1000.0
