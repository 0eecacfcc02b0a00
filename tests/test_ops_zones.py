"""The zone editor (issue 18) in Chromium against real servers: zones are drawn with the
mouse on the camera's snapshot, moved, trimmed and saved relative to the picture; a zone
drawn there is used by the running detector (a scenario vehicle parked in it opens a
ticket); a zone that crosses itself is refused by the server with the point named and
ringed on the picture, and nothing is saved."""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np
import pytest
from conftest import ARTIFACTS
from playwright.async_api import Page

from gridwatch.detectors.scenarios import SCENARIOS, frames
from support.procs import PASSWORDS
from support.scenario_run import ScenarioRun
from support.wall import leaving_asks, sign_in

Point = tuple[float, float]


async def open_editor(browser, base: str, camera: str, user: str = "dispatcher") -> Page:
    """Sign in on /ops and open the camera's zone editor; returns once the snapshot shows."""
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await sign_in(page, base, user, PASSWORDS[user], f"/ops#/cameras/{camera}/zones")
    await page.wait_for_selector("#zone-stage img", timeout=30000)
    return page


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"ops-zones-{name}.png"), full_page=True)


async def screen_xy(page: Page, p: Point) -> Point:
    """A point relative to the picture (0-1) -> where it is on the screen, in CSS px."""
    box = await page.locator("#zone-stage svg").bounding_box()
    assert box and box["width"] > 100, box
    return box["x"] + p[0] * box["width"], box["y"] + p[1] * box["height"]


async def click_at(page: Page, p: Point, **options) -> None:
    await page.mouse.click(*await screen_xy(page, p), **options)


async def drag(page: Page, start: Point, end: Point) -> None:
    await page.mouse.move(*await screen_xy(page, start))
    await page.mouse.down()
    x, y = await screen_xy(page, end)
    await page.mouse.move(x, y, steps=5)
    await page.mouse.up()


async def draw(page: Page, points: list[Point]) -> None:
    """A new zone through `points`, closed by clicking its first point."""
    await page.click("#zones-new")
    for p in points:
        await click_at(page, p)
    await click_at(page, points[0])
    await page.wait_for_selector("#zones-new:not([disabled])")


async def shown(page: Page, zone: int) -> list[Point]:
    """Zone `zone`'s points as drawn on the picture, relative to it (0-1)."""
    return await page.evaluate(
        """(i) => {
          const svg = document.querySelector("#zone-stage svg");
          const [, , w, h] = svg.getAttribute("viewBox").split(" ").map(Number);
          const shape = svg.querySelector(`g[data-zone="${i}"] polygon`);
          return shape.getAttribute("points").trim().split(" ")
            .map((p) => p.split(",").map(Number)).map(([x, y]) => [x / w, y / h]);
        }""",
        zone,
    )


async def offered(item) -> list[str]:
    """The class names a zone's fields offer to tick."""
    return await item.locator("input[name=class]").evaluate_all("(boxes) => boxes.map((b) => b.value)")


def near(got, want, tol: float = 0.01) -> bool:
    return len(got) == len(want) and all(
        abs(a[0] - b[0]) <= tol and abs(a[1] - b[1]) <= tol for a, b in zip(got, want, strict=True)
    )


async def stored(http, gw, camera: str) -> list[dict]:
    h = {"Authorization": f"Bearer {gw.token('dispatcher')}"}
    async with http.get(f"{gw.base}/api/cameras/{camera}/zones", headers=h) as r:
        assert r.status == 200
        return (await r.json())["zones"]


# A zone given in pixels of a 1280x720 picture (as drawn on a 720p snapshot): the editor
# shows it divided by its frame, on the 640x360 stream's snapshot.
FRAMED = {"name": "gate-np", "kind": "no_parking", "polygon": [[128, 72], [640, 72], [640, 360], [128, 360]],
          "frame": [1280, 720], "dwell_s": 60, "hours": "07:00-19:00"}  # fmt: skip
