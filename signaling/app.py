"""The application factory: one aiohttp app with media, signaling and the web pages."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator, Coroutine

from aiohttp import web
from redis.exceptions import RedisError

from gridwatch.contracts.evidence import EvidenceStore
from gridwatch.contracts.geo import Position
from gridwatch.contracts.node import node_id
from gridwatch.contracts.retry import forever
from gridwatch.dispatch.alerts import Alerts
from gridwatch.dispatch.deadlines import Deadlines
from gridwatch.dispatch.events import Events
from gridwatch.dispatch.evidence_desk import TicketEvidence
from gridwatch.dispatch.grids import Grids
from gridwatch.dispatch.officers import Officers
from gridwatch.dispatch.reach import Reach
from gridwatch.dispatch.routing import Router
from gridwatch.dispatch.service import Dispatch
from gridwatch.dispatch.tickets import TicketStore
from gridwatch.dispatch.violations import VerificationConsumer, ViolationConsumer
from gridwatch.media.camera_state import StateBoard
from gridwatch.media.cameras import CameraStore
from gridwatch.media.discover import Scanner
from gridwatch.media.hub import StreamHub
from gridwatch.media.ice_mux import IceMux
from gridwatch.media.nodes import NodeInfo, NodeRegistry
from gridwatch.media.onvif import Onvif
from gridwatch.media.placement import Placement
from gridwatch.media.publish import Publishers, forward_received_media
from gridwatch.media.published import PublishedStreams
from gridwatch.media.relay import Relays, relay_cameras
from gridwatch.media.rtmp import RtmpIngest
from gridwatch.media.sampler import Samplers, Target
from gridwatch.media.webrtc import (
    Viewers,
    rtc_configuration,
    share_h264_packetization,
    use_host_addresses,
    use_ice_mux,
)
from gridwatch.recordings.service import Recordings
from gridwatch.signaling import (
    api,
    api_dispatch,
    api_evidence,
    api_internal,
    api_onvif,
    api_recordings,
    api_tickets,
    api_wall,
    keys,
    node_auth,
    node_files,
    whep,
    whip,
    ws,
)
from gridwatch.signaling.auth import PasswordChecks, Tokens, auth_middleware, shared_secret
from gridwatch.signaling.basemap import load_basemap
from gridwatch.signaling.calls import Calls
from gridwatch.signaling.cameras import register_secrets
from gridwatch.signaling.config import Config, ServerConfig
from gridwatch.signaling.headers import page_policy, security_headers
from gridwatch.signaling.http_errors import JsonError, error_middleware
from gridwatch.signaling.metrics import Metrics
from gridwatch.signaling.openapi import build as openapi_spec
from gridwatch.signaling.policy import allow, check_rules
from gridwatch.signaling.presence import Presence
from gridwatch.signaling.redis_connect import durable_client, frames_client
from gridwatch.signaling.redis_server import EmbeddedRedis
from gridwatch.signaling.sockets import Sockets
from gridwatch.signaling.whip import rtmp_authorizer
from gridwatch.web import STATIC, vendor_dirs

log = logging.getLogger("gridwatch.server")
REDIS_CONNECTIONS = 256
REDIS_WAIT_S = 5.0
NODE = node_id()  # this node, in leases and presence
PRODUCERS_STOP_S = 1.5  # for the producers' threads to leave their source at shutdown
# Set when the node starts shutting down: from then on every new request is refused.
DRAINING = web.AppKey("draining", asyncio.Event)
# Set once every context has started (Redis, media, dispatch, ...): /readyz may say ready.
STARTED = web.AppKey("started", asyncio.Event)
# Set on SIGTERM, server.shutdown_delay_s before DRAINING: /readyz says 503 from here.
STOPPING = web.AppKey("stopping", asyncio.Event)
READY_REDIS_S = 1.0  # /readyz: a Redis that does not answer PING within this is away
SAMPLERS = web.AppKey("samplers", Samplers)
PLACE_DELAY_S = 0.3  # a new or deleted camera is placed this long after, with any others then


@contextlib.asynccontextmanager
async def running(*loops: Coroutine[None, None, None]) -> AsyncIterator[None]:
    """The node's background loops, for as long as the block lasts."""
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[keys.CONFIG]
    embedded = private_url = None
    if cfg.redis.url is None and cfg.redis.sentinel is None:
        embedded = EmbeddedRedis(cfg.server.data_dir)
        private_url = await embedded.start()
    # A burst of requests waits for a connection (up to REDIS_WAIT_S) instead of failing
    # with "Too many connections" at the pool's limit.
    client = durable_client(cfg.redis, private_url, REDIS_CONNECTIONS, REDIS_WAIT_S)
    await client.ping()
    frames = frames_client(cfg.redis) or client
    await frames.ping()
    app[keys.REDIS], app[keys.FRAMES] = client, frames
    secret = await shared_secret(client, cfg.server.secret)
    app[keys.TOKENS] = Tokens(
        secret, cfg.server.token_ttl_s, client, {u.username: u.role for u in cfg.users}
    )
    app[keys.NODE_TOKENS] = node_auth.NodeTokens(secret)
    yield
    if frames is not client:
        await frames.aclose()
    await client.aclose()
    if embedded is not None:
        embedded.stop()


