"""The YAML config: each package's own config model (media, recordings, dispatch,
detectors) composed into one, loaded and validated with pydantic so that every error
names its field."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from gridwatch.contracts.config import CAMERA_ID, Strict, format_errors
from gridwatch.contracts.geo import Position
from gridwatch.contracts.roles import Role
from gridwatch.detectors.config import DetectorsConfig
from gridwatch.detectors.rules import class_faults
from gridwatch.dispatch.config import DispatchConfig, GridsConfig, Officer, TracksConfig
from gridwatch.media.config import Camera, ClusterConfig, MediaConfig, RtmpConfig, WebRTCConfig
from gridwatch.recordings.config import RecordingsConfig


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
    # On SIGTERM, /readyz answers 503 this long before the node drains and stops, while
    # requests are still served: a load balancer polling /readyz stops sending traffic
    # first (0: at once; the closed port says the same).
    shutdown_delay_s: Annotated[float, Field(ge=0, le=60)] = 0.0
    # A connection must send its first request's head within this (slowloris).
    header_timeout_s: Annotated[float, Field(ge=1, le=300)] = 10.0
    # A /ws client this many events behind (it stopped reading) is dropped (close 1013).
    ws_send_queue: Annotated[int, Field(ge=10, le=100_000)] = 2000
    # The node sits behind a proxy that terminates TLS: session cookies are Secure.
    tls_proxy: bool = False
    # Who may read /metrics: a bearer token, client networks; unset, everyone (as before).
    metrics_token: Annotated[str, Field(min_length=16)] | None = None
    metrics_from: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    # The Ed25519 private key that signs evidence packages (PKCS#8 PEM, mode 0600). Unset:
    # data_dir/keys/evidence-ed25519.pem, made on first start. Never logged nor served:
    # only its public key and fingerprint are (GET /api/evidence/key).
    evidence_key: Path | None = None

    @field_validator("evidence_key")
    @classmethod
    def _key_path(cls, v: Path | None) -> Path | None:
        if v is not None and (not v.name or v.is_dir()):
            raise ValueError("must name a key file, not a folder")
        return v

    def evidence_key_path(self) -> Path:
        """Where this node's evidence signing key is (or will be made)."""
        return self.evidence_key or self.data_dir / "keys" / "evidence-ed25519.pem"

# host:port, the host a name, an IPv4 address or a bracketed IPv6 one ([::1]:26379).
HostPort = Annotated[str, Field(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")]

class SentinelConfig(Strict):
    """The durable Redis behind Redis Sentinel (https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/):
    the node asks the Sentinels at `addresses` where master `master` is, and again after a failover."""

    master: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")]
    addresses: Annotated[list[HostPort], Field(min_length=1, max_length=32)]
    password: SecretStr | None = None  # the master's and replicas' (AUTH)
    sentinel_password: SecretStr | None = None  # the Sentinels' own, when they ask for one
    db: Annotated[int, Field(ge=0, le=15)] = 0

    @field_validator("addresses")
    @classmethod
    def _ports(cls, v: list[str]) -> list[str]:
        if bad := [a for a in v if not 0 < int(a.rsplit(":", 1)[1]) <= 65535]:
            raise ValueError(f"ports must be 1-65535: {bad}")
        return v

    def hosts(self) -> list[tuple[str, int]]:
        """`addresses` as (host, port) pairs, IPv6 hosts without their brackets."""
        pairs = [a.rsplit(":", 1) for a in self.addresses]
        return [(host.strip("[]"), int(port)) for host, port in pairs]

def _redis_url(v: str | None) -> str | None:
    if v is not None and not re.match(r"^(redis|rediss|unix)://", v):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return v

class RedisConfig(Strict):
    # The durable Redis (tickets, tracks, deadlines, leases): a URL, or `sentinel`, or
    # neither, and then a private redis-server under server.data_dir (one node alone).
    url: str | None = None
    sentinel: SentinelConfig | None = None
    # The detection frame bus (gw:frames:{camera}), which needs no persistence. None:
    # the durable Redis (the private one included).
    frames_url: str | None = None

    _url = field_validator("url", "frames_url")(_redis_url)

    @model_validator(mode="after")
    def _one_source(self) -> RedisConfig:
        if self.url is not None and self.sentinel is not None:
            raise PydanticCustomError("redis_source", "set redis.url or redis.sentinel, not both")
        return self

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

class Config(Strict):
    server: ServerConfig = ServerConfig()
    redis: RedisConfig = RedisConfig()
    cluster: ClusterConfig = ClusterConfig()
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
    def _shared_redis(self) -> Config:
        # Without a shared Redis a node starts a private one: in a cluster config that
        # node would silently run as a centre of its own.
        if self.redis.url is not None or self.redis.sentinel is not None:
            return self
        # Set to something else than its default: a config written out whole (the demo's
        # for its worker) names every field without asking for a cluster.
        defaults = ClusterConfig()
        named = [f"cluster.{f}" for f in sorted(self.cluster.model_fields_set)
                 if getattr(self.cluster, f) != getattr(defaults, f)]  # fmt: skip
        named += ["redis.frames_url"] * (self.redis.frames_url is not None)
        if named:
            why = ("needed by {named}: the nodes of a cluster share one Redis; set redis.url or "
                   "redis.sentinel (without either this node would start a private Redis and run alone)")
            error = PydanticCustomError("shared_redis", why, {"named": ", ".join(named)})
            raise ValidationError.from_exception_data(
                "Config", [InitErrorDetails(type=error, loc=("redis", "url"), input=None)]
            )
        return self

    @model_validator(mode="after")
    def _zone_classes(self) -> Config:
        # A class the rules never count for the zone's kind keeps the zone from firing.
        faults = [InitErrorDetails(type=PydanticCustomError("zone_classes", why), input=camera.zones[z].classes,
                                   loc=("cameras", c, "zones", z, "classes", k))
                  for c, camera in enumerate(self.cameras)
                  for z, k, why in class_faults(camera.zones, self.detectors.classes)]  # fmt: skip
        if faults:
            raise ValidationError.from_exception_data("Config", faults)
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

def parse_config(data: object) -> Config:
    if data is None:
        data = {}
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e)) from None

def read_config_file(path: Path) -> dict:
    """The YAML file's top-level mapping ({} for an empty file); ConfigError naming the
    file when it cannot be read or is not a mapping."""
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
    return data or {}
