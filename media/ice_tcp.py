"""ICE over TCP (RFC 6544), the passive side: viewers and publishers whose network lets no
UDP through reach the node on one TCP port (`webrtc.tcp_port`), as go2rtc and MediaMTX
offer. The node offers a `tcptype passive` host candidate per address; the peer's active
candidate connects, and STUN, DTLS and SRTP then travel over that connection, each
packet framed by a 16-bit length (RFC 4571, as RFC 6544 section 3 asks).

A connection belongs to the ICE session its first frame names: a STUN binding request
whose USERNAME starts with that session's ufrag (RFC 8445 section 7.2.2) and whose
MESSAGE-INTEGRITY checks out with its password. A connection that opens otherwise, or
says nothing within AUTH_TIMEOUT_S (10 s), is closed and counted. Once bound, every frame goes
to the session's aioice StunProtocol as if it were a datagram from the connection's peer
address, and what the protocol sends to that address goes back framed on it.

A peer that stops reading does not make the node buffer without end: past
WRITE_BUFFER_BYTES queued on its connection, packets are dropped (counted), as UDP
would lose them; RTCP NACK and PLI recover the picture once it reads again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, TypeVar

from aioice import stun
from aioice.ice import StunProtocol

log = logging.getLogger("gridwatch.ice_tcp")

# A connection must name its session this soon after opening (a port scanner's or a
# slow client's connection does not stay open).
AUTH_TIMEOUT_S = 10.0
# Connections not yet bound to a session, at most; more are closed at once.
MAX_PENDING = 256
# Queued towards one peer before its packets are dropped: about 0.3 s of a 25 Mbit/s
# stream; a reading peer never gets near it.
WRITE_BUFFER_BYTES = 1024 * 1024
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
    peer opened, by the peer's address. Closing unregisters it and closes them."""

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
            connection.close()
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
        self.peer = (peer[0], peer[1])
        if len(self.listener.pending) >= MAX_PENDING:
            self.listener.stats.refused += 1
            transport.close()
            return
        self.listener.pending.add(self)
        self._timer = asyncio.get_running_loop().call_later(self.listener.auth_timeout_s, self._silent)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 2:
            size = int.from_bytes(self.buffer[:2], "big")
            if len(self.buffer) < 2 + size:
                return
            frame = bytes(self.buffer[2 : 2 + size])
            del self.buffer[: 2 + size]
            if self.transport.is_closing():
                return
            self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        if self.session is None and not self._bind(frame):
            self.listener.stats.refused += 1
            log.info("ice tcp connection refused: its first packet names no ICE session",
                     extra={"peer": f"{self.peer[0]}:{self.peer[1]}"})  # fmt: skip
            self.close()
            return
        assert self.session is not None
        self.listener.stats.frames += 1
        self.session.protocol.datagram_received(frame, self.peer)

    def _bind(self, frame: bytes) -> bool:
        if not frame or frame[0] > 3:  # not STUN (RFC 7983 section 7)
            return False
        try:
            message = stun.parse_message(frame)
        except ValueError:
            return False
        if message.message_class != stun.Class.REQUEST:
            return False
        session, authentic = requested_session(message, self.listener.sessions)
        if session is None or not authentic:
            return False
        self._settled()
        self.session = session
        previous = session.connections.get(self.peer)
        if previous is not None and previous is not self:
            previous.close()
        session.connections[self.peer] = self
        return True

    def send(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size() > WRITE_BUFFER_BYTES:
            self.listener.stats.send_dropped += 1
            return
        self.transport.write(len(data).to_bytes(2, "big") + data)
        self.listener.stats.sent += 1

    def _silent(self) -> None:
        self.listener.stats.refused += 1
        log.info("ice tcp connection closed: no ICE check within the time",
                 extra={"peer": f"{self.peer[0]}:{self.peer[1]}", "timeout_s": self.listener.auth_timeout_s})  # fmt: skip
        self.close()

    def _settled(self) -> None:
        self.listener.pending.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._settled()
        session = self.session
        if session is not None and session.connections.get(self.peer) is self:
            del session.connections[self.peer]


class TcpStats:
    """Counts of every listener of a process: frames routed to a session, packets sent,
    connections refused (naming no session, silent, or too many pending), packets dropped
    towards a peer that stopped reading."""

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

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for session in list(self.sessions.values()):
            for connection in list(session.connections.values()):
                connection.close()
        for connection in list(self.pending):
            connection.close()
