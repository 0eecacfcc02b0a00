"""Each camera's (and published stream's) live state as its owner node sees it, for
every node to show.

Only the owner pulls a camera (media/placement.py), so only the owner knows whether it
is online; every node's camera list must say the same. The owner writes the state of
its cameras into `gw:cameras:state` (hash, camera id -> JSON: `live_state` plus `node`)
when it changes, checked every `period_s`; any node reads it. An entry whose node is no
longer live says so instead of showing what that node last saw.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis

from gridwatch.contracts.retry import forever
from gridwatch.media.hub import StreamHub
from gridwatch.media.stream import Stream

log = logging.getLogger("gridwatch.camera_state")

STATE = "gw:cameras:state"


def stream_status(stream: Stream | None) -> str:
    """The stream's state in a word: "online"; "idle" when nothing pulls the camera on
    this node (no stream here, or one that is down with no consumer and no error): sources
    are opened on demand, for a viewer, the recorder or a detector; else "offline": down
    while wanted, or down after a failure (the state's last_error says why)."""
    if stream is None:
        return "idle"
    if stream.state.online:
        return "online"
    if not stream.consumers and stream.state.last_error is None:
        return "idle"
    return "offline"


def live_state(stream: Stream | None) -> dict:
    """A stream's state as the API shows it: status, online, codec, audio, width, height,
    fps (1/s, 2 decimals), bitrate (bit/s), last_error, reconnects, consumers."""
    st = stream.state if stream else None
    return {
        "online": bool(st and st.online),
        "status": stream_status(stream),
        "codec": st.codec if st else None,
        "audio": st.audio if st else None,
        "width": st.width if st else None,
        "height": st.height if st else None,
        "fps": round(st.fps, 2) if st else 0.0,
        "bitrate": round(st.bitrate) if st else 0,
        "last_error": st.last_error if st else None,
        "reconnects": st.reconnects if st else 0,
        "consumers": len(stream.consumers) if stream else 0,
    }


def _published(state: dict) -> dict:
    # fps and bitrate wobble every second: rounded coarser here, so an unchanged camera
    # is not written again at every check.
    return {**state, "fps": round(state["fps"], 1), "bitrate": round(state["bitrate"], -4)}


class StateBoard:
    """Writes the live state of the cameras this node owns and the streams published to
it (`owned()`), reads anyone's."""

    def __init__(self, redis: aioredis.Redis, hub: StreamHub, node: str,
                 owned: Callable[[], Iterable[str]], live: Callable[[str], bool], period_s: float = 2.0):  # fmt: skip
        self.redis = redis
        self.hub = hub
        self.node = node
        self.owned = owned
        self.live = live  # whether a node is live now
        self.period_s = period_s
        self.written: dict[str, str] = {}  # camera -> JSON as last written by this node
        self.writes = 0  # states written (a metric)

    async def run(self) -> None:
        await forever(self.publish, "camera state", log, period_s=self.period_s)

    async def publish(self) -> None:
        """Write the owned cameras whose state changed since they were last written."""
        out: dict[str, str] = {}
        mine = set(self.owned())
        for camera in mine:
            stream = self.hub.get(camera)
            state = _published(live_state(stream))
            if stream is not None and stream.pushed:  # how a drone or phone reaches us
                state["via"] = stream.source.params.get("via")
            blob = json.dumps({**state, "node": self.node})
            if self.written.get(camera) != blob:
                out[camera] = blob
        for camera in list(self.written):
            if camera not in mine:  # moved away: its new owner writes it now
                del self.written[camera]
        if out:
            await self.redis.hset(STATE, mapping=out)
            self.written.update(out)
            self.writes += len(out)

    async def read(self, cameras: list[str]) -> dict[str, dict]:
        """The published state of each of `cameras` (those with one), from one HMGET; an
        entry of a node that is not live any more is shown offline, saying so."""
        blobs = await self.redis.hmget(STATE, cameras) if cameras else []
        out = {}
        for camera, blob in zip(cameras, blobs, strict=True):
            if blob is None:
                continue
            try:
                state = json.loads(blob)
                node = state.pop("node")
            except (ValueError, KeyError, AttributeError):
                log.warning("camera state unreadable, ignored", extra={"camera": camera})
                continue
            if not self.live(node):
                state |= {"online": False, "status": "offline", "fps": 0.0, "bitrate": 0,
                          "last_error": f"its node {node} is not running; another takes it over"}  # fmt: skip
            out[camera] = state
        return out

    async def forget(self, camera: str) -> None:
        """A deleted camera's entry."""
        self.written.pop(camera, None)
        await self.redis.hdel(STATE, camera)
