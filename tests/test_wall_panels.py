"""The command wall's panels against a real server: officers' markers follow their fixes,
tickets stand where they are, a suggest-mode ticket is dispatched from its candidates,
alerts stay until acknowledged, tiles tell the truth about their pictures, and the page
lives through a server restart."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
from test_dispatch_deadlines import connect

from support.browser import MEDIA_MS
from support.procs import GRIDWATCH, PASSWORDS
from support.wall import SEEN_SCRIPT, sign_in, wait_marker_at
from support.whep_client import view

CENTRE = {"lat": 31.2600, "lon": 120.9200}


def headers(gw, user: str) -> dict:
    return {"Authorization": f"Bearer {gw.token(user)}"}


async def post(
    http, gw, path: str, body: dict, user: str = "dispatcher", status: int | None = None
) -> dict:
    async with http.post(gw.base + path, json=body, headers=headers(gw, user)) as r:
        data = await r.json()
        assert r.status == (status or r.status) and r.status < 300, data
        return data


async def fix(http, gw, officer: str, lat: float, lon: float) -> None:
    await post(
        http, gw, "/api/tracks", {"fixes": [{"lat": lat, "lon": lon, "time": time.time()}]}, officer
    )


async def wall(browser, gw, user: str = "dispatcher", size=(1600, 900)):
    page = await browser.new_page(viewport={"width": size[0], "height": size[1]})
    await sign_in(page, gw.base, user, PASSWORDS[user])
    return page


@pytest.mark.browser
async def test_officer_markers_follow_their_fixes_and_tickets_stand_at_their_place(
    gridwatch_factory, browser, http
):
    gw = gridwatch_factory({"map": {"center": CENTRE, "zoom": 16},
                            "dispatch": {"categories": {"street_stall": {"mode": "suggest"}}}})  # fmt: skip
    await fix(http, gw, "officer", 31.2605, 120.9195)
    page = await wall(browser, gw)
    marker = ".officer-marker[data-officer=officer]"
    await wait_marker_at(page, marker, 31.2605, 120.9195)
    assert await page.get_attribute(marker, "data-status") == "available"
    for lat, lon in ((31.2610, 120.9205), (31.2597, 120.9212)):
        await fix(http, gw, "officer", lat, lon)
        await wait_marker_at(page, marker, lat, lon, timeout_s=3)
    # His tail: the fixes of the last minutes, drawn behind him.
    assert await page.evaluate("() => window.gw.store.officers.get('officer').tail.length") == 3
    assert await page.locator("#map path.tail").count() >= 1

    ticket = await post(http, gw, "/api/tickets",
                        {"category": "street_stall", "location": {"lat": 31.2593, "lon": 120.9188}})  # fmt: skip
    await wait_marker_at(page, f".ticket-marker[data-ticket={ticket['id']}]", 31.2593, 120.9188)
    assert (
        await page.get_attribute(f".ticket-marker[data-ticket={ticket['id']}]", "data-state")
        == "new"
    )
    # Off duty shows at once, in his colour.
    await post(http, gw, "/api/officers/officer/duty", {"on_duty": False}, "officer")
    await page.wait_for_selector(f"{marker}[data-status=off_duty]", timeout=3000)


@pytest.mark.browser
async def test_a_suggest_mode_ticket_is_dispatched_from_its_candidates(
    gridwatch_factory, browser, http
):
    gw = gridwatch_factory({"map": {"center": CENTRE},
                            "dispatch": {"categories": {"street_stall": {"mode": "suggest"}}}})  # fmt: skip
    await fix(http, gw, "officer", 31.2604, 120.9200)  # ~45 m
    await fix(http, gw, "officer2", 31.2620, 120.9200)  # ~220 m
    phone = await connect(http, gw, "officer2")
    page = await wall(browser, gw)
    ticket = await post(http, gw, "/api/tickets", {"category": "street_stall", "location": CENTRE})
    tid = ticket["id"]
    assert (
        ticket["state"] == "new" and ticket["assignee"] is None
    )  # suggest: nobody is offered it yet
    await page.click(f"li.ticket[data-ticket={tid}]")
    rows = page.locator("#detail .candidates tr[data-candidate]")
    await rows.first.wait_for(timeout=5000)
    assert await rows.evaluate_all("rs => rs.map(r => r.dataset.candidate)") == [
        "officer",
        "officer2",
    ]
    eta = await page.inner_text("#detail tr[data-candidate=officer2] td:nth-child(3)")
    assert eta.endswith(" s") or eta.endswith(" min")
    # The dispatcher picks the second one: that officer is offered it, on his phone.
    await page.click("#detail tr[data-candidate=officer2] button.dispatch")
    offered = await phone.wait_for("ticket.dispatch", 5)
    assert offered["ticket"]["id"] == tid and offered["ticket"]["assignee"] == "officer2"
    await page.wait_for_selector(
        f"li.ticket[data-ticket={tid}][data-state=dispatched]", timeout=5000
    )
    await page.wait_for_selector("#detail ol.timeline li[data-action=dispatch]", timeout=5000)
    await phone.close()


@pytest.mark.browser
async def test_reminders_and_escalations_are_alerts_until_acknowledged(
    gridwatch_factory, browser, http
):
    gw = gridwatch_factory({"dispatch": {"accept_s": 60, "arrive_s": 3, "remind_before_s": 1.5}})
    await fix(http, gw, "officer", 31.2630, 120.9200)  # too far to arrive in 3 s
    page = await wall(browser, gw)
    await page.evaluate(SEEN_SCRIPT)
    ticket = await post(
        http, gw, "/api/tickets", {"category": "illegal_parking", "location": CENTRE}
    )
    await post(http, gw, f"/api/tickets/{ticket['id']}/actions", {"action": "accept"}, "officer")
    reminder = page.locator("#alerts li.alert[data-kind=reminder]")
    escalation = page.locator("#alerts li.alert[data-kind=escalation]")
    await reminder.wait_for(timeout=5000)
    await escalation.wait_for(timeout=5000)
    assert ticket["id"] in await escalation.inner_text()
    assert await page.get_attribute("#alert-count", "data-count") == "2"
    # They stay: another dispatcher signing in now sees both.
    other = await wall(browser, gw, "admin")
    await other.locator("#alerts li.alert").nth(1).wait_for(timeout=5000)

    # Acknowledged on one wall, gone from every wall, and not back after a reload.
    await escalation.locator("button.ack").click()
    await escalation.wait_for(state="detached", timeout=5000)
    await other.wait_for_selector(
        "#alerts li.alert[data-kind=escalation]", state="detached", timeout=5000
    )
    await reminder.locator("button.ack").click()
    await page.wait_for_selector("#alerts", state="hidden", timeout=5000)
    await page.reload()
    await page.wait_for_selector("#board li.ticket", timeout=10000)
    await page.evaluate(SEEN_SCRIPT)
    await page.wait_for_timeout(1000)
    assert await page.locator("#alerts li.alert").count() == 0
    assert await page.locator(".toast").count() == 0  # the new-ticket pop-up is not replayed
    async with http.get(gw.base + "/api/alerts?state=acked", headers=headers(gw, "admin")) as r:
        acked = (await r.json())["alerts"]
    assert {a["kind"]: a["acked_by"] for a in acked} == {
        "reminder": "dispatcher",
        "escalation": "dispatcher",
    }


@pytest.mark.browser
async def test_tiles_tell_the_truth_and_the_wall_survives_a_restart(
    gridwatch_factory, rtsp_factory, browser, http
):
    rtsp = rtsp_factory({"/cam": "testsrc:320x240@25:300,gop=25"})
    gw = gridwatch_factory({
        "cameras": [{"id": "gate", "name": "Gate", "source": rtsp.url("/cam")},
                    {"id": "yard", "name": "Yard", "source": "lavfi:testsrc2=size=320x180:rate=10"}],
        "media": {"read_timeout_s": 1, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5,
                  "api_sources": ["rtsp", "lavfi"]},  # the test adds a test pattern through the API
    })  # fmt: skip
    page = await wall(browser, gw)
    for cam in ("gate", "yard"):
        await page.wait_for_selector(
            f".tile[data-camera={cam}][data-state=playing]", timeout=MEDIA_MS
        )

    # The camera dies: no signal, then offline with the reason, within 5 s.
    rtsp.stop()
    t0 = time.monotonic()
    await page.wait_for_selector(".tile[data-camera=gate]:is([data-state=nosignal], [data-state=offline])",
                                 timeout=5000)  # fmt: skip
    await page.wait_for_selector(".tile[data-camera=gate][data-state=offline]", timeout=6000)
    assert time.monotonic() - t0 < 8
    assert await page.is_visible(".tile[data-camera=gate] .why")

    # Cameras added and deleted through the API: tiles come and go within 5 s.
    await post(http, gw, "/api/cameras", {"id": "dock", "name": "Dock", "source": "lavfi:testsrc2=size=320x180:rate=10"},
               "admin")  # fmt: skip
    await page.wait_for_selector(".tile[data-camera=dock]", timeout=5000)
    await page.wait_for_selector(".tile[data-camera=dock][data-state=playing]", timeout=MEDIA_MS)
    renamed = {
        "id": "dock",
        "name": "Loading dock",
        "source": "lavfi:testsrc2=size=320x180:rate=10",
    }
    async with http.put(
        gw.base + "/api/cameras/dock", json=renamed, headers=headers(gw, "admin")
    ) as r:
        assert r.status == 200
    await page.wait_for_selector(
        ".tile[data-camera=dock] .name:text-is('Loading dock')", timeout=5000
    )
    async with http.delete(gw.base + "/api/cameras/yard", headers=headers(gw, "admin")) as r:
        assert r.status == 200
    await page.wait_for_selector(".tile[data-camera=yard]", state="detached", timeout=5000)

    # The server goes away: the banner says so; it clears when the server is back.
    gw.stop()
    await page.wait_for_selector("#ws-banner", timeout=5000)
    gw.start()
    await page.wait_for_selector("#ws-banner", state="detached", timeout=20000)
    await page.wait_for_selector(".tile[data-camera=dock][data-state=playing]", timeout=MEDIA_MS)


@pytest.mark.browser
async def test_a_refused_stream_shows_why_and_is_not_hammered(gridwatch_factory, browser, http):
    gw = gridwatch_factory({"cameras": [{"id": "gate", "source": "lavfi:testsrc2=size=320x180:rate=10"}],
                            "media": {"max_egress_mbps": 0.001}})  # fmt: skip
    token = gw.token("admin")
    first = await view(http, gw.base, "gate", token)  # the node's first viewer is always served
    try:
        assert await first.wait_frames(10, timeout=10)
        page = await wall(browser, gw)
        await page.wait_for_selector(".tile[data-camera=gate][data-state=retrying]", timeout=10000)
        why = await page.get_attribute(".tile[data-camera=gate] .state", "title")
        assert "limit" in why and "again in" in why
        await page.wait_for_timeout(7000)
        # Backing off (2 s, 4 s, ...), not a loop against a server that said no.
        posts = gw.logs().count('"method": "POST", "path": "/whep/gate"')
        assert 2 <= posts <= 4, posts  # the aiortc viewer's, then the wall's at 0, 2 and 6 s
    finally:
        await first.close(http, gw.base, token)


@pytest.mark.browser
async def test_layouts_pages_focus_and_published_sources_are_kept_per_user(
    gridwatch_factory, browser, http
):
    cameras = [
        {"id": f"cam-{i}", "source": "lavfi:testsrc2=size=320x180:rate=10"} for i in range(6)
    ]
    gw = gridwatch_factory({"cameras": cameras})
    page = await wall(browser, gw)
    await page.wait_for_selector("#tiles[data-count='6']", timeout=10000)
    await page.click("button[data-layout='4']")
    await page.wait_for_selector("#tiles[data-count='4']")
    assert await page.inner_text("#page") == "1 / 2"
    await page.click("#page-next")
    await page.wait_for_selector("#tiles[data-count='2'] .tile[data-camera=cam-5]")
    await page.dblclick(".tile[data-camera=cam-5]")
    await page.wait_for_selector("#tiles[data-count='1'] .tile[data-camera=cam-5]")
    await page.dblclick(".tile[data-camera=cam-5]")
    await page.wait_for_selector("#tiles[data-count='2']")

    # A drone pushing RTMP is offered as a source; put on the wall, it plays.
    drone = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
         "-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15",
         "-pix_fmt", "yuv420p", "-f", "flv",
         f"rtmp://127.0.0.1:{gw.rtmp_port}/live/drone-1?token={gw.token('admin')}"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await page.click("#sources-button")
        await page.wait_for_selector("#sources-menu input[data-source=drone-1]", timeout=15000)
        await page.check("#sources-menu input[data-source=drone-1]")
        await page.uncheck("#sources-menu input[data-source=cam-0]")
        await page.click("#sources-button")
        # It comes first, and the wall turns to the page that shows it.
        await page.wait_for_selector(
            ".tile[data-camera=drone-1][data-state=playing]", timeout=MEDIA_MS
        )
        assert await page.inner_text("#page") == "1 / 2"
    finally:
        drone.terminate()
        drone.wait()
    # Saved on the server: a reload (or another machine) shows the same wall.
    await asyncio.sleep(1)
    async with http.get(gw.base + "/api/me/layout", headers=headers(gw, "dispatcher")) as r:
        saved = await r.json()
    assert saved == {"layout": 4, "page": 0, "hidden": ["cam-0"], "streams": ["drone-1"]}
    await page.click("#page-next")
    await page.wait_for_selector("#tiles[data-count='2']")
    await asyncio.sleep(1)  # saved half a second after the last change
    await page.reload()
    await page.wait_for_selector("button[data-layout='4'].on", timeout=10000)
    assert await page.inner_text("#page") == "2 / 2"
    assert await page.locator("#tiles .tile[data-camera=cam-0]").count() == 0


@pytest.mark.browser
async def test_roles_officers_go_to_their_phone_viewers_get_video_and_logout_ends_the_sessions(
    gridwatch_factory, browser
):
    gw = gridwatch_factory(
        {"cameras": [{"id": "gate", "source": "lavfi:testsrc2=size=320x180:rate=10"}]}
    )
    officer = await browser.new_page()
    await officer.goto(gw.base + "/")
    await officer.fill("input[name=username]", "officer")
    await officer.fill("input[name=password]", PASSWORDS["officer"])
    await officer.click("button[type=submit]")
    await officer.wait_for_url(gw.base + "/phone", timeout=10000)

    viewer = await wall(browser, gw, "viewer")
    await viewer.wait_for_selector(".tile[data-camera=gate][data-state=playing]", timeout=MEDIA_MS)
    for panel in ("#board", "#map", "#alerts", "#people", "#show-stats"):
        assert await viewer.locator(panel).count() == 0, panel
    assert gw.metrics()['gridwatch_stream_viewers{stream="gate"}'] == 1
    await viewer.click("#logout")
    await viewer.wait_for_selector("#login", state="visible", timeout=5000)
    assert gw.metrics()['gridwatch_stream_viewers{stream="gate"}'] == 0
    deletes = [
        line
        for line in gw.logs().splitlines()
        if '"method": "DELETE"' in line and "/whep/gate/" in line
    ]
    assert len(deletes) == 1 and '"status": 200' in deletes[0], deletes


@pytest.mark.browser
async def test_the_ticket_shows_its_plate_its_other_tickets_and_downloads_its_evidence_package(
    gridwatch_factory, browser, http, tmp_path
):
    gw = gridwatch_factory({"map": {"center": CENTRE}})
    plate = {"text": "沪AD7521", "confidence": 0.93}
    older = await post(
        http,
        gw,
        "/api/tickets",
        {"category": "illegal_parking", "location": CENTRE, "plate": plate},
    )
    ticket = await post(
        http,
        gw,
        "/api/tickets",
        {"category": "illegal_parking", "location": CENTRE, "plate": plate},
    )
    page = await wall(browser, gw)
    await page.click(f"li.ticket[data-ticket={ticket['id']}]")
    await page.wait_for_selector("#detail .plate[data-plate='沪AD7521']", timeout=5000)
    assert await page.inner_text("#detail .plate .plate-text") == "沪AD7521"
    # A repeat offender: the plate's other ticket, one click away.
    await page.wait_for_selector(f"#detail .plate a[data-other={older['id']}]", timeout=5000)
    async with page.expect_download() as download:
        await page.click("#detail .package a")
    path = tmp_path / "package.zip"
    await (await download.value).save_as(path)
    key = tmp_path / "node.pem"
    async with http.get(gw.base + "/api/evidence/key", headers=headers(gw, "dispatcher")) as r:
        key.write_text((await r.json())["public_key"])
    checked = subprocess.run([GRIDWATCH, "verify-evidence", str(path), "--key", str(key)],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    await browser.screenshots("wall-ticket-plate-package")
    await page.click(f"#detail .plate a[data-other={older['id']}]")
    await page.wait_for_selector(f"#detail[data-ticket={older['id']}]", timeout=5000)
