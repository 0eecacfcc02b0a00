"""The cameras screens and the PTZ pad (issue 18, must-show 2) in Chromium against a real
`gridwatch serve` and real cameras: ipycam (the ONVIF test device) is found by a
discovery scan started from the page, tested with a wrong password (refused, nothing
saved) and then the right one (a snapshot), added, and steered from its page — the
right arrow held moves it, a preset brings it back — and from its wall tile; an RTSP
camera is added by URL after the server's complaints are shown at their fields, edited
with its password kept, and deleted. The password never reaches a page, and a
dispatcher sees the cameras without controls to add, change or delete them."""

from __future__ import annotations

import asyncio
import time

import pytest
from playwright.async_api import Page

from support.onvif_device import PASSWORD, USER
from support.procs import PASSWORDS, free_port
from support.wall import leaving_asks, sign_in

PAN_MOVED = 0.2  # how far the held arrow must turn the camera (ipycam pans ~0.5/s at speed 0.5)
BACK = 0.03  # how close to the preset "back" is, in ONVIF's -1..1 pan and tilt


async def open_ops(browser, base: str, user: str, hash_: str = "#/cameras") -> Page:
    """Sign in on /ops as `user`; returns once the page shows the user's screen."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    await sign_in(page, base, user, PASSWORDS[user], f"/ops{hash_}")
    return page


async def api_get(http, gw, path: str, user: str = "admin") -> tuple[int, dict]:
    async with http.get(gw.base + path, headers={"Authorization": f"Bearer {gw.token(user)}"}) as r:
        return r.status, await r.json()


async def position(http, gw, camera: str) -> dict:
    status, data = await api_get(http, gw, f"/api/cameras/{camera}/ptz")
    assert status == 200, data
    return data["position"]


async def shown_pan(page: Page) -> float:
    return float(await page.get_attribute(".ptz-position", "data-pan"))


async def no_secret(page: Page, secret: str) -> None:
    assert secret not in await page.content(), "the password reached the page"


@pytest.mark.browser
async def test_an_onvif_camera_is_found_tested_added_and_steered(
    ipycam,
    gridwatch_factory,
    browser,
    http,
):
    gw = gridwatch_factory({"media": {"deny_hosts": [], "discover_interface": "127.0.0.1"}})
    page = await open_ops(browser, gw.base, "admin")
    await page.click("#add-camera")
    await page.wait_for_selector("#camera-form")

    # A scan from the page finds the device; picking it fills the address and the name.
    await page.click("#scan")
    await page.wait_for_selector("#scan-progress")
    device = f'#scan-results li[data-source="onvif://127.0.0.1:{ipycam.onvif_port}"]'
    await page.wait_for_selector(device, timeout=15000)
    await browser.screenshots("ops-cameras-1-scan")
    await page.click(f"{device} button.use")
    assert await page.input_value("#cam-host") == "127.0.0.1"
    assert await page.input_value("#cam-port") == str(ipycam.onvif_port)
    assert await page.input_value("#cam-name") == "GridwatchTestCam"
    assert await page.input_value("#cam-id") == "gridwatchtestcam"
    await page.fill("#cam-id", "gate")
    await page.fill("#cam-user", USER)

    # A port nothing answers on: the HTTP library's words, without its "ssl:default".
    await page.fill("#cam-port", str(free_port()))
    await page.click("#probe")
    await page.wait_for_selector("#probe-error", timeout=20000)
    text = await page.inner_text("#probe-error")
    assert "did not answer" in text and "ssl:" not in text, text
    await page.fill("#cam-port", str(ipycam.onvif_port))

    # A wrong password: the test says the camera refused it, and nothing is saved.
    await page.fill("#cam-password", "wrong-password")
    await page.click("#probe")
    await page.wait_for_selector("#probe-error:has-text('refused')", timeout=20000)
    assert await api_get(http, gw, "/api/cameras") == (200, {"cameras": []})
    await browser.screenshots("ops-cameras-2-refused")

    # The right one: the camera's picture, before anything is saved.
    await page.fill("#cam-password", PASSWORD)
    await page.click("#probe")
    await page.wait_for_function(
        "() => { const i = document.querySelector('#probe-img'); return i && i.complete && i.naturalWidth > 0; }",
        timeout=20000,
    )
    assert await page.eval_on_selector("#probe-img", "i => [i.naturalWidth, i.naturalHeight]") == [
        640,
        360,
    ]
    assert await api_get(http, gw, "/api/cameras") == (200, {"cameras": []})
    await no_secret(page, PASSWORD)
    await browser.screenshots("ops-cameras-3-tested")

    # Saved (recorded, so that the stream runs): the camera's page opens.
    await page.select_option("#cam-record-mode", "continuous")
    await page.fill("#cam-retain-days", "1")
    await page.click("#save")
    await page.wait_for_selector("#camera[data-camera=gate]", timeout=10000)
    status, camera = await api_get(http, gw, "/api/cameras/gate")
    assert status == 200 and camera["source"] == f"onvif://{USER}:***@127.0.0.1:{ipycam.onvif_port}"
    assert camera["record"]["mode"] == "continuous" and camera["name"] == "GridwatchTestCam"
    await page.wait_for_function(
        "() => document.querySelector('#snapshot')?.naturalWidth > 0", timeout=20000
    )

    # The PTZ pad: a preset where the camera points now ...
    await page.wait_for_selector(".ptz-position[data-pan]", timeout=15000)
    await page.fill(".ptz-save input", "start")  # the device has a "Home" of its own
    await page.click(".ptz-save button")
    await page.wait_for_selector(".ptz-presets li:has(.name:text-is('start'))", timeout=10000)
    home = await position(http, gw, "gate")
    await browser.screenshots("ops-cameras-4-preset")

    # ... the right arrow held turns it right, on screen and at the device; released, it stops.
    await page.hover(".ptz [data-move=right]")
    await page.mouse.down()
    await page.wait_for_function(
        "(p) => Number(document.querySelector('.ptz-position').dataset.pan) > p",
        arg=home["pan"] + PAN_MOVED,
        timeout=15000,
    )
    assert (await position(http, gw, "gate"))["pan"] > home["pan"] + PAN_MOVED
    await browser.screenshots("ops-cameras-5-moved")
    await page.mouse.up()
    async with asyncio.timeout(5):
        while ipycam.ptz()["moving"]:
            await asyncio.sleep(0.1)
    stopped = ipycam.ptz()["pan"]
    await asyncio.sleep(0.5)
    assert abs(ipycam.ptz()["pan"] - stopped) < 0.01, "the camera kept turning after the release"

    # The arrow keys steer too while the pad has the focus.
    await page.focus(".ptz")
    await page.keyboard.down("ArrowLeft")
    await page.wait_for_function(
        "(p) => Number(document.querySelector('.ptz-position').dataset.pan) < p",
        arg=stopped - 0.1,
        timeout=15000,
    )
    await page.keyboard.up("ArrowLeft")

    # "Go" on the preset brings it back.
    await page.click(".ptz-presets li:has(.name:text-is('start')) button.go")
    async with asyncio.timeout(10):
        while True:
            now = await position(http, gw, "gate")
            if abs(now["pan"] - home["pan"]) < BACK and abs(now["tilt"] - home["tilt"]) < BACK:
                break
            await asyncio.sleep(0.2)
    await page.wait_for_function(
        "(p) => Math.abs(Number(document.querySelector('.ptz-position').dataset.pan) - p) < 0.03",
        arg=home["pan"],
        timeout=5000,
    )
    await browser.screenshots("ops-cameras-6-home")

    # A preset name the camera has already, in any case, is refused on the pad; its error
    # wraps in the pad (a long name in it too) rather than pushing the page sideways.
    long_name = "x" * 64
    await page.fill(".ptz-save input", long_name)
    await page.click(".ptz-save button")
    long_preset = f".ptz-presets li:has(.name:text-is('{long_name}'))"
    await page.wait_for_selector(long_preset, timeout=10000)
    for again in ("START", long_name.upper()):
        await page.fill(".ptz-save input", again)
        await page.click(".ptz-save button")
        await page.wait_for_selector(f".ptz-error:has-text('{again}')")
        assert "exists" in await page.inner_text(".ptz-error")
    assert await page.evaluate("""() => {
      const e = document.querySelector('.ptz-error'), d = document.documentElement;
      return e.scrollWidth <= e.clientWidth && d.scrollWidth <= d.clientWidth;
    }"""), "the error pushed the page sideways"
    presets = (await api_get(http, gw, "/api/cameras/gate/ptz"))[1]["presets"]
    names = [p["name"] for p in presets]
    assert names.count("start") == 1 and names.count(long_name) == 1, names
    await browser.screenshots("ops-cameras-6b-preset-exists")
    long_preset = f'.ptz-presets li[data-preset="{presets[names.index(long_name)]["token"]}"]'
    # ✕ asks on the pad first: "Keep" keeps it, "Delete" deletes it.
    await page.click(f"{long_preset} button.delete")
    await page.wait_for_selector(f"{long_preset} .delete-yes")
    await browser.screenshots("ops-cameras-6c-preset-delete")
    await page.click(f"{long_preset} .delete-no")
    await page.wait_for_selector(f"{long_preset} button.go")
    await page.click(f"{long_preset} button.delete")
    await page.click(f"{long_preset} .delete-yes")
    await page.wait_for_selector(long_preset, state="detached", timeout=10000)
    names = [p["name"] for p in (await api_get(http, gw, "/api/cameras/gate/ptz"))[1]["presets"]]
    assert long_name not in names and "start" in names, names

    # An edit with the password left empty keeps the stored one: the device still answers.
    assert await page.get_attribute("#cam-password", "placeholder") == "unchanged"
    assert await page.input_value("#cam-password") == ""
    await page.fill("#cam-name", "Gate (PTZ)")
    await page.click("#save")
    await page.wait_for_selector("#saved")
    status, camera = await api_get(http, gw, "/api/cameras/gate")
    assert camera["name"] == "Gate (PTZ)" and f"{USER}:***@" in camera["source"]
    assert (await api_get(http, gw, "/api/cameras/gate/ptz"))[0] == 200
    await no_secret(page, PASSWORD)

    # The list shows it online, with its stream's facts (codec, size, bitrate).
    await page.click("#to-cameras")
    row = "#camera-list tr[data-camera=gate]"
    await page.wait_for_selector(f"{row}[data-online=true]", timeout=30000)
    await page.wait_for_function(
        f"""() => {{
          const text = document.querySelector('{row}').innerText;
          return text.includes('640\\u00d7360') && text.includes('h264') && /[0-9] [kM]bit\\/s/.test(text);
        }}""",
        timeout=10000,
    )
    await no_secret(page, PASSWORD)
    await browser.screenshots("ops-cameras-7-list")

    # On the wall, a dispatcher opens the pad from the tile and steers the camera there.
    wall = await browser.new_page(viewport={"width": 1600, "height": 900})
    await wall.goto(gw.base + "/")
    await wall.fill("input[name=username]", "dispatcher")
    await wall.fill("input[name=password]", PASSWORDS["dispatcher"])
    await wall.click("button[type=submit]")
    # The link to these screens is dressed as the header's buttons, not as a browser's link.
    look = "(e) => { const s = getComputedStyle(e); return [s.color, s.backgroundColor, s.textDecorationLine]; }"
    to_ops = await (await wall.wait_for_selector("#to-ops", timeout=15000)).evaluate(look)
    assert to_ops == [*(await wall.eval_on_selector("#logout", look))[:2], "none"], to_ops
    tile = ".tile[data-camera=gate]"
    await wall.click(f"{tile} .ptz-toggle", timeout=15000)
    await wall.wait_for_selector(f"{tile} .ptz-position[data-pan]", timeout=15000)
    before = (await position(http, gw, "gate"))["pan"]
    await wall.hover(f"{tile} .ptz [data-move=left]")
    await wall.mouse.down()
    async with asyncio.timeout(15):
        while (await position(http, gw, "gate"))["pan"] > before - PAN_MOVED:
            await asyncio.sleep(0.2)
    await wall.mouse.up()
    await browser.screenshots("ops-cameras-8-wall")
    await no_secret(wall, PASSWORD)
    assert PASSWORD not in gw.logs()


@pytest.mark.browser
async def test_an_rtsp_camera_is_added_edited_and_deleted_and_a_dispatcher_only_looks(
    rtsp_factory, gridwatch_factory, browser, http
):
    rtsp = rtsp_factory({"/cam": "testsrc:320x240@10:300"})
    gw = gridwatch_factory({"media": {"deny_hosts": []}})
    page = await open_ops(browser, gw.base, "admin", "#/cameras/new")
    await page.wait_for_selector("#camera-form")
    await page.check("#cam-kind-url")
    # A URL pasted with its credentials: they move to their fields, the password out of sight.
    secret = "Rtsp-Secret-91"
    await page.fill("#cam-url", f"rtsp://viewer:{secret}@127.0.0.1:{rtsp.port}/cam")
    await page.press("#cam-url", "Tab")
    assert await page.input_value("#cam-url") == f"rtsp://127.0.0.1:{rtsp.port}/cam"
    assert await page.input_value("#cam-user") == "viewer"
    assert await page.input_value("#cam-password") == secret

    # A test of a URL with no host: the server's complaint, without the field's name that
    # its place already says.
    await page.fill("#cam-url", "rtsp:///cam")
    await page.click("#probe")
    await page.wait_for_selector("#probe-error", timeout=20000)
    assert await page.inner_text("#probe-error") == "rtsp URL has no host"
    await page.fill("#cam-url", f"rtsp://127.0.0.1:{rtsp.port}/cam")

    # What the page can tell is said before anything is sent, in plain words, and the
    # test's complaint goes: it was about an earlier URL.
    await page.fill("#cam-id", "Street 1")
    await page.fill("#cam-lat", "95")
    await page.click("#save")
    await page.wait_for_selector("#form-error")
    assert await page.locator("#probe-error").count() == 0
    assert await page.inner_text("[data-field='id']") == (
        "lower-case letters, digits, - and _, starting with a letter or digit, at most 63"
    )
    assert await page.inner_text("[data-field='position.lon']") == "give both latitude and longitude, or neither"
    assert await page.get_attribute("#cam-lon", "aria-invalid") == "true"
    assert await api_get(http, gw, "/api/cameras") == (200, {"cameras": []})
    await browser.screenshots("ops-cameras-rtsp-1-errors")

    # What only the server knows is shown at the field it names, in plain words.
    await page.fill("#cam-id", "street-1")
    await page.fill("#cam-lon", "121.5")
    await page.click("#save")
    await page.wait_for_selector("[data-field='position.lat']")
    assert (await page.inner_text("[data-field='position.lat']")).startswith("at most 85.05")
    assert await page.get_attribute("#cam-lat", "aria-invalid") == "true"
    assert await page.locator("[data-field='id'], [data-field='position.lon']").count() == 0
    assert await api_get(http, gw, "/api/cameras") == (200, {"cameras": []})
    await browser.screenshots("ops-cameras-rtsp-1b-server-errors")
    # A new test: the save's complaints were about the save.
    await page.click("#probe")
    await page.wait_for_function(
        "() => { const i = document.querySelector('#probe-img'); return i && i.complete && i.naturalWidth > 0; }",
        timeout=20000,
    )
    assert await page.locator("#form-error, .field-error").count() == 0

    await page.fill("#cam-lat", "31.26")
    await page.select_option("#cam-record-mode", "continuous")
    await page.click("#save")
    await page.wait_for_selector("#camera[data-camera=street-1]", timeout=10000)
    _, camera = await api_get(http, gw, "/api/cameras/street-1")
    assert camera["source"] == f"rtsp://viewer:***@127.0.0.1:{rtsp.port}/cam"
    assert camera["position"] == {"lat": 31.26, "lon": 121.5}
    # Edited with the password left empty: the server still has it (PUT kept `***`'s) ...
    hint = await page.inner_text("label.field:has(#cam-password) .hint")
    assert "leave empty to keep it" in hint and "scheme, user, host and port stay the same" in hint
    await page.fill("#cam-name", "Street one")
    # ... which it keeps only for the same address: another one asks for the password.
    await page.fill("#cam-url", f"rtsp://127.0.0.2:{rtsp.port}/cam")
    assert "type the password" in await page.inner_text("label.field:has(#cam-password) .hint")
    assert await page.get_attribute("#cam-password", "required") is not None
    await page.click("#save")
    assert await page.inner_text("[data-field='password']") == "required: the address or user changed"
    assert (await api_get(http, gw, "/api/cameras/street-1"))[1]["source"].startswith("rtsp://viewer:***@127.0.0.1:")
    await browser.screenshots("ops-cameras-rtsp-2a-password")
    await page.fill("#cam-url", f"rtsp://127.0.0.1:{rtsp.port}/cam")
    # Leaving with unsaved changes asks; staying keeps them.
    assert "unsaved" in await leaving_asks(page, "#to-cameras")
    assert await page.input_value("#cam-name") == "Street one"
    await page.click("#save")
    await page.wait_for_selector("#saved")
    assert (await api_get(http, gw, "/api/cameras/street-1"))[1]["name"] == "Street one"
    await no_secret(page, secret)
    await page.click("#to-cameras")
    await page.wait_for_selector(
        "#camera-list tr[data-camera=street-1][data-online=true]", timeout=30000
    )
    await browser.screenshots("ops-cameras-rtsp-2-list")

    # A dispatcher sees the list and the camera, and no control to add, change or delete.
    disp = await open_ops(browser, gw.base, "dispatcher")
    await disp.wait_for_selector("#camera-list tr[data-camera=street-1]")
    assert await disp.locator("#add-camera").count() == 0
    await disp.click("#camera-list tr[data-camera=street-1] a.name")
    await disp.wait_for_selector("#camera-state")
    assert await disp.locator("#camera-form, #delete").count() == 0
    assert await disp.locator("#to-zones").count() == 1
    await disp.goto(gw.base + "/ops#/cameras/new")
    await disp.wait_for_selector("text=Only administrators add and change cameras")
    await no_secret(disp, secret)
    await browser.screenshots("ops-cameras-rtsp-3-dispatcher")

    # Deleted after a confirmation.
    await page.click("#camera-list tr[data-camera=street-1] a.name")
    await page.click("#delete")
    await page.wait_for_selector("#confirm-delete")
    assert (await api_get(http, gw, "/api/cameras/street-1"))[0] == 200
    await page.click("#delete-yes")
    await page.wait_for_selector("#camera-list, #cameras p")
    assert await api_get(http, gw, "/api/cameras") == (200, {"cameras": []})
    assert secret not in gw.logs()


async def wait_state(http, gw, camera: str, ok, timeout: float = 20.0) -> dict:
    """The camera's state once `ok(state)` holds, polled from the API."""
    async with asyncio.timeout(timeout):
        while not ok(state := (await api_get(http, gw, f"/api/cameras/{camera}"))[1]["state"]):
            await asyncio.sleep(0.2)
    return state


