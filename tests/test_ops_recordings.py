"""Recordings on a timeline (issue 18, must-show 3): on a camera recorded a few segments
long, a click on the operations page's timeline plays from that moment (the clock stamp
burnt into the frame on screen says so, within a GOP), playback goes on across a segment
boundary, and a span exported from the page downloads and decodes. And the timeline API:
segments, marks and tickets, its ranges, cameras and roles."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import av
import cv2
import numpy as np
import pytest
import redis
from playwright.async_api import Page
from test_recordings import auth, wait_closed
from test_violations import POSITION, violation

from gridwatch.media import clock
from support.procs import PASSWORDS, hashed_users
from support.wall import sign_in

FPS = 10
GOP_S = 1.0  # a clock: source's encoder makes a key frame every `fps` frames
SEGMENT_S = 4


def recorded(source: str, **extra) -> dict:
    return {
        "cameras": [{"id": "gate", "name": "Gate", "source": source, "position": POSITION,
                     "record": {"mode": "continuous"}}],
        "recordings": {"segment_s": SEGMENT_S, "min_free_mb": 0, "check_s": 1},
        **extra,
    }  # fmt: skip


def stamp(gray: np.ndarray) -> float:
    """The wall time (Unix s) a clock: frame was made at."""
    ms = clock.read(gray)
    assert ms is not None, "the clock stamp is unreadable"
    return ms / 1000


# In the page: the frame its <video> shows now, as PNG, with the segment playing and where
# in it; and the first frame it presents after its next seek (a click on the timeline).
FRAMES = """
window.shownFrame = () => {
  const v = document.querySelector("#playback");
  const c = document.createElement("canvas");
  [c.width, c.height] = [v.videoWidth, v.videoHeight];
  c.getContext("2d").drawImage(v, 0, 0);
  return { png: c.toDataURL("image/png"), url: new URL(v.currentSrc).pathname, time: v.currentTime };
};
window.nextSeek = () => {
  const v = document.querySelector("#playback");
  window.firstFrame = new Promise((resolve) => v.addEventListener("seeked", () => v.requestVideoFrameCallback(
    (_t, meta) => resolve({ ...shownFrame(), time: meta.mediaTime })), { once: true }));
};
"""


def png_stamp(shot: dict) -> float:
    data = base64.b64decode(shot["png"].split(",", 1)[1])
    return stamp(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE))


async def click_at(page: Page, t: float) -> float:
    """Click the timeline at the pixel nearest to Unix time `t`; the time that pixel is
    (the view read after the click: a click stops the view from following the present)."""
    box = await page.locator("#timeline").bounding_box()
    span = await view(page)
    x = round(box["x"] + (t - span[0]) / (span[1] - span[0]) * box["width"])
    await page.mouse.click(x, box["y"] + box["height"] / 2)
    start, end = await view(page)
    return start + (x - box["x"]) / box["width"] * (end - start)


async def view(page: Page) -> tuple[float, float]:
    attrs = await page.locator("#timeline").evaluate("e => [e.dataset.from, e.dataset.to]")
    return float(attrs[0]), float(attrs[1])


def utc_input(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


@pytest.mark.browser
async def test_a_click_on_the_timeline_plays_that_moment_across_segments_and_a_span_exports(
    gridwatch_factory, browser, http, tmp_path
):
    gw = gridwatch_factory(recorded(f"clock:640x368@{FPS}"))
    segs = await wait_closed(http, gw, gw.token("dispatcher"), 4, timeout=60)
    page = await browser.new_page(timezone_id="UTC", viewport={"width": 1280, "height": 900})
    await sign_in(page, gw.base, "dispatcher", PASSWORDS["dispatcher"], "/ops#/recordings")
    await page.click("#rec-cameras a[data-camera=gate]")  # the camera picker
    await page.click("button[data-range='300']")
    await page.wait_for_selector(".track .run")
    await page.evaluate(FRAMES)

    # A moment in the middle of a GOP of the second segment.
    await page.evaluate("nextSeek()")
    t = await click_at(page, segs[1]["start"] + 1.5)
    first = await page.evaluate("() => window.firstFrame")
    assert first["url"] == segs[1]["url"], (first, segs[1])
    assert abs(png_stamp(first) - t) <= GOP_S, (png_stamp(first), t)
    # The clock on the page is the shown frame's.
    await page.wait_for_selector("#play-state[data-state=playing]", state="attached")
    await page.locator("#playback").evaluate("v => v.pause()")
    shown = await page.evaluate("shownFrame()")
    await page.wait_for_function(
        "at => Math.abs(Number(document.querySelector('#playing').dataset.at) - at) < 0.15",
        arg=segs[1]["start"] + shown["time"],
    )
    assert abs(png_stamp(shown) - (segs[1]["start"] + shown["time"])) <= GOP_S

    # From 1.5 s before the second segment ends, on into the third.
    boundary = segs[1]["end"]
    t = await click_at(page, boundary - 1.5)
    clicked = time.time()
    await page.wait_for_function(
        "([url, at]) => { const p = document.querySelector('#playing');"
        " return p.dataset.segment === url && Number(p.dataset.at) > at; }",
        arg=[segs[2]["url"], boundary + 0.5],
        timeout=20000,
    )
    await page.locator("#playback").evaluate("v => v.pause()")
    shown = await page.evaluate("shownFrame()")
    assert shown["url"] == segs[2]["url"]
    seen = png_stamp(shown)
    assert boundary < seen <= t + (time.time() - clicked) + GOP_S, (boundary, seen, t)
    assert abs(seen - (segs[2]["start"] + shown["time"])) <= GOP_S

    # A span over the first boundary, exported from the page.
    start = float(int(segs[0]["end"]) - 2)
    await page.fill("#export-from", utc_input(start))
    await page.fill("#export-to", utc_input(start + 5))
    async with page.expect_download(timeout=60000) as download:
        await page.click("#export")
    clip = tmp_path / "clip.mp4"
    await (await download.value).save_as(clip)
    await page.wait_for_selector("#export-state[data-state=done]")
    with av.open(str(clip)) as c:
        frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    assert len(frames) >= 4.5 * FPS
    first_t, last_t = stamp(frames[0]), stamp(frames[-1])
    assert start - GOP_S - 0.2 <= first_t <= start + 0.2, (first_t, start)
    assert start + 5 - GOP_S - 0.2 <= last_t <= start + 5 + 0.2, (last_t, start + 5)

    # No footage there: the page says so.
    await page.fill("#export-from", utc_input(start - 3600))
    await page.fill("#export-to", utc_input(start - 3590))
    await page.click("#export")
    await page.wait_for_selector("#export-state[data-state=error]:has-text('no recording')")


def users_with_watch() -> list[dict]:
    users = hashed_users()
    for u in users:
        if u["username"] == "officer":
            u["watch"] = ["gate"]
    return users


async def test_the_timeline_gives_segments_marks_and_tickets_for_the_roles_that_may_see_them(
    gridwatch_factory, redis_server, http
):
    gw = gridwatch_factory(recorded("clock:160x128@5", users=users_with_watch(),
                                    redis={"url": redis_server.url}))  # fmt: skip
    token = gw.token("dispatcher")
    closed = await wait_closed(http, gw, token, 2, timeout=60)
    async with http.post(gw.base + "/api/recordings/marks", headers=auth(token), json={"camera": "gate"}) as r:
        assert r.status == 201, await r.text()
        mark = (await r.json())["at"]
    event = violation("v-timeline", box=[20, 30, 60, 70])
    redis.Redis.from_url(redis_server.url).xadd("gw:violations", event)
    confirmed = json.loads(event["violation"])["confirmed"]

    async def timeline(who: str = "dispatcher", **params) -> tuple[int, dict]:
        params = {"camera": "gate", "from": closed[0]["start"] - 60, "to": time.time() + 60, **params}
        params = {k: v for k, v in params.items() if v is not None}
        async with http.get(gw.base + "/api/recordings/timeline", params=params,
                            headers=auth(gw.token(who)) if who else {}) as r:  # fmt: skip
            return r.status, await r.json()

    deadline = time.monotonic() + 30
    while True:
        status, body = await timeline()
        assert status == 200, body
        if body["marks"] and body["tickets"]:
            break
        assert time.monotonic() < deadline, f"no mark or ticket on the timeline: {body}"
        await asyncio.sleep(0.2)
    assert body["camera"] == "gate" and body["truncated"] is False
    assert body["marks"] == [{"at": pytest.approx(mark)}]
    [ticket] = body["tickets"]
    assert ticket == {"id": ticket["id"], "state": "new", "at": pytest.approx(confirmed),
                      "zone": "np-1", "kind": "illegal_parking"}  # fmt: skip
    first = body["segments"][0]
    assert set(first) == {"start", "end", "bytes", "url"}
    assert first["url"] == closed[0]["url"] and first["bytes"] == closed[0]["size"] > 0
    # A range that holds neither finds neither.
    status, early = await timeline(**{"from": closed[0]["start"] - 7200, "to": closed[0]["start"] - 3600})
    assert status == 200 and early["segments"] == early["marks"] == early["tickets"] == []

    # Ranges: backwards, longer than a week, not a time; no camera named.
    for params, field in [
        ({"to": closed[0]["start"] - 100}, "to must be after from"),
        ({"from": 1000, "to": 1000 + 7 * 86400 + 1}, "to:"),
        ({"from": "yesterday"}, "from:"),
        ({"camera": None}, "camera"),
    ]:
        status, err = await timeline(**params)
        assert status == 400 and err["error"] in ("bad_request", "bad_query"), (params, err)
        assert field in err["message"], (params, err)
    status, err = await timeline(camera="nowhere")
    assert status == 404 and "nowhere" in err["message"]

    # Roles: a device never; an officer for the cameras he may watch, seeing his own tickets only.
    assert (await timeline("tracker"))[0] == 403
    assert (await timeline("officer2"))[0] == 403
    status, seen = await timeline("officer")
    assert status == 200 and seen["segments"] and seen["marks"] and seen["tickets"] == []
    assert (await timeline(None))[0] == 401

