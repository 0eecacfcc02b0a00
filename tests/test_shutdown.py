"""A clean shutdown: on SIGTERM (or SIGINT) a node recording a real RTSP camera, with a
WHEP viewer and a /ws client, exits within 5 s with code 0; the /ws client sees 1001
(going away); the open segment is closed, indexed with its end and size, and decodes to
that end; the record lease is released; and a node started at once on the same Redis
and data dir records on within 5 s, with nothing to repair."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import aiohttp
import av
import pytest
import redis

from gridwatch.recordings.index import meta_key
from support.waits import wait_for
from support.whep_client import view

FPS = 25
EXIT_S = 5.0  # the promise: SIGTERM to exit
RESUME_S = 5.0  # a node started at once: healthy to its first segment growing on disk


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def camera(rtsp_factory):
    return rtsp_factory({"/cam": f"testsrc:320x240@{FPS}:400,gop={FPS}"})


def node_cfg(camera, redis_url: str) -> dict:
    # One long segment: the one open at SIGTERM is the one the shutdown must close.
    return {
        "redis": {"url": redis_url},
        "cameras": [{"id": "gate", "source": camera.url("/cam"), "record": {"mode": "continuous"}}],
        "recordings": {"segment_s": 60, "min_free_mb": 0, "check_s": 1},
    }


def indexed(r: redis.Redis, camera: str = "gate") -> list[dict]:
    """The segment index as Redis holds it (the node may be gone), oldest first."""
    segments = [json.loads(v) for v in r.hgetall(meta_key(camera)).values()]
    return sorted(segments, key=lambda s: s["start"])



def frame_times(path: Path) -> list[float]:
    """Every frame's time in the file, in seconds; raises if a frame does not decode."""
    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(video=0)]


async def close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read (and so answer pings) until the server closes; its close code."""
    async for _ in ws:
        pass
    return ws.close_code


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_shutdown_closes_segment_sockets_and_leases_and_a_restart_records_at_once(
    sig, redis_server, camera, gridwatch_factory, http
):  # redis_server first: it outlives the nodes, which are stopped after the test
    cfg = node_cfg(camera, redis_server.url)
    gw = gridwatch_factory(cfg)
    token = gw.token("dispatcher")
    ws = await http.ws_connect(gw.base + "/ws", headers=auth(token))
    closed = asyncio.create_task(close_code(ws))
    viewer = await view(http, gw.base, "gate", token)
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        assert await viewer.wait_frames(FPS, timeout=15), gw.logs()[-3000:]
        root = gw.workdir / "data" / "recordings"
        # A segment open (end null) with a few seconds in it, as the signal comes.
        (open_seg,) = await wait_for("an open segment", lambda: indexed(r), 15, gw.logs)
        assert open_seg["end"] is None
        await wait_for("3 s written", lambda: len(frame_times(root / open_seg["path"])) >= 3 * FPS,
                       15, gw.logs)  # fmt: skip
        assert r.get("gw:lease:record:gate") is not None

        exit_s = gw.terminate(sig)
        print(f"{sig.name}: exited in {exit_s:.2f} s")
        assert gw.proc.returncode == 0, gw.logs()[-3000:]
        assert exit_s < EXIT_S, gw.logs()[-3000:]
        async with asyncio.timeout(2):
            assert await closed == 1001  # going away: the client reconnects elsewhere
        # The viewer's peer was closed by the node: its track ends.
        async with asyncio.timeout(5):
            await viewer.task

        # The segment is closed: indexed with its end and size, playable to that end.
        (seg,) = indexed(r)
        assert seg["path"] == open_seg["path"] and seg["end"] is not None, seg
        path = root / seg["path"]
        assert seg["size"] == path.stat().st_size > 0
        times = frame_times(path)
        assert len(times) >= (seg["end"] - seg["start"]) * FPS - 2, (len(times), seg)
        last_frame_end = seg["start"] + times[-1] - times[0] + 1 / FPS
        assert last_frame_end == pytest.approx(seg["end"], abs=0.1), (times[-1], seg)
        # Released, not left to run out: the next node takes the camera at once.
        assert r.get("gw:lease:record:gate") is None
        assert "segment written" in gw.logs()

        # A node started at once, on the same Redis and data dir.
        data_dir = str(gw.workdir / "data")
        again = gridwatch_factory({**cfg, "server": {"data_dir": data_dir}}, name="again")
        healthy = time.monotonic()

        def growing() -> dict | None:
            new = [s for s in indexed(r) if s["path"] != seg["path"]]
            if new and (root / new[0]["path"]).exists() and (root / new[0]["path"]).stat().st_size:
                return new[0]
            return None

        new = await wait_for("a new segment on disk", growing, RESUME_S, again.logs)
        print(f"restarted node: first segment {time.monotonic() - healthy:.2f} s after healthy")
        assert new["start"] > seg["end"]
        size = (root / new["path"]).stat().st_size
        await wait_for("the new segment growing",
                       lambda: (root / new["path"]).stat().st_size > size, 5, again.logs)  # fmt: skip
        assert "repaired" not in again.logs()
        assert indexed(r)[0] == seg  # the closed segment is left as it was
    finally:
        if viewer.task:
            viewer.task.cancel()
        await viewer.pc.close()
        await ws.close()
        r.close()