@pytest.mark.browser
async def test_the_list_tells_idle_cameras_from_dead_ones_and_a_dead_camera_says_why_at_once(
    gridwatch_factory, browser, http
):
    """A camera nothing pulls is "idle" (grey), not "offline"; one that is pulled and
    fails is offline with its error; a dead camera's page shows the error while its
    picture is awaited, not only once the snapshot's deadline has passed."""
    dead, dormant = f"rtsp://127.0.0.1:{free_port()}/x", f"rtsp://127.0.0.1:{free_port()}/y"
    recorded = {"mode": "continuous", "retain_days": 1}
    gw = gridwatch_factory({
        "media": {"read_timeout_s": 5},  # the snapshot's deadline: 10 s
        "cameras": [
            {"id": "live", "source": "lavfi:testsrc2=size=320x240:rate=10", "record": recorded},
            {"id": "quiet", "source": "lavfi:testsrc2=size=320x240:rate=10"},
            {"id": "dead", "source": dead, "record": recorded},
            {"id": "dormant", "source": dormant},
        ],
    })  # fmt: skip
    await wait_state(http, gw, "live", lambda s: s["status"] == "online")
    down = await wait_state(http, gw, "dead", lambda s: s["last_error"])
    assert down["status"] == "offline" and down["online"] is False, down
    for camera in ("quiet", "dormant"):
        state = (await api_get(http, gw, f"/api/cameras/{camera}"))[1]["state"]
        assert state["status"] == "idle" and state["online"] is False and state["last_error"] is None, state

    page = await open_ops(browser, gw.base, "dispatcher")
    pills = {}
    for camera in ("live", "quiet", "dead", "dormant"):
        row = f"#camera-list tr[data-camera={camera}]"
        await page.wait_for_selector(row)
        pills[camera] = await page.inner_text(f"{row} .pill")
    assert pills == {"live": "online", "quiet": "idle — pulled when watched", "dead": "offline",
                     "dormant": "idle — pulled when watched"}, pills  # fmt: skip
    assert await page.eval_on_selector(
        "tr[data-camera=quiet] .pill", "p => getComputedStyle(p).color"
    ) != await page.eval_on_selector("tr[data-camera=dead] .pill", "p => getComputedStyle(p).color")
    await browser.screenshots("ops-cameras-status-1-list")

    # The dormant camera's page asks for a picture, which opens its stream: the stream's
    # error is shown beside "Taking a picture…" as soon as the page hears of it, seconds
    # before the snapshot gives up.
    opened = time.monotonic()
    await page.click("#camera-list tr[data-camera=dormant] a.name")
    await page.wait_for_selector("#snapshot-wait #snapshot-last-error", timeout=8000)
    assert time.monotonic() - opened < 8
    assert "refused" in (await page.inner_text("#snapshot-last-error")).lower()
    assert await page.inner_text("#camera-state .pill") == "offline"
    await browser.screenshots("ops-cameras-status-2-dead")
    await page.wait_for_selector("#snapshot-error", timeout=20000)
    assert "refused" in (await page.inner_text("#snapshot-error")).lower()

    # A demo camera of the config file (lavfi:) is edited as a stream URL, as it stands.
    admin = await open_ops(browser, gw.base, "admin", "#/cameras/quiet")
    await admin.wait_for_selector("#camera-form")
    assert await admin.is_checked("#cam-kind-url")
    assert await admin.inner_text("label:has(#cam-kind-url)") == "Stream URL"
    assert await admin.input_value("#cam-url") == "lavfi:testsrc2=size=320x240:rate=10"
    await admin.fill("#cam-name", "Quiet demo")
    await admin.click("#save")
    await admin.wait_for_selector("#saved")
    _, quiet = await api_get(http, gw, "/api/cameras/quiet")
    assert quiet["name"] == "Quiet demo" and quiet["source"] == "lavfi:testsrc2=size=320x240:rate=10"

@pytest.mark.browser
async def test_a_viewer_and_an_officer_are_pointed_to_their_page_and_can_sign_out(gridwatch_factory, browser):
    gw = gridwatch_factory()
    for user, own in (("viewer", "/"), ("officer", "/phone")):
        page = await open_ops(browser, gw.base, user)
        note = await page.wait_for_selector("#not-for-role")
        assert await page.is_hidden("#login"), "the sign-in form stayed on screen"
        text = " ".join((await note.inner_text()).split())
        assert f"you are signed in as {user}. Go to your page." in text, text
        assert await page.get_attribute("#to-own-page", "href") == own
        await browser.screenshots(f"ops-not-for-{user}")
        await page.click("#logout")
        await page.wait_for_selector("#login", state="visible")
        assert await page.locator("#not-for-role").count() == 0
        await page.close()

