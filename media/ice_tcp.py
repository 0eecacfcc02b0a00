"""ICE over TCP (RFC 6544), the passive side: viewers and publishers whose network lets no
UDP through reach the node on one TCP port (`webrtc.tcp_port`), as go2rtc and MediaMTX
offer. The node offers a `tcptype passive` host candidate per address; the peer's active
candidate connects, and STUN, DTLS and SRTP then travel over that connection, each
packet framed by a 16-bit length (RFC 4571, as RFC 6544 section 3 asks).

A connection belongs to the ICE session its first frame names: a STUN binding request
whose USERNAME starts with that session's ufrag (RFC 8445 section 7.2.2) and whose
MESSAGE-INTEGRITY checks out with its password. A connection that opens otherwise, or
says nothing within AUTH_TIMEOUT_S (5 s), is closed and counted. Once bound, every frame goes
to the session's aioice StunProtocol as if it were a datagram from the connection's peer
address, and what the protocol sends to that address goes back framed on it.

A peer that stops reading does not make the node buffer without end: past
WRITE_BUFFER_BYTES queued on its connection, media is dropped (counted), as UDP would
lose it; RTCP NACK and PLI recover the picture once it reads again.

aioice pairs our passive candidate with the peer's active ones (port 9, RFC 6544
section 4.5) too and sends checks there; having no connection to such an address, those
go nowhere and the pairs fail, while the pair of the connection the peer opened (learnt
as peer-reflexive, RFC 8445 section 7.3.1.3) succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol, TypeVar

from aioice import stun
from aioice.ice import StunProtocol

log = logging.getLogger("gridwatch.ice_tcp")

# A connection must name its session this soon after opening: a browser sends its check
# as soon as it connects; a port scanner's or a slow client's connection does not stay.
AUTH_TIMEOUT_S = 5.0
# Connections not yet bound to a session, at most, and from one host; more are closed
# at once.
MAX_PENDING = 256
MAX_PENDING_PER_HOST = 16
# Connections one session may have: a browser opens one per pair it checks (a few).
MAX_PER_SESSION = 8
# Queued towards one peer (besides the kernel's buffer) before its media is dropped:
# 0.1 s of a 20 Mbit/s stream; a peer reading as fast as the stream never gets near it.
WRITE_BUFFER_BYTES = 256 * 1024
MAX_FRAME = 0xFFFF  # the 16-bit length of RFC 4571
# Refused connections are logged at most this often (each is counted).
LOG_EVERY_S = 1.0
Address = tuple[str, int]


class Session(Protocol):
    ufrag: str
    protocol: StunProtocol


S = TypeVar("S", bound=Session)


def requested_session(message: stun.Message, sessions: dict[str, S]) -> tuple[S | None, bool]:
    """The session a STUN request is for, by the ufrag before ':' in its USERNAME, and
    whether its MESSAGE-INTEGRITY checks out with that session's password: (None, False)
    when it names none."""
    username = message.attributes.get("USERNAME")
    session = sessions.get(username.split(":")[0]) if isinstance(username, str) else None
    if session is None:
        return None, False
    password = session.protocol.receiver.local_password.encode("utf8")
    return session, message.check_message_integrity(password)


class TcpSession:
    """What one ICE session's StunProtocol sends through on a listener: the connections its
    peer opened, by the peer's address (at most MAX_PER_SESSION). Closing unregisters it
    and drops them."""

    def __init__(self, listener: TcpListener, protocol: StunProtocol, ufrag: str):
        self.listener = listener
        self.protocol = protocol
        self.ufrag = ufrag
        self.connections: dict[Address, IceTcpConnection] = {}

    def sendto(self, data: bytes, addr: Address) -> None:
        # A check towards a peer's active candidate (port 9) has no connection: the
        # passive side only answers on connections the peer opened (RFC 6544 section 7.1).
        connection = self.connections.get(addr)
        if connection is not None:
            connection.send(data)

    def close(self) -> None:
        self.listener.unregister(self)
        for connection in list(self.connections.values()):
            connection.abort()
        self.protocol.connection_lost(None)  # what aioice awaits in StunProtocol.close


class IceTcpConnection(asyncio.Protocol):
    """One accepted connection: RFC 4571 frames in and out, bound to a session by its
    first frame."""

    transport: asyncio.Transport

    def __init__(self, listener: TcpListener):
        self.listener = listener
        self.session: TcpSession | None = None
        self.peer: Address = ("", 0)
        self.buffer = bytearray()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if not peer:  # reset before it was accepted
            transport.abort()  # type: ignore[attr-defined]
            return
        self.peer = (peer[0], peer[1])
        waiting = self.listener.pending
        if len(waiting) >= MAX_PENDING or sum(c.peer[0] == self.peer[0] for c in waiting) >= MAX_PENDING_PER_HOST:
            self._refuse("too many connections waiting to name their session")
            return
        waiting.add(self)
        self._timer = asyncio.get_running_loop().call_later(self.listener.auth_timeout_s, self._silent)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 2 and not self.transport.is_closing():
            size = int.from_bytes(self.buffer[:2], "big")
            if len(self.buffer) < 2 + size:
                return
            frame = bytes(self.buffer[2 : 2 + size])
            del self.buffer[: 2 + size]
            self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        if self.session is None:
            if why := self._bind(frame):
                self._refuse(why)
                return
        assert self.session is not None
        if frame:  # an empty one would stop aiortc's DTLS reader
            self.listener.stats.frames += 1
            self.session.protocol.datagram_received(frame, self.peer)

    def _bind(self, frame: bytes) -> str | None:
        """Bind this connection to the session its first frame names; why not, if not."""
        if not frame or frame[0] > 3:  # not STUN (RFC 7983 section 7)
            return "its first packet is not a STUN check"
        try:
            message = stun.parse_message(frame)
        except Exception:  # aioice raises struct.error too, on a truncated attribute
            return "its first packet is not a STUN check"
        if message.message_method != stun.Method.BINDING or message.message_class != stun.Class.REQUEST:
            return "its first packet is not a STUN check"
        session, authentic = requested_session(message, self.listener.sessions)
        if session is None or not authentic:
            return "its first packet names no ICE session"
        if len(session.connections) >= MAX_PER_SESSION:
            return "its session has as many connections as it may"
        self._settled()
        self.session = session
        session.connections[self.peer] = self
        return None

    def send(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        # Media and DTLS past the queue's limit are dropped, as UDP would lose them; STUN
        # (consent checks and their answers, a few a second) goes on up to twice the
        # limit, so that a slow link keeps its session (RFC 7675) and recovers once it
        # drains, while a peer that reads nothing still cannot grow the queue for ever.
        stun_packet = data[0] <= 3
        queued = self.transport.get_write_buffer_size()
        if len(data) > MAX_FRAME or queued > WRITE_BUFFER_BYTES * (2 if stun_packet else 1):
            self.listener.stats.send_dropped += 1
            return
        self.transport.write(len(data).to_bytes(2, "big") + data)
        self.listener.stats.sent += 1

    def _silent(self) -> None:
        self._refuse(f"no ICE check within {self.listener.auth_timeout_s:g} s")

    def _refuse(self, why: str) -> None:
        self.listener.refused(self.peer, why)
        self.abort()

    def _settled(self) -> None:
        self.listener.pending.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort(self) -> None:
        """Close now, whatever is queued: a peer that stopped reading would otherwise hold
        the connection (and its queue) for as long as it answers the kernel's probes."""
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._settled()
        session = self.session
        if session is not None and session.connections.get(self.peer) is self:
            del session.connections[self.peer]