async def dispatch_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[keys.CONFIG]
    redis = app[keys.REDIS]
    tickets = TicketStore(redis)
    officers = Officers(redis, cfg.dispatch.track_retain_s)
    events, alerts = Events(redis), Alerts(redis)
    grids = app[keys.GRIDS] = Grids(redis, app[keys.MAP].grids, cfg.grids.warn.window_s,
                                    cfg.grids.warn.threshold)  # fmt: skip
    router = await asyncio.to_thread(Router, cfg.dispatch.road_factor, cfg.dispatch.roads)
    reach = Reach(officers, router, cfg.dispatch, {o.id: o.mode for o in cfg.officers if o.mode})
    dispatch = Dispatch(tickets, officers, Deadlines(redis), events, alerts, grids, reach, cfg.dispatch,
                        cfg.detectors.dismiss_s)  # fmt: skip
    app[keys.TICKETS], app[keys.OFFICERS], app[keys.DISPATCH] = tickets, officers, dispatch
    app[keys.ALERTS] = alerts
    sockets = Sockets(redis)
    app[keys.SOCKETS] = sockets
    presence = Presence(redis, sockets, NODE)
    app[keys.PRESENCE] = presence
    calls = Calls(redis, sockets, presence, cfg)
    app[keys.CALLS] = calls
    app[keys.METRICS].watch_field(sockets, calls, app[keys.PUBLISHERS], app[keys.RTMP])
    app[keys.METRICS].watch_matcher(dispatch.matcher)

    async def position(camera_id: str) -> Position | None:
        camera = await app[keys.CAMERAS].get(camera_id)
        return camera.position if camera else None

    evidence = EvidenceStore(cfg.server.data_dir / "evidence")
    app[keys.EVIDENCE] = evidence
    claim = cfg.dispatch.claim_idle_s
    node = app[keys.NODES].me.node
    violations = ViolationConsumer(redis, dispatch, position, evidence, claim, node)
    verifications = VerificationConsumer(redis, dispatch, evidence, claim, node)
    async with running(
        dispatch.run_deadlines(),
        dispatch.run_officer_feed(),
        dispatch.matcher.run(),
        sockets.run(),
        presence.run(),
        violations.run(),
        verifications.run(),
    ):
        yield
    await calls.close()


