"""The officer's phone page in headless Chromium with a fake camera: it shares its
camera over WHIP when the dispatcher asks, and takes a video call from an aiortc
dispatcher, media both ways."""

from __future__ import annotations

import pytest
from test_whep_rtsp import stream_metric

from support.browser import MEDIA_MS
from support.call_client import connect
from support.procs import PASSWORDS
from support.whep_client import view


async def sign_in(browser_or_context, gw):
    page = await browser_or_context.new_page()
    await page.goto(gw.base + "/phone")
    await page.fill("input[name=username]", "officer")
    await page.fill("input[name=password]", PASSWORDS["officer"])
    await page.click("button[type=submit]")
    await page.wait_for_selector("#status[data-state=available]", timeout=10000)
    return page


@pytest.mark.browser
async def test_phone_publishes_its_camera_when_the_dispatcher_asks(gridwatch_factory, browser, http):
    gw = gridwatch_factory()
    page = await sign_in(browser, gw)
    token = gw.token("dispatcher")
    desk = await connect(http, gw.base, token, "dispatcher", "desk-1")
    viewer = None
    try:
        await desk.send(type="publish.request", to="officer")
        requested = await desk.expect("publish.requested")
        assert requested["stream"] == "phone-officer"
        # Nothing is shown until the officer agrees.
        await page.click("#camera-share")
        await page.wait_for_selector("#sharing:not([hidden])", timeout=MEDIA_MS)
        answer = await desk.expect("publish.answer")
        assert answer["accepted"] is True and answer["officer"] == "officer"
        viewer = await view(http, gw.base, "phone-officer", token)
        assert await viewer.wait_frames(20, timeout=MEDIA_MS / 1000), "no frames from the phone's camera"
        _, frame = viewer.frames[-1]
        assert (frame.width, frame.height) == (640, 480)  # Chromium's fake camera
        m = gw.metrics()
        assert m['gridwatch_stream_published{stream="phone-officer",via="whip"}'] == 1
        codec_note = ("forwarded" if stream_metric(m, "encoded_frames", "phone-officer") == 0
                      else "transcoded from VP8")  # fmt: skip
        print(f"phone stream {codec_note}")

        # Asked to stop, the phone ends its WHIP session.
        await desk.send(type="publish.request", to="officer", stop=True)
        await page.wait_for_selector("#sharing[hidden]", state="attached", timeout=10000)
        for _ in range(50):
            if gw.metrics().get('gridwatch_stream_published{stream="phone-officer",via="whip"}', 0) == 0:
                break
            await page.wait_for_timeout(100)
        else:
            raise AssertionError("the phone's WHIP session did not end")
    finally:
        if viewer:
            await viewer.close(http, gw.base, token)
        await desk.close()


@pytest.mark.browser
async def test_dispatcher_calls_the_phone_and_both_see_each_other(gridwatch_factory, browser, http):
    gw = gridwatch_factory()
    page = await sign_in(browser, gw)
    desk = await connect(http, gw.base, gw.token("dispatcher"), "dispatcher", "desk-1")
    try:
        await desk.send(type="call.invite", to="officer")
        call = (await desk.expect("call.ringing"))["call"]
        await page.wait_for_selector("#ring:not([hidden])", timeout=10000)
        assert await page.inner_text("#ring-from") == "dispatcher"
        await page.click("#accept")
        await desk.expect("call.accept", call=call)
        await desk.offer(call)
        assert await desk.wait_frames(20, timeout=MEDIA_MS / 1000), "no video from the phone"
        # The phone shows the dispatcher's picture (aiortc's 320x240), and it moves.
        await page.wait_for_function(
            "() => document.querySelector('#remote').videoWidth === 320", timeout=MEDIA_MS
        )
        t0 = await page.eval_on_selector("#remote", "v => v.currentTime")
        await page.wait_for_timeout(1000)
        assert await page.eval_on_selector("#remote", "v => v.currentTime") > t0
        await page.wait_for_selector("#status[data-state=in_call]", timeout=10000)

        await page.click("#hangup")
        assert (await desk.expect("call.hangup", call=call))["by"] == "officer"
        await page.wait_for_selector("#status[data-state=available]", timeout=10000)
    finally:
        await desk.close()