VEHICLES = ["vehicle", "car", "truck", "bus", "motorcycle"]  # detectors.classes' vehicles (the default)
FRAMED_REL = [(0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.1, 0.5)]


@pytest.mark.browser
async def test_zones_are_drawn_moved_trimmed_and_saved_relative_to_the_picture(
    gridwatch_factory, browser, http
):
    # The zone was given the class "carr" while the detectors counted it (another model);
    # they count it no more since: the zone keeps a class that would keep it from firing.
    config = {"cameras": [{"id": "gate", "source": "lavfi:testsrc2=size=640x360:rate=10", "zones": [FRAMED]}],
              "detectors": {"classes": {"carr": "vehicle", "car": "vehicle"}}}  # fmt: skip
    gw = gridwatch_factory(config)
    async with http.put(gw.base + "/api/cameras/gate/zones", json={"zones": [{**FRAMED, "classes": ["carr"]}]},
                        headers={"Authorization": f"Bearer {gw.token('dispatcher')}"}) as r:  # fmt: skip
        assert r.status == 200, await r.text()
    gw.stop()
    del gw.config["detectors"]
    gw.start()
    page = await open_editor(browser, gw.base, "gate")
    assert near(await shown(page, 0), FRAMED_REL)
    assert await page.locator("#zones-dirty").count() == 0
    # Nothing to save: the Save button does not look like one to press.
    save_look = "(b) => [b.disabled, getComputedStyle(b).backgroundColor]"
    assert await page.eval_on_selector("#zones-save", save_look) == [True, "rgb(23, 32, 43)"]  # --panel2

    # Drawn with the mouse: three points, one taken back, two more, closed on the first.
    await page.click("#zones-new")
    for p in [(0.6, 0.2), (0.9, 0.2), (0.5, 0.5)]:
        await click_at(page, p)
    await page.click("#zones-undo")
    for p in [(0.9, 0.7), (0.6, 0.7)]:
        await click_at(page, p)
    await page.wait_for_selector("#zone-stage circle.vertex.closer")
    await click_at(page, (0.6, 0.2))
    await page.wait_for_selector("#zones-new:not([disabled])")
    drawn = [(0.6, 0.2), (0.9, 0.2), (0.9, 0.7), (0.6, 0.7)]
    assert near(await shown(page, 1), drawn)
    item = page.locator('li.zone-item[data-zone="1"]')
    await item.locator("input[name=name]").fill("drawn-np")
    await item.locator("input[name=dwell_s]").fill("5")
    await item.locator("input[name=from]").fill("08:00")
    await item.locator("input[name=to]").fill("20:30")
    # The classes offered are the ones the detectors count for the zone's kind; another
    # kind drops those of the old one.
    assert await offered(item) == VEHICLES
    assert "none ticked: every class listed" in await item.locator("fieldset.classes legend").inner_text()
    await item.locator('input[name=class][value="truck"]').check()
    await item.locator("select[name=kind]").select_option("no_stall")
    assert "truck" not in await offered(item) and "umbrella" in await offered(item)
    assert await item.locator("input[name=class]:checked").count() == 0
    await item.locator("select[name=kind]").select_option("no_parking")
    assert await item.locator('input[name=class][value="truck"]').is_checked() is False
    await item.locator('input[name=class][value="truck"]').check()
    await page.wait_for_selector("#zones-dirty")
    await shot(page, "1-drawn")
    assert await page.eval_on_selector("#zones-save", save_look) == [False, "rgb(31, 111, 235)"]  # primary

    # A point dragged, the zone dragged whole, a point removed with a right-click.
    await drag(page, (0.9, 0.7), (0.95, 0.8))
    drawn[2] = (0.95, 0.8)
    assert near(await shown(page, 1), drawn)
    await drag(page, (0.75, 0.4), (0.7, 0.45))
    drawn = [(x - 0.05, y + 0.05) for x, y in drawn]
    assert near(await shown(page, 1), drawn)
    await page.locator('#zone-stage circle.vertex[data-point="3"]').click(button="right")
    del drawn[3]
    assert near(await shown(page, 1), drawn)
    # A point added by dragging an edge's middle handle, one removed with Delete; a zone
    # keeps three.
    middle = ((drawn[0][0] + drawn[1][0]) / 2, (drawn[0][1] + drawn[1][1]) / 2)
    await drag(page, middle, (middle[0], middle[1] - 0.1))
    drawn.insert(1, (middle[0], middle[1] - 0.1))
    assert near(await shown(page, 1), drawn)
    await page.locator('#zone-stage circle.vertex[data-point="0"]').click()
    await page.keyboard.press("Delete")
    del drawn[0]
    assert near(await shown(page, 1), drawn)
    await page.locator('#zone-stage circle.vertex[data-point="0"]').click()
    await page.keyboard.press("Delete")
    assert "at least 3 points" in await page.locator("#zones-note").inner_text()
    assert near(await shown(page, 1), drawn)
    # The framed zone dragged too: it is saved relative to the picture from now on.
    await drag(page, (0.3, 0.3), (0.32, 0.3))
    moved = [(x + 0.02, y) for x, y in FRAMED_REL]
    assert near(await shown(page, 0), moved)
    await shot(page, "2-edited")

    # Leaving with unsaved changes asks; staying keeps them.
    assert "unsaved" in await leaving_asks(page, "#to-cameras")
    assert "/zones" in page.url and await page.locator("#zones-dirty").count() == 1

    # The config's "carr" is shown struck out, and refused before anything is sent.
    first = page.locator('li.zone-item[data-zone="0"]')
    assert await first.locator("label.stray input[value=carr]").is_checked()
    await page.click("#zones-save")
    error = first.locator('.field-error[data-field="classes"]')
    await error.wait_for()
    assert "never count carr" in await error.inner_text()
    assert (await stored(http, gw, "gate"))[0]["classes"] == ["carr"]
    await shot(page, "2b-stray-class")
    await first.locator("input[value=carr]").click()  # unticked, it is offered no more
    await first.locator("input[value=carr]").wait_for(state="detached")
    await page.click("#zones-save")
    await page.wait_for_selector("#zones-dirty", state="detached")
    zones = await stored(http, gw, "gate")
    assert [z["name"] for z in zones] == ["gate-np", "drawn-np"]
    assert all(z["frame"] is None for z in zones), zones
    assert near(zones[0]["polygon"], moved, 0.005) and near(zones[1]["polygon"], drawn, 0.005)
    assert zones[0]["hours"] == "07:00-19:00" and zones[0]["dwell_s"] == 60
    assert zones[1]["dwell_s"] == 5 and zones[1]["hours"] == "08:00-20:30"
    assert zones[1]["classes"] == ["truck"] and zones[0]["classes"] is None

    # Two points are not a zone: the page says so at the zone and sends nothing.
    await page.click("#zones-new")
    for p in [(0.1, 0.8), (0.3, 0.8)]:
        await click_at(page, p)
    await page.click("#zones-save")
    error = page.locator('li.zone-item[data-zone="2"] .field-error[data-field="polygon"]')
    await error.wait_for()
    assert "at least 3 points" in await error.inner_text()
    await shot(page, "3-too-few-points")
    assert len(await stored(http, gw, "gate")) == 2
    await page.locator('li.zone-item[data-zone="2"] button.delete').click()
    await page.wait_for_selector("#zones-dirty", state="detached")

    # Discard puts back what is saved.
    await drag(page, (0.12, 0.12), (0.2, 0.3))
    await page.wait_for_selector("#zones-dirty")
    await page.click("#zones-discard")
    await page.wait_for_selector("#zones-dirty", state="detached")
    assert near(await shown(page, 0), moved)


