"""ICE over TCP (RFC 6544, webrtc.tcp_port): a browser whose UDP goes nowhere watches a
camera and publishes its camera through the node's one TCP port; connections that name
no session, and peers that stop reading, cost the node nothing lasting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import struct
import subprocess

import psutil
import pytest
import yaml
from aioice import Connection, stun
from aioice.ice import StunProtocol

from gridwatch.media import ice_tcp
from gridwatch.media.ice_tcp import TcpListener, TcpStats
from support.browser import MEDIA_MS
from support.procs import GRIDWATCH
from support.waits import wait_for
from support.whep_client import view

CAMERA = "testsrc:320x240@25:400"

# The page's side of WHEP/WHIP with every UDP candidate struck from both descriptions:
# what a browser behind a firewall that drops UDP is left with. Chromium's own TCP
# candidates are active ones (port 9, never signalled): it connects to ours.
NEGOTIATE = """async ({url, token, publish}) => {
  const noUdp = sdp => sdp.split('\\r\\n').filter(l => !/^a=candidate:\\S+ \\d+ udp /i.test(l)).join('\\r\\n');
  const pc = new RTCPeerConnection();
  if (publish) {
    const media = await navigator.mediaDevices.getUserMedia({video: {width: 320, height: 240}});
    pc.addTransceiver(media.getVideoTracks()[0], {direction: 'sendonly'});
  } else {
    pc.addTransceiver('video', {direction: 'recvonly'});
    const video = document.createElement('video');
    video.muted = true; video.autoplay = true; video.playsInline = true;
    document.body.appendChild(video);
    pc.ontrack = e => { video.srcObject = new MediaStream([e.track]); };
  }
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(done => {
    if (pc.iceGatheringState === 'complete') return done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && done();
  });
  const r = await fetch(url, {method: 'POST', body: noUdp(pc.localDescription.sdp),
    headers: {'Content-Type': 'application/sdp', Authorization: 'Bearer ' + token}});
  const answer = await r.text();
  if (!r.ok) throw new Error(r.status + ' ' + answer);
  await pc.setRemoteDescription({type: 'answer', sdp: noUdp(answer)});
  window.pcs = [...(window.pcs || []), pc];
  return answer;
}"""

# What the page's connections carry: frames decoded or sent, and the transport of the
# candidate pair in use (local candidate's protocol).
STATS = """async () => {
  const out = [];
  for (const pc of window.pcs || []) {
    const s = {frames: 0, protocols: []};
    const stats = await pc.getStats();
    stats.forEach(r => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') s.frames = r.framesDecoded || 0;
      if (r.type === 'outbound-rtp' && r.kind === 'video') s.frames = r.framesEncoded || 0;
      if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded')
        s.protocols.push(stats.get(r.localCandidateId).protocol);
    });
    out.push(s);
  }
  return out;
}"""


def free_port_both() -> int:
    """A port number free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                with contextlib.suppress(OSError):
                    u.bind(("127.0.0.1", port))
                    return port


def established(pid: int, port: int) -> int:
    """TCP connections the process holds established on its local `port`."""
    return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp")
               if c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED)  # fmt: skip


@pytest.mark.timeout(300)
async def test_a_browser_without_udp_watches_and_publishes_over_the_tcp_port(
    rtsp_factory, gridwatch_factory, browser, http
):
    rtsp = rtsp_factory({"/cam": CAMERA})
    port = free_port_both()
    gw = gridwatch_factory({
        "webrtc": {"ice_servers": [], "host_addresses": ["127.0.0.1"], "udp_port": port, "tcp_port": port},
        "cameras": [{"id": "gate", "source": rtsp.url("/cam")}],
    })  # fmt: skip
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(gw.proc.pid).net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN}  # fmt: skip
    assert ("127.0.0.1", port) in listening
    page = await browser.new_page()
    await page.goto(gw.base + "/healthz")  # the node's origin, for fetch
    answer = await page.evaluate(NEGOTIATE, {"url": gw.base + "/whep/gate", "token": gw.token("viewer"),
                                             "publish": False})  # fmt: skip
    assert re.search(rf"^a=candidate:\S+ 1 tcp \d+ 127\.0\.0\.1 {port} typ host tcptype passive", answer, re.M), answer

    async def flowing(n: int) -> list[dict] | None:
        stats = await page.evaluate(STATS)
        return stats if len(stats) == n and all(s["frames"] >= 25 for s in stats) else None

    async def wait_flowing(n: int) -> list[dict]:
        deadline = asyncio.get_running_loop().time() + MEDIA_MS / 1000
        while not (stats := await flowing(n)):
            assert asyncio.get_running_loop().time() < deadline, await page.evaluate(STATS)
            await asyncio.sleep(0.2)
        return stats

    watched = await wait_flowing(1)
    assert watched[0]["protocols"] == ["tcp"], watched
    # Chromium may open a connection per pair it checks: each is bound to the session.
    def bound_and_open() -> int:
        n = established(gw.proc.pid, port)
        return n if n >= 1 and gw.metrics()["gridwatch_ice_tcp_connections"] == n else 0

    viewing = await wait_for("every ICE-TCP connection bound to a session", bound_and_open, 30)
    metrics = gw.metrics()
    assert metrics["gridwatch_ice_tcp_packets_total"] > 0 and metrics["gridwatch_ice_tcp_sent_total"] > 25
    assert metrics["gridwatch_ice_mux_packets_total"] == 0  # nothing came over UDP

    # The page's camera published through the same port; a viewer over UDP sees it.
    await page.evaluate(NEGOTIATE, {"url": gw.base + "/whip/drone-1", "token": gw.token("admin"),
                                    "publish": True})  # fmt: skip
    both = await wait_flowing(2)
    assert [s["protocols"] for s in both] == [["tcp"], ["tcp"]], both
    await wait_for("the publisher's ICE-TCP connection", lambda: bound_and_open() > viewing, 30)
    token = gw.token("viewer")
    viewer = await view(http, gw.base, "drone-1", token)
    try:
        assert await viewer.wait_frames(10, timeout=MEDIA_MS / 1000), "no frames of the page's camera"
    finally:
        await viewer.close(http, gw.base, token)
    assert gw.metrics()["gridwatch_ice_mux_packets_total"] > 0  # that viewer's, over UDP
    assert not gw.tracebacks()

    # The page hangs up: its connections close with its sessions (the page stays, for
    # the screenshot of what it played).
    await browser.screenshots("test_ice_tcp-playing")
    await page.evaluate("() => window.pcs.forEach(pc => pc.close())")
    await wait_for("the ICE-TCP connections closed", lambda: established(gw.proc.pid, port) == 0, 60)
    await wait_for("no ICE-TCP connection counted", lambda: gw.metrics()["gridwatch_ice_tcp_connections"] == 0, 60)
    await wait_for("every ICE session closed", lambda: gw.metrics()["gridwatch_ice_mux_sessions"] == 0, 60)


# The listener itself, in this process: a real aioice Connection as the session, real sockets.


