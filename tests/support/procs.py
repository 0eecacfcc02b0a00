"""Real processes for tests and benchmarks: redis-server, the RTSP server, gridwatch serve.

Every process is started here and stopped by its PID; all of them listen on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GRIDWATCH = str(Path(sys.executable).parent / "gridwatch")
RTSP_SCRIPT = str(ROOT / "tests" / "support" / "rtsp_server.py")
# How long a test waits on one HTTP answer of a node: a ceiling for a busy machine (a node
# with a hundred cameras on two shared cores), not a measure of speed.
HTTP_TIMEOUT_S = 30

# Known test users; the hashes are made once per session (argon2 is slow on purpose).
PASSWORDS = {
    "admin": "admin-pw-1",
    "dispatcher": "disp-pw-2",
    "viewer": "view-pw-3",
    "officer": "off-pw-4",
    "officer2": "off-pw-5",
    "officer3": "off-pw-6",
    "tracker": "device-pw-7",
}
ROLES = {u: "device" if u == "tracker" else u.rstrip("0123456789") for u in PASSWORDS}


def make_video(path: Path, size: str, fps: int, seconds: float, *extra: str) -> Path:
    """An H.264 MP4 of FFmpeg's testsrc2, made with ffmpeg (extra: more output options)."""
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
         "-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p", *extra, str(path)],
        check=True,
    )  # fmt: skip
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None):
        self.dir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
        )
        wait_port(self.port, 10)
        return self

    def stop(self) -> None:
        stop(self.proc)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class RtspServer:
    """GStreamer's rtsp-server run by Debian's python3 (the bindings do not load in a venv)."""

    def __init__(self, mounts: dict[str, str], port: int | None = None):
        self.mounts = mounts
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, mount: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}{mount}"

    def start(self, timeout: float = 20.0) -> RtspServer:
        args = ["/usr/bin/python3", RTSP_SCRIPT, "--port", str(self.port)]
        for mount, spec in self.mounts.items():
            args += ["--mount", f"{mount}={spec}"]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), True)
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("READY"):
                return self
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"rtsp server exited with {self.proc.returncode}")
        raise TimeoutError("rtsp server not ready")

    def stop(self) -> None:
        stop(self.proc)


def hashed_users(roles: dict[str, str] | None = None) -> list[dict]:
    from gridwatch.signaling.auth import hash_password

    roles = roles or ROLES
    return [
        {"username": u, "password_hash": hash_password(PASSWORDS[u]), "role": r}
        for u, r in roles.items()
    ]


@dataclass
class GridwatchServer:
    """`gridwatch serve` as a real process with a config written for the test."""

    workdir: Path
    config: dict = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    rtmp_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "gridwatch.log"

    def start(self, timeout: float = 30.0) -> GridwatchServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = dict(self.config)
        cfg.setdefault("server", {})
        cfg["server"] = {
            "host": "127.0.0.1",
            "port": self.port,
            "data_dir": str(self.workdir / "data"),
            **cfg["server"],
        }
        cfg.setdefault("webrtc", {"ice_servers": [], "host_addresses": ["127.0.0.1"]})
        cfg.setdefault("rtmp", {"host": "127.0.0.1", "port": self.rtmp_port})
        path = self.workdir / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [GRIDWATCH, "serve", "--config", str(path)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gridwatch exited {self.proc.returncode}:\n{self.log_path.read_text()}"
                )
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"gridwatch not healthy:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        stop(self.proc, timeout=20)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> float:
        """Send `sig` and wait for the process to exit: the seconds it took. Past `timeout`
        it is killed and TimeoutError raised."""
        assert self.proc is not None and self.proc.poll() is None, "not running"
        sent = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TimeoutError(f"gridwatch still running {timeout} s after {sig!r}") from None
        return time.monotonic() - sent

    def logs(self) -> str:
        return self.log_path.read_text()

    def records(self, msg: str | None = None) -> list[dict]:
        """The server's log records (the log is JSON lines), those with message `msg` only
        when given; lines that are not JSON (a crash's stderr) are skipped."""
        out = []
        for line in self.logs().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and (msg is None or record.get("msg") == msg):
                out.append(record)
        return out

    def tracebacks(self) -> list[str]:
        """The last line of every traceback the server logged (a traceback is an `exc`
        field). A handled fault logs one line naming its cause."""
        return [f"{r.get('msg')}: {r['exc'].strip().splitlines()[-1]}" for r in self.records() if "exc" in r]

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.base + "/metrics", timeout=HTTP_TIMEOUT_S) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def token(self, username: str) -> str:
        body = json.dumps({"username": username, "password": PASSWORDS[username]}).encode()
        req = urllib.request.Request(
            self.base + "/api/login", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
            return json.load(r)["token"]


DEMO_WEIGHTS = str(ROOT / "detectors" / "models" / "gridwatch-demo.pt")


def start_detector(workdir: Path, name: str, config: dict) -> subprocess.Popen:
    """`gridwatch detect` as a real process; its log is workdir/NAME.log."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    with open(workdir / f"{name}.log", "wb") as log:
        return subprocess.Popen([GRIDWATCH, "detect", "--config", str(path)], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, cwd=workdir)  # fmt: skip


async def settled(nodes: list[GridwatchServer], timeout: float = 20.0) -> None:
    """Wait until every node sees all of `nodes` live (placement is then the same on
    each: a node that joins takes its share, so ownership may move until then)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not all(n.metrics().get("gridwatch_cluster_nodes") == len(nodes) for n in nodes):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes do not all see {len(nodes)} live nodes within {timeout} s")
        await asyncio.sleep(0.1)