class TcpStats:
    """Counts of every listener of a process: frames routed to a session, packets sent,
    connections refused (naming no session, silent, or too many), packets dropped towards
    a peer that stopped reading (or too big to frame)."""

    def __init__(self) -> None:
        self.frames = 0
        self.sent = 0
        self.refused = 0
        self.send_dropped = 0


class TcpListener:
    """A listening socket on (host address, port) and the ICE sessions it carries; a
    connection must name its session within `auth_timeout_s`."""

    def __init__(self, stats: TcpStats, auth_timeout_s: float = AUTH_TIMEOUT_S):
        self.stats = stats
        self.auth_timeout_s = auth_timeout_s
        self.sessions: dict[str, TcpSession] = {}
        self.pending: set[IceTcpConnection] = set()
        self.server: asyncio.Server | None = None
        self._logged_at = -LOG_EVERY_S
        self._unlogged = 0

    async def listen(self, address: str, port: int) -> None:
        """Listen on (address, port); OSError naming them if it cannot be bound."""
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(
                lambda: IceTcpConnection(self), host=address, port=port, reuse_address=True
            )
        except OSError as e:
            raise OSError(e.errno, f"cannot listen on TCP {address} port {port}: {e.strerror}") from None

    def attach(self, protocol: StunProtocol, ufrag: str) -> TcpSession:
        """Carry `ufrag`'s ICE session; ValueError if another session has the ufrag."""
        if ufrag in self.sessions:
            raise ValueError(f"ICE ufrag {ufrag!r} is in use by another session")
        session = self.sessions[ufrag] = TcpSession(self, protocol, ufrag)
        protocol.connection_made(session)  # type: ignore[arg-type]
        return session

    def unregister(self, session: TcpSession) -> None:
        if self.sessions.get(session.ufrag) is session:
            del self.sessions[session.ufrag]

    def connections(self) -> int:
        return sum(len(s.connections) for s in self.sessions.values())

    def refused(self, peer: Address, why: str) -> None:
        """Count a refused connection; log it, at most one line per LOG_EVERY_S (with how
        many were not logged since), so that a flood of them cannot flood the log."""
        self.stats.refused += 1
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY_S:
            self._unlogged += 1
            return
        log.info(f"ice tcp connection refused: {why}",
                 extra={"peer": f"{peer[0]}:{peer[1]}", "not_logged_since": self._unlogged})  # fmt: skip
        self._logged_at, self._unlogged = now, 0

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for session in list(self.sessions.values()):
            for connection in list(session.connections.values()):
                connection.abort()
        for connection in list(self.pending):
            connection.abort()
