"""Plates (issue 17): the reader on rendered GA 36-2018 plates, and end to end — a vehicle
parked with a plate opens a ticket that carries the plate and its picture, and the
repeat-offender route finds it; a vehicle without a readable plate still opens one.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import urllib.error
import urllib.parse
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from gridwatch.contracts.plates import as_plate, plate_key
from gridwatch.detectors.plate_art import plate_image, put_plate, random_plate
from gridwatch.detectors.plates import PlateReader, normalise
from gridwatch.detectors.scenarios import PLATE_TEXT, ROAD
from gridwatch.detectors.scenes import paste, sprites, street_frames
from support.procs import DEMO_WEIGHTS, GRIDWATCH
from support.scenario_run import ScenarioRun


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader()


def on_street(text: str | None, plate_h: int, vehicle_h: int = 160, seed: int = 0) -> np.ndarray:
    """A street frame (640x480) with the truck and, when `text`, its plate at the rear;
    JPEG-coded at the sampler's quality, as the worker gets it; cut round the vehicle."""
    frame = street_frames()[700 + seed].copy()
    truck = sprites()[5]
    x, y = 120, 460
    box = paste(frame, truck, x, y, vehicle_h)
    assert box is not None
    if text:
        put_plate(frame, text, x + 4, y - round(0.38 * vehicle_h) - plate_h // 2, plate_h)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    x1, y1, x2, y2 = box
    return img[max(0, y1 - 20) : y2 + 10, max(0, x1 - 30) : x2 + 30]


def test_normalise_keeps_the_format_and_mends_only_what_it_makes_unambiguous():
    assert normalise("沪A·D7521") == "沪AD7521"
    assert normalise("“京a 12345”") == "京A12345"
    assert normalise("沪8·D752I") == "沪BD7521"  # the letter's place: 8 is B; the serial: I is 1
    assert normalise("粤B·D12345") == "粤BD12345"  # new energy: six after the letter
    assert normalise("沪AD752") is None  # a character short: not guessed at
    assert normalise("沪AD75211X") is None
    assert normalise("AD75211") is None  # no province
    assert normalise("沪A·D75Q1") == "沪AD75Q1"  # Q is a letter plates use: kept
    assert as_plate("沪a·d7521") == "沪AD7521" and as_plate("沪AD752O") is None


def test_the_reader_reads_rendered_plates_on_a_vehicle(reader: PlateReader):
    rng = random.Random(5)
    for i in range(6):
        text = random_plate(rng)
        height = (24, 32)[i % 2]
        read = reader.read(on_street(text, height, seed=i))
        assert read is not None and read.text == text, (text, height, read and read.text)
        assert 0.5 <= read.confidence <= 1  # its least sure character
        ph, pw = read.crop.shape[:2]
        # The crop is the plate (its frame and a little margin), not the vehicle.
        assert height <= ph <= height * 1.6 and 2 < pw / ph < 4, read.crop.shape


def test_no_plate_no_read(reader: PlateReader):
    assert reader.read(on_street(None, 0)) is None
    blue = np.zeros((60, 200, 3), np.uint8)
    blue[:] = (160, 70, 0)  # a blue sign of a plate's shape, with nothing written on it
    assert reader.read(blue) is None


def test_a_plate_too_small_is_not_read_as_another(reader: PlateReader):
    """At 10-14 px the recogniser takes small province characters for others, sure of
    itself (tests/bench/plates.py): nothing is read rather than a plate that would point
    at another vehicle's owner."""
    for i, text in enumerate(("宁AD7521", "藏B12345", "琼C8K3J2")):
        for height in (10, 14):
            assert reader.read(on_street(text, height, seed=i)) is None, (text, height)


def test_the_drawn_plate_has_the_standards_proportions_and_colours():
    img = plate_image("沪AD7521", 140)
    assert img.shape == (140, 440, 3)
    b, _, r = img[5:135, 5:435].reshape(-1, 3).mean(axis=0)
    assert b > 100 and r < 60  # blue, with white characters on it


# End to end ---------------------------------------------------------------------------------

CAMERAS = {
    "plated": (
        "park-plate",
        [{"name": "np-1", "kind": "no_parking", "polygon": ROAD, "dwell_s": 6}],
    ),
    "bare": ("park", [{"name": "np-1", "kind": "no_parking", "polygon": ROAD, "dwell_s": 6}]),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, users, scenario_videos):
    with ScenarioRun(
        tmp_path_factory.mktemp("plates"), scenario_videos, CAMERAS, users
    ) as scenario:
        yield scenario


def api_error(run: ScenarioRun, path: str, user: str = "dispatcher") -> tuple[int, dict]:
    try:
        run.api(path, user)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    raise AssertionError(f"{path}: no error")


def test_a_parked_vehicle_opens_a_ticket_carrying_its_plate(run):
    ticket = run.wait_ticket("plated", until=55)
    assert ticket["plate"] is not None, (ticket, run.worker_logs()[-3000:])
    assert ticket["plate"]["text"] == PLATE_TEXT and ticket["plate"]["confidence"] >= 0.5
    # The ticket as GET /api/tickets/{id} shows it carries the plate too.
    assert run.api(f"/api/tickets/{ticket['id']}")["plate"]["text"] == PLATE_TEXT
    listed = {
        e["name"].rsplit("/", 1)[-1]: e["url"]
        for e in run.api(f"/api/tickets/{ticket['id']}/evidence")["evidence"]
    }
    assert {"first.jpg", "confirmed.jpg", "crop.jpg", "plate.jpg"} <= listed.keys()
    crop = cv2.imdecode(np.frombuffer(run.api(listed["plate.jpg"]), np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None and 2 < crop.shape[1] / crop.shape[0] < 4, crop.shape  # the plate alone
    b, _, r = crop.reshape(-1, 3).mean(axis=0)
    assert b > r + 40  # a blue plate


def test_the_evidence_package_holds_the_plate_picture_and_text_and_verifies(run, tmp_path):
    ticket = run.wait_ticket("plated", until=55)
    package = tmp_path / "evidence.zip"
    package.write_bytes(run.api(f"/api/tickets/{ticket['id']}/evidence.zip"))
    with zipfile.ZipFile(package) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert (
            manifest["plate"]["text"] == PLATE_TEXT and manifest["plate"]["picture"] == "plate.jpg"
        )
        plate = cv2.imdecode(np.frombuffer(z.read("plate.jpg"), np.uint8), cv2.IMREAD_COLOR)
        assert plate is not None and 2 < plate.shape[1] / plate.shape[0] < 4
        # The model that ran, as the worker loaded it.
        digest = hashlib.sha256(Path(DEMO_WEIGHTS).read_bytes()).hexdigest()
        assert manifest["model"] == {"file": "gridwatch-demo.pt", "sha256": digest}
    key = tmp_path / "key.pem"
    key.write_text(run.api("/api/evidence/key")["public_key"])
    checked = subprocess.run([GRIDWATCH, "verify-evidence", str(package), "--key", str(key)],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_repeat_offender_route_lists_the_plates_tickets(run):
    ticket = run.wait_ticket("plated", until=55)
    quoted = urllib.parse.quote(PLATE_TEXT)
    found = run.api(f"/api/plates/{quoted}/tickets")
    assert found["plate"] == PLATE_TEXT and found["count"] == 1
    assert [t["id"] for t in found["tickets"]] == [ticket["id"]]
    # As a person types it: a dot, lower case.
    typed = urllib.parse.quote(PLATE_TEXT[:2].lower() + "·" + PLATE_TEXT[2:])
    assert [t["id"] for t in run.api(f"/api/plates/{typed}/tickets")["tickets"]] == [ticket["id"]]
    # Written with the ticket, in its own index.
    assert [raw.decode() for raw in run.r.zrange(plate_key(PLATE_TEXT), 0, -1)] == [ticket["id"]]
    # A plate nobody was ticketed for lists none; what is not a plate is a 400 in JSON.
    empty = run.api(f"/api/plates/{urllib.parse.quote('京A12345')}/tickets")
    assert empty == {"plate": "京A12345", "count": 0, "tickets": []}
    for bad in ("ABC1234", urllib.parse.quote("沪AO7521"), urllib.parse.quote("沪A75"), "%FF%FE"):
        status, body = api_error(run, f"/api/plates/{bad}/tickets")
        assert status == 400 and body["error"] == "bad_plate", (bad, body)
    status, body = api_error(run, f"/api/plates/{quoted}/tickets?limit=0")
    assert status == 400 and body["error"] == "bad_query"
    assert api_error(run, f"/api/plates/{quoted}/tickets", "viewer")[0] == 403


def test_a_vehicle_without_a_readable_plate_still_opens_its_ticket(run):
    ticket = run.wait_ticket("bare", until=55)
    assert ticket["plate"] is None and ticket["category"] == "illegal_parking"
    assert not any(e.endswith("plate.jpg") for e in ticket["evidence"])
    assert run.r.xlen("gw:violations:dead") == 0
    assert "Traceback" not in run.worker_logs()
