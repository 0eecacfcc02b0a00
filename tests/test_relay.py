"""A viewer on any node watches any stream through its owner (issue 19, must-shows 1 and
2): real `gridwatch serve` nodes on one redis-server, a real RTSP camera, an ffmpeg drone
publishing RTMP, aiortc WHEP viewers. Each node relays a stream from its owner once,
however many viewers it has; the camera has one RTSP session in the whole cluster; with
cluster.viewers: redirect the non-owner sends the viewer to the owner instead."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request

import aiohttp
import psutil
import pytest
import redis
from itsdangerous import URLSafeTimedSerializer

from gridwatch.media.relay import AUDIO, END, HELLO, KEEPALIVE, VIDEO, read_frame
from gridwatch.signaling.node_auth import SALT, NodeTokens
from support.procs import HTTP_TIMEOUT_S, GridwatchServer, RedisServer, RtspServer, settled, stop
from support.waits import wait_for
from support.whep_client import Viewer, view

SPEC = "testsrc:320x240@15:300"  # small: several nodes and ffmpeg share two cores


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rtsp_sessions(rtsp: RtspServer) -> int:
    """Established client connections to the RTSP server (RTSP over TCP: one per session)."""
    conns = psutil.Process(rtsp.proc.pid).net_connections(kind="tcp")
    return sum(1 for c in conns if c.status == "ESTABLISHED" and c.laddr.port == rtsp.port)


def metric(node: GridwatchServer, name: str) -> float:
    return node.metrics().get(name, 0.0)



def cluster(tmp_path, users, store: RedisServer, names: str, extra: dict | None = None) -> list[GridwatchServer]:
    nodes = []
    for name in names:
        cfg = {"users": users, "redis": {"url": store.url}, "cluster": {"node": name, **(extra or {})}}
        nodes.append(GridwatchServer(tmp_path / name, cfg))
    return nodes


def owner_first(nodes: list[GridwatchServer]) -> tuple[GridwatchServer, GridwatchServer]:
    """(the camera's owner, the other) of two settled nodes with one camera."""
    a, b = nodes
    return (a, b) if metric(a, "gridwatch_placement_cameras") == 1 else (b, a)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, users):
    """Two nodes on one redis-server, one RTSP camera `gate`; (owner, other, rtsp, redis)."""
    tmp = tmp_path_factory.mktemp("relay")
    store = RedisServer(tmp / "redis").start()
    rtsp = RtspServer({"/cam": SPEC}).start()
    nodes = cluster(tmp, users, store, "ab")
    for node in nodes:
        node.config["cameras"] = [{"id": "gate", "source": rtsp.url("/cam")}]
        node.start()
    try:
        asyncio.run(settled(nodes))
        yield (*owner_first(nodes), rtsp, store)
    finally:
        for node in nodes:
            node.stop()
        rtsp.stop()
        store.stop()
        assert [t for n in nodes for t in n.tracebacks()] == []


async def test_viewers_on_the_non_owner_get_frames_through_one_relay_and_one_rtsp_session(two_nodes, http):
    owner, other, rtsp, _ = two_nodes
    token = other.token("dispatcher")
    assert rtsp_sessions(rtsp) == 0  # nothing pulls a camera nobody watches
    viewers: list[Viewer] = []
    try:
        viewers.append(await view(http, other.base, "gate", token))
        assert await viewers[0].wait_frames(20, timeout=20.0), other.logs()[-3000:]
        _, frame = viewers[0].frames[-1]
        assert (frame.width, frame.height) == (320, 240)
        viewers.append(await view(http, other.base, "gate", token))
        viewers.append(await view(http, owner.base, "gate", token))
        for v in viewers[1:]:
            assert await v.wait_frames(20, timeout=20.0)
        assert rtsp_sessions(rtsp) == 1  # the owner pulls it, for its viewer and the relay
        m_other, m_owner = other.metrics(), owner.metrics()
        assert m_other["gridwatch_relays"] == 1  # two viewers, one relay
        assert m_owner["gridwatch_relays_served"] == 1
        assert m_owner["gridwatch_relays"] == 0
        assert m_other['gridwatch_stream_consumers{stream="gate"}'] == 2
        assert m_other["gridwatch_relay_received_packets_total"] >= 20  # what the first viewer saw
        assert m_owner["gridwatch_relay_sent_packets_total"] >= 20
        # The relay forwards what the camera sent: nothing decoded or encoded on either node.
        assert m_other.get('gridwatch_stream_decoded_frames_total{stream="gate"}', 0) == 0
    finally:
        for i, v in enumerate(viewers):
            await v.close(http, owner.base if i == 2 else other.base, token)
    # The viewers gone, the relay stops after the idle grace and the owner stops serving it.
    await wait_for("relay served no more", lambda: metric(owner, "gridwatch_relays_served") == 0, 30)


