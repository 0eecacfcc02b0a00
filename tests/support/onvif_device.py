"""ipycam (a virtual IP camera speaking ONVIF, RTSP and WS-Discovery) as the tests' ONVIF
device, in a process of its own with every socket on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from support.procs import free_port

SUPPORT = Path(__file__).parent
WRAPPER = str(SUPPORT / "ipycam_lo.py")
STRICT = str(SUPPORT / "onvif_strict.py")  # ipycam_lo plus a clock offset and strict WS-Security
USER, PASSWORD = "admin", "Onvif-Secret-77"


class IpyCam:
    """ipycam in a process of its own; `strict` (onvif_strict.py options) makes it check
    WS-Security as real cameras do, against a clock of its own."""

    def __init__(self, workdir: Path, video: Path, strict: list[str] | None = None):
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
        wrapper = [WRAPPER] if strict is None else [STRICT, *strict]
        self.proc = subprocess.Popen(
            [sys.executable, *wrapper, "--config", "camera_config.json", "--source", str(video)],
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
