"""Streams relayed between nodes: a viewer on any node watches any stream through the
node that owns it (a camera's placed owner, or the node a drone or phone publishes to).

The owner serves `GET /internal/relay/{stream}` (signaling/api_internal.py): one
consumer of its stream, written as it comes in the framing below. The other node's
stream has a RelayProducer as its producer, started by the stream when its first
consumer attaches, like any producer: so a node pulls each stream once from its owner,
however many viewers, recorders or snapshots it has of it. Packets are forwarded as they
are: no thread, no demuxing, no decoding.

Framing (this module's own; `Content-Type: application/x-gridwatch-relay`): frames one
after another, each a header `>cBqqI` (kind, flags, pts, dts, payload length; pts and dts
on the owner stream's 90 kHz clock) and the payload:
- `H` hello, JSON {"codec", "width", "height", "parameter_sets" (base64 Annex-B SPS/PPS)}:
  the stream is online; sent before the first packet;
- `V` an H.264 access unit (Annex-B), flags bit 0: a key frame; `A` an Opus packet;
- `K` keep-alive, every KEEPALIVE_S without a packet, so that a dead owner is noticed
  within the relay's read timeout;
- `E` end, payload the owner's reason (UTF-8): its stream went offline (the publisher
  left, the camera failed); the connection then closes and the relay reconnects,
  finding the owner again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

import aiohttp
import av
from aiohttp import web

from gridwatch.media.nodes import NodeRegistry
from gridwatch.media.placement import Placement
from gridwatch.media.producers import backoff_s
from gridwatch.media.published import PublishedStreams
from gridwatch.media.sources import Source, parse_source
from gridwatch.media.stream import TIME_BASE, Stream, StreamClosed

if TYPE_CHECKING:  # the camera store imports the hub, which imports this module
    from gridwatch.media.cameras import CameraStore
    from gridwatch.media.config import Camera

log = logging.getLogger("gridwatch.relay")

CONTENT_TYPE = "application/x-gridwatch-relay"
HEADER = struct.Struct(">cBqqI")
HELLO, VIDEO, AUDIO, KEEPALIVE, END = b"H", b"V", b"A", b"K", b"E"
KEYFRAME = 1
KEEPALIVE_S = 1.0
MAX_PAYLOAD = 16 * 1024 * 1024  # an access unit larger than the GOP cache holds is not video
SETTLED_S = 10  # a relay session that ran this long was a success: backoff starts afresh
PLACEMENT_WAIT_S = 0.1  # a camera just added is placed within signaling.app.PLACE_DELAY_S


class RelayUnavailable(Exception):
    """The stream has no owner to relay it from now (its message says why)."""


class NotPlacedYet(RelayUnavailable):
    """A camera just added, not placed yet (within a fraction of a second): no failure,
    the relay waits for its owner (this node itself, most often: it then pulls it)."""


def relay_source(stream_id: str) -> Source:
    """The source of a stream this node relays from its owner."""
    return Source("relay", f"relay:{stream_id}")


def frame(kind: bytes, payload: bytes = b"", *, flags: int = 0, pts: int = 0, dts: int = 0) -> bytes:
    return HEADER.pack(kind, flags, pts, dts, len(payload)) + payload


def hello(stream: Stream) -> bytes:
    st, ps = stream.state, stream.parameter_sets
    body = {"codec": st.codec, "width": st.width, "height": st.height,
            "parameter_sets": base64.b64encode(ps.sps + ps.pps).decode()}  # fmt: skip
    return frame(HELLO, json.dumps(body).encode())


def packet_frame(kind: bytes, packet: av.Packet) -> bytes:
    return frame(kind, bytes(packet), flags=KEYFRAME if packet.is_keyframe else 0, pts=packet.pts, dts=packet.dts)


async def read_frame(content: aiohttp.StreamReader) -> tuple[bytes, int, int, int, bytes]:
    """(kind, flags, pts, dts, payload). asyncio.IncompleteReadError at the end;
    ValueError for a frame that is not one of ours."""
    kind, flags, pts, dts, size = HEADER.unpack(await content.readexactly(HEADER.size))
    if kind not in (HELLO, VIDEO, AUDIO, KEEPALIVE, END) or size > MAX_PAYLOAD:
        raise ValueError(f"relay frame of kind {kind!r} and {size} bytes")
    return kind, flags, pts, dts, await content.readexactly(size)


class Relays:
    """This node's relays: whom to pull a stream from, the HTTP client they share, and
    their counts for /metrics.

    `owner(stream)` is the owner node's name: a camera's placed owner (None: no node has
    room for it), the node a stream is published to (None: published nowhere); this
    node for a stream published here. `headers()`: a node token's headers
    (signaling/node_auth)."""

    def __init__(self, registry: NodeRegistry, placement: Placement, is_camera: Callable[[str], bool],
                 published: PublishedStreams, streams: Mapping[str, Stream],
                 headers: Callable[[], dict[str, str]]):  # fmt: skip
        self.registry = registry
        self.placement = placement
        self.is_camera = is_camera
        self.published = published
        self.streams = streams
        self.headers = headers
        self.running = 0  # RelayProducers started and not stopped
        self.received_bytes = self.received_packets = self.reconnects = 0
        self.serving = 0  # relays this node serves to others now
        self.sent_bytes = self.sent_packets = 0
        self.closing = asyncio.Event()  # set as the node shuts down: every relay it serves ends
        self._http: aiohttp.ClientSession | None = None

    @property
    def me(self) -> str:
        return self.registry.me.node

    async def owner(self, stream_id: str) -> str | None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.pushed and stream.producer is not None:
            return self.me
        if self.is_camera(stream_id):
            return self.placement.owner(stream_id)
        return await self.published.node_of(stream_id)

    async def locate(self, stream_id: str) -> tuple[str, str]:
        """(owner's name, its internal URL) of a stream another node owns;
        RelayUnavailable otherwise."""
        owner = await self.owner(stream_id)
        if owner is None and self.is_camera(stream_id) and not self.placement.placed(stream_id):
            raise NotPlacedYet(f"{stream_id!r} is not placed yet")
        if owner is None:
            why = "no node has room (cluster.capacity)" if self.is_camera(stream_id) else "published on no live node"
            raise RelayUnavailable(f"{stream_id!r} has no owner node: {why}")
        if owner == self.me:
            raise RelayUnavailable(f"this node owns {stream_id!r} now")
        url = self.registry.url_of(owner)
        if url is None:
            raise RelayUnavailable(f"owner node {owner!r} is not live")
        return owner, url

    def http(self) -> aiohttp.ClientSession:
        """The client every relay of this node uses (no connection limit: one each)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._http

    def stop_serving(self) -> None:
        """End the relays this node serves (it is shutting down): their nodes reconnect to
        the stream's next owner. A served relay would otherwise hold the shutdown up."""
        self.closing.set()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


def relay_cameras(store: CameraStore, placement: Placement) -> None:
    """A camera's stream on this node is pulled from its source by its owner and relayed
    from the owner by every other node (CameraStore.source_of); when placement moves
    cameras, their streams here switch over (the stream restarts its producer)."""

    def source_of(camera: Camera) -> Source:
        return parse_source(camera.source) if placement.mine(camera.id) else relay_source(camera.id)

    def moved(changed: set[str]) -> None:
        for camera_id in changed:
            camera, stream = store.feed.cameras.get(camera_id), store.hub.get(camera_id)
            if camera is not None and stream is not None and not stream.pushed:
                store.hub.upsert(camera_id, source_of(camera))

    store.source_of = source_of
    placement.listeners.append(moved)


class RelayProducer:
    """Feeds a stream from its owner node (see the module's docstring). It finds the owner
    again at each (re)connect; a lost relay is said in the stream's last_error and retried
    with the hub's backoff."""

    def __init__(self, stream: Stream, relays: Relays, *, reconnect_min_s: float, reconnect_max_s: float,
                 read_timeout_s: float, **_: float):  # fmt: skip
        self.stream = stream
        self.relays = relays
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.timeout = aiohttp.ClientTimeout(total=None, connect=read_timeout_s, sock_read=read_timeout_s)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.relays.running += 1
        self._task = self.stream.loop.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self.relays.running -= 1
            self._task.cancel()
            self._task = None

    @property
    def current(self) -> bool:
        return self.stream.producer is self

    async def _run(self) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                error = await self._session()
            except NotPlacedYet:
                await asyncio.sleep(PLACEMENT_WAIT_S)
                continue
            except RelayUnavailable as e:
                error = str(e)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
                error = f"relay lost: {type(e).__name__}: {e}"
            except (KeyError, TypeError, AttributeError) as e:  # a hello we cannot read: its fields
                error = f"relay refused: the owner's hello is malformed: {type(e).__name__}: {e}"
            attempt = 0 if loop.time() - started > SETTLED_S else attempt + 1
            if self.current:
                self.relays.reconnects += 1
                self.stream.source_failed(error, True)
            await asyncio.sleep(backoff_s(attempt, self.reconnect_min_s, self.reconnect_max_s))

    async def _session(self) -> str:
        """One relay from the owner, until it ends (the reason) or fails (raises)."""
        owner, base = await self.relays.locate(self.stream.id)
        url = f"{base}/internal/relay/{quote(self.stream.id, safe='')}"
        async with self.relays.http().get(url, headers=self.relays.headers(), timeout=self.timeout) as r:
            if r.status != 200:
                body = await r.text()
                raise RelayUnavailable(f"owner {owner!r} refused the relay: {r.status} {body[:200]}")
            log.info("relay connected", extra={"stream": self.stream.id, "owner": owner})
            while True:
                kind, flags, pts, dts, payload = await read_frame(r.content)
                self.relays.received_bytes += HEADER.size + len(payload)
                if kind == END:
                    return f"owner {owner!r}: {payload.decode(errors='replace')}"
                if self.current:
                    self._apply(kind, flags, pts, dts, payload)

    def _apply(self, kind: bytes, flags: int, pts: int, dts: int, payload: bytes) -> None:
        if kind == HELLO:
            info = json.loads(payload)
            self.stream.set_online(info["codec"], info["width"], info["height"],
                                   base64.b64decode(info["parameter_sets"]))  # fmt: skip
        elif kind in (VIDEO, AUDIO):
            self.relays.received_packets += 1
            packet = av.Packet(payload)
            packet.pts, packet.dts, packet.time_base = pts, dts, TIME_BASE
            if kind == VIDEO:
                packet.is_keyframe = bool(flags & KEYFRAME)
                self.stream.ingest(packet)
            else:
                self.stream.ingest_audio(packet, same_clock=True)


async def serve(request: web.Request, stream: Stream, relays: Relays, peer: str) -> web.StreamResponse:
    """Relay `stream` to node `peer` in the framing above until it goes offline or this
    node shuts down (an `E` frame, then the end), or the peer goes away. The peer's consumer falls behind as the
    stream's own policy says (it loses packets up to the next key frame)."""
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
    consumer = stream.attach(f"relay:{peer}")
    listener = stream.attach_audio(f"relay:{peer}")
    relays.serving += 1
    lock = asyncio.Lock()
    said_hello = False

    async def send(data: bytes) -> None:
        nonlocal said_hello
        async with lock:  # the pictures' and the sound's frames each whole
            if not said_hello and data[:1] != KEEPALIVE:
                said_hello = True
                data = hello(stream) + data
            await response.write(data)
        relays.sent_bytes += len(data)

    async def pictures() -> str:
        while True:
            try:
                packet: av.Packet | None = await asyncio.wait_for(consumer.get(), KEEPALIVE_S)
            except TimeoutError:
                packet = None
            except StreamClosed:
                return "stream closed"
            if said_hello and not stream.state.online:
                return stream.state.last_error or "offline"
            if packet is None:
                await send(frame(KEEPALIVE))
            else:
                await send(packet_frame(VIDEO, packet))
                relays.sent_packets += 1

    async def sound() -> str:
        while True:
            try:
                packet = await listener.get()
            except StreamClosed:
                return "stream closed"
            if stream.state.online:
                await send(packet_frame(AUDIO, packet))
                relays.sent_packets += 1

    log.info("relay serving", extra={"stream": stream.id, "peer": peer})
    async def shutdown() -> str:
        await relays.closing.wait()
        return "owner node shutting down"

    tasks = [asyncio.ensure_future(pictures()), asyncio.ensure_future(sound()), asyncio.ensure_future(shutdown())]
    try:
        await response.prepare(request)
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        reason = next(iter(done)).result()
        await response.write(frame(END, reason.encode()))
        await response.write_eof()
        log.info("relay ended", extra={"stream": stream.id, "peer": peer, "reason": reason})
    except ConnectionResetError:  # aiohttp's ClientConnectionResetError: the peer left
        log.info("relay ended: peer left", extra={"stream": stream.id, "peer": peer})
    finally:
        for task in tasks:
            task.cancel()
        consumer.close()
        listener.close()
        relays.serving -= 1
    return response

