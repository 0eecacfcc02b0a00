"""WebRTC on one UDP port (webrtc.udp_port): every viewer and publisher of a node shares
one socket, and packets find their session by ICE ufrag, then by sender address."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import subprocess
import time

import psutil
import pytest
import yaml
from aioice import stun

from support.procs import GRIDWATCH
from support.whep_client import view
from support.whip_client import publish, use_long_gop

use_long_gop()

CAMERA = "testsrc:320x240@25:400"


def udp_sockets(pid: int) -> set[tuple[str, int]]:
    """Every UDP socket the process holds open, as (address, port)."""
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections(kind="udp")}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def candidate_ports(sdp: str) -> set[int]:
    return {
        int(m) for m in re.findall(r"^a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ host", sdp, re.M)
    }


def ufrag(sdp: str) -> str:
    return re.search(r"^a=ice-ufrag:(\S+)", sdp, re.M).group(1)


def one_port_node(gridwatch_factory, port: int, cameras: list[dict]):
    return gridwatch_factory({
        "webrtc": {"ice_servers": [], "host_addresses": ["127.0.0.1"], "udp_port": port},
        "cameras": cameras,
    })  # fmt: skip


def mux_metric(gw, name: str) -> float:
    return gw.metrics()[f"gridwatch_ice_mux_{name}"]


async def wait_mux_metric(gw, name: str, value: float, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while mux_metric(gw, name) != value:
        assert time.monotonic() < deadline, f"{name} is {mux_metric(gw, name)}, not {value}"
        await asyncio.sleep(0.1)


async def test_viewers_and_a_publisher_share_the_one_udp_port(
    rtsp_factory, gridwatch_factory, http
):
    rtsp = rtsp_factory({"/cam": CAMERA})
    port = free_udp_port()
    gw = one_port_node(gridwatch_factory, port, [{"id": "gate", "source": rtsp.url("/cam")}])
    # The node holds the port from the start, and no other UDP socket (RTSP is over TCP).
    assert udp_sockets(gw.proc.pid) == {("127.0.0.1", port)}
    token, pub_token = gw.token("viewer"), gw.token("admin")
    camera_viewer = await view(http, gw.base, "gate", token)
    pc, _ = await publish(http, gw.base, "drone-1", pub_token)
    drone_viewer = None
    try:
        drone_viewer = await view(http, gw.base, "drone-1", token)
        assert await camera_viewer.wait_frames(25, timeout=10.0), (
            "the camera's viewer got no frames"
        )
        assert await drone_viewer.wait_frames(25, timeout=10.0), (
            "the WHIP stream's viewer got no frames"
        )
        # Every answer offers the one port, and media flows through nothing else.
        for sdp in (camera_viewer.pc.remoteDescription.sdp, drone_viewer.pc.remoteDescription.sdp,
                    pc.remoteDescription.sdp):  # fmt: skip
            assert candidate_ports(sdp) == {port}
        assert udp_sockets(gw.proc.pid) == {("127.0.0.1", port)}
        m = gw.metrics()
        assert m["gridwatch_ice_mux_sessions"] == 3
        assert m["gridwatch_ice_mux_packets_total"] > 0
    finally:
        for v in (camera_viewer, drone_viewer):
            if v is not None:
                await v.close(http, gw.base, token)
        await pc.close()
    await wait_mux_metric(gw, "sessions", 0)
    assert udp_sockets(gw.proc.pid) == {("127.0.0.1", port)}


async def test_sessions_are_told_apart_and_strangers_dropped(rtsp_factory, gridwatch_factory, http):
    rtsp = rtsp_factory({"/cam": CAMERA})
    port = free_udp_port()
    gw = one_port_node(gridwatch_factory, port, [{"id": "gate", "source": rtsp.url("/cam")}])
    token = gw.token("viewer")
    first = await view(http, gw.base, "gate", token)
    second = await view(http, gw.base, "gate", token)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    stranger.settimeout(5)
    try:
        assert await first.wait_frames(25, timeout=10.0)
        assert await second.wait_frames(25, timeout=10.0)
        assert mux_metric(gw, "sessions") == 2
        live_ufrag = ufrag(second.pc.remoteDescription.sdp)
        assert live_ufrag != ufrag(first.pc.remoteDescription.sdp)

        # One viewer leaves; the other keeps playing.
        await first.close(http, gw.base, token)
        await wait_mux_metric(gw, "sessions", 1)
        assert await second.wait_frames(second.count + 25, timeout=5.0)

        # Garbage and a check for a ufrag nobody has are dropped and counted.
        dropped = mux_metric(gw, "dropped_total")
        stranger.sendto(b"\x17\xfe\xfd garbage " * 10, ("127.0.0.1", port))
        unknown = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        unknown.attributes["USERNAME"] = "nosuch00:abcd"
        unknown.add_message_integrity(b"x" * 22)
        stranger.sendto(bytes(unknown), ("127.0.0.1", port))
        # An empty datagram, and a check whose PRIORITY is 2 bytes long, not 4.
        stranger.sendto(b"", ("127.0.0.1", port))
        priority = struct.pack("!HH", 0x0024, 2) + b"\x00\x01\x00\x00"
        stranger.sendto(struct.pack("!HHI", 0x0001, len(priority), stun.COOKIE) + bytes(12) + priority,
                        ("127.0.0.1", port))  # fmt: skip
        await wait_mux_metric(gw, "dropped_total", dropped + 4)
        assert not gw.tracebacks()

        # A check with a live session's ufrag but not its password goes to that session,
        # which refuses it (401), and teaches the node nothing: the stranger's next
        # datagram is still dropped.
        forged = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        forged.attributes["USERNAME"] = f"{live_ufrag}:abcd"
        forged.add_message_integrity(b"x" * 22)
        stranger.sendto(bytes(forged), ("127.0.0.1", port))
        answer = stun.parse_message(await asyncio.to_thread(stranger.recv, 2048))
        assert answer.transaction_id == forged.transaction_id
        assert answer.message_class == stun.Class.ERROR and answer.error_code == 401
        stranger.sendto(b"\x80" + b"\x00" * 40, ("127.0.0.1", port))  # an RTP-looking packet
        await wait_mux_metric(gw, "dropped_total", dropped + 5)
        assert await second.wait_frames(second.count + 25, timeout=5.0)
    finally:
        stranger.close()
        await second.close(http, gw.base, token)


def test_udp_port_is_checked_and_a_taken_port_stops_the_node(tmp_path, gridwatch_factory):
    cfg = tmp_path / "bad.yaml"
    for value in (0, 70000, "x"):
        cfg.write_text(yaml.safe_dump({"webrtc": {"udp_port": value}}))
        r = subprocess.run(
            [GRIDWATCH, "check-config", str(cfg)], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 1 and "webrtc.udp_port" in r.stdout, r.stdout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"cannot bind UDP 127.0.0.1 port {port}"):
            one_port_node(gridwatch_factory, port, [])


async def test_an_announced_address_is_offered_on_the_port_beside_the_bound_one(
    rtsp_factory, gridwatch_factory, http, tmp_path
):
    # 127.0.0.3 stands for a container host's or 1:1 NAT's address (loopback: the viewer's
    # checks to it go nowhere outside the machine); the viewer plays through 127.0.0.1.
    rtsp = rtsp_factory({"/cam": CAMERA})
    port = free_udp_port()
    gw = gridwatch_factory({
        "webrtc": {"ice_servers": [], "host_addresses": ["127.0.0.1"], "udp_port": port,
                   "announce_addresses": ["127.0.0.3"]},
        "cameras": [{"id": "gate", "source": rtsp.url("/cam")}],
    })  # fmt: skip
    token = gw.token("viewer")
    viewer = await view(http, gw.base, "gate", token)
    try:
        assert await viewer.wait_frames(25, timeout=10.0)
        hosts = set(re.findall(rf"^a=candidate:\S+ \d+ udp \d+ (\S+) {port} typ host", viewer.pc.remoteDescription.sdp, re.M))
        assert hosts == {"127.0.0.1", "127.0.0.3"}
        assert udp_sockets(gw.proc.pid) == {("127.0.0.1", port)}  # announced, not bound
    finally:
        await viewer.close(http, gw.base, token)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"webrtc": {"announce_addresses": ["10.0.0.5"]}}))
    out = subprocess.run([GRIDWATCH, "check-config", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "announce_addresses: needs udp_port" in out.stdout + out.stderr
