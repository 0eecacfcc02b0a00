"""`gridwatch demo` as a dispatcher and an officer use it: a violation reaches the wall's
board and pops up with its snapshot at once, its detail has the pictures, the clip, the
audit log and the officer's track, and the dispatcher closes it once the camera has
verified it; every demo tile plays and the tiles fill the screen at 1080p and at 4K; and
a person who signs in as the demo's officer on the phone page takes the next violation
from the ring to the photo that resolves it."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from support.browser import MEDIA_MS
from support.procs import GRIDWATCH, free_port, stop
from support.wall import SEEN_SCRIPT, frames_decoded, sign_in, tile_coverage

DEMO_CAMERAS = {"crossroads", "market-street", "school-gate", "wall-clock", "main-street"}


@dataclass
class Demo:
    base: str
    password: str
    officer_password: str
    proc: subprocess.Popen
    log: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    """One `gridwatch demo` for the module's tests (its first ticket opens ~30 s in)."""
    workdir = tmp_path_factory.mktemp("wall-demo")
    port = free_port()
    log = workdir / "demo.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [GRIDWATCH, "demo", "--port", str(port), "--data-dir", str(workdir / "data")],
            stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
    try:
        password = officer = None
        deadline = time.monotonic() + 120
        while officer is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"the demo exited:\n{log.read_text()[-3000:]}"
            if m := re.search(r"log in as\s+admin / (\S+)", line):
                password = m[1]
            if m := re.search(r"officer\s+p-017 / (\S+)", line):
                officer = m[1]
        assert password and officer, "the demo printed no logins"
        yield Demo(f"http://127.0.0.1:{port}", password, officer, proc, log)
    finally:
        stop(proc, timeout=20)