async def join_cluster(app: web.Application, store: CameraStore) -> tuple[NodeRegistry, Placement]:
    """This node in the centre's live set, and the camera placement over that set; the
    placement follows the camera registry's change feed and the live set."""
    cfg = app[keys.CONFIG]
    port = cfg.server.port
    cluster = cfg.cluster
    internal = cluster.internal(port)
    me = NodeInfo(cluster.node_name(port), internal, cluster.public_url or internal, cluster.capacity.cameras,
                  cluster.capacity.ingest_mbps)  # fmt: skip
    registry = NodeRegistry(app[keys.REDIS], me, cfg.media.lease_s)
    if cluster.node is None and (cfg.redis.url or cfg.redis.sentinel):
        # A container or pod made again gets another hostname: the node would come back
        # as a stranger, and the open segments and files of its old name stay orphaned.
        log.warning("cluster.node not set: this node is named after its host and port, which a new "
                    "container changes; give it a stable name", extra={"node": me.node})  # fmt: skip
    placement = Placement(me.node, cluster.camera_mbps, store.feed.cameras)
    registry.listeners.append(lambda live: placement.update(nodes=live.values()))
    pending: list[asyncio.TimerHandle] = []

    def place_cameras() -> None:
        pending.clear()
        placement.update(cameras=store.feed.cameras)

    def cameras_changed(ids: set[str]) -> None:
        # Once per PLACE_DELAY_S at most: 20,000 cameras added one by one must not each
        # cost a placement of all of them.
        if not pending and placement.added_or_removed(ids, store.feed.cameras):
            pending.append(asyncio.get_running_loop().call_later(PLACE_DELAY_S, place_cameras))

    store.feed.listeners.append(cameras_changed)
    await registry.join()
    await app[keys.PUBLISHED].forget_mine()
    placement.update(nodes=registry.live.values(), cameras=store.feed.cameras)
    app[keys.NODES], app[keys.PLACEMENT] = registry, placement
    return registry, placement


