"""A real third-party ONVIF device (ipycam, a virtual IP camera) added by onvif:// URL."""

from __future__ import annotations

import asyncio
import re

import cv2
import numpy as np
import pytest

from gridwatch.media.onvif import describe_offset, parse_device_time
from support.onvif_device import PASSWORD, USER, IpyCam
from support.procs import GRIDWATCH, stop
from support.whep_client import view

TWO_HOURS = 7200


async def test_onvif_camera_stream_snapshot_and_ptz(ipycam, gridwatch_factory, http):
    gw = gridwatch_factory({"media": {"deny_hosts": []}})  # the test device is on loopback
    h = {"Authorization": f"Bearer {gw.token('admin')}"}
    for cid, query, size in [
        ("onvif-main", "", (640, 360)),
        ("onvif-sub", "?profile=1", (320, 180)),
    ]:
        url = f"onvif://{USER}:{PASSWORD}@127.0.0.1:{ipycam.onvif_port}{query}"
        async with http.post(
            gw.base + "/api/cameras", json={"id": cid, "source": url}, headers=h
        ) as r:
            assert r.status == 201, await r.text()
            assert PASSWORD not in await r.text()

        # The RTSP URI comes from GetProfiles/GetStreamUri; the profile picks main or sub.
        token = gw.token("viewer")
        viewer = await view(http, gw.base, cid, token)
        try:
            assert await viewer.wait_frames(5, timeout=15), "no frames from the ONVIF camera"
            _, frame = viewer.frames[-1]
            assert (frame.width, frame.height) == size
        finally:
            await viewer.close(http, gw.base, token)

    async with http.get(gw.base + "/api/cameras/onvif-main/snapshot.jpg", headers=h) as r:
        assert r.status == 200 and r.content_type == "image/jpeg"
        img = cv2.imdecode(np.frombuffer(await r.read(), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[:2] == (360, 640)

    before = ipycam.ptz()
    async with http.post(
        gw.base + "/api/cameras/onvif-main/ptz", json={"action": "move", "pan": 0.5}, headers=h
    ) as r:
        assert r.status == 200, await r.text()
    await asyncio.sleep(1.0)
    async with http.post(
        gw.base + "/api/cameras/onvif-main/ptz", json={"action": "stop"}, headers=h
    ) as r:
        assert r.status == 200, await r.text()
    after = ipycam.ptz()
    assert after["pan"] - before["pan"] > 0.3, (before, after)
    assert after["moving"] is False
    async with http.post(
        gw.base + "/api/cameras/onvif-main/ptz",
        json={"action": "goto_preset", "preset": "home"},
        headers=h,
    ) as r:
        assert r.status == 200, await r.text()
    async with asyncio.timeout(5):
        while abs(ipycam.ptz()["pan"]) > 0.01:  # back home
            await asyncio.sleep(0.1)

    async with http.get(gw.base + "/api/cameras", headers=h) as r:
        text = await r.text()
        assert PASSWORD not in text and f"{USER}:***@" in text
    assert PASSWORD not in gw.logs()


async def test_wrong_onvif_password_is_a_clear_error(ipycam, gridwatch_factory, http):
    # Quick retries for a source that fails; a refusal waits refused_retry_s all the same.
    gw = gridwatch_factory({"media": {"read_timeout_s": 2, "deny_hosts": [], "reconnect_min_s": 0.2,
                                      "reconnect_max_s": 0.4, "refused_retry_s": 60}})  # fmt: skip
    h = {"Authorization": f"Bearer {gw.token('admin')}"}
    url = f"onvif://{USER}:wrong-password@127.0.0.1:{ipycam.onvif_port}"
    async with http.post(
        gw.base + "/api/cameras", json={"id": "liar", "source": url}, headers=h
    ) as r:
        assert r.status == 201
    async with http.post(
        gw.base + "/api/cameras/liar/ptz", json={"action": "stop"}, headers=h
    ) as r:
        assert r.status == 502
        assert (await r.json())["error"] == "device_error"
    # A viewer makes the stream try: its state says why it cannot play.
    token = gw.token("viewer")
    viewer = await view(http, gw.base, "liar", token)
    try:
        async with asyncio.timeout(10):
            while True:
                async with http.get(gw.base + "/api/cameras/liar", headers=h) as r:
                    state = (await r.json())["state"]
                if state["last_error"]:
                    break
                await asyncio.sleep(0.2)
        assert "not authorized" in state["last_error"] and not state["online"]
        assert "wrong username or password" in state["last_error"], state
        # Asked once, not every fraction of a second: cameras lock accounts after a few
        # failed logins. (A window with no second attempt: nothing to wait for but time.)
        await asyncio.sleep(4)
        tries = [r for r in gw.records("stream source failed") if r.get("stream") == "liar"]
        assert len(tries) == 1, tries
    finally:
        await viewer.close(http, gw.base, token)
    async with http.get(gw.base + "/healthz") as r:
        assert r.status == 200
    assert "wrong-password" not in gw.logs()


async def test_discover_finds_the_device_on_loopback(ipycam):
    proc = await asyncio.create_subprocess_exec(
        GRIDWATCH,
        "discover",
        "--interface",
        "127.0.0.1",
        "--timeout",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{ipycam.onvif_port}/onvif/device_service" in out.decode()
    # Other tests' devices may answer on loopback too: only this one's presence is ours to check.
    assert re.search(r"\b[1-9]\d* device\(s\) found", err.decode()), err


# A device whose clock is off (a power cut, no NTP) -------------------------------------


@pytest.fixture
async def strict_cam(tmp_path, onvif_scene):
    """Starts strict devices: `await strict_cam("--clock-offset", "7200")`; all stopped after."""
    cams: list[IpyCam] = []

    async def start(*options: str) -> IpyCam:
        workdir = tmp_path / f"strict{len(cams)}"
        workdir.mkdir()
        cams.append(cam := IpyCam(workdir, onvif_scene, strict=list(options)))
        await cam.ready()
        return cam

    try:
        yield start
    finally:
        for cam in cams:
            stop(cam.proc)


async def add_camera(http, gw, cid: str, url: str) -> dict[str, str]:
    """POST the camera as admin; returns the admin's headers."""
    h = {"Authorization": f"Bearer {gw.token('admin')}"}
    async with http.post(gw.base + "/api/cameras", json={"id": cid, "source": url}, headers=h) as r:
        assert r.status == 201, await r.text()
    return h


async def last_error(http, gw, cid: str, h: dict[str, str], timeout: float = 15) -> dict:
    """Opens a viewer (which makes the stream try) and waits for the state to name an error."""
    token = gw.token("viewer")
    viewer = await view(http, gw.base, cid, token)
    try:
        async with asyncio.timeout(timeout):
            while True:
                async with http.get(gw.base + f"/api/cameras/{cid}", headers=h) as r:
                    state = (await r.json())["state"]
                if state["last_error"]:
                    return state
                await asyncio.sleep(0.2)
    finally:
        await viewer.close(http, gw.base, token)


def test_offsets_and_device_times_read_as_people_write_them():
    from datetime import UTC, datetime, timedelta

    assert describe_offset(timedelta(hours=2)) == "2 h 0 min ahead of ours"
    assert describe_offset(timedelta(hours=-2, seconds=-20)) == "2 h 0 min behind ours"
    assert describe_offset(timedelta(minutes=-3, seconds=-5)) == "3 min 5 s behind ours"
    assert describe_offset(timedelta(seconds=40)) == "40 s ahead of ours"
    reply = (
        b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"'
        b' xmlns:tt="http://www.onvif.org/ver10/schema"><s:Body><x><tt:UTCDateTime>'
        b"<tt:Time><tt:Hour>23</tt:Hour><tt:Minute>5</tt:Minute><tt:Second>9</tt:Second></tt:Time>"
        b"<tt:Date><tt:Year>2031</tt:Year><tt:Month>2</tt:Month><tt:Day>28</tt:Day></tt:Date>"
        b"</tt:UTCDateTime></x></s:Body></s:Envelope>"
    )
    assert parse_device_time(reply) == datetime(2031, 2, 28, 23, 5, 9, tzinfo=UTC)
    for bad, why in [
        (b"<tds:GetSystemDateAndTimeResponse><tt:UTCDate", "garbled"),
        (reply.replace(b"<tt:Day>28</tt:Day>", b""), "unreadable"),
        (reply.replace(b"UTCDateTime", b"LocalDateTime"), "no UTCDateTime"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_device_time(bad)


@pytest.mark.parametrize("offset", [TWO_HOURS, -TWO_HOURS], ids=["ahead", "behind"])
async def test_a_device_two_hours_off_works(strict_cam, offset, gridwatch_factory, http):
    """Its clock is 2 h off and it checks WS-Security against it (within 300 s): Gridwatch
    signs with the device's time, so the stream URI resolves, video flows, PTZ and the
    ONVIF snapshot work."""
    cam = await strict_cam("--clock-offset", str(offset))
    gw = gridwatch_factory({"media": {"deny_hosts": []}})
    h = await add_camera(
        http, gw, "skewed", f"onvif://{USER}:{PASSWORD}@127.0.0.1:{cam.onvif_port}"
    )

    token = gw.token("viewer")
    viewer = await view(http, gw.base, "skewed", token)
    try:
        assert await viewer.wait_frames(5, timeout=15), "no frames from the skewed ONVIF camera"
        _, frame = viewer.frames[-1]
        assert (frame.width, frame.height) == (640, 360)
    finally:
        await viewer.close(http, gw.base, token)

    async with http.post(
        gw.base + "/api/cameras/skewed/ptz", json={"action": "move", "pan": 0.5}, headers=h
    ) as r:
        assert r.status == 200, await r.text()
    await asyncio.sleep(0.5)  # the device pans while it moves
    async with http.post(
        gw.base + "/api/cameras/skewed/ptz", json={"action": "stop"}, headers=h
    ) as r:
        assert r.status == 200, await r.text()
    assert cam.ptz()["pan"] > 0
    async with http.get(gw.base + "/api/cameras/skewed/snapshot.jpg", headers=h) as r:
        assert r.status == 200 and r.content_type == "image/jpeg"
    # The snapshot came from the device (GetSnapshotUri signed), not the stream's fallback.
    assert not gw.records("onvif snapshot failed"), gw.logs()[-2000:]
    assert not gw.records("stream source failed"), gw.logs()[-2000:]
    noted = gw.records("onvif device clock is off; signing with its time")
    assert noted and abs(noted[0]["offset_s"] - offset) <= 2, noted


async def test_wrong_password_on_a_strict_device_reads_as_credentials(
    strict_cam, gridwatch_factory, http
):
    """Clock right, password wrong: the device says "Sender not Authorized" as it would to a
    skewed clock, and Gridwatch must say credentials, not clock."""
    cam = await strict_cam()
    gw = gridwatch_factory({"media": {"read_timeout_s": 2, "deny_hosts": []}})
    h = await add_camera(
        http, gw, "liar", f"onvif://{USER}:wrong-password@127.0.0.1:{cam.onvif_port}"
    )
    async with http.post(
        gw.base + "/api/cameras/liar/ptz", json={"action": "stop"}, headers=h
    ) as r:
        assert r.status == 502
        error = (await r.json())["message"]
    state = await last_error(http, gw, "liar", h)
    logged = [r["error"] for r in gw.records("stream source failed")]
    for text in (error, state["last_error"], *logged):
        assert "wrong username or password" in text and "Sender not Authorized" in text, text
        assert "clock" not in text, text
    assert not state["online"] and logged
    assert "wrong-password" not in gw.logs()


@pytest.mark.parametrize(
    "options, password, expected",
    [
        # It cannot tell its time: Gridwatch signs with ours, 2 h off, and cannot know.
        (["--time-reply", "garbled"], PASSWORD, "the device clock could not be read"),
        (["--time-reply", "refuse"], PASSWORD, "the device clock could not be read"),
        # It tells its time but still refuses: the offset is named with the credentials.
        ([], "wrong-password", "device clock is 2 h 0 min ahead of ours; WS-Security refused"),
    ],
    ids=["time-garbled", "time-refused", "wrong-password"],
)
async def test_a_clock_that_cannot_be_corrected_is_named(
    strict_cam, options, password, expected, gridwatch_factory, http
):
    cam = await strict_cam("--clock-offset", str(TWO_HOURS), *options)
    gw = gridwatch_factory({"media": {"read_timeout_s": 2, "deny_hosts": []}})
    url = f"onvif://{USER}:{password}@127.0.0.1:{cam.onvif_port}"
    h = await add_camera(http, gw, "skewed", url)
    async with http.post(
        gw.base + "/api/cameras/skewed/ptz", json={"action": "stop"}, headers=h
    ) as r:
        assert r.status == 502
        error = (await r.json())["message"]
    state = await last_error(http, gw, "skewed", h)
    logged = [r["error"] for r in gw.records("stream source failed")]
    for text in (error, state["last_error"], *logged):
        assert expected in text and "Sender not Authorized" in text, text
    assert not state["online"] and logged
