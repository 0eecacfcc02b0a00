"""The media config: cameras (source, position, recording policy, detection zones),
WebRTC, the stream hub's timings and limits, RTMP ingest."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from gridwatch.contracts.config import CAMERA_ID, Strict
from gridwatch.contracts.detections import MAX_FRAME
from gridwatch.contracts.geo import Position
from gridwatch.media.sources import SourceError, parse_source
from gridwatch.media.zone_shape import fault, xy


class IceServer(Strict):
    urls: list[str] | str
    username: str | None = None
    credential: str | None = None

class WebRTCConfig(Strict):
    ice_servers: list[IceServer] = []
    host_addresses: list[str] = []
    # coturn's static-auth-secret: TURN credentials are then made per user and expire.
    turn_secret: Annotated[str, Field(min_length=16)] | None = None
    turn_ttl_s: Annotated[int, Field(ge=60, le=86400)] = 3600
    # Every WebRTC session of the node on this one UDP port (media/ice_mux.py), so that a
    # node behind a firewall or NAT publishes one port; None: a random port per session.
    udp_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    # Addresses offered as ICE host candidates on udp_port besides the ones bound: the
    # address viewers reach when the node is behind a 1:1 NAT or in a container (the
    # Docker host's), as go2rtc's webrtc.candidates. Needs udp_port.
    announce_addresses: list[str] = []
    # ICE over TCP (RFC 6544, passive) on this port for peers whose network lets no UDP
    # through: with the sessions of udp_port (it may be the same number). Needs udp_port.
    tcp_port: Annotated[int, Field(ge=1, le=65535)] | None = None

    @field_validator("host_addresses", "announce_addresses")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for a in v:
            ipaddress.ip_address(a)
        return v

    @model_validator(mode="after")
    def _announce_needs_port(self) -> WebRTCConfig:
        if self.announce_addresses and self.udp_port is None:
            raise ValueError("announce_addresses: needs udp_port (the one port the announced address forwards)")
        if self.tcp_port is not None and self.udp_port is None:
            raise ValueError("tcp_port: needs udp_port (ICE over TCP carries the sessions of the one UDP port)")
        return self

class MediaConfig(Strict):
    idle_grace_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    reconnect_min_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    # A camera back from an outage is online again within this (plus connecting).
    reconnect_max_s: Annotated[float, Field(gt=0, le=600)] = 3.0
    read_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0
    # A camera that refuses the user name or password is asked again only this often:
    # many cameras lock the account after a few failed logins in a row, and the wrong
    # password will not become right by itself.
    refused_retry_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    viewer_queue: Annotated[int, Field(ge=8, le=10000)] = 256
    # A WebRTC viewer that has not connected this long after its answer is closed (an
    # offer without usable candidates would hold its place for ever) ...
    viewer_connect_s: Annotated[float, Field(ge=1, le=300)] = 20.0
    # ... and one user holds at most this many viewer sessions on a node.
    viewer_sessions_per_user: Annotated[int, Field(ge=1, le=10000)] = 64
    # New WebRTC viewers are refused (503) past this much video out of the node: one
    # core forwards about 400 Mbit/s (tests/bench/fanout.py), and a node that takes
    # more loses frames for every viewer instead of turning one away. None: no limit.
    max_egress_mbps: Annotated[float, Field(gt=0, le=1e6)] | None = 400.0
    # A node that dies stops sampling its cameras for the detectors; another node takes
    # them over within this.
    lease_s: Annotated[float, Field(ge=1, le=300)] = 15.0
    # A camera URL from the API is untrusted: these schemes only (file:, lavfi:, clock:
    # come from this file unless listed here) ...
    api_sources: list[Literal["rtsp", "rtsps", "onvif", "rtmp", "file", "lavfi", "clock"]] = ["rtsp", "rtsps", "onvif"]
    # ... and no host in these networks (the node itself, link-local and cloud metadata).
    deny_hosts: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
        ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "0.0.0.0/8", "169.254.0.0/16",
                                          "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128")
    ]  # fmt: skip
    # Camera discovery scans (POST /api/cameras/discover) probe from the interface with
    # this IPv4 address; None: the default route's, as `gridwatch discover` does.
    discover_interface: ipaddress.IPv4Address | None = None

class NodeCapacity(Strict):
    """What one node takes on: placement gives it no more cameras than this, nor more
    ingest than this (each camera counted at `cluster.camera_mbps`). None: no limit."""

    cameras: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    ingest_mbps: Annotated[float, Field(ge=0, le=1e6)] | None = None

class ClusterConfig(Strict):
    """This node among the others that share the centre's Redis (DESIGN: many nodes)."""

    # The node's name in placement, leases and metrics; stable across restarts, so that
    # a node that comes back takes its own cameras back. None: {hostname}-{server.port}.
    node: Annotated[str, Field(pattern=CAMERA_ID)] | None = None
    # Where the other nodes reach this one (relay, recordings, evidence). None:
    # http://127.0.0.1:{server.port}, which only nodes on the same machine can use.
    # scheme://host:port only: no user:password@ (it would show in logs and metrics).
    internal_url: Annotated[str, Field(pattern=r"^https?://[^/\s@]+$")] | None = None
    # Where viewers reach this node, for `viewers: redirect`. None: internal_url.
    public_url: Annotated[str, Field(pattern=r"^https?://[^/\s@]+$")] | None = None
    capacity: NodeCapacity = NodeCapacity()
    # A camera's ingest as placement counts it against capacity.ingest_mbps.
    camera_mbps: Annotated[float, Field(gt=0, le=10_000)] = 4.0
    # A viewer of a stream another node owns: "relay" (this node pulls it from the owner
    # once, whatever its viewers) or "redirect" (the WHEP answer sends him to the owner).
    viewers: Literal["relay", "redirect"] = "relay"

    def node_name(self, port: int) -> str:
        """This node's name: `node`, else {hostname}-{port} (unique on one machine)."""
        host = re.sub(r"[^a-z0-9_-]+", "-", socket.gethostname().lower()).strip("-_")[:50] or "node"
        return self.node or f"{host}-{port}"

    def internal(self, port: int) -> str:
        """This node's address for the other nodes (scheme://host:port)."""
        return self.internal_url or f"http://127.0.0.1:{port}"

