"""Recording: N cameras written to fragmented MP4 segments at once, CPU per camera,
against the decode+encode path (what a recorder that transcodes would pay) in the same run.

    .venv/bin/python tests/bench/record_bench.py [--counts 16,64] [--seconds 20]

Each camera is a 1080p30 ~4 Mbit/s H.264 file played in real time through media's
StreamHub (demux, as RTSP ingest without the network; tests/bench/ingest.py measures
RTSP ingest itself) into a real Recorder writing real segments under a temp folder.
The process's own CPU is measured with and without the recorders, so the recording's
cost is shown apart from ingest. The baseline decodes every frame and encodes it again
with libx264 (ultrafast), for --baseline-cameras cameras.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import av
from common import CpuMeter, camera_file, cpu_seconds, ratio

from gridwatch.media.h264 import H264Encoder
from gridwatch.media.hub import StreamHub
from gridwatch.media.sources import parse_source
from gridwatch.recordings.recorder import Plan, Recorder


async def run(path: Path, n: int, seconds: float, record: bool, root: Path) -> tuple[float, int, int]:
    hub = StreamHub(idle_grace_s=0)
    streams = [hub.upsert(f"cam{i}", parse_source(f"file:{path}")) for i in range(n)]
    written = []

    async def indexed(seg) -> None:
        if seg.end is not None:
            written.append(seg)

    tasks, recorders = [], []
    for s in streams:
        if record:
            rec = Recorder(root, s.id, s, Plan("continuous", 10.0, 0, 0), indexed, lambda: True)
            recorders.append(rec)
            tasks.append(asyncio.ensure_future(rec.run()))
        else:
            consumer = s.attach("drain")
            tasks.append(asyncio.ensure_future(_drain(consumer)))
    async with asyncio.timeout(60):
        while not all(s.gop for s in streams):
            await asyncio.sleep(0.1)
    print(f"  {n} cameras online", flush=True)
    await asyncio.sleep(2)
    meter = CpuMeter(os.getpid())
    before = sum(r.packets for r in recorders)
    meter.start()
    await asyncio.sleep(seconds)
    cores = meter.stop()
    packets = sum(r.packets for r in recorders) - before
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    hub.close()
    return cores, packets, len(written)


async def _drain(consumer) -> None:
    while True:
        await consumer.get()


def transcode(path: Path, n: int, seconds: float, fps: int) -> float:
    """n threads, each decoding the file in real time and encoding every frame again."""
    stop = threading.Event()

    def one() -> None:
        encoder = None
        t0 = time.monotonic()
        k = 0
        while not stop.is_set():
            with av.open(str(path)) as c:
                for frame in c.decode(video=0):
                    if stop.is_set():
                        return
                    if encoder is None:
                        encoder = H264Encoder(frame.width, frame.height, fps)
                    encoder.encode(frame)
                    k += 1
                    delay = t0 + k / fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(3)
    t0, c0 = time.monotonic(), cpu_seconds(os.getpid())
    time.sleep(seconds)
    cores = (cpu_seconds(os.getpid()) - c0) / (time.monotonic() - t0)
    stop.set()
    for t in threads:
        t.join()
    return cores


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--counts", default="16,64")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--baseline-cameras", type=int, default=1)
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--kbps", type=int, default=4000)
    args = p.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    path = camera_file(w, h, args.fps, args.kbps, seconds=20)
    print(f"cameras: {w}x{h} {args.fps} fps {args.kbps} kbit/s H.264, {os.cpu_count()} cores",
          flush=True)  # fmt: skip
    base = transcode(path, args.baseline_cameras, args.seconds, args.fps) / args.baseline_cameras
    print(f"decode+encode: {base * 100:.1f}% of a core per camera "
          f"({2 / base:.1f} cameras per 2 cores)", flush=True)  # fmt: skip
    asyncio.run(measure(path, args, base))


async def measure(path: Path, args: argparse.Namespace, base: float) -> None:
    for n in (int(c) for c in args.counts.split(",")):
        root = Path(tempfile.mkdtemp(prefix="gw-rec-bench-"))
        try:
            ingest, _, _ = await run(path, n, args.seconds, False, root)
            print(f"  ingest only, {n} cameras: {ingest / n * 100:.2f}% of a core each", flush=True)
            cores, packets, segments = await run(path, n, args.seconds, True, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        per = cores / n
        expected = n * args.fps * args.seconds
        print(f"cameras={n:3d} recording={per * 100:.2f}% of a core per camera "
              f"(of which ingest {ingest / n * 100:.2f}%) packets {packets / expected:.1%} of "
              f"expected, {segments} segments closed; decode+encode/recording={ratio(base, per)}; "
              f"{2 / per:.0f} cameras per 2 cores", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
