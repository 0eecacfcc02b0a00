"""Shared pieces of the benchmarks: CPU accounting by PID, test media, servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.procs import GridwatchServer, RtspServer, hashed_users

CLK_TCK = os.sysconf("SC_CLK_TCK")
MEDIA_DIR = Path(os.environ.get("GW_BENCH_MEDIA", "/tmp/gridwatch-bench-media"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class CpuMeter:
    """Cores a process used between start() and stop(), by its own accounting."""

    def __init__(self, pid: int):
        self.pid = pid

    def start(self) -> None:
        self.t0, self.c0 = time.monotonic(), cpu_seconds(self.pid)

    def stop(self) -> float:
        return (cpu_seconds(self.pid) - self.c0) / (time.monotonic() - self.t0)


def camera_file(width: int, height: int, fps: int, kbps: int, seconds: int = 20) -> Path:
    """An H.264 camera recording made once with ffmpeg: 1 s GOP, no B-frames, CBR-ish."""
    MEDIA_DIR.mkdir(parents=True, exist_ok=True)
    path = MEDIA_DIR / f"cam-{width}x{height}-{fps}-{kbps}k.mp4"
    if not path.exists():
        tmp = path.with_suffix(".part.mp4")
        subprocess.run(
            [
                "ffmpeg",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size={width}x{height}:rate={fps}",
                "-t",
                str(seconds),
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-pix_fmt",
                "yuv420p",
                "-b:v",
                f"{kbps}k",
                "-maxrate",
                f"{kbps}k",
                "-bufsize",
                f"{kbps}k",
                "-g",
                str(fps),
                "-bf",
                "0",
                str(tmp),
            ],
            check=True,
        )
        tmp.rename(path)
    return path


def start_camera(width: int, height: int, fps: int, kbps: int) -> RtspServer:
    """A real RTSP camera that serves a pre-encoded file (no encoding while measuring)."""
    return RtspServer({"/cam": f"file:{camera_file(width, height, fps, kbps)}"}).start()


def start_gridwatch(workdir: Path, cameras: list[dict], **config: object) -> GridwatchServer:
    cfg = {"users": hashed_users({"viewer": "viewer"}), "cameras": cameras, **config}
    return GridwatchServer(workdir, cfg).start()


def camera_args(p, counts: str) -> None:
    """The options every camera benchmark takes: viewer/camera counts and the camera's stream."""
    p.add_argument("--counts", default=counts)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--kbps", type=int, default=4000)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"
