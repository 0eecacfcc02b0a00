"""A `clock:` camera on the wire: wall-clock-stamped frames, H.264, RTP to a UDP port.

    python tests/bench/clock_publisher.py PORT [WxH] [FPS] [SECONDS]

The RTSP server's `udp:PORT` mount re-serves it, so that the clock reaches the
viewers the way a real camera's pictures do.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gridwatch.media import clock


def main(port: int, width: int, height: int, fps: int, seconds: float) -> None:
    out = av.open(f"rtp://127.0.0.1:{port}?pkt_size=1200", "w", format="rtp")
    s = out.add_stream("libx264", rate=fps)
    s.width, s.height, s.pix_fmt = width, height, "yuv420p"
    s.codec_context.gop_size = fps
    s.codec_context.max_b_frames = 0
    s.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency", "repeat-headers": "1"}
    base = clock.background(width, height)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        delay = t0 + n / fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        img = base.copy()
        clock.stamp(img[:height], time.time_ns() // 1_000_000)
        frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
        frame.pts = n
        for packet in s.encode(frame):
            out.mux(packet)
        n += 1
    out.close()


if __name__ == "__main__":
    port = int(sys.argv[1])
    size = sys.argv[2] if len(sys.argv) > 2 else "1280x720"
    w, h = (int(x) for x in size.split("x"))
    main(
        port,
        w,
        h,
        int(sys.argv[3]) if len(sys.argv) > 3 else 30,
        float(sys.argv[4]) if len(sys.argv) > 4 else 3600,
    )