async def api(http: aiohttp.ClientSession, demo: Demo, path: str) -> dict:
    async with http.post(demo.base + "/api/login", json={"username": "admin", "password": demo.password}) as r:
        token = (await r.json())["token"]
    async with http.get(demo.base + path, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


@pytest.mark.browser
@pytest.mark.timeout(420)
async def test_a_demo_violation_is_seen_followed_and_closed_from_the_wall(demo, browser, http):
    page = await browser.new_page(viewport={"width": 1920, "height": 1080})
    await sign_in(page, demo.base, "admin", demo.password)
    await page.wait_for_selector("#board")
    await page.evaluate(SEEN_SCRIPT)
    opened = time.time()

    # The next illegal parking the street camera raises after the wall is open.
    ticket = None
    async with asyncio.timeout(240):
        while ticket is None:
            tickets = (await api(http, demo, "/api/tickets?limit=50"))["tickets"]
            ticket = next((t for t in tickets if t["category"] == "illegal_parking"
                           and t["created_at"] > opened), None)  # fmt: skip
            await asyncio.sleep(0.5)
    tid = ticket["id"]
    row, toast = f"li.ticket[data-ticket={tid}]", f".toast[data-ticket={tid}]"
    await page.wait_for_selector(row, timeout=5000)
    await page.wait_for_function(f"() => document.querySelector('{toast} img')?.naturalWidth > 0", timeout=5000)
    seen = await page.evaluate("() => window.firstSeen")
    assert seen[f"row:{tid}"] - ticket["created_at"] < 2.0, "the board showed it late"
    assert seen[f"toast:{tid}"] - ticket["created_at"] < 2.0, "the pop-up came late"

    # Its detail: three pictures, the audit log, the officer's track on the map, the clip.
    await page.click(row)
    await page.wait_for_selector(f"#detail[data-ticket={tid}] ol.timeline li[data-action=create]")
    for name in ("first.jpg", "confirmed.jpg", "crop.jpg"):
        await page.wait_for_function(
            f"() => document.querySelector('#detail figure[data-evidence$=\"/{name}\"] img')?.naturalWidth > 0",
            timeout=10000,
        )
    await page.wait_for_selector("#detail ol.timeline li[data-action=dispatch]", timeout=10000)
    await page.wait_for_selector("#detail .track[data-officer=p-017]", timeout=10000)
    await page.wait_for_selector("#map path.ticket-track", timeout=30000)
    await page.wait_for_selector("#detail figure.clip video", timeout=90000)
    await page.eval_on_selector("#detail figure.clip video", "v => v.play()")
    await page.wait_for_function(
        "() => { const v = document.querySelector('#detail figure.clip video');"
        " return v && v.videoWidth > 0 && v.currentTime > 1; }",
        timeout=20000,
    )

    # The officer resolves it, the camera verifies it, the dispatcher closes it here.
    await page.wait_for_selector(f"{row}[data-state=verified]", timeout=180000)
    await page.wait_for_selector("#detail ol.timeline li[data-action=verify]", timeout=5000)
    await page.fill("#detail input[name=reason]", "checked on camera")
    await page.click("#detail button[data-action=close]")
    await page.wait_for_selector("#detail[data-state=closed] ol.timeline li[data-action=close]", timeout=10000)
    closed = (await api(http, demo, f"/api/tickets/{tid}"))
    assert closed["state"] == "closed"
    assert closed["log"][-1]["who"] == "admin" and closed["log"][-1]["why"] == "checked on camera"
    stats = await api(http, demo, "/api/stats?window_s=3600")
    assert stats["all"]["closed"] >= 1
    assert stats["categories"]["illegal_parking"]["closed"] >= 1


@pytest.mark.browser
@pytest.mark.parametrize("size", [(1920, 1080), (3840, 2160)], ids=["1080p", "4k"])
async def test_every_demo_tile_plays_and_the_tiles_fill_the_wall(demo, browser, size):
    page = await browser.new_page(viewport={"width": size[0], "height": size[1]})
    await sign_in(page, demo.base, "admin", demo.password)
    for camera in DEMO_CAMERAS:
        await page.wait_for_selector(f".tile[data-camera={camera}][data-state=playing]", timeout=MEDIA_MS)
    before = await frames_decoded(page)
    assert set(before) == DEMO_CAMERAS
    await page.wait_for_timeout(1500)
    after = await frames_decoded(page)
    assert all(after[c] > before[c] for c in DEMO_CAMERAS), (before, after)
    assert await tile_coverage(page) >= 0.8
    # The map shows the district the demo ships, the cameras and the officer on it.
    assert await page.locator("#map path.leaflet-interactive.grid").count() == 4
    assert await page.locator("#map .cam-marker").count() == len(DEMO_CAMERAS)
    await page.wait_for_selector("#map .officer-marker[data-officer=p-017]", timeout=10000)


@pytest.mark.browser
@pytest.mark.timeout(480)
async def test_a_person_takes_the_demo_officers_phone_and_works_a_violation(demo, browser, http):
    # He takes over between two cases: the simulated officer has none open.
    async with asyncio.timeout(240):
        while any(t["assignee"] == "p-017" and t["state"] in ("dispatched", "accepted", "on_scene")
                  for t in (await api(http, demo, "/api/tickets?limit=50"))["tickets"]):  # fmt: skip
            await asyncio.sleep(1)
    start = {"latitude": 31.2612, "longitude": 120.9203}  # ~120 m north of the street camera
    context = await browser.new_context(viewport={"width": 412, "height": 915}, geolocation=start,
                                        permissions=["geolocation"])  # fmt: skip
    phone = await context.new_page()
    await phone.goto(demo.base + "/phone")
    await phone.fill("input[name=username]", "p-017")
    await phone.fill("input[name=password]", demo.officer_password)
    await phone.click("button[type=submit]")
    await phone.wait_for_selector("#status[data-state=available]", timeout=10000)
    wall = await browser.new_page(viewport={"width": 1920, "height": 1080})
    await sign_in(wall, demo.base, "admin", demo.password)

    # The next illegal parking rings on his phone, with its picture; stalls he declines.
    async with asyncio.timeout(240):
        while True:
            await phone.wait_for_selector("#offer", timeout=200000)
            tid = await phone.get_attribute("#offer", "data-ticket")
            ticket = await api(http, demo, f"/api/tickets/{tid}")
            if ticket["category"] == "illegal_parking":
                break
            await phone.click("#decline-ticket")
            await phone.click("#decline-confirm")
            await phone.wait_for_selector(f"#offer[data-ticket={tid}]", state="detached")
    await phone.wait_for_function("() => document.querySelector('#offer img.snapshot')?.naturalWidth > 0")
    assert int(await phone.get_attribute("#offer .far", "data-distance")) > 50
    await phone.click("#accept-ticket")
    await phone.wait_for_selector(f"#working[data-ticket={tid}][data-state=accepted]")
    assert (await phone.get_attribute("#navigate", "href")).startswith("geo:")

    # He walks there; the server sees him arrive from his track.
    here = [start["latitude"], start["longitude"]]
    goal = [ticket["location"]["lat"], ticket["location"]["lon"]]
    for i in range(1, 21):
        point = [here[k] + (goal[k] - here[k]) * i / 20 for k in (0, 1)]
        await context.set_geolocation({"latitude": point[0], "longitude": point[1]})
        await asyncio.sleep(0.5)
    await phone.wait_for_selector(f"#working[data-ticket={tid}][data-state=on_scene]", timeout=15000)

    # A photo from his camera and a note resolve it; the wall shows the photo.
    await phone.click("#open-camera")
    await phone.wait_for_function("() => document.querySelector('.camera video')?.videoWidth > 0", timeout=MEDIA_MS)
    await phone.click("#take-photo")
    await phone.wait_for_selector(".photos img.photo")
    await phone.fill("#resolve-note", "driver found, vehicle moved")
    await phone.click("#resolve-ticket")
    await phone.wait_for_selector(f"#working[data-ticket={tid}][data-state=resolved]")
    await wall.click(f"li.ticket[data-ticket={tid}]")
    await wall.wait_for_function(
        "() => document.querySelector('#detail figure[data-evidence*=\"-photos/\"] img')?.naturalWidth > 0",
        timeout=10000,
    )
    # The camera verifies the spot is clear; the dispatcher closes it on the wall.
    await wall.wait_for_selector(f"li.ticket[data-ticket={tid}][data-state=verified]", timeout=180000)
    await wall.click("#detail button[data-action=close]")
    await wall.wait_for_selector("#detail[data-state=closed]", timeout=10000)
    done = await api(http, demo, f"/api/tickets/{tid}")
    assert done["state"] == "closed"
    actions = [(e["action"], e["who"]) for e in done["log"]]
    assert ("accept", "p-017") in actions and ("resolve", "p-017") in actions
    assert ("arrive", "p-017") in actions  # from his track, not a button
    assert any(e["action"] == "evidence" and e["why"].startswith("photo ") for e in done["log"])
    resolve = next(e for e in done["log"] if e["action"] == "resolve")
    assert resolve["why"] == "driver found, vehicle moved"