async def test_internal_relay_takes_only_a_node_token(two_nodes, http):
    owner, other, _, store = two_nodes
    url = f"{owner.base}/internal/relay/gate"
    secret = redis.Redis.from_url(store.url).get("gw:secret").decode()  # no server.secret: made once, shared
    foreign = URLSafeTimedSerializer("another centre's secret", salt=SALT).dumps({"n": "b"})
    user = owner.token("admin")  # a user's token, signed with the same secret: refused
    for headers, status in [({}, 401), (auth("nonsense"), 401), (auth(foreign), 401), (auth(user), 403)]:
        async with http.get(url, headers=headers) as r:
            assert r.status == status, (headers, await r.text())
            assert (await r.json())["error"] == {401: "unauthorized", 403: "forbidden"}[status]
    node = auth(NodeTokens(secret).issue("tester"))
    async with http.get(f"{owner.base}/internal/relay/nope", headers=node) as r:
        assert r.status == 404
    async with http.get(f"{other.base}/internal/relay/gate", headers=node) as r:
        assert r.status == 409
        body = await r.json()
        assert body["error"] == "not_owner" and body["owner"] == owner.config["cluster"]["node"]
    # The owner serves the framing: a hello, then the camera's packets (a key frame first).
    async with http.get(url, headers=node, timeout=aiohttp.ClientTimeout(total=20)) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/x-gridwatch-relay"
        kinds, keyframes, dts = [], 0, []
        while len(dts) < 10:
            kind, flags, _, d, payload = await read_frame(r.content)
            kinds.append(kind)
            if kind == VIDEO:
                keyframes += flags & 1
                dts.append(d)
                assert payload[:4] == b"\x00\x00\x00\x01"  # Annex-B
            else:
                assert kind in (HELLO, KEEPALIVE, AUDIO), kind
        assert next(k for k in kinds if k != KEEPALIVE) == HELLO
        assert keyframes >= 1 and dts == sorted(dts)
        # A node that shuts down ends the relays it serves (the last test of this cluster).
        seconds = await asyncio.to_thread(owner.terminate)
        assert seconds < 5
        while (got := await read_frame(r.content))[0] != END:
            pass
        assert got[4] == b"owner node shutting down"


