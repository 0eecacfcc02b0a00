"""`gridwatch demo`: the whole loop on one machine, from nothing outside it.

Demo cameras (FFmpeg test patterns, the wall clock, and a street scene composed from
real pictures that installed packages ship, in which a vehicle parks and a stall is
set up every loop), a detector worker with the shipped demo model, and a simulated
patrol officer who sends GPS fixes from a phone's point of view, accepts what he is
sent, walks there (arrival is seen on his track) and resolves it, after which the
camera verifies that the spot is clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import yaml

from gridwatch.signaling.auth import hash_password
from gridwatch.signaling.config import Config
from gridwatch.signaling.demo_map import place, write_district
from gridwatch.signaling.processes import die_with_parent

log = logging.getLogger("gridwatch.demo")

STREET = "main-street"
CENTRE = (31.2601, 120.9203)  # lat, lon of the demo street camera
OFFICER = "p-017"
# id, source, where it stands (metres north and east of the street camera)
DEMO_CAMERAS = [
    ("crossroads", "lavfi:testsrc2=size=960x540:rate=25", (175, 175)),
    ("market-street", "lavfi:smptehdbars=size=960x540:rate=25", (-175, -175)),
    ("school-gate", "lavfi:mandelbrot=size=640x360:rate=15", (350, -350)),
    ("wall-clock", "clock:640x368@25", (0, 350)),
]


def street_video(data_dir: Path) -> Path:
    from gridwatch.detectors.scenarios import rendered  # numpy/cv2/av: only for the demo

    return rendered("demo", data_dir / "scenarios")


def demo_config(port: int, data_dir: Path, passwords: dict[str, str]) -> Config:
    from gridwatch.detectors.scenarios import PAVEMENT, ROAD

    district = write_district(CENTRE, data_dir / "map")
    return Config.model_validate(
        {
            "server": {"host": "127.0.0.1", "port": port, "data_dir": data_dir},
            "webrtc": {"ice_servers": [], "host_addresses": ["127.0.0.1"]},
            "media": {"idle_grace_s": 5},
            "rtmp": {"host": "127.0.0.1", "port": 1935},  # a drone (ffmpeg) may push here
            # Main Street records around each violation; its tickets get a clip.
            "recordings": {"pre_s": 10, "post_s": 10, "min_free_mb": 200},
            "users": [
                {"username": "admin", "password_hash": hash_password(passwords["admin"]), "role": "admin"},
                {"username": OFFICER, "password_hash": hash_password(passwords[OFFICER]), "role": "officer"},
            ],
            "officers": [{"id": OFFICER, "name": "Wang Lei (simulated)", "grid": "north-2"}],
            # The district around the cameras: its streets, buildings, canal and park, and
            # four grids (a surge of 5 tickets in an hour raises a warning).
            "map": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "zoom": 16, "layers": [
                {"name": name, "geojson": path, "kind": name}
                for name, path in district.items() if name != "grids"]},
            "grids": {"geojson": district["grids"], "warn": {"window_s": 3600, "threshold": 5}},
            "cameras": [
                *({"id": cid, "name": cid.replace("-", " ").title(), "source": src,
                   "position": place(CENTRE, *where)}
                  for cid, src, where in DEMO_CAMERAS),
                {
                    "id": STREET, "name": "Main Street (detection)",
                    "source": f"file:{street_video(data_dir).resolve()}",
                    "position": {"lat": CENTRE[0], "lon": CENTRE[1]},
                    "detect": {"fps": 2},
                    "record": {"mode": "events", "retain_days": 1},
                    "zones": [
                        {"name": "road", "kind": "no_parking", "polygon": ROAD, "dwell_s": 20},
                        {"name": "pavement", "kind": "no_stall", "polygon": PAVEMENT, "dwell_s": 30},
                    ],
                },
            ],
            # The demo model was trained at 320 px; a short cooldown raises the scene's
            # vehicle again on every loop of the video.
            "detectors": {"imgsz": 320, "cooldown_s": 20, "verify_clear_s": 5},
        }
    )  # fmt: skip


@contextlib.asynccontextmanager
async def sidecars(config: Config, passwords: dict[str, str]) -> AsyncIterator[None]:
    """The detector worker (a process of its own, as in production) and the patrol officer."""
    path = config.server.data_dir / "demo-detect.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    path.chmod(0o600)
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gridwatch.signaling.cli", "detect", "--config", str(path),
        stdin=subprocess.DEVNULL, env={**os.environ, "YOLO_OFFLINE": "1"},
        preexec_fn=die_with_parent,
    )  # fmt: skip
    base = f"http://127.0.0.1:{config.server.port}"
    officer = asyncio.create_task(patrol(base, OFFICER, passwords[OFFICER]))
    try:
        yield
    finally:
        officer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await officer
        worker.terminate()
        try:
            await asyncio.wait_for(worker.wait(), 10)
        except TimeoutError:
            worker.kill()
            await worker.wait()


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (lat + north_m / 111_320, lon + east_m / (111_320 * math.cos(math.radians(lat))))


def step_towards(here: tuple[float, float], there: tuple[float, float], metres: float):
    from gridwatch.dispatch.officers import distance_m

    d = distance_m(*here, *there)
    if d <= metres:
        return there
    f = metres / d
    return (here[0] + f * (there[0] - here[0]), here[1] + f * (there[1] - here[1]))


async def patrol(base: str, username: str, password: str, speed_mps: float = 6.0,
                 radius_m: float = 120.0, period_s: float = 2.0) -> None:  # fmt: skip
    """A patrol officer's phone: fixes every `period_s`, and the ticket he is sent, worked."""
    async with aiohttp.ClientSession(base) as http:
        while True:
            try:
                async with http.post(
                    "/api/login", json={"username": username, "password": password}
                ) as r:
                    token = (await r.json())["token"]
                break
            except (aiohttp.ClientError, KeyError):
                await asyncio.sleep(1)
        headers = {"Authorization": f"Bearer {token}"}
        walk = Walk(offset(*CENTRE, radius_m, 0), speed_mps * period_s, radius_m)
        while True:
            try:
                if await taken_over(http, headers, username):
                    walk.on_scene_since = None  # a person has his phone: he walks and decides
                else:
                    await walk.step(http, headers, username)
            except (aiohttp.ClientError, KeyError, ValueError) as e:  # the server is busy or gone
                log.warning("demo officer", extra={"error": str(e)})
            await asyncio.sleep(period_s)


