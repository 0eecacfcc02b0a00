"""The wall page in headless Chromium: sign in, live tiles over WHEP."""

from __future__ import annotations

import pytest

from support.browser import MEDIA_MS
from support.procs import PASSWORDS, free_port


@pytest.mark.browser
async def test_wall_signs_in_and_plays_every_camera(gridwatch_factory, browser, tmp_path):
    gw = gridwatch_factory(
        {
            "cameras": [
                {
                    "id": "north",
                    "name": "North gate",
                    "source": "lavfi:testsrc2=size=640x360:rate=15",
                },
                {"id": "south", "name": "South gate", "source": "clock:640x368@15"},
                {
                    "id": "dead",
                    "name": "Dead camera",
                    "source": f"rtsp://127.0.0.1:{free_port()}/x",
                },
            ],
            "media": {"read_timeout_s": 1, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5},
        }
    )
    page = await browser.new_page()
    await page.goto(gw.base + "/")
    await page.fill("input[name=username]", "viewer")
    await page.fill("input[name=password]", "wrong")
    await page.click("button[type=submit]")
    await page.wait_for_selector("#login-error:has-text('wrong username or password')")

    await page.fill("input[name=username]", "viewer")
    await page.fill("input[name=password]", PASSWORDS["viewer"])
    await page.click("button[type=submit]")
    await page.wait_for_selector(".tile[data-camera=north][data-state=playing]", timeout=MEDIA_MS)
    await page.wait_for_selector(".tile[data-camera=south][data-state=playing]", timeout=MEDIA_MS)
    live = ".tile[data-camera=north] video, .tile[data-camera=south] video"
    sizes = await page.eval_on_selector_all(
        live, "vs => vs.map(v => [v.videoWidth, v.videoHeight, v.currentTime])"
    )
    assert [s[:2] for s in sizes] == [[640, 360], [640, 368]]
    await page.wait_for_timeout(1000)
    later = await page.eval_on_selector_all(live, "vs => vs.map(v => v.currentTime)")
    assert all(b > a[2] for a, b in zip(sizes, later, strict=True)), "video is not advancing"
    # A camera that gives no picture says so, and why.
    await page.wait_for_selector(".tile[data-camera=dead][data-state=offline]", timeout=10000)
    why = await page.get_attribute(".tile[data-camera=dead] .state", "title")
    assert why and "127.0.0.1" in why
    assert "North gate" in await page.inner_text("#videowall")
    assert await page.is_hidden("#login")
    await page.screenshot(path=str(tmp_path / "wall.png"))
    m = gw.metrics()
    assert m['gridwatch_stream_viewers{stream="north"}'] == 1.0
