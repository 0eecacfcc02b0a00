"""A real third-party ONVIF device (ipycam, a virtual IP camera) added by onvif:// URL."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from support.procs import GRIDWATCH, free_port, make_video, stop
from support.whep_client import view

WRAPPER = str(Path(__file__).parent / "support" / "ipycam_lo.py")
USER, PASSWORD = "admin", "Onvif-Secret-77"


class IpyCam:
    def __init__(self, workdir: Path, video: Path):
        self.dir = workdir
        self.onvif_port, self.rtsp_port = free_port(), free_port()
        cfg = {
            "name": "GridwatchTestCam",  # no spaces: ipycam puts it unescaped into a scope URI
            "local_ip": "127.0.0.1",
            "onvif_port": self.onvif_port,
            "rtsp_port": self.rtsp_port,
            "web_port": free_port(),
            "go2rtc_api_port": free_port(),  # nothing there, so ipycam serves RTSP itself
            "rtmp_port": free_port(),
            "username": USER,
            "password": PASSWORD,
            "main_width": 640,
            "main_height": 360,
            "main_fps": 15,
            "main_bitrate": "1M",
            "sub_width": 320,
            "sub_height": 180,
            "sub_fps": 15,
            "sub_bitrate": "256K",
        }
        (workdir / "camera_config.json").write_text(json.dumps(cfg))
        # The wrapper keeps every ipycam socket on loopback (it binds 0.0.0.0 by itself).
        self.proc = subprocess.Popen(
            [sys.executable, WRAPPER, "--config", "camera_config.json", "--source", str(video)],
            cwd=workdir,
            stdout=open(workdir / "ipycam.log", "wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def get(self, path: str):
        req = urllib.request.Request(f"http://127.0.0.1:{self.onvif_port}{path}")
        req.add_header(
            "Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        )
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status, r.read()

    async def ready(self, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    if self.get("/snapshot.jpg")[0] == 200:  # 503 until the first frame
                        return
                except OSError:
                    pass
                await asyncio.sleep(0.2)

    def ptz(self) -> dict:
        return json.loads(self.get("/api/ptz")[1])


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    video = tmp_path_factory.mktemp("onvif") / "scene.mp4"
    make_video(video, "640x360", 15, 10)
    return video


@pytest.fixture
async def ipycam(tmp_path, scene):
    workdir = tmp_path / "ipycam"
    workdir.mkdir()
    cam = IpyCam(workdir, scene)
    try:
        await cam.ready()
        yield cam
    finally:
        stop(cam.proc)


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
    gw = gridwatch_factory({"media": {"read_timeout_s": 2, "deny_hosts": []}})
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
    assert "1 device(s) found" in err.decode()
