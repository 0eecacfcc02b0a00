"""The whole detection loop on scenario videos: a real RTSP server plays them as cameras,
`gridwatch serve` samples them, `gridwatch detect` workers watch them, tickets open.

The RTSP server starts last, once every camera has a worker (with its model loaded):
the scenario's clock (its file plays from the server's start) then runs from `t0`.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis

from gridwatch.contracts.frames import frames_key
from gridwatch.detectors.scenarios import rendered
from gridwatch.detectors.worker import WORKERS
from support.procs import (
    DEMO_WEIGHTS,
    GridwatchServer,
    RedisServer,
    RtspServer,
    free_port,
    start_detector,
    stop,
)

POSITION = {"lat": 31.2601, "lon": 120.9203}


@dataclass
class ScenarioRun:
    workdir: Path
    videos: Path  # rendered scenario videos, shared by the tests
    # camera id -> (scenario, zones); the scenario by name (rendered, one stream), or as the
    # camera's streams' files: {"source": main.mp4, "detect_source": sub.mp4}.
    cameras: dict[str, tuple[str | dict[str, Path], list[dict]]]
    users: list[dict]
    workers: int = 1
    detectors: dict = field(default_factory=dict)
    redis_server: RedisServer | None = None
    frames_server: RedisServer | None = None  # the frame bus (redis.frames_url) when given
    gw: GridwatchServer | None = None
    rtsp: RtspServer | None = None
    procs: list = field(default_factory=list)
    t0: float = 0.0
    tokens: dict[str, str] = field(default_factory=dict)

    def streams(self, cid: str) -> dict[str, Path]:
        """The camera's streams ("source", and "detect_source" where it has one) -> file."""
        scenario = self.cameras[cid][0]
        return {"source": rendered(scenario, self.videos)} if isinstance(scenario, str) else scenario

    def start(self) -> ScenarioRun:
        # One RTSP path per stream: /{camera} for its source, /{camera}/detect_source ...
        paths = {(cid, role): f"/{cid}" if role == "source" else f"/{cid}/{role}"
                 for cid in self.cameras for role in self.streams(cid)}  # fmt: skip
        mounts = {path: f"file:{self.streams(cid)[role]}" for (cid, role), path in paths.items()}
        self.redis_server = RedisServer(self.workdir / "redis").start()
        self.r = redis.Redis.from_url(self.redis_server.url)
        redis_config = {"url": self.redis_server.url}
        if self.frames_server is not None:
            redis_config["frames_url"] = self.frames_server.start().url
        port = free_port()
        detectors = {"weights": DEMO_WEIGHTS, "imgsz": 320, "lease_s": 2, **self.detectors}
        self.gw = GridwatchServer(self.workdir / "gw", {
            "users": self.users,
            "redis": redis_config,
            "media": {"reconnect_min_s": 0.2, "reconnect_max_s": 1, "lease_s": 3},
            "detectors": detectors,
            "cameras": [{"id": cid, "position": POSITION, "detect": {"fps": 2}, "zones": zones,
                         **{role: f"rtsp://127.0.0.1:{port}{paths[cid, role]}" for role in self.streams(cid)}}
                        for cid, (_, zones) in self.cameras.items()],
        }).start()  # fmt: skip
        config = {"redis": redis_config, "detectors": detectors}
        for i in range(self.workers):
            self.procs.append(start_detector(self.workdir, f"detect{i}", config))
        deadline = time.monotonic() + 90  # torch takes a while to load on two cores
        # Every camera watched, shared evenly by all the workers (the first one up takes them
        # all, then sheds what is over its share as the others announce themselves).
        while not self._balanced():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"cameras not shared by the workers: {self.holders()}\n{self.worker_logs()}"
                )
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"detect exited {p.returncode}:\n{self.worker_logs()}")
            time.sleep(0.2)
        self.rtsp = RtspServer(mounts, port).start()
        self.t0 = time.monotonic()
        return self

    def __enter__(self) -> ScenarioRun:
        try:
            return self.start()
        except BaseException:
            self.stop()  # what did start is stopped, by its PID
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for p in self.procs:
            stop(p)
        for server in (self.rtsp, self.gw, self.redis_server, self.frames_server):
            if server is not None:
                server.stop()

    def _balanced(self) -> bool:
        """Every worker up with its model, and the cameras with zones shared out evenly (a
        camera without zones is watched by none until zones are drawn on it)."""
        if self.r.zcard(WORKERS) < self.workers:
            return False
        holders = [h for c, h in self.holders().items() if self.cameras[c][1]]
        if not all(holders) or len(set(holders)) != min(self.workers, len(holders)):
            return False
        counts = [holders.count(h) for h in set(holders)]
        return not counts or max(counts) - min(counts) <= 1

    def holders(self) -> dict[str, str | None]:
        return {c: (v.decode() if (v := self.r.get(f"gw:lease:detect:{c}")) else None)
                for c in self.cameras}  # fmt: skip

    def worker_logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.workdir.glob("detect*.log")))

    def at(self, t: float) -> None:
        """Sleep until scenario time t."""
        time.sleep(max(0.0, self.t0 + t - time.monotonic()))

    def api(self, path: str, user: str = "dispatcher", body: dict | None = None):
        assert self.gw is not None
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.gw.base + path, data, {
            "Authorization": f"Bearer {self.token(user)}", "Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return json.loads(raw) if r.headers.get_content_type() == "application/json" else raw

    def token(self, user: str) -> str:
        if user not in self.tokens:
            assert self.gw is not None
            self.tokens[user] = self.gw.token(user)
        return self.tokens[user]

    def sampled(self, camera: str) -> int:
        """How many frames `gridwatch serve` has put on the frame bus for the camera (the
        stream keeps only the newest few; Redis counts every one added)."""
        bus = self.frames_server or self.redis_server
        assert bus is not None
        info = redis.Redis.from_url(bus.url).xinfo_stream(frames_key(camera))
        return int(info["entries-added"])

    def tickets(self) -> dict[str, list[dict]]:
        """Camera id -> its tickets."""
        found: dict[str, list[dict]] = {c: [] for c in self.cameras}
        for t in self.api("/api/tickets?limit=1000")["tickets"]:
            found.setdefault(t["camera"], []).append(t)
        return found

    def wait_ticket(self, camera: str, until: float) -> dict:
        while time.monotonic() < self.t0 + until:
            if found := self.tickets()[camera]:
                return found[0]
            time.sleep(0.3)
        raise AssertionError(f"no ticket for {camera} by t={until} s\n{self.worker_logs()[-3000:]}")