class RtmpConfig(Strict):
    # Drones and encoders push rtmp://HOST:PORT/live/STREAM?token=TOKEN. None: no RTMP ingest.
    port: Annotated[int, Field(ge=0, le=65535)] | None = 1935
    host: str = "0.0.0.0"

class RecordConfig(Strict):
    mode: Literal["continuous", "events", "off"] = "off"
    retain_days: Annotated[float, Field(gt=0, le=36500)] = 7
    max_gb: Annotated[float, Field(gt=0, le=1e9)] | None = None  # this camera's quota; oldest go first

class DetectConfig(Strict):
    fps: Annotated[float, Field(gt=0, le=30)] = 2
    enabled: bool = True

Coordinate = Annotated[float, Field(ge=0, le=MAX_FRAME)]
FrameSide = Annotated[int, Field(ge=1, le=MAX_FRAME)]


def _refused(loc: tuple[str | int, ...], kind: str, message: str, value: object) -> ValidationError:
    # A ValidationError raised in a validator keeps its own location under the field's:
    # the error names the point (`zones.3.polygon.4: ...`), not just the polygon.
    return ValidationError.from_exception_data(
        "Zone", [InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=value)]
    )


class Zone(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    kind: Literal["no_parking", "no_stall"]
    # x right, y down. With no `frame`, relative to the picture (0 to 1), so the zone holds
    # whatever stream the detector samples; with one, pixels of a picture `frame` (width,
    # height) in size (as drawn on a 1080p snapshot, say), read relative to it.
    polygon: Annotated[list[tuple[Coordinate, Coordinate]], Field(min_length=3, max_length=64)]
    frame: tuple[FrameSide, FrameSide] | None = None
    # The model's class names that count in the zone (["car", "truck"]); None: every class
    # of the kind's group (detectors' `classes`: vehicle for no_parking, stall for no_stall).
    classes: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=32)]], Field(min_length=1, max_length=32)
    ] | None = None  # fmt: skip
    dwell_s: Annotated[float, Field(gt=0, le=86400)] = 120
    hours: str | None = None

    @field_validator("polygon")
    @classmethod
    def _simple(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if (found := fault(v)) is not None:
            j, message = found
            raise _refused((j,), "zone_polygon", message, v[j])
        return v

    @model_validator(mode="after")
    def _in_frame(self) -> Zone:
        if self.frame is None:
            for j, p in enumerate(self.polygon):
                if max(p) > 1:
                    raise _refused(("frame",), "zone_frame", (
                        f"the polygon is in pixels (point {j} is {xy(p)}); give the picture size it "
                        "was drawn on as frame: [width, height], or points from 0 to 1"
                    ), None)  # fmt: skip
            return self
        width, height = self.frame
        for j, (x, y) in enumerate(self.polygon):
            if x > width or y > height:
                raise _refused(("polygon", j), "zone_frame",
                               f"{xy((x, y))} is outside the {width}x{height} frame", [x, y])  # fmt: skip
        return self

    def pixels(self, width: int, height: int) -> list[tuple[float, float]]:
        """The polygon in pixels of a `width` x `height` picture (x right, y down): the
        one place a zone's points become pixels, for whatever frame is sampled."""
        from_w, from_h = self.frame or (1, 1)
        return [(x * width / from_w, y * height / from_h) for x, y in self.polygon]

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$", v):
            raise ValueError("must be HH:MM-HH:MM")
        return v

class Camera(Strict):
    id: Annotated[str, Field(pattern=CAMERA_ID)]
    name: str | None = None
    source: str
    detect_source: str | None = None
    position: Position | None = None
    record: RecordConfig = RecordConfig()
    detect: DetectConfig = DetectConfig()
    zones: list[Zone] = []

    @field_validator("source", "detect_source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_source(v)
            except SourceError as e:
                raise ValueError(str(e)) from None
        return v
