"""The YAML config, validated with pydantic so that every error names its field."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from shapely.geometry import Polygon
from shapely.validation import explain_validity

from dispatch.detections import MAX_FRAME
from media.sources import SourceError, parse_source

Role = Literal["admin", "dispatcher", "officer", "viewer", "device"]
CAMERA_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class Strict(BaseModel):
    # Unknown keys are errors: a misspelt option must not be silently ignored; and no
    # number is infinite or NaN (YAML's .inf and .nan included).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ServerConfig(Strict):
    host: str = "0.0.0.0"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    data_dir: Path = Path("./var")
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    # A photo an officer uploads as evidence (JPEG or PNG, checked by its content).
    max_photo_bytes: Annotated[int, Field(ge=16 * 1024, le=64 * 1024 * 1024)] = 10 * 1024 * 1024
    token_ttl_s: Annotated[int, Field(ge=60, le=30 * 86400)] = 12 * 3600
    secret: str | None = None
    # Origins (scheme://host:port) whose pages may use the session cookie besides this
    # server's own, e.g. the address of a TLS proxy in front of it.
    origins: list[Annotated[str, Field(pattern=r"^https?://[^/\s]+$")]] = []
    # A connection must send its first request's head within this (slowloris).
    header_timeout_s: Annotated[float, Field(ge=1, le=300)] = 10.0
    # A /ws client this many events behind (it stopped reading) is dropped (close 1013).
    ws_send_queue: Annotated[int, Field(ge=10, le=100_000)] = 2000
    # The node sits behind a proxy that terminates TLS: session cookies are Secure.
    tls_proxy: bool = False
    # Who may read /metrics: a bearer token, client networks; unset, everyone (as before).
    metrics_token: Annotated[str, Field(min_length=16)] | None = None
    metrics_from: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []


class RedisConfig(Strict):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(redis|rediss|unix)://", v):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v


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

    @field_validator("host_addresses")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for a in v:
            ipaddress.ip_address(a)
        return v


class MediaConfig(Strict):
    idle_grace_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    reconnect_min_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    # A camera back from an outage is online again within this (plus connecting).
    reconnect_max_s: Annotated[float, Field(gt=0, le=600)] = 3.0
    read_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0
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


StreamPattern = Annotated[str, Field(pattern=r"^[a-z0-9*?_-]{1,63}$")]


class User(Strict):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password_hash: Annotated[str, Field(min_length=1)]
    role: Role
    # Streams (ids or shell patterns) an officer may watch beyond his own phone's, and a
    # device may publish; the wall roles watch everything, admins and dispatchers publish
    # anything that is not a camera.
    watch: list[StreamPattern] = []
    publish: list[StreamPattern] = []


class CallsConfig(Strict):
    ring_s: Annotated[float, Field(gt=0, le=300)] = 30.0  # then call.timeout
    # A party whose socket drops (a phone changing networks) has this long to come back
    # and restart ICE before the call is hung up.
    reconnect_s: Annotated[float, Field(ge=0, le=300)] = 20.0
    # Per socket: call invites, and everything else, per 10 s; past 3x that the socket closes.
    invites_per_10s: Annotated[int, Field(ge=1, le=1000)] = 5
    messages_per_10s: Annotated[int, Field(ge=10, le=100_000)] = 400
    # Recorded calls: media still flows browser to browser, and each side also publishes
    # its camera to the server (WHIP, stream call-ID-caller / call-ID-callee), recorded.
    record: bool = False


class RtmpConfig(Strict):
    # Drones and encoders push rtmp://HOST:PORT/live/STREAM?token=TOKEN. None: no RTMP ingest.
    port: Annotated[int, Field(ge=0, le=65535)] | None = 1935
    host: str = "0.0.0.0"


class Position(Strict):
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]


class RecordConfig(Strict):
    mode: Literal["continuous", "events", "off"] = "off"
    retain_days: Annotated[float, Field(gt=0, le=36500)] = 7
    max_gb: Annotated[float, Field(gt=0, le=1e9)] | None = None  # this camera's quota; oldest go first


class RecordingsConfig(Strict):
    segment_s: Annotated[float, Field(ge=2, le=3600)] = 60.0
    pre_s: Annotated[float, Field(ge=0, le=300)] = 10.0  # events: kept before a mark
    post_s: Annotated[float, Field(ge=0, le=3600)] = 20.0  # and after it
    max_gb: Annotated[float, Field(gt=0, le=1e9)] | None = None  # every camera together
    # Below this much free space recording stops (alarm: metric, log, wall warning).
    min_free_mb: Annotated[float, Field(ge=0, le=1e12)] = 1024.0
    evidence_keep_days: Annotated[float, Field(ge=0, le=36500)] = 365.0  # after the ticket ends
    check_s: Annotated[float, Field(ge=0.5, le=3600)] = 30.0  # retention and disk checks
    # Published streams (phones, drones) by id pattern, e.g. {"drone-*": {mode: continuous}}.
    streams: dict[Annotated[str, Field(pattern=r"^[a-z0-9*?_-]{1,63}$")], RecordConfig] = {}


class DetectConfig(Strict):
    fps: Annotated[float, Field(gt=0, le=30)] = 2
    enabled: bool = True




class Zone(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    kind: Literal["no_parking", "no_stall"]
    # Image pixel coordinates of the detection frame, x right and y down.
    polygon: Annotated[
        list[
            tuple[
                Annotated[float, Field(ge=0, le=MAX_FRAME)],
                Annotated[float, Field(ge=0, le=MAX_FRAME)],
            ]
        ],
        Field(min_length=3, max_length=64),
    ]
    dwell_s: Annotated[float, Field(gt=0, le=86400)] = 120
    hours: str | None = None

    @field_validator("polygon")
    @classmethod
    def _simple(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        shape = Polygon(v)
        if shape.convex_hull.area <= 0:
            raise ValueError("encloses no area (its points are in a line)")
        if not shape.is_valid:
            raise ValueError(f"is not a simple polygon: {explain_validity(shape)}")
        return v

    def check_frame(self, width: int, height: int, index: int) -> None:
        """Raise ValueError naming the point when the polygon leaves a width x height frame."""
        for j, (x, y) in enumerate(self.polygon):
            if x > width or y > height:
                raise ValueError(
                    f"zones.{index}.polygon.{j}: ({x:g}, {y:g}) is outside the {width}x{height} frame"
                )

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


Mode = Literal["foot", "bicycle", "ebike", "car"]


class Officer(Strict):
    id: Annotated[str, Field(pattern=CAMERA_ID)]
    name: str | None = None
    grid: str | None = None
    mode: Mode | None = None  # how he patrols; dispatch.default_mode when not given


class MapLayer(Strict):
    name: Annotated[str, Field(pattern=CAMERA_ID)]
    geojson: Path  # a FeatureCollection the centre provides (roads, buildings, ...)
    kind: Literal["roads", "buildings", "water", "green", "other"] = "other"  # how it is drawn


class MapConfig(Strict):
    """The wall's base map: the centre's own GeoJSON layers and, optionally, a tile server
    it runs itself. Nothing is fetched from outside: a closed network has no public tiles."""

    center: Position | None = None  # None: the middle of the cameras that have a position
    zoom: Annotated[int, Field(ge=1, le=22)] = 16
    tile_url: str | None = None  # e.g. http://tiles.centre.local/{z}/{x}/{y}.png
    tile_attribution: Annotated[str, Field(max_length=200)] = ""
    tile_max_zoom: Annotated[int, Field(ge=1, le=24)] = 19
    layers: Annotated[list[MapLayer], Field(max_length=32)] = []

    @field_validator("tile_url")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None:
            if not re.match(r"^(https?://[^\s/]+)?/\S*$", v):
                raise ValueError("must be an http(s) URL or a path on this server")
            missing = [p for p in ("{z}", "{x}", "{y}") if p not in v]
            if missing:
                raise ValueError(f"must contain {', '.join(missing)}")
        return v

    @model_validator(mode="after")
    def _unique_layers(self) -> MapConfig:
        names = [layer.name for layer in self.layers]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"layers: duplicate names {dupes}")
        return self


class TracksConfig(Strict):
    # A phone sends a fix at least this often, standing still too (its page keeps the
    # fixes it could not send, with their own times, and sends them when back online).
    heartbeat_s: Annotated[float, Field(ge=1, le=300)] = 10.0


class GridWarn(Strict):
    window_s: Annotated[int, Field(gt=0, le=366 * 86400)] = 3600
    threshold: Annotated[int, Field(gt=0, le=1_000_000)] = 10


class GridsConfig(Strict):
    geojson: Path | None = None
    warn: GridWarn = GridWarn()


class CategoryConfig(Strict):
    mode: Literal["auto", "suggest"] = "auto"  # auto: offer to the nearest at once
    accept_s: Annotated[float, Field(gt=0, le=30 * 86400)] | None = None
    arrive_s: Annotated[float, Field(gt=0, le=30 * 86400)] | None = None
    resolve_s: Annotated[float, Field(gt=0, le=30 * 86400)] | None = None


class DispatchConfig(Strict):
    accept_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 120
    arrive_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 300
    resolve_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 3600
    arrive_radius_m: Annotated[float, Field(gt=0, le=10_000)] = 50
    remind_before_s: Annotated[float, Field(ge=0, le=30 * 86400)] = 60
    search_radius_m: Annotated[float, Field(gt=0, le=100_000)] = 5000
    search_count: Annotated[int, Field(ge=1, le=1000)] = 50
    # Speeds for an ETA (m/s, a city's traffic and crossings included), by how an officer
    # patrols; his own track's moving speed refines it.
    speeds: dict[Mode, Annotated[float, Field(gt=0, le=50)]] = {
        "foot": 1.4, "bicycle": 4.0, "ebike": 5.5, "car": 7.0}  # fmt: skip
    default_mode: Mode = "foot"
    # The centre's road network (GeoJSON lines): ETAs along it; else straight line x factor.
    roads: Path | None = None
    road_factor: Annotated[float, Field(ge=1, le=5)] = 1.3  # streets are longer than straight lines
    # A ticket nobody could take waits in the queue: reminded then escalated after this.
    wait_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 180
    decline_bar_s: Annotated[float, Field(ge=0, le=86400)] = 600  # a decline bars him this long
    # Tickets and officers that turn up within this of each other are matched together
    # (one assignment), not one at a time in arrival order.
    match_window_s: Annotated[float, Field(ge=0, le=10)] = 0.1
    # Offers go only to officers whose own phone reported within this (None: stale_s).
    reachable_s: Annotated[float, Field(gt=0, le=86400)] | None = None
    stale_s: Annotated[float, Field(gt=0, le=86400)] = 120
    track_retain_s: Annotated[float, Field(gt=0, le=366 * 86400)] = 7 * 86400
    claim_idle_s: Annotated[float, Field(gt=0, le=86400)] = 30  # violations a dead node held move on after this
    categories: dict[str, CategoryConfig] = {}

    def mode(self, category: str) -> str:
        cat = self.categories.get(category)
        return cat.mode if cat else "auto"

    def limits(self, category: str) -> dict[str, float]:
        cat = self.categories.get(category) or CategoryConfig()
        return {
            "accept": cat.accept_s or self.accept_s,
            "arrive": cat.arrive_s or self.arrive_s,
            "resolve": cat.resolve_s or self.resolve_s,
        }

    @staticmethod
    def steps() -> tuple[str, ...]:
        return ("accept", "arrive", "arrive:remind", "resolve", "resolve:remind", "wait", "wait:remind")


DEMO_MODEL = Path(__file__).resolve().parents[1] / "detectors" / "models" / "gridwatch-demo.pt"
COCO_GROUPS = {
    "vehicle": "vehicle", "stall": "stall",  # the demo model's own classes
    "car": "vehicle", "truck": "vehicle", "bus": "vehicle", "motorcycle": "vehicle",
    "person": "person",
    "umbrella": "stall", "chair": "stall", "dining table": "stall", "bench": "stall",
    "suitcase": "stall", "potted plant": "stall",
}  # fmt: skip


class DetectorsConfig(Strict):
    # A local file (or a model .yaml, for tests): weights are never downloaded. The
    # default is the demo model this project trains and ships (vehicle, person, stall).
    weights: str = str(DEMO_MODEL)
    imgsz: Annotated[int, Field(ge=64, le=2048)] = 640
    conf: Annotated[float, Field(gt=0, lt=1)] = 0.25
    device: str | None = None  # None: the GPU when there is one, else the CPU
    # The model's class names -> what the rules see; a custom model with a stall class maps it here.
    classes: dict[str, Literal["vehicle", "person", "stall"]] = COCO_GROUPS
    lease_s: Annotated[float, Field(ge=1, le=300)] = 10.0
    grace_s: Annotated[float, Field(gt=0, le=3600)] = 10.0  # an object unseen this long is gone
    cooldown_s: Annotated[float, Field(ge=0, le=30 * 86400)] = 300.0
    # The model runs this often even where nothing moved (Frigate re-checks stationary
    # objects about every 10 s too): parked vehicles stay seen, the dwell runs on.
    recheck_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    # Auto-verify of a resolved camera ticket: the spot must be clear this long in a row,
    # within this long of the resolution, or the ticket goes back to the officer.
    verify_clear_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    verify_window_s: Annotated[float, Field(gt=0, le=86400)] = 120.0
    # A dispatcher's dismissal keeps the spot quiet this long.
    dismiss_s: Annotated[float, Field(gt=0, le=366 * 86400)] = 86400.0


class Config(Strict):
    server: ServerConfig = ServerConfig()
    redis: RedisConfig = RedisConfig()
    webrtc: WebRTCConfig = WebRTCConfig()
    media: MediaConfig = MediaConfig()
    rtmp: RtmpConfig = RtmpConfig()
    calls: CallsConfig = CallsConfig()
    recordings: RecordingsConfig = RecordingsConfig()
    users: list[User] = []
    cameras: list[Camera] = []
    officers: list[Officer] = []
    grids: GridsConfig = GridsConfig()
    map: MapConfig = MapConfig()
    tracks: TracksConfig = TracksConfig()
    dispatch: DispatchConfig = DispatchConfig()
    detectors: DetectorsConfig = DetectorsConfig()

    @model_validator(mode="after")
    def _heartbeat(self) -> Config:
        if self.tracks.heartbeat_s * 2 > self.dispatch.stale_s:
            raise ValueError("tracks.heartbeat_s: must be at most half of dispatch.stale_s, "
                             "or a standing officer goes stale between two fixes")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _unique(self) -> Config:
        for what, ids in (
            ("cameras", [c.id for c in self.cameras]),
            ("users", [u.username for u in self.users]),
            ("officers", [o.id for o in self.officers]),
        ):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"{what}: duplicate ids {dupes}")
        return self


class ConfigError(Exception):
    """A config that cannot be used; `errors` is one line per problem, each naming its field."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


def format_errors(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        out.append(f"{loc}: {e['msg']}")
    return out


def parse_config(data: object) -> Config:
    if data is None:
        data = {}
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e)) from None


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}: not valid YAML: {e}"]) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping"])
    return parse_config(data)
