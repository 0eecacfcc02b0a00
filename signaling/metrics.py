"""/metrics: every stream's state, the detector workers and the HTTP traffic, in
Prometheus text format."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from gridwatch.dispatch.matcher import Matcher
from gridwatch.media.camera_state import StateBoard
from gridwatch.media.cameras import CameraFeed
from gridwatch.media.hub import StreamHub
from gridwatch.media.ice_mux import IceMux
from gridwatch.media.nodes import NodeRegistry
from gridwatch.media.placement import Placement
from gridwatch.media.publish import Publishers
from gridwatch.media.relay import Relays
from gridwatch.media.rtmp import RtmpIngest
from gridwatch.media.stream import Stream
from gridwatch.media.webrtc import Viewers
from gridwatch.recordings.service import Recordings
from gridwatch.signaling.calls import Calls
from gridwatch.signaling.sockets import Sockets

access = logging.getLogger("gridwatch.access")
QUIET_PATHS = ("/healthz", "/readyz", "/metrics")

_GAUGES = {
    "online": "1 when the stream's source is delivering",
    "fps": "frames per second from the source",
    "bitrate": "bits per second from the source",
    "consumers": "consumers attached (viewers, recorder, sampler, snapshot)",
    "listeners": "consumers of the stream's sound (WebRTC listeners, recorder)",
    "audio": "1 while the stream has sound (Opus)",
}
_COUNTERS = {
    "reconnects": "times the source was reconnected after a failure",
    "packets": "packets received from the source",
    "bytes": "bytes received from the source",
    "keyframes": "key frames received from the source",
    "bytes_out": "bytes handed to consumers",
    "dropped": "packets a lagging consumer did not get",
    "decoded_frames": "frames this server decoded to transcode",
    "encoded_frames": "frames this server encoded (transcode or synthetic source)",
    "snapshot_decodes": "frames decoded to answer snapshot requests",
    "sampler_decodes": "frames decoded for the detectors",
    "keyframe_requests": "key frame requests (PLI) sent to a WebRTC publisher",
    "audio_packets": "Opus packets of the stream's sound",
    "audio_transcoded": "Opus packets this server encoded from the source's sound (AAC, G.711)",
    "audio_dropped": "sound packets a lagging listener did not get",
}


def _gauge(stream: Stream, name: str) -> float:
    if name == "consumers":
        return len(stream.consumers)
    if name == "listeners":
        return len(stream.listeners)
    if name == "audio":
        return float(stream.state.audio is not None)
    return float(getattr(stream.state, name))


class StreamCollector(Collector):
    def __init__(self, hub: StreamHub, viewers: Viewers):
        self.hub = hub
        self.viewers = viewers

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        streams = list(self.hub.streams.values())
        for name, doc in _GAUGES.items():
            g = GaugeMetricFamily(f"gridwatch_stream_{name}", doc, labels=["stream"])
            for s in streams:
                g.add_metric([s.id], _gauge(s, name))
            yield g
        g = GaugeMetricFamily("gridwatch_stream_viewers", "WebRTC viewers", labels=["stream"])
        for s in streams:
            g.add_metric([s.id], self.viewers.count(s.id))
        yield g
        for name, doc in _COUNTERS.items():
            c = CounterMetricFamily(f"gridwatch_stream_{name}", doc, labels=["stream"])
            for s in streams:
                c.add_metric([s.id], getattr(s.state, name))
            yield c
        g = GaugeMetricFamily(
            "gridwatch_stream_published",
            "1 while a publisher (WHIP, RTMP) feeds the stream",
            labels=["stream", "via"],
        )
        for s in streams:
            if s.pushed:
                g.add_metric([s.id, s.source.params.get("via", "")], float(s.state.online))
        yield g
        yield GaugeMetricFamily("gridwatch_streams", "streams known to this node", len(streams))
        yield GaugeMetricFamily(
            "gridwatch_webrtc_sessions", "WebRTC sessions on this node", len(self.viewers.sessions)
        )
        yield GaugeMetricFamily(
            "gridwatch_webrtc_egress_bps",
            "video bits per second to WebRTC viewers",
            self.viewers.egress_bps(),
        )
        yield CounterMetricFamily(
            "gridwatch_webrtc_sessions_reaped",
            "viewer sessions closed because they never connected",
            self.viewers.reaped,
        )


class FieldCollector(Collector):
    """/ws sockets, calls and field publishers (WHIP, RTMP) on this node."""

    def __init__(self, sockets: Sockets, calls: Calls, publishers: Publishers, rtmp: RtmpIngest):
        self.sockets, self.calls, self.publishers, self.rtmp = sockets, calls, publishers, rtmp

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily("gridwatch_ws_sockets", "open /ws sockets", self.sockets.count())
        yield CounterMetricFamily("gridwatch_ws_dropped", "/ws sockets dropped for not reading",
                                  self.sockets.dropped)  # fmt: skip
        c = CounterMetricFamily(
            "gridwatch_calls", "call events handled by this node", labels=["event"]
        )
        for event, n in self.calls.counts.items():
            c.add_metric([event], n)
        yield c
        yield GaugeMetricFamily(
            "gridwatch_calls_ringing", "calls ringing, timed by this node", self.calls.ringing()
        )
        g = GaugeMetricFamily("gridwatch_publishers", "field publishers connected", labels=["via"])
        g.add_metric(["whip"], len(self.publishers.sessions))
        g.add_metric(["rtmp"], len(self.rtmp.publishers))
        yield g


class IceMuxCollector(Collector):
    """WebRTC on one UDP port (webrtc.udp_port): its datagrams and sessions; and ICE over
    TCP (webrtc.tcp_port): its connections, packets, refusals and drops."""

    def __init__(self, mux: IceMux):
        self.mux = mux

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield CounterMetricFamily("gridwatch_ice_mux_packets",
                                  "datagrams on the WebRTC UDP port routed to their session", self.mux.demuxed)  # fmt: skip
        yield CounterMetricFamily("gridwatch_ice_mux_dropped",
                                  "datagrams on the WebRTC UDP port from no known session (unknown ICE ufrag or sender)",
                                  self.mux.dropped)  # fmt: skip
        yield GaugeMetricFamily("gridwatch_ice_mux_sessions",
                                "ICE sessions on the WebRTC UDP port", self.mux.sessions())  # fmt: skip
        if self.mux.tcp_port is None:
            return
        tcp = self.mux.tcp
        yield GaugeMetricFamily("gridwatch_ice_tcp_connections",
                                "ICE-TCP connections (webrtc.tcp_port) bound to a session", self.mux.tcp_connections())  # fmt: skip
        yield CounterMetricFamily("gridwatch_ice_tcp_packets", "packets over ICE-TCP routed to their session",
                                  tcp.frames)  # fmt: skip
        yield CounterMetricFamily("gridwatch_ice_tcp_sent", "packets sent over ICE-TCP", tcp.sent)  # fmt: skip
        yield CounterMetricFamily("gridwatch_ice_tcp_refused",
                                  "ICE-TCP connections closed for naming no session, saying nothing or too many waiting",
                                  tcp.refused)  # fmt: skip
        yield CounterMetricFamily("gridwatch_ice_tcp_send_dropped",
                                  "packets dropped towards an ICE-TCP peer that stopped reading", tcp.send_dropped)  # fmt: skip


class MatcherCollector(Collector):
    def __init__(self, matcher: Matcher):
        self.matcher = matcher

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield CounterMetricFamily("gridwatch_dispatch_match_rounds",
                                  "matcher rounds this node ran over a non-empty queue", self.matcher.rounds)  # fmt: skip
        yield CounterMetricFamily("gridwatch_dispatch_offers", "offers this node's matcher made",
                                  self.matcher.offers)  # fmt: skip


class RecordingsCollector(Collector):
    def __init__(self, recordings: Recordings):
        self.recordings = recordings

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        r = self.recordings
        yield GaugeMetricFamily("gridwatch_recording_disk_full",
                                "1 while recording is stopped for lack of disk space",
                                float(r.disk_full))  # fmt: skip
        g = GaugeMetricFamily("gridwatch_recording_active", "streams this node records",
                              labels=["stream", "mode"])  # fmt: skip
        for camera, rec in list(r.recorders.items()):
            g.add_metric([camera, rec.plan.mode], 1.0)
        yield g
        c = CounterMetricFamily("gridwatch_recording_packets", "packets written to segments",
                                labels=["stream"])  # fmt: skip
        for camera, rec in list(r.recorders.items()):
            c.add_metric([camera], rec.packets)
        yield c
        for name, n in r.counts.items():
            yield CounterMetricFamily(f"gridwatch_recording_{name}", f"recording {name}", n)


_DETECT_COUNTERS = {
    "frames": "sampled frames a detector worker took",
    "inferences": "frames the model ran on (the rest the motion gate let pass)",
    "violations": "violations raised",
    "verifications": "resolved tickets checked",
}
_QUEUES = ("gw:violations", "gw:verifications")


class DetectorCollector(Collector):
    """The detector workers' counts and the queues to dispatch, read from Redis per scrape.
    Per-camera counts only for the cameras this node owns (`mine`): each camera's series
    come from one node, not from every node of the centre."""

    def __init__(self, redis: aioredis.Redis, mine: Callable[[str], bool] = lambda camera: True):
        self.redis = redis
        self.mine = mine
        self.snapshot: dict = {}

    async def refresh(self) -> None:
        try:
            now = time.time()
            live = await self.redis.zcount("gw:workers", now - 60, "+inf")
            keys = [k async for k in self.redis.scan_iter("gw:worker:*", count=1000)]
            blobs = await self.redis.mget(keys) if keys else []
            pipe = self.redis.pipeline(transaction=False)
            for q in _QUEUES:
                pipe.xlen(q)
                pipe.xlen(f"{q}:dead")
            lengths = await pipe.execute()
        except (RedisError, OSError):
            self.snapshot = {}  # no figures rather than stale ones
            return
        workers = {
            k.decode().removeprefix("gw:worker:"): json.loads(b)
            for k, b in zip(keys, blobs, strict=True)
            if b
        }
        self.snapshot = {"live": live, "workers": workers, "queues": dict(zip(
            [n for q in _QUEUES for n in (q, f"{q}:dead")], lengths, strict=True))}  # fmt: skip

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        snap = self.snapshot
        if not snap:
            return
        yield GaugeMetricFamily("gridwatch_detect_workers", "live detector workers", snap["live"])
        for name, doc in _DETECT_COUNTERS.items():
            c = CounterMetricFamily(f"gridwatch_detect_{name}", doc, labels=["camera", "worker"])
            for worker, cameras in snap["workers"].items():
                for camera, counts in cameras.items():
                    if self.mine(camera):
                        c.add_metric([camera, worker], counts.get(name, 0))
            yield c
        g = GaugeMetricFamily("gridwatch_detect_queue", "entries waiting in a detector stream",
                              labels=["stream"])  # fmt: skip
        for stream, length in snap["queues"].items():
            g.add_metric([stream], length)
        yield g


class RelayCollector(Collector):
    """Streams relayed between nodes (media/relay.py): pulled from their owners, served to
    the others."""

    def __init__(self, relays: Relays):
        self.relays = relays

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        r = self.relays
        yield GaugeMetricFamily("gridwatch_relays", "streams this node relays from their owner now", r.running)
        yield CounterMetricFamily("gridwatch_relay_received_bytes", "bytes relayed in from owners", r.received_bytes)
        yield CounterMetricFamily("gridwatch_relay_received_packets", "packets relayed in from owners",
                                  r.received_packets)  # fmt: skip
        yield CounterMetricFamily("gridwatch_relay_reconnects", "relays lost or refused and tried again",
                                  r.reconnects)  # fmt: skip
        yield GaugeMetricFamily("gridwatch_relays_served", "relays this node serves to other nodes now", r.serving)
        yield CounterMetricFamily("gridwatch_relay_sent_bytes", "bytes relayed out to other nodes", r.sent_bytes)
        yield CounterMetricFamily("gridwatch_relay_sent_packets", "packets relayed out to other nodes",
                                  r.sent_packets)  # fmt: skip


class ClusterCollector(Collector):
    """This node in the cluster: its name (an info series to join the others on), the
    live nodes it sees, the cameras placed on it, moves, and the camera feed."""

    def __init__(self, registry: NodeRegistry, placement: Placement, feed: CameraFeed, board: StateBoard):
        self.nodes, self.placement, self.feed, self.board = registry, placement, feed, board

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        me = self.nodes.me
        info = GaugeMetricFamily("gridwatch_node_info", "this node (1); its name and internal address",
                                 labels=["node", "internal_url"])  # fmt: skip
        info.add_metric([me.node, me.internal_url], 1)
        yield info
        yield GaugeMetricFamily("gridwatch_cluster_nodes", "live nodes this node sees", len(self.nodes.live))
        yield CounterMetricFamily("gridwatch_cluster_changes", "changes of the live node set seen",
                                  self.nodes.changes)  # fmt: skip
        yield GaugeMetricFamily("gridwatch_placement_cameras", "cameras placed on this node",
                                self.placement.counts().get(me.node, 0))  # fmt: skip
        yield GaugeMetricFamily("gridwatch_placement_unplaced", "cameras no live node has room for",
                                len(self.placement.unplaced))  # fmt: skip
        yield CounterMetricFamily("gridwatch_placement_moves", "cameras whose owner changed, as seen here",
                                  self.placement.moves)  # fmt: skip
        yield GaugeMetricFamily("gridwatch_cameras", "cameras in the registry", len(self.feed.cameras))
        yield CounterMetricFamily("gridwatch_camera_feed_reloads", "whole reads of the camera registry",
                                  self.feed.reloads)  # fmt: skip
        yield CounterMetricFamily("gridwatch_camera_feed_changes", "cameras re-read from the change feed",
                                  self.feed.changes)  # fmt: skip
        yield CounterMetricFamily("gridwatch_camera_state_writes", "camera states this node published as owner",
                                  self.board.writes)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.logins = Counter(
            "gridwatch_logins",
            "logins by result: ok, failed (wrong password), throttled (refused before any hashing)",
            ["result"],
            registry=self.registry,
        )
        self.requests = Counter(
            "gridwatch_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gridwatch_http_request_seconds",
            "HTTP request handling time",
            ["route"],
            registry=self.registry,
        )

        self.whep_redirects = Counter(
            "gridwatch_whep_redirects",
            "WHEP offers sent on to the owner node of their stream (cluster.viewers: redirect)",
            registry=self.registry,
        )
        self.detectors: DetectorCollector | None = None

    def watch_streams(self, hub: StreamHub, viewers: Viewers) -> None:
        self.registry.register(StreamCollector(hub, viewers))

    def watch_field(
        self, sockets: Sockets, calls: Calls, publishers: Publishers, rtmp: RtmpIngest
    ) -> None:
        self.registry.register(FieldCollector(sockets, calls, publishers, rtmp))

    def watch_ice_mux(self, mux: IceMux) -> None:
        self.registry.register(IceMuxCollector(mux))

    def watch_cluster(self, registry: NodeRegistry, placement: Placement, feed: CameraFeed,
                      board: StateBoard) -> None:  # fmt: skip
        self.registry.register(ClusterCollector(registry, placement, feed, board))

    def watch_relays(self, relays: Relays) -> None:
        self.registry.register(RelayCollector(relays))

    def watch_matcher(self, matcher: Matcher) -> None:
        self.registry.register(MatcherCollector(matcher))

    def watch_recordings(self, recordings: Recordings) -> None:
        self.registry.register(RecordingsCollector(recordings))

    def watch_detectors(self, redis: aioredis.Redis, mine: Callable[[str], bool]) -> None:
        self.detectors = DetectorCollector(redis, mine)
        self.registry.register(self.detectors)

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        """Counts, times and logs every request (scrapes and health checks at debug level)."""

        @web.middleware
        async def observe(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            info = request.match_info.route.resource
            route = info.canonical if info is not None else "unmatched"
            start = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as e:
                status = e.status
                raise
            finally:
                elapsed = time.perf_counter() - start
                self.requests.labels(request.method, route, str(status)).inc()
                self.latency.labels(route).observe(elapsed)
                principal = request.get("principal")
                access.log(
                    logging.DEBUG if request.path in QUIET_PATHS else logging.INFO,
                    "request",
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "status": status,
                        "ms": round(elapsed * 1000, 1),
                        "user": principal.username if principal else None,
                        "peer": request.remote,
                    },
                )

        return observe

    async def handler(self, request: web.Request) -> web.Response:
        if self.detectors is not None:
            await self.detectors.refresh()
        return web.Response(
            body=generate_latest(self.registry),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )
