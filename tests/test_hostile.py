"""Hostile input, hostile clients and hostile admins against a real server: no 500, no
stall, no file read. One test per finding of the hostile review (issue 13)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import time

import aiohttp
import pytest
import redis as sync_redis
from aiortc import RTCPeerConnection
from test_dispatch_deadlines import connect

from support.procs import GRIDWATCH, PASSWORDS, RedisServer, free_port

INCIDENT = {"lat": 31.2600, "lon": 120.9200}


def auth(gw, user: str) -> dict:
    return {"Authorization": f"Bearer {gw.token(user)}"}


async def status_of(http, method: str, url: str, **kw) -> tuple[int, dict]:
    async with http.request(method, url, **kw) as r:
        body = await r.json() if r.content_type == "application/json" else {}
        return r.status, body


async def test_a_camera_url_from_the_api_cannot_read_files_or_reach_the_node(gridwatch_factory, http):
    gw = gridwatch_factory()
    h = auth(gw, "admin")
    cases = {
        "lavfi:movie=/etc/shadow:f=tty": "lavfi",
        "lavfi:movie='http\\://127.0.0.1\\:8080/metrics':f=tty": "lavfi",
        "file:/etc/passwd": "file",
        "clock:640x368@25": "clock",
    }
    for source, scheme in cases.items():
        status, body = await status_of(http, "POST", gw.base + "/api/cameras", json={"id": "x", "source": source}, headers=h)
        # Refused for its scheme, or sooner for a graph that opens files or a character no
        # URL has (from anywhere).
        assert status == 400 and body["message"].startswith("source:"), (source, body)
        assert f"{scheme}: sources come from the config file only" in body["message"] or \
            (scheme == "lavfi" and ("lavfi: " in body["message"] or "percent-encoded" in body["message"])), body  # fmt: skip
    for host in ("127.0.0.1", "localhost", "169.254.169.254", "[::1]", "0.0.0.0"):
        source = f"rtsp://user:pw@{host}:554/stream"
        status, body = await status_of(http, "POST", gw.base + "/api/cameras", json={"id": "x", "source": source}, headers=h)
        assert status == 400 and "media.deny_hosts" in body["message"], (host, body)
        assert "pw" not in body["message"]
    # The detector's sub-stream is checked as well, and on PUT too.
    cam = {"id": "y", "source": "rtsp://192.0.2.10/s", "detect_source": "rtsp://127.0.0.1/sub"}
    status, body = await status_of(http, "PUT", gw.base + "/api/cameras/y", json=cam, headers=h)
    assert status == 400 and body["message"].startswith("detect_source:")


async def test_filter_graphs_that_open_files_are_refused_even_where_lavfi_is_allowed(gridwatch_factory, http, tmp_path):
    gw = gridwatch_factory({"media": {"api_sources": ["lavfi"]}})
    for graph, name in (("movie=/etc/shadow:f=tty", "'movie'"), ("testsrc,drawtext=textfile=/etc/passwd", "'drawtext'"),
                        ("amovie=/etc/hosts", "'amovie'")):  # fmt: skip
        status, body = await status_of(http, "POST", gw.base + "/api/cameras",
                                       json={"id": "x", "source": f"lavfi:{graph}"}, headers=auth(gw, "admin"))  # fmt: skip
        assert status == 400 and f"filter {name} is not allowed" in body["message"], body
    config = tmp_path / "c.yaml"
    config.write_text('cameras: [{id: a, source: "lavfi:movie=/etc/shadow"}]\n')
    r = subprocess.run([GRIDWATCH, "check-config", str(config)], capture_output=True, text=True)
    assert r.returncode != 0 and "filter 'movie' is not allowed" in r.stdout + r.stderr


async def test_numbers_that_poison_are_refused_and_a_bad_record_is_skipped(gridwatch_factory, http, tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    try:
        gw = gridwatch_factory({"redis": {"url": redis.url}})
        h = auth(gw, "dispatcher") | {"Content-Type": "application/json"}
        base = '{"category": "illegal_parking", "location": {"lat": 31.26, "lon": 120.92}, "camera": "c", '
        for box in ("[1e999, 0, 10, 10]", "[NaN, 0, 10, 10]", "[Infinity, 0, 1, 1]", "[" + "9" * 400 + ", 0, 1, 1]",
                    "[1e300, 0, 1, 1]"):  # fmt: skip
            raw = base + '"detection": {"zone": "z", "kind": "no_parking", "box": ' + box + "}}"
            status, body = await status_of(http, "POST", gw.base + "/api/tickets", data=raw, headers=h)
            assert status == 400, (box, body)
        good = base + '"detection": {"zone": "z", "kind": "no_parking", "box": [1, 2, 30, 40]}}'
        status, ticket = await status_of(http, "POST", gw.base + "/api/tickets", data=good, headers=h)
        assert status == 201
        # A record no reader takes (an older version, a hand edit): skipped and logged.
        r = sync_redis.Redis.from_url(redis.url)
        r.hset("gw:ticket:T-000999", mapping={"data": '{"id": "T-000999", "box": null', "state": "new", "version": 1})
        r.zadd("gw:tickets:new", {"T-000999": time.time()})
        for path in ("/api/tickets", "/api/stats", "/api/tickets?state=new"):
            status, body = await status_of(http, "GET", gw.base + path, headers=h)
            assert status == 200, (path, body)
        status, body = await status_of(http, "GET", gw.base + "/api/tickets", headers=h)
        assert [t["id"] for t in body["tickets"]] == [ticket["id"]]
        assert (await status_of(http, "GET", gw.base + "/api/tickets/T-000999", headers=h))[0] == 404
        assert '"what": "ticket", "key": "T-000999"' in gw.logs()
        # Ids that would land on another kind of Redis key.
        for path in (f"/api/tickets/{ticket['id']}:log", f"/api/tickets/{ticket['id']}:log/track",
                     "/api/recordings?camera=c:meta&from=0&to=1"):  # fmt: skip
            status, _ = await status_of(http, "GET", gw.base + path, headers=h)
            assert status in (400, 404), path
    finally:
        redis.stop()


def open_silent_socket(port: int, token: str) -> socket.socket:
    """A /ws client that completes the handshake and then never reads (a small receive
    buffer, so that the server's writes back up at once)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /ws?device=silent HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
              f"Authorization: Bearer {token}\r\n\r\n".encode())  # fmt: skip
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


@pytest.mark.timeout(300)
async def test_a_client_that_stops_reading_is_dropped_and_stalls_nobody(gridwatch_factory, http):
    gw = gridwatch_factory({"dispatch": {"categories": {"illegal_parking": {"mode": "suggest"}}},
                            "server": {"ws_send_queue": 100}})  # fmt: skip
    silent = open_silent_socket(gw.port, gw.token("viewer"))
    wall = await connect(http, gw, "dispatcher")
    try:
        h = auth(gw, "dispatcher")
        sent = 1500
        for batch in range(sent // 50):
            await asyncio.gather(*(
                status_of(http, "POST", gw.base + "/api/tickets", headers=h,
                          json={"category": "illegal_parking", "location": INCIDENT, "description": "x" * 600,
                                "key": f"k{batch}-{i}"})
                for i in range(50)))  # fmt: skip
        async with asyncio.timeout(30):
            while sum(e["type"] == "ticket.created" for e in wall.events) < sent:
                await asyncio.sleep(0.1)
        assert '"msg": "slow socket dropped"' in gw.logs(), "the silent client was never dropped"
        async with asyncio.timeout(5):
            while gw.metrics().get("gridwatch_ws_dropped_total") != 1:
                await asyncio.sleep(0.1)
        # The dropped socket is closed by the server, not left hanging.
        assert await asyncio.to_thread(closed_by_server, silent), "the server kept the silent socket open"
        async with http.get(gw.base + "/healthz") as r:
            assert r.status == 200
    finally:
        silent.close()
        await wall.close()


def closed_by_server(sock: socket.socket, timeout_s: float = 15) -> bool:
    """Read what the server sent until it closes (EOF or reset); False if it stays open."""
    sock.settimeout(1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 16):
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            continue
    return False


async def test_a_session_that_never_connects_is_reaped_and_one_user_cannot_fill_the_node(gridwatch_factory, http):
    gw = gridwatch_factory({"cameras": [{"id": "gate", "source": "lavfi:testsrc2=size=320x240:rate=5"}],
                            "media": {"viewer_connect_s": 2, "viewer_sessions_per_user": 3}})  # fmt: skip
    h = auth(gw, "viewer") | {"Content-Type": "application/sdp"}
    pcs = []
    try:
        for i in range(4):
            pc = RTCPeerConnection()
            pcs.append(pc)
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            # No candidate and no end-of-candidates: ICE can never succeed.
            sdp = "\r\n".join(line for line in pc.localDescription.sdp.splitlines()
                              if not line.startswith(("a=candidate", "a=end-of-candidates"))) + "\r\n"  # fmt: skip
            status, body = await status_of(http, "POST", gw.base + "/whep/gate", data=sdp, headers=h)
            assert status == (201 if i < 3 else 429), (i, status, body)
        async with asyncio.timeout(10):
            while gw.metrics().get("gridwatch_webrtc_sessions", 1) != 0:
                await asyncio.sleep(0.2)
        assert gw.metrics()["gridwatch_webrtc_sessions_reaped_total"] == 3
        assert gw.logs().count('"msg": "viewer never connected, closed"') == 3
    finally:
        for pc in pcs:
            await pc.close()


async def test_tokens_of_a_removed_or_demoted_user_stop_at_once(gridwatch_factory, http, users):
    gw = gridwatch_factory()
    tokens = {u: gw.token(u) for u in ("officer", "dispatcher")}
    for t in tokens.values():
        assert (await status_of(http, "GET", gw.base + "/api/me", headers={"Authorization": f"Bearer {t}"}))[0] == 200
    gw.stop()  # the officer is removed, the dispatcher made a viewer; same Redis, same secret
    gw.config["users"] = [u | {"role": "viewer"} if u["username"] == "dispatcher" else u
                          for u in users if u["username"] != "officer"]  # fmt: skip
    gw.start()
    for u, t in tokens.items():
        status, body = await status_of(http, "GET", gw.base + "/api/me", headers={"Authorization": f"Bearer {t}"})
        assert status == 401, (u, body)


async def test_a_transition_and_its_deadlines_are_one_step(gridwatch_factory, http, tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    try:
        gw = gridwatch_factory({"redis": {"url": redis.url}})
        h = auth(gw, "dispatcher")
        await status_of(http, "POST", gw.base + "/api/tracks", headers=auth(gw, "officer"),
                        json={"fixes": [{**INCIDENT, "time": time.time()}]})  # fmt: skip
        r = sync_redis.Redis.from_url(redis.url)
        ids = []

        async def churn() -> None:
            for i in range(60):
                status, t = await status_of(http, "POST", gw.base + "/api/tickets", headers=h,
                                            json={"category": "illegal_parking", "location": INCIDENT, "key": f"c{i}"})  # fmt: skip
                if status in (200, 201):
                    ids.append(t["id"])
                    await status_of(http, "POST", f"{gw.base}/api/tickets/{t['id']}/actions", headers=h,
                                    json={"action": "cancel", "reason": "churn"})  # fmt: skip

        task = asyncio.create_task(churn())
        await asyncio.sleep(0.5)
        redis.kill()  # mid-transition, as often as not
        redis.start()
        await task
        # Every ticket offered to an officer has its timers; every ended one has none.
        for tid in ids:
            state = r.hget(f"gw:ticket:{tid}", "state")
            timers = [m for m in r.zrange("gw:deadlines", 0, -1) if m.decode().startswith(f"{tid}:")]
            if state == b"dispatched":
                assert {m.decode().split(":", 1)[1] for m in timers} >= {"accept", "arrive", "resolve"}, tid
            elif state == b"cancelled":
                assert timers == [], tid
    finally:
        redis.stop()


async def test_a_fix_older_than_a_day_does_not_break_the_track_views(gridwatch_factory, http, tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    try:
        gw = gridwatch_factory({"redis": {"url": redis.url}})
        old = time.time() - 3 * 86400
        r = sync_redis.Redis.from_url(redis.url)
        r.xadd("gw:track:officer", {"fix": f'{{"lat": 31.26, "lon": 120.92, "time": {old}}}'}, id=f"{int(old * 1000)}-0")
        status, body = await status_of(http, "GET", f"{gw.base}/api/officers/officer/track?from={old - 10}",
                                       headers=auth(gw, "dispatcher"))  # fmt: skip
        assert status == 200 and body["properties"]["times"] == [old]
        assert (await status_of(http, "GET", gw.base + "/api/officers?tail_s=3600", headers=auth(gw, "dispatcher")))[0] == 200
    finally:
        redis.stop()


async def test_a_cross_origin_page_cannot_ride_the_session_cookie(gridwatch_factory, http):
    gw = gridwatch_factory({"server": {"origins": ["https://wall.centre.example"]}})
    async with http.post(gw.base + "/api/login", json={"username": "dispatcher", "password": PASSWORDS["dispatcher"]}) as r:
        cookie = r.cookies["gw_session"].value
    jar = {"Cookie": f"gw_session={cookie}"}
    evil = f"http://127.0.0.1:{free_port()}"
    # /ws from another origin's page (another port of the same host): refused.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(gw.base + "/ws", headers=jar | {"Origin": evil})
    assert refused.value.status == 403
    # Its own pages and a listed origin are served; a bearer token needs no origin.
    for origin in (gw.base, "https://wall.centre.example"):
        ws = await http.ws_connect(gw.base + "/ws", headers=jar | {"Origin": origin})
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        await ws.close()
    # A changing request with the cookie from another origin: refused; a read: served.
    status, body = await status_of(http, "POST", gw.base + "/api/tickets", headers=jar | {"Origin": evil},
                                   json={"category": "other", "location": INCIDENT})  # fmt: skip
    assert status == 403 and body["error"] == "cross_origin"
    assert (await status_of(http, "GET", gw.base + "/api/me", headers=jar | {"Origin": evil}))[0] == 200
    assert (await status_of(http, "POST", gw.base + "/api/tickets", headers=auth(gw, "dispatcher") | {"Origin": evil},
                            json={"category": "other", "location": INCIDENT}))[0] == 201  # fmt: skip


async def test_logins_are_throttled_without_racing_or_locking_the_user_out(gridwatch_factory, http):
    gw = gridwatch_factory()
    wrong = {"username": "officer", "password": "guess"}
    results = await asyncio.gather(*(status_of(http, "POST", gw.base + "/api/login", json=wrong) for _ in range(12)))
    codes = sorted(s for s, _ in results)
    assert codes.count(401) <= 5 and codes.count(429) >= 7, codes  # attempts at once do not slip past
    right = {"username": "officer", "password": PASSWORDS["officer"]}
    assert (await status_of(http, "POST", gw.base + "/api/login", json=right))[0] == 429  # this address, this user
    # From another address the officer signs in: the guesser locked only himself out.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as other:
        assert (await status_of(other, "POST", gw.base + "/api/login", json=right))[0] == 200
    # Random usernames are no way around the limit per address.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))) as spray:
        codes = [(await status_of(spray, "POST", gw.base + "/api/login", json={"username": f"u{i}", "password": "x"}))[0]
                 for i in range(55)]  # fmt: skip
    assert codes[:50] == [401] * 50 and set(codes[50:]) == {429}


async def test_secrets_headers_and_metrics(gridwatch_factory, http):
    turn = {"urls": ["turn:192.0.2.1:3478"]}
    gw = gridwatch_factory({
        "webrtc": {"ice_servers": [turn], "turn_secret": "s3cret-turn-key-0123", "host_addresses": ["127.0.0.1"]},
        "server": {"tls_proxy": True, "metrics_token": "m3trics-token-0123456"},
        "cameras": [{"id": "q", "source": "rtsp://192.0.2.9/s?user=admin&password=Hunter2x"}],
    })  # fmt: skip
    # Short-lived TURN credentials of one's own, never the static secret.
    hellos = {}
    for user in ("officer", "viewer"):
        ws = await http.ws_connect(gw.base + "/ws", headers=auth(gw, user))
        hellos[user] = (await ws.receive_json(timeout=5))["ice_servers"][0]
        await ws.close()
    for user, server in hellos.items():
        expiry, name = server["username"].split(":")
        assert name == user and 0 < int(expiry) - time.time() <= 3600
    assert hellos["officer"]["credential"] != hellos["viewer"]["credential"]
    assert "s3cret-turn-key-0123" not in str(hellos)
    # A password in a camera URL's query is neither shown nor logged.
    _, cams = await status_of(http, "GET", gw.base + "/api/cameras", headers=auth(gw, "admin"))
    assert cams["cameras"][0]["source"] == "rtsp://192.0.2.9/s?user=admin&password=***"
    assert "Hunter2x" not in gw.logs()
    # Behind a TLS proxy the cookie is Secure; the pages carry a policy and refuse frames.
    async with http.post(gw.base + "/api/login", json={"username": "viewer", "password": PASSWORDS["viewer"]}) as r:
        assert "Secure" in r.headers["Set-Cookie"]
    async with http.get(gw.base + "/") as r:
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
    async with http.get(gw.base + "/metrics") as r:
        assert r.status == 401
    async with http.get(gw.base + "/metrics", headers={"Authorization": "Bearer m3trics-token-0123456"}) as r:
        assert r.status == 200


async def test_a_turn_server_that_does_not_answer_does_not_slow_the_answers(gridwatch_factory, http):
    gw = gridwatch_factory({"webrtc": {"ice_servers": [{"urls": "turn:192.0.2.1:3478", "username": "u", "credential": "c"}],
                                       "host_addresses": ["127.0.0.1"]},
                            "cameras": [{"id": "gate", "source": "lavfi:testsrc2=size=320x240:rate=5"}]})  # fmt: skip
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        t0 = time.monotonic()
        status, _ = await status_of(http, "POST", gw.base + "/whep/gate", data=pc.localDescription.sdp,
                                    headers=auth(gw, "viewer") | {"Content-Type": "application/sdp"})  # fmt: skip
        assert status == 201 and time.monotonic() - t0 < 2
    finally:
        await pc.close()


async def test_malformed_bodies_and_queries_are_400s_not_500s(gridwatch_factory, http):
    gw = gridwatch_factory()
    h = auth(gw, "admin")
    bodies = [
        b"[" * 5000 + b"]" * 5000,  # nested deep
        b'{"category": "other", "location": {"lat": ' + b"1" * 5000 + b', "lon": 0}}',  # over 4,300 digits
        b'{"category": "other\\ud800", "location": {"lat": 1, "lon": 1}}',  # a lone surrogate
        b'{"category": "other", "location": {"lat": NaN, "lon": 1}}',
        b'\xff\xfe{"x": 1}',
    ]
    for raw in bodies:
        status, body = await status_of(http, "POST", gw.base + "/api/tickets", data=raw,
                                       headers=h | {"Content-Type": "application/json"})  # fmt: skip
        assert status == 400 and body["message"].startswith("malformed JSON"), (raw[:30], body)
    status, _ = await status_of(http, "POST", gw.base + "/api/tickets", data=b'{"a": 1}',
                                headers=h | {"Content-Type": "application/json; charset=klingon"})  # fmt: skip
    assert status == 400
    for path in ("/api/stats?window_s=nan", "/api/stats?window_s=inf", "/api/officers?tail_s=-inf",
                 "/api/tickets?limit=1e999", "/api/recordings?camera=gate&from=nan&to=1",
                 "/api/cameras/%00", "/api/tickets/T-000001%00"):  # fmt: skip
        status, _ = await status_of(http, "GET", gw.base + path, headers=h)
        assert 400 <= status < 500, (path, status)

    # An SDP offer sent chunked counts against the limit all the same.
    async def chunks():
        for _ in range(100):
            yield b"v=0\r\n" + b"a=x-padding:" + b"x" * 1000 + b"\r\n"

    status, body = await status_of(http, "POST", gw.base + "/whep/nothing", data=chunks(),
                                   headers=h | {"Content-Type": "application/sdp"})  # fmt: skip
    assert status == 413, body


async def test_garbage_on_the_rtmp_port_is_one_line_each_not_a_traceback(gridwatch_factory):
    gw = gridwatch_factory()
    for i in range(30):
        _, writer = await asyncio.open_connection("127.0.0.1", gw.rtmp_port)
        writer.write(os.urandom(1537 + i * 97))
        await writer.drain()
        writer.close()
    await asyncio.sleep(1)
    assert gw.tracebacks() == []
    assert gw.metrics()["gridwatch_publishers{via=\"rtmp\"}"] == 0


async def test_connections_that_never_finish_a_request_are_closed(gridwatch_factory, http):
    gw = gridwatch_factory({"server": {"header_timeout_s": 2}})
    slow = []
    for _ in range(100):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /api/me HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        slow.append((reader, writer))
    async with http.get(gw.base + "/healthz") as r:
        assert r.status == 200  # the node serves meanwhile
    async with asyncio.timeout(10):
        for reader, _ in slow:
            assert await reader.read() == b""  # closed by the server
    for _, writer in slow:
        writer.close()
    assert '"msg": "connections closed: no request within the deadline"' in gw.logs()
