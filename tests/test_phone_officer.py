"""The officer's phone page in Chromium with a fake camera and a fake GPS moved along a
route: he shows on the wall at once and stays there standing still, a walk made offline
arrives whole with its own times, his camera is shown only with his consent and every
capture ends, a call goes on with sound when his camera fails, and the page fits a
phone, installs as an app and opens from its cache with the server down."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from conftest import ARTIFACTS
from test_phone_browser import sign_in

from support.browser import MEDIA_MS
from support.call_client import connect
from support.procs import PASSWORDS
from support.wall import sign_in as wall_sign_in

START = {"latitude": 31.2612, "longitude": 120.9190}


async def phone_context(browser, size=(412, 915), where=START):
    return await browser.new_context(viewport={"width": size[0], "height": size[1]}, geolocation=where,
                                     permissions=["geolocation"])  # fmt: skip


async def track(http, gw, since: float) -> list[float]:
    async with http.get(f"{gw.base}/api/officers/officer/track", params={"from": since},
                        headers={"Authorization": f"Bearer {gw.token('dispatcher')}"}) as r:  # fmt: skip
        return (await r.json())["properties"]["times"]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.mark.browser
async def test_a_standing_officer_is_on_the_map_at_once_and_stays_available(gridwatch_factory, browser, http):
    gw = gridwatch_factory({"tracks": {"heartbeat_s": 3}, "dispatch": {"stale_s": 8},
                            "map": {"center": {"lat": 31.2612, "lon": 120.9190}}})  # fmt: skip
    wall = await browser.new_page(viewport={"width": 1600, "height": 900})
    await wall_sign_in(wall, gw.base, "dispatcher", PASSWORDS["dispatcher"])
    await wall.wait_for_selector("#map")
    t0 = time.time()
    phone = await sign_in(await phone_context(browser), gw)
    marker = ".officer-marker[data-officer=officer][data-status=available]"
    await wall.wait_for_selector(marker, timeout=5000)
    assert time.time() - t0 < 5 + 3, "the first fix came late"  # page load and sign-in included
    await phone.wait_for_selector("#gps-state[data-state=ok]")
    # He does not move; the heartbeat keeps him available, on the wall and for dispatch.
    for _ in range(8):
        await asyncio.sleep(2.5)
        assert await wall.locator(marker).count() == 1, "he went stale while standing"
    times = await track(http, gw, t0)
    assert len(times) >= 6 and max(gaps(times)) <= 2 * 3, times


@pytest.mark.browser
@pytest.mark.timeout(300)
async def test_a_walk_made_offline_arrives_whole_with_its_own_times(gridwatch_factory, browser, http):
    heartbeat = 5
    gw = gridwatch_factory({"tracks": {"heartbeat_s": heartbeat}})
    context = await phone_context(browser)
    phone = await sign_in(context, gw)
    t0 = time.time()
    lat, lon = START["latitude"], START["longitude"]
    walked: list[float] = []  # when the phone was at each point

    async def walk(seconds: float) -> None:
        nonlocal lat
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            lat += 0.00002  # about 2 m north
            await context.set_geolocation({"latitude": lat, "longitude": lon})
            walked.append(time.time())
            await asyncio.sleep(2)

    await walk(10)
    await context.set_offline(True)
    offline_at = time.time()
    await walk(60)
    await phone.wait_for_selector("#offline-banner")
    queued = await phone.evaluate("() => window.gwPhone.gps.queue.length")
    assert queued >= 60 / heartbeat, queued
    await context.set_offline(False)
    online_at = time.time()
    await walk(6)
    await phone.wait_for_function("() => window.gwPhone.gps.queue.length === 0", timeout=20000)
    times = await track(http, gw, t0)
    assert max(gaps(times)) <= 2 * heartbeat, gaps(times)
    during = [t for t in times if offline_at < t < online_at]
    assert len(during) >= 60 / heartbeat - 1, "the fixes made offline are missing"
    # Their own times: spread over the minute offline, not stamped when they arrived.
    assert during[0] - offline_at < heartbeat and online_at - during[-1] < heartbeat
    assert await phone.is_visible("#link-state[data-state=online]")


@pytest.mark.browser
async def test_the_camera_is_shared_only_with_consent_and_every_capture_ends(gridwatch_factory, browser, http):
    gw = gridwatch_factory()
    phone = await sign_in(await phone_context(browser), gw)
    desk = await connect(http, gw.base, gw.token("dispatcher"), "dispatcher", "desk-1")
    try:
        # Asked twice before he answers, and once more while shared: one capture.
        await desk.send(type="publish.request", to="officer")
        await desk.send(type="publish.request", to="officer")
        await phone.click("#camera-share")
        await phone.wait_for_selector("#sharing[data-live='1']", timeout=MEDIA_MS)
        assert (await desk.expect("publish.answer"))["accepted"] is True
        await desk.send(type="publish.request", to="officer")
        assert (await desk.expect("publish.answer"))["accepted"] is True
        assert await phone.locator("#camera-ask").count() == 0
        await desk.send(type="publish.request", to="officer", stop=True)
        await phone.wait_for_selector("#sharing", state="hidden")
        tracks = await phone.evaluate("() => window.gwPhone.captures.map(t => [t.kind, t.readyState])")
        assert tracks == [["video", "ended"]], tracks

        # Refused, with a reason: the dispatcher hears it; no camera was opened.
        await desk.send(type="publish.request", to="officer")
        await phone.select_option("#camera-refuse-reason", "driving")
        await phone.click("#camera-refuse")
        refused = await desk.expect("publish.answer")
        assert refused["accepted"] is False and refused["reason"] == "driving"
        assert await phone.evaluate("() => window.gwPhone.captures.length") == 1

        # Shared again, and stopped by the officer himself: the dispatcher is told.
        await desk.send(type="publish.request", to="officer")
        await phone.click("#camera-share")
        await phone.wait_for_selector("#sharing[data-live='1']", timeout=MEDIA_MS)
        await desk.expect("publish.answer", accepted=True)
        await phone.click("#sharing-stop")
        stopped = await desk.expect("publish.answer", accepted=False)
        assert stopped["reason"] == "stopped by the officer"
        states = await phone.evaluate("() => window.gwPhone.captures.map(t => t.readyState)")
        assert states == ["ended", "ended"]
    finally:
        await desk.close()


AUDIO_ENERGY = """async () => {
  const pc = %s;
  let energy = 0;
  (await pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "audio") energy += r.totalAudioEnergy || 0; });
  return energy;
}"""


@pytest.mark.browser
async def test_a_call_goes_on_with_sound_when_the_officers_camera_fails(gridwatch_factory, browsers):
    gw = gridwatch_factory()
    no_camera = await browsers("--use-file-for-fake-video-capture=/nonexistent/camera.y4m")
    phone = await sign_in(await phone_context(no_camera), gw)
    wall = await (await browsers()).new_page(viewport={"width": 1600, "height": 900})
    await wall_sign_in(wall, gw.base, "dispatcher", PASSWORDS["dispatcher"])
    officer = "#officers li[data-user=officer]"
    await wall.wait_for_selector(f"{officer}[data-status=available]", timeout=10000)
    await wall.click(f"{officer} .call")
    await phone.wait_for_selector("#ring:not([hidden])", timeout=10000)
    await phone.click("#accept")
    await phone.wait_for_selector("#call-media:has-text('audio only')", timeout=MEDIA_MS)
    await wall.wait_for_selector("#call-media:has-text('audio only')", timeout=MEDIA_MS)
    # Sound both ways: each side's received audio energy keeps rising.
    sides = ((phone, "window.gwPhone.calls.call.pc"), (wall, "window.gw.desk().call.pc"))
    for page, pc in sides:
        await page.wait_for_function(f"async () => (await ({AUDIO_ENERGY % pc})()) > 0", timeout=MEDIA_MS)
    before = [await page.evaluate(AUDIO_ENERGY % pc) for page, pc in sides]
    await wall.wait_for_timeout(1500)
    after = [await page.evaluate(AUDIO_ENERGY % pc) for page, pc in sides]
    assert all(b > a for a, b in zip(before, after, strict=True)), (before, after)
    # Muted, the other side is told.
    await phone.click("#mute")
    await wall.wait_for_selector("#call-media:has-text('muted')", timeout=10000)
    await wall.click("#call-hangup")
    await phone.wait_for_selector("#call[hidden]", state="attached", timeout=10000)
    tracks = await phone.evaluate("() => window.gwPhone.captures.map(t => [t.kind, t.readyState])")
    assert tracks == [["audio", "ended"]], tracks


@pytest.mark.browser
async def test_the_page_fits_a_phone_installs_and_opens_from_its_cache_offline(gridwatch_factory, browsers, tmp_path):
    gw = gridwatch_factory()
    browser = await browsers()
    for size in ((360, 740), (412, 915)):
        page = await sign_in(await phone_context(browser, size), gw)
        await page.wait_for_selector("#history")
        width = await page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width[0] <= width[1], f"horizontal overflow at {size}: {width}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"phone-{size[0]}x{size[1]}.png"), full_page=True)
    # Installable (in a profile on disk: an incognito window installs nothing): a valid
    # manifest and a service worker that controls the page.
    context = await browsers.persistent(tmp_path / "profile", viewport={"width": 412, "height": 915},
                                        geolocation=START, permissions=["geolocation"])  # fmt: skip
    page = await sign_in(context, gw)
    await page.evaluate("() => navigator.serviceWorker.ready")
    await page.reload()
    await page.wait_for_function("() => !!navigator.serviceWorker.controller", timeout=10000)
    cdp = await context.new_cdp_session(page)
    errors = (await cdp.send("Page.getInstallabilityErrors"))["installabilityErrors"]
    assert errors == [], errors
    manifest = await cdp.send("Page.getAppManifest")
    assert not manifest["errors"], manifest["errors"]
    # The server goes down: the page still opens, from the phone, and says it is offline.
    gw.stop()
    await page.reload()
    await page.wait_for_selector("#offline-banner", timeout=10000)
    assert await page.is_visible("#link-state[data-state=offline]")
    assert await page.inner_text("#who") == "officer"


@pytest.mark.browser
async def test_reminders_history_duty_and_logout_on_the_phone(gridwatch_factory, browser, http):
    gw = gridwatch_factory({"dispatch": {"accept_s": 60, "arrive_s": 4, "remind_before_s": 2.5}})
    phone = await sign_in(await phone_context(browser), gw)
    await phone.wait_for_selector("#gps-state[data-state=ok]")
    async with http.post(gw.base + "/api/tickets", json={"category": "illegal_parking",
                         "location": {"lat": 31.2600, "lon": 120.9200}},
                         headers={"Authorization": f"Bearer {gw.token('dispatcher')}"}) as r:  # fmt: skip
        tid = (await r.json())["id"]
    await phone.click("#accept-ticket")
    await phone.wait_for_selector(f"#working[data-ticket={tid}] #reminder", timeout=10000)
    assert "arrive" in await phone.inner_text("#reminder")
    assert await phone.is_visible(f"#history li[data-ticket={tid}][data-state=accepted]")
    # Off duty: the centre sees it at once, and he is offered nothing.
    await phone.uncheck("#on-duty")
    async with asyncio.timeout(5):
        while True:
            async with http.get(gw.base + "/api/officers", headers={"Authorization": f"Bearer {gw.token('dispatcher')}"}) as r:
                me = next(o for o in (await r.json())["officers"] if o["id"] == "officer")
            if me["status"] == "off_duty":
                break
            await asyncio.sleep(0.2)
    await phone.click("#logout")
    await phone.wait_for_selector("#login", state="visible")
    assert await phone.evaluate("() => localStorage.getItem('gw-me')") is None