def framed(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def binding_request(username: str, password: str) -> bytes:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = username
    request.attributes["PRIORITY"] = 1
    request.attributes["ICE-CONTROLLING"] = 1
    request.add_message_integrity(password.encode())
    request.add_fingerprint()
    return bytes(request)


@contextlib.asynccontextmanager
async def listening():
    """A listener on a free loopback port carrying one aioice session: (listener, port,
    the session's connection)."""
    listener = TcpListener(TcpStats(), auth_timeout_s=0.5)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await listener.listen("127.0.0.1", port)
    connection = Connection(ice_controlling=False)
    protocol = StunProtocol(connection)
    session = listener.attach(protocol, connection.local_username)
    try:
        yield listener, port, connection, session
    finally:
        session.close()
        listener.close()
        await connection.close()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes the connection (EOF or reset) within 5 s."""
    try:
        return await asyncio.wait_for(reader.read(65536), 5) == b""
    except ConnectionResetError:
        return True


def truncated_check() -> bytes:
    """A binding request whose PRIORITY attribute is 2 bytes long, not 4."""
    attribute = struct.pack("!HH", 0x0024, 2) + b"\x00\x01\x00\x00"
    return struct.pack("!HHI", 0x0001, len(attribute), stun.COOKIE) + os.urandom(12) + attribute


def not_a_check(username: str, password: str) -> bytes:
    """A request other than a binding one (a TURN Allocate), rightly signed."""
    request = stun.Message(message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = username
    request.add_message_integrity(password.encode())
    return bytes(request)


async def read_frame(reader: asyncio.StreamReader) -> stun.Message:
    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 5), "big")
    return stun.parse_message(await reader.readexactly(size))


async def test_connections_that_name_no_session_are_closed_and_counted():
    async with listening() as (listener, port, connection, _):
        good_user, password = f"{connection.local_username}:peer", connection.local_password
        firsts = {
            "not STUN": framed(b"\x16\xfe\xfd" + bytes(40)),  # a DTLS record first
            "a truncated attribute": framed(truncated_check()),
            "an unknown ufrag": framed(binding_request("nosuchufrag:peer", password)),
            "a wrong password": framed(binding_request(good_user, "not-the-password-at-all")),
            "not a binding request": framed(not_a_check(good_user, password)),
        }
        for n, (what, first) in enumerate(firsts.items(), 1):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(first)
            assert await closed_by_server(reader), what
            writer.close()
            assert listener.stats.refused == n, what
        # One that says nothing is closed after the listener's auth_timeout_s.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader)
        writer.close()
        assert listener.stats.refused == len(firsts) + 1 and listener.stats.frames == 0
        assert not listener.pending and listener.connections() == 0

        # The right ufrag and password, a byte at a time, then two checks in one write:
        # each answered on the connection, which stays open.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for byte in framed(binding_request(good_user, password)):
            writer.write(bytes([byte]))
            await writer.drain()
        assert (await read_frame(reader)).message_class == stun.Class.RESPONSE
        writer.write(framed(binding_request(good_user, password)) * 2 + framed(b""))
        assert (await read_frame(reader)).message_class == stun.Class.RESPONSE
        assert (await read_frame(reader)).message_class == stun.Class.RESPONSE
        assert listener.connections() == 1 and listener.stats.frames == 3  # the empty one not passed on

        # A session has at most MAX_PER_SESSION connections.
        more = []
        for _ in range(ice_tcp.MAX_PER_SESSION - 1):
            more.append(await asyncio.open_connection("127.0.0.1", port))
            more[-1][1].write(framed(binding_request(good_user, password)))
            await read_frame(more[-1][0])
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port)
        extra_writer.write(framed(binding_request(good_user, password)))
        assert await closed_by_server(extra_reader)
        assert listener.connections() == ice_tcp.MAX_PER_SESSION
        for _, w in [*more, (reader, writer), (extra_reader, extra_writer)]:
            w.close()
        await wait_for("the closed connections forgotten", lambda: listener.connections() == 0, 5)


def server_sockets(port: int) -> int:
    """This process's connected sockets on local `port` (the listener's side)."""
    return sum(1 for c in psutil.Process().net_connections(kind="tcp")
               if c.laddr.port == port and c.status != psutil.CONN_LISTEN)  # fmt: skip


async def test_a_peer_that_stops_reading_gets_media_dropped_not_buffered():
    async with listening() as (listener, port, connection, session):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(framed(binding_request(f"{connection.local_username}:peer", connection.local_password)))
        await wait_for("the connection bound", lambda: listener.connections() == 1, 5)
        ((peer, bound),) = session.connections.items()
        packet = b"\x80" + bytes(1199)  # an RTP packet's first byte
        for _ in range(20_000):  # 24 MB towards a peer that reads none of it
            session.sendto(packet, peer)
        assert bound.transport.get_write_buffer_size() <= ice_tcp.WRITE_BUFFER_BYTES + len(packet) + 2
        assert listener.stats.send_dropped > 15_000
        # STUN (consent checks) still goes past the media's limit.
        sent = listener.stats.sent
        session.sendto(binding_request("peer:x", "y"), peer)
        assert listener.stats.sent == sent + 1
        # The session ends: its connection is gone at once, queue or not.
        session.close()
        await wait_for("the stalled connection closed", lambda: server_sockets(port) == 0, 2)
        sock.close()


def test_tcp_port_needs_the_udp_port_and_a_taken_one_stops_the_node(tmp_path, gridwatch_factory):
    bad = tmp_path / "bad.yaml"
    for webrtc, says in (({"tcp_port": 8555}, "tcp_port: needs udp_port"),
                         ({"udp_port": 8555, "tcp_port": 70000}, "webrtc.tcp_port")):  # fmt: skip
        bad.write_text(yaml.safe_dump({"webrtc": webrtc}))
        out = subprocess.run([GRIDWATCH, "check-config", str(bad)], capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and says in out.stdout + out.stderr, out.stdout
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"cannot listen on TCP 127.0.0.1 port {port}"):
            gridwatch_factory({"webrtc": {"ice_servers": [], "host_addresses": ["127.0.0.1"],
                                          "udp_port": free_port_both(), "tcp_port": port}})  # fmt: skip
