"""Ingest: N RTSP cameras held open with only the GOP cache (no viewers): CPU per camera.

    .venv/bin/python tests/bench/ingest.py [--counts 1,8,32] [--seconds 10]

The streams run in this process through media's StreamHub, each with one consumer
that drains it the way the recorder or the sampler will. The baseline, measured in
the same run, is ffmpeg demuxing the same cameras in C with `-c copy -f null`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time

from common import CpuMeter, camera_args, cpu_seconds, ratio, start_camera

from gridwatch.media.hub import StreamHub
from gridwatch.media.sources import parse_source
from gridwatch.media.stream import StreamClosed
from support.procs import stop


async def drain(consumer) -> None:
    try:
        while True:
            await consumer.get()
    except StreamClosed:
        pass


async def ours(url: str, n: int, seconds: float) -> tuple[float, int, int]:
    hub = StreamHub(idle_grace_s=0)
    consumers, tasks = [], []
    for i in range(n):
        stream = hub.upsert(f"cam{i}", parse_source(url))
        c = stream.attach("bench")
        consumers.append(c)
        tasks.append(asyncio.ensure_future(drain(c)))
    # Measure from when every camera is connected and past its first key frame.
    async with asyncio.timeout(30):
        while not all(s.gop for s in hub.streams.values()):
            await asyncio.sleep(0.1)
    before = sum(s.state.packets for s in hub.streams.values())
    meter = CpuMeter(os.getpid())
    meter.start()
    await asyncio.sleep(seconds)
    cores = meter.stop()
    packets = sum(s.state.packets for s in hub.streams.values()) - before
    online = sum(s.state.online for s in hub.streams.values())
    for c in consumers:
        c.close()
    hub.close()
    await asyncio.gather(*tasks)
    return cores, packets, online


def ffmpeg_copy(url: str, n: int, seconds: float) -> float:
    procs = [
        subprocess.Popen(
            [
                "ffmpeg",
                "-loglevel",
                "error",
                "-rtsp_transport",
                "tcp",
                "-i",
                url,
                "-c",
                "copy",
                "-f",
                "null",
                "-",
            ],
            stdin=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    try:
        time.sleep(3)  # ffmpeg tells nothing when it is connected: leave its start-up out
        t0 = time.monotonic()
        c0 = sum(cpu_seconds(p.pid) for p in procs)
        time.sleep(seconds)
        return (sum(cpu_seconds(p.pid) for p in procs) - c0) / (time.monotonic() - t0)
    finally:
        for p in procs:
            stop(p)


def main() -> None:
    p = argparse.ArgumentParser()
    camera_args(p, "1,8,32")
    args = p.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    camera = start_camera(w, h, args.fps, args.kbps)
    url = camera.url("/cam")
    print(f"cameras: {w}x{h} {args.fps} fps {args.kbps} kbit/s H.264, RTSP over TCP", flush=True)
    try:
        for n in (int(c) for c in args.counts.split(",")):
            cores, packets, online = asyncio.run(ours(url, n, args.seconds))
            base = ffmpeg_copy(url, n, args.seconds)
            expected = n * args.fps * args.seconds
            print(
                f"cameras={n:3d} online={online:3d} gridwatch={cores / n * 100:.2f}% of a core per camera "
                f"(packets {packets / expected:.1%} of expected) ffmpeg -c copy={base / n * 100:.2f}% "
                f"gridwatch/ffmpeg={ratio(cores, base)}",
                flush=True,
            )
    finally:
        camera.stop()


if __name__ == "__main__":
    main()