@pytest.mark.browser
async def test_wall_pulls_the_phone_camera_and_calls_browser_to_browser(gridwatch_factory, browser):
    gw = gridwatch_factory()
    phone = await sign_in(await browser.new_context(), gw)  # contexts: a device id each
    wall = await (await browser.new_context()).new_page()
    await wall.goto(gw.base + "/")
    await wall.fill("input[name=username]", "dispatcher")
    await wall.fill("input[name=password]", PASSWORDS["dispatcher"])
    await wall.click("button[type=submit]")
    officer = "#officers li[data-user=officer]"
    await wall.wait_for_selector(f"{officer}[data-status=available]", timeout=10000)

    await wall.click(f"{officer} .camera")
    await phone.click("#camera-share")
    await phone.wait_for_selector("#sharing:not([hidden])", timeout=MEDIA_MS)
    await wall.wait_for_selector(".tile[data-camera=phone-officer][data-state=playing]", timeout=MEDIA_MS)
    size = await wall.eval_on_selector(
        ".tile[data-camera=phone-officer] video", "v => [v.videoWidth, v.videoHeight]"
    )
    assert size == [640, 480]

    await wall.click(f"{officer} .call")
    await phone.wait_for_selector("#ring:not([hidden])", timeout=10000)
    await phone.click("#accept")
    # Media flows browser to browser: each side shows the other's fake camera.
    for page, video in ((wall, "#call-remote"), (phone, "#remote")):
        await page.wait_for_function(
            f"() => document.querySelector('{video}').videoWidth === 640", timeout=MEDIA_MS
        )
    await wall.wait_for_selector(f"{officer}[data-status=in_call]", timeout=10000)
    await wall.click("#call-hangup")
    await phone.wait_for_selector("#call[hidden]", state="attached", timeout=10000)
    await wall.wait_for_selector(f"{officer}[data-status=available]", timeout=10000)


@pytest.mark.browser
async def test_a_recorded_call_records_both_sides(gridwatch_factory, browser, http):
    gw = gridwatch_factory({
        "calls": {"record": True}, "media": {"lease_s": 1.5},
        "recordings": {"segment_s": 2, "min_free_mb": 0, "check_s": 1},
    })  # fmt: skip
    phone = await sign_in(await browser.new_context(), gw)
    desk = await connect(http, gw.base, gw.token("dispatcher"), "dispatcher", "desk-1")
    try:
        await desk.send(type="call.invite", to="officer")
        call = (await desk.expect("call.ringing"))["call"]
        await phone.wait_for_selector("#ring:not([hidden])", timeout=10000)
        await phone.click("#accept")
        await desk.expect("call.accept", call=call)
        record = await desk.expect("call.record", call=call)
        assert record["stream"] == f"call-{call[:16]}-caller"
        await desk.offer(call)
        assert await desk.wait_frames(10, timeout=MEDIA_MS / 1000)
        # The browser's side reaches the server as well, while the call itself stays
        # browser to aiortc (frames above). Nobody else may publish that side.
        callee = f"call-{call[:16]}-callee"
        headers = {"Authorization": f"Bearer {gw.token('officer2')}", "Content-Type": "application/sdp"}
        async with http.post(f"{gw.base}/whip/{callee}", data="v=0\r\n", headers=headers) as r:
            assert r.status == 403
        token = gw.token("dispatcher")
        for _ in range(100):
            async with http.get(gw.base + "/api/recordings", headers={"Authorization": f"Bearer {token}"},
                                params={"camera": callee, "from": 0, "to": 4e9}) as r:  # fmt: skip
                done = [s for s in (await r.json())["segments"] if s["end"]]
            if done:
                break
            await phone.wait_for_timeout(200)
        else:
            raise AssertionError("the officer's side of the call was not recorded")
        assert done[0]["size"] > 0
    finally:
        await desk.close()