def parked_box(scenario: str, t: float) -> tuple[int, int, int, int]:
    """Where the scenario's vehicle stands at time t, as (x1, y1, x2, y2) pixels: what its
    frame at t has that its empty street (the first frame) has not."""
    frame_at = round(t * 10)
    pictures = frames(SCENARIOS[scenario])
    empty = next(pictures).astype(np.int16)
    parked = next(itertools.islice(pictures, frame_at - 1, None)).astype(np.int16)
    ys, xs = np.nonzero(np.abs(parked - empty).max(axis=2) > 40)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


async def wait_ticket(run: ScenarioRun, camera: str, zone: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [t for t in (await asyncio.to_thread(run.tickets)).get(camera, [])
                 if t["detection"]["zone"] == zone]  # fmt: skip
        if found:
            return found[0]
        await asyncio.sleep(0.5)
    logs = run.worker_logs()[-3000:]
    raise AssertionError(f"no ticket for {camera}/{zone} in {timeout_s} s\n{logs}")


@pytest.mark.browser
@pytest.mark.timeout(300)
async def test_a_zone_drawn_on_the_snapshot_is_used_by_the_detector_and_a_crossing_one_is_refused(
    tmp_path, users, scenario_videos, browser, http
):
    # The vehicle parks at 5 s and stays to the end (60 s); the video loops.
    x1, y1, x2, y2 = parked_box("park", 30)
    width, height = 640, 480
    m = 24  # px around the vehicle
    zone = [((x1 - m) / width, (y1 - m) / height), ((x2 + m) / width, (y1 - m) / height),
            ((x2 + m) / width, min(y2 + m, height - 1) / height), ((x1 - m) / width, min(y2 + m, height - 1) / height)]  # fmt: skip
    with ScenarioRun(tmp_path, scenario_videos, {"street": ("park", [])}, users) as run:
        page = await open_editor(browser, run.gw.base, "street")
        await shot(page, "e2e-1-snapshot")
        await draw(page, zone)
        item = page.locator('li.zone-item[data-zone="0"]')
        await item.locator("input[name=name]").fill("kerb")
        await item.locator("input[name=dwell_s]").fill("3")
        await page.click("#zones-save")
        await page.wait_for_selector("#zones-dirty", state="detached")
        await shot(page, "e2e-2-saved")
        saved = await stored(http, run.gw, "street")
        assert len(saved) == 1 and near(saved[0]["polygon"], zone, 0.005), saved

        # The detector learns of the zone (it re-reads the cameras every lease_s / 3) and
        # the vehicle parked in it is ticketed once it has rested dwell_s there.
        ticket = await wait_ticket(run, "street", "kerb", 90)
        assert ticket["category"] == "illegal_parking"
        bx1, by1, bx2, by2 = ticket["detection"]["box"]
        inside = x1 - m <= bx1 and bx2 <= x2 + m and y1 - m <= by1 and by2 <= y2 + m
        assert inside, ticket["detection"]
        await page.click("#zones-refresh")  # the vehicle in its zone, for the screenshots
        await page.wait_for_selector("#zones-refresh:not([disabled])")

        # A bow-tie: its edge from point 2 to point 3 crosses the one from point 0 to 1.
        await draw(page, [(0.05, 0.05), (0.35, 0.35), (0.35, 0.05), (0.05, 0.35)])
        await page.click("#zones-save")
        ring = page.locator('#zone-stage circle.point-error[data-zone="1"][data-point="2"]')
        await ring.wait_for()
        message = await page.locator('.point-message[data-zone="1"][data-point="2"]').inner_text()
        assert "point 2" in message and "crosses" in message, message
        item = page.locator('li.zone-item[data-zone="1"]')
        field = await item.locator('.field-error[data-field="polygon"]').inner_text()
        assert "point 2" in field, field
        assert await item.get_attribute("aria-selected") == "true"
        await shot(page, "e2e-3-refused")
        assert await stored(http, run.gw, "street") == saved