def drone(node: GridwatchServer, stream: str, token: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
         "-t", "120", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15",
         "-pix_fmt", "yuv420p", "-f", "flv", f"rtmp://127.0.0.1:{node.rtmp_port}/live/{stream}?token={token}"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.timeout(300)
async def test_a_drone_publishing_rtmp_to_node_a_is_watched_over_whep_on_node_c(tmp_path, users, http):
    store = RedisServer(tmp_path / "redis").start()
    nodes = cluster(tmp_path, users, store, "abc")
    a, b, c = nodes
    r = redis.Redis.from_url(store.url)
    publisher = viewer = None
    try:
        for node in nodes:
            node.start()
        await settled(nodes)
        token = c.token("dispatcher")
        with pytest.raises(RuntimeError, match="WHEP 404"):  # published nowhere yet: as on one node
            await view(http, c.base, "drone-1", token)
        publisher = drone(a, "drone-1", a.token("admin"))
        await wait_for("drone-1 registered as published on a", lambda: r.hget("gw:streams:pushed", "drone-1") == b"a",
                       20)  # fmt: skip
        viewer = await view(http, c.base, "drone-1", token)
        assert await viewer.wait_frames(20, timeout=20.0), c.logs()[-3000:]
        _, frame = viewer.frames[-1]
        assert (frame.width, frame.height) == (320, 240)
        assert metric(c, "gridwatch_relays") == 1 and metric(a, "gridwatch_relays_served") == 1
        assert metric(b, "gridwatch_relays") == 0

        # Every node's wall lists the drone, as the node it is published to sees it.
        def listed(node: GridwatchServer) -> list[dict]:
            req = urllib.request.Request(node.base + "/api/streams", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
                return json.load(resp)["streams"]

        for node in (a, b, c):
            await wait_for(f"drone-1 listed online on {node.base}",
                           lambda node=node: [(s["id"], s["via"], s["online"]) for s in listed(node)]
                           == [("drone-1", "rtmp", True)], 10, lambda: f"{listed(a)} {listed(b)} {listed(c)}")  # fmt: skip
        stop(publisher, timeout=5)  # the drone lands
        await wait_for("c's stream offline", lambda: metric(c, 'gridwatch_stream_online{stream="drone-1"}') == 0, 15)
        assert r.hget("gw:streams:pushed", "drone-1") is None
        seen = viewer.count
        await asyncio.sleep(1.5)
        assert viewer.count - seen <= 3  # what was on its way, then nothing
        assert metric(c, "gridwatch_relay_reconnects_total") >= 1
    finally:
        if viewer is not None:
            await viewer.close(http, c.base, token)
        stop(publisher, timeout=5)
        for node in nodes:
            node.stop()
        r.close()
        store.stop()
    assert [t for n in nodes for t in n.tracebacks()] == []


async def test_redirect_mode_sends_the_viewer_to_the_owner(tmp_path, users, http):
    store = RedisServer(tmp_path / "redis").start()
    nodes = cluster(tmp_path, users, store, "ab", {"viewers": "redirect"})
    viewer = None
    try:
        for node in nodes:
            node.config["cameras"] = [{"id": "yard", "source": "lavfi:testsrc2=size=320x240:rate=10"}]
            node.config["cluster"]["public_url"] = f"http://127.0.0.1:{node.port}"
            node.start()
        await settled(nodes)
        owner, other = owner_first(nodes)
        token = other.token("dispatcher")
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from gridwatch.media.webrtc import rtc_configuration

        pc = RTCPeerConnection(rtc_configuration([]))
        pc.addTransceiver("video", direction="recvonly")
        viewer = Viewer(pc, "", 0.0)
        frames = asyncio.Event()

        @pc.on("track")
        def _track(track) -> None:
            async def consume() -> None:
                while True:
                    await track.recv()
                    viewer.count += 1
                    if viewer.count >= 10:
                        frames.set()

            viewer.task = asyncio.ensure_future(consume())

        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Content-Type": "application/sdp", **auth(token)}
        async with http.post(other.base + "/whep/yard", data=pc.localDescription.sdp, headers=headers,
                             allow_redirects=False) as resp:  # fmt: skip
            assert resp.status == 307, await resp.text()
            location = resp.headers["Location"]
        assert location == owner.base + "/whep/yard"
        # The client sends its offer again where it was sent (its token holds on every node).
        async with http.post(location, data=pc.localDescription.sdp, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
            answer, viewer.location = await resp.text(), resp.headers["Location"]
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        async with asyncio.timeout(20):
            await frames.wait()
        assert metric(other, "gridwatch_whep_redirects_total") == 1
        assert metric(other, "gridwatch_relays") == 0
        assert 'gridwatch_stream_online{stream="yard"}' not in other.metrics()  # no stream made there
    finally:
        if viewer is not None:
            await viewer.close(http, owner.base, token)
        for node in nodes:
            node.stop()
        store.stop()
    assert [t for n in nodes for t in n.tracebacks()] == []


@pytest.mark.timeout(300)
async def test_a_recorded_drone_that_reconnects_through_another_node_is_recorded_there(tmp_path, users):
    store = RedisServer(tmp_path / "redis").start()
    nodes = cluster(tmp_path, users, store, "ab")
    for node in nodes:
        node.config["media"] = {"lease_s": 3}
        node.config["recordings"] = {"streams": {"drone-*": {"mode": "continuous"}}, "min_free_mb": 0,
                                     "segment_s": 2}  # fmt: skip
    a, b = nodes
    r = redis.Redis.from_url(store.url)
    publisher = None
    try:
        for node in nodes:
            node.start()
        await settled(nodes)
        publisher = drone(a, "drone-1", a.token("admin"))
        await wait_for("a records drone-1", lambda: r.get("gw:lease:record:drone-1") == b"a", 20)
        stop(publisher, timeout=5)  # the link drops; the drone comes back through b
        publisher = drone(b, "drone-1", b.token("admin"))
        await wait_for("published on b", lambda: r.hget("gw:streams:pushed", "drone-1") == b"b", 20)
        # a lets its copy go (and the lease with it); b records from then on.
        await wait_for("b records drone-1", lambda: r.get("gw:lease:record:drone-1") == b"b", 15)
        await wait_for("a holds no drone-1 stream", lambda: metric(a, 'gridwatch_stream_online{stream="drone-1"}') == 0
                       and 'gridwatch_stream_packets_total{stream="drone-1"}' not in a.metrics(), 10)  # fmt: skip
        written_on_b = lambda: [s for s in r.hvals("gw:rec:cam:drone-1:meta") if b'"node": "b"' in s]  # noqa: E731
        await wait_for("a segment of drone-1 written by b", written_on_b, 15)
    finally:
        stop(publisher, timeout=5)
        for node in nodes:
            node.stop()
        r.close()
        store.stop()
    assert [t for n in nodes for t in n.tracebacks()] == []