async def keep_placing(registry: NodeRegistry, placement: Placement, hub: StreamHub, published: PublishedStreams,
                       lease_s: float) -> None:  # fmt: skip
    """Renew this node every lease_s/3, at once when a node joins or leaves; drop the
    streams of cameras this node no longer owns once nothing uses them (so that its
    streams, and its /metrics, are its own cameras' and what its viewers watch); and drop
    a published stream whose publisher left here and now publishes to another node (its
    recorder and lease go with it, so that node records it)."""

    def own(stream_id: str) -> bool:  # "gate@detect" is camera gate's sub-stream
        return placement.mine(stream_id.partition("@")[0])

    async def beat() -> None:
        await registry.beat()
        hub.drop_unused(own)
        left = [s.id for s in list(hub.streams.values()) if s.pushed and not s.state.online]
        for stream_id in await published.elsewhere(left):
            log.info("published stream moved to another node", extra={"stream": stream_id})
            hub.remove(stream_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(registry.woken.wait(), lease_s / 3)
        registry.woken.clear()

    async with running(registry.watch()):
        await forever(beat, "node registry", log)


async def media_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[keys.CONFIG]
    use_host_addresses(cfg.webrtc.host_addresses)
    w = cfg.webrtc
    mux = IceMux(w.udp_port, w.announce_addresses, w.tcp_port) if w.udp_port is not None else None
    if mux is not None:
        await mux.start()  # a taken port stops the node: its published port would be dead
        app[keys.METRICS].watch_ice_mux(mux)
    use_ice_mux(mux)
    share_h264_packetization()
    forward_received_media()
    onvif = Onvif(timeout_s=cfg.media.read_timeout_s)
    app[keys.ONVIF] = onvif
    hub = StreamHub(
        idle_grace_s=cfg.media.idle_grace_s,
        consumer_queue=cfg.media.viewer_queue,
        reconnect_min_s=cfg.media.reconnect_min_s,
        reconnect_max_s=cfg.media.reconnect_max_s,
        read_timeout_s=cfg.media.read_timeout_s,
        refused_retry_s=cfg.media.refused_retry_s,
        onvif_resolver=onvif.stream_uri,
    )
    app[keys.HUB] = hub
    # Where drones and phones publish: written from the first publisher on.
    published = PublishedStreams(app[keys.REDIS], cfg.cluster.node_name(cfg.server.port),
                                 lambda node: node in app[keys.NODES].live)  # fmt: skip
    hub.published, app[keys.PUBLISHED] = published.set, published
    # The node is the reachable side: its own peer connections gather host candidates
    # only (a TURN server that does not answer would delay every answer by seconds).
    rtc = rtc_configuration([])
    viewers = Viewers(rtc, cfg.media.viewer_connect_s, cfg.media.viewer_sessions_per_user)
    app[keys.VIEWERS] = viewers
    publishers = Publishers(hub, rtc)
    app[keys.PUBLISHERS] = publishers
    rtmp = RtmpIngest(hub, rtmp_authorizer(app))
    app[keys.RTMP] = rtmp
    if cfg.rtmp.port is not None:
        try:
            await rtmp.start(cfg.rtmp.host, cfg.rtmp.port)
        except OSError as e:  # the node serves everything else without RTMP
            log.error("rtmp ingest not started", extra={"port": cfg.rtmp.port, "error": str(e)})
    app[keys.METRICS].watch_streams(hub, viewers)
    store = CameraStore(app[keys.REDIS], hub, register_secrets)
    app[keys.CAMERAS] = store
    await store.load(cfg.cameras)
    registry, placement = await join_cluster(app, store)
    relays = Relays(registry, placement, lambda camera: camera in store.feed.cameras, published, hub.streams,
                    lambda: node_auth.node_headers(app))  # fmt: skip
    hub.relays = app[keys.RELAYS] = relays
    relay_cameras(store, placement)
    app[keys.METRICS].watch_relays(relays)
    def owned() -> list[str]:
        return placement.owned() + [s.id for s in list(hub.streams.values()) if s.pushed]

    board = StateBoard(app[keys.REDIS], hub, registry.me.node, owned, lambda node: node in registry.live)
    app[keys.STATE_BOARD] = board
    app[keys.METRICS].watch_cluster(registry, placement, store.feed, board)
    app[keys.METRICS].watch_detectors(app[keys.REDIS], placement.mine)

    async def targets() -> list[Target]:
        # Cameras with zones are watched by the detectors, whether anyone views them or not;
        # only those placed here (a cycle costs this node's share, not the centre's).
        cameras = [c for i in placement.owned() if (c := store.feed.cameras.get(i)) is not None]
        return [Target(c.id, c.source, c.detect_source, c.detect.fps) for c in cameras
                if c.detect.enabled and c.zones]  # fmt: skip

    samplers = Samplers(app[keys.REDIS], hub, targets, registry.me.node, cfg.media.lease_s, placement.mine,
                        frames=app[keys.FRAMES])
    app[SAMPLERS] = samplers
    placement.listeners.append(lambda changed: samplers.work.wake())
    # cancelled, the samplers release their leases
    async with running(samplers.run(), store.feed.follow(), keep_placing(registry, placement, hub, published, cfg.media.lease_s),
                       board.run()):  # fmt: skip
        yield
    await rtmp.stop()
    await publishers.close_all()
    await viewers.close_all()
    if mux is not None:
        mux.close()
    await hub.stop(PRODUCERS_STOP_S)
    await relays.close()


async def recordings_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[keys.CONFIG]
    recordings = Recordings(app[keys.REDIS], app[keys.HUB], cfg.recordings, cfg.server.data_dir, cfg.media.lease_s,
                            cfg.calls.record, app[keys.CAMERAS].feed.cameras, app[keys.PLACEMENT].owned,
                            app[keys.EVIDENCE],
                            TicketEvidence(app[keys.TICKETS], app[keys.ALERTS]), app[keys.NODES].me.node,
                            app[keys.PLACEMENT].mine, app[node_files.FILES])  # fmt: skip
    app[keys.PLACEMENT].listeners.append(lambda changed: recordings.work.wake())
    app[keys.RECORDINGS] = recordings
    app[keys.METRICS].watch_recordings(recordings)
    async with running(recordings.run()):
        yield


@web.middleware
async def refuse_while_draining(request: web.Request, handler) -> web.StreamResponse:
    """503 for every request once the node shuts down (a keep-alive connection may still
    bring one): no new WHEP/WHIP session, /ws socket or API call starts on a node that is
    going away; the client retries, on another node or on this one once it is back."""
    if request.app[DRAINING].is_set() and request.path != "/readyz":
        return web.json_response(
            {"error": "shutting_down", "message": "this node is shutting down; try again"},
            status=503, headers={"Retry-After": "2", "Connection": "close"},
        )  # fmt: skip
    return await handler(request)


async def drain(app: web.Application) -> None:
    """The first step of a shutdown (aiohttp's on_shutdown, after the listening socket is
    closed and before in-flight requests are waited for): refuse new sessions, end the
    long-lived ones that would otherwise hold the shutdown up, and hand the cameras over.

    - every new request gets 503, RTMP stops listening and hangs up its publishers;
    - each /ws socket is closed with 1001 (going away), so its handler returns at once
      (left open, aiohttp would wait for it until its shutdown timeout), and so is each
      relay this node serves to another (media/relay.py);
    - every recorder closes its segment (indexed with end and size), the record and
      media leases are released and the node leaves the live set, so that the others
      place its cameras at once (told by pub/sub) and pull, sample and record them.
    WebRTC peers and producer threads are stopped afterwards, in media_ctx's cleanup.
    """
    app[DRAINING].set()
    app[keys.RELAYS].stop_serving()
    log.info("draining", extra={"sockets": app[keys.SOCKETS].count(),
                                "recorders": len(app[keys.RECORDINGS].recorders)})  # fmt: skip
    steps = {"rtmp": app[keys.RTMP].stop(), "sockets": app[keys.SOCKETS].close_all(),
             "recordings": app[keys.RECORDINGS].close(), "samplers": app[SAMPLERS].work.close(),
             "cluster": app[keys.NODES].leave()}  # fmt: skip
    results = await asyncio.gather(*steps.values(), return_exceptions=True)
    for step, result in zip(steps, results, strict=True):
        # One step's fault must not skip the others, nor the cleanup that follows.
        if isinstance(result, Exception):
            log.error("shutdown step failed", extra={"step": step, "error": repr(result)})


@allow(public=True)
async def index(request: web.Request) -> web.FileResponse:
    """The command wall."""
    return web.FileResponse(STATIC / "index.html")


@allow(public=True)
async def ops(request: web.Request) -> web.FileResponse:
    """The operations screens (cameras, zones, PTZ, recordings); the page signs in itself."""
    return web.FileResponse(STATIC / "ops.html")


@allow(public=True)
async def phone(request: web.Request) -> web.FileResponse:
    """The officer's phone page."""
    return web.FileResponse(STATIC / "phone.html")


@allow(public=True)
async def readyz(request: web.Request) -> web.Response:
    """Whether this node takes traffic, for load balancers and orchestrators: 200
    {"ready": true} once every part has started and Redis (and the frame bus) answers;
    503 {"ready": false, "reason": "starting" | "shutting_down" | "redis_unavailable"}
    otherwise, from the moment a shutdown starts. /healthz: only that the process lives."""
    app = request.app
    reason = None
    if app[STOPPING].is_set() or app[DRAINING].is_set():
        reason = "shutting_down"
    elif not app[STARTED].is_set():
        reason = "starting"
    else:
        try:
            async with asyncio.timeout(READY_REDIS_S):
                await asyncio.gather(app[keys.REDIS].ping(), app[keys.FRAMES].ping())
        except (TimeoutError, RedisError, OSError):
            reason = "redis_unavailable"
    if reason is not None:
        return web.json_response({"ready": False, "reason": reason}, status=503)
    return web.json_response({"ready": True})


@allow(public=True)
async def openapi(request: web.Request) -> web.Response:
    """This API, as OpenAPI 3.1."""
    return web.json_response(request.app[OPENAPI])


@allow(public=True)
async def service_worker(request: web.Request) -> web.FileResponse:
    """The phone page's service worker."""
    # At the root, so that it may look after /phone; always checked for a newer version.
    return web.FileResponse(STATIC / "sw.js", headers={"Content-Type": "text/javascript",
                                                        "Cache-Control": "no-cache"})  # fmt: skip


PAGES = [STATIC / "index.html", STATIC / "phone.html", STATIC / "ops.html"]
OPENAPI = web.AppKey("openapi", dict)


def metrics_guard(cfg: ServerConfig, handler):
    """/metrics for whom the config lets see it: a bearer token, client networks, or all."""

    @allow(public=True)
    async def guarded(request: web.Request) -> web.StreamResponse:
        """Prometheus metrics (server.metrics_token, server.metrics_from)."""
        if cfg.metrics_from:
            try:
                peer = ipaddress.ip_address((request.remote or "").split("%")[0])
            except ValueError:
                peer = None
            if peer is None or not any(peer in net for net in cfg.metrics_from):
                raise JsonError(403, "metrics are not served to this address (server.metrics_from)")
        if cfg.metrics_token and not hmac.compare_digest(
            request.headers.get("Authorization", ""), f"Bearer {cfg.metrics_token}"
        ):
            raise JsonError(401, "metrics need the bearer token of server.metrics_token")
        return await handler(request)

    return guarded


def add_vendor_routes(app: web.Application) -> None:
    dirs, missing = vendor_dirs()
    if missing:  # the API and the media work on; the pages cannot
        log.error("web libraries missing: run ./install.sh (npm ci --prefix web)",
                  extra={"missing": missing})  # fmt: skip
    for name, path in dirs.items():
        app.router.add_static(f"/vendor/{name}/", path)


def create_app(config: Config) -> web.Application:
    metrics = Metrics()
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[metrics.middleware(), security_headers(page_policy(PAGES, config.map.tile_url)),
                     refuse_while_draining, error_middleware,
                     auth_middleware(keys.TOKENS, config.server.origins, node_auth.require_node)],
    )  # fmt: skip
    app[keys.CONFIG] = config
    app[DRAINING] = asyncio.Event()
    app[STARTED], app[STOPPING] = asyncio.Event(), asyncio.Event()
    app[keys.METRICS] = metrics
    app[keys.MAP] = load_basemap(config)  # ConfigError here: check-config reports it first
    app[keys.PASSWORDS] = PasswordChecks()

    async def close_passwords(app: web.Application) -> None:
        app[keys.PASSWORDS].close()

    app.on_cleanup.append(close_passwords)
    app.on_shutdown.append(drain)

    async def started(app: web.Application) -> None:  # after every cleanup_ctx's start
        app[STARTED].set()

    app.on_startup.append(started)
    # Dispatch looks cameras up (violations carry a camera id): media starts first.
    app.cleanup_ctx.extend(
        [redis_ctx, media_ctx, dispatch_ctx, node_files.files_ctx, recordings_ctx, api_evidence.signer_ctx]
    )
    app.router.add_get("/metrics", metrics_guard(config.server, metrics.handler))
    app.router.add_routes(api.routes)
    app.router.add_routes(api_tickets.routes)
    app.router.add_routes(api_evidence.routes)
    app.router.add_routes(api_dispatch.routes)
    app.router.add_routes(api_wall.routes)
    app.router.add_routes(ws.routes)
    app.router.add_routes(whep.routes)
    app.router.add_routes(whip.routes)
    app.router.add_routes(api_recordings.routes)
    app.router.add_routes(node_files.routes)
    app.router.add_routes(api_onvif.routes)
    app.router.add_routes(api_internal.routes)
    app[api_onvif.DISCOVERY] = Scanner(config.media.discover_interface)
    app[api_onvif.PROBES] = asyncio.Semaphore(api_onvif.MAX_PROBES)
    app.router.add_get("/", index)
    app.router.add_get("/phone", phone)
    app.router.add_get("/ops", ops)
    app.router.add_get("/sw.js", service_worker)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/readyz", readyz)
    app.router.add_static("/static/", str(STATIC))
    add_vendor_routes(app)
    check_rules(app)  # a route without an access rule would be open to anyone: refuse to start
    app[OPENAPI] = openapi_spec(app)
    return app