async def taken_over(http: aiohttp.ClientSession, headers: dict, username: str) -> bool:
    """Whether a person is signed in as this officer on a phone (a /ws device online)."""
    async with http.get("/api/presence", headers=headers) as r:
        users = (await r.json())["users"]
    return any(u["user"] == username and u["devices"] for u in users)


class Walk:
    def __init__(self, start: tuple[float, float], stride_m: float, radius_m: float):
        self.here = start
        self.stride_m = stride_m
        self.radius_m = radius_m
        self.angle = 0.0
        self.on_scene_since: float | None = None

    async def step(self, http: aiohttp.ClientSession, headers: dict, username: str) -> None:
        async with http.get("/api/tickets?limit=20", headers=headers) as r:
            mine = [t for t in (await r.json())["tickets"]
                    if t["assignee"] == username and t["state"] in ("dispatched", "accepted", "on_scene")]  # fmt: skip
        ticket = mine[0] if mine else None
        if ticket and ticket["state"] == "dispatched":
            await act(http, headers, ticket["id"], "accept")
        if ticket and ticket["state"] in ("dispatched", "accepted"):
            target = (ticket["location"]["lat"], ticket["location"]["lon"])
            self.here = step_towards(self.here, target, self.stride_m)
        elif ticket and ticket["state"] == "on_scene":
            self.on_scene_since = self.on_scene_since or time.monotonic()
            if time.monotonic() - self.on_scene_since > 10:  # the time it takes to sort it out
                await act(http, headers, ticket["id"], "resolve")
                self.on_scene_since = None
        else:  # walk the beat: a circle round the street
            self.angle += self.stride_m / self.radius_m
            goal = offset(*CENTRE, self.radius_m * math.cos(self.angle),
                          self.radius_m * math.sin(self.angle))  # fmt: skip
            self.here = step_towards(self.here, goal, self.stride_m)
        fix = {"lat": self.here[0], "lon": self.here[1], "speed": self.stride_m, "accuracy": 5.0,
               "time": time.time()}  # fmt: skip
        async with http.post("/api/tracks", json={"fixes": [fix]}, headers=headers) as r:
            if r.status != 200:
                log.warning("demo officer's fix refused", extra={"status": r.status})


async def act(http: aiohttp.ClientSession, headers: dict, ticket: str, action: str) -> None:
    async with http.post(
        f"/api/tickets/{ticket}/actions", json={"action": action}, headers=headers
    ) as r:
        log.info("demo officer", extra={"ticket": ticket, "action": action, "status": r.status})
