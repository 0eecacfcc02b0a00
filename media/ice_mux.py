"""ICE on one UDP port: every aioice Connection of this process shares one socket per host
address, bound to `webrtc.udp_port`, so a node behind a firewall or NAT needs one
published port for all its WebRTC viewers and publishers.

Each datagram on a shared socket goes to one session (an aioice StunProtocol of one
Connection); RFC 7983 tells the kinds apart by the first byte:
- a STUN request (0-3) by its USERNAME, "LFRAG:RFRAG" where LFRAG is the receiver's ufrag
  (RFC 8445 section 7.2.2): the part before ':' is ours. A request whose
  MESSAGE-INTEGRITY checks out with the session's password teaches the mux the sender's
  address (one that does not is still handed over, for aioice to answer 401);
- a STUN response by its transaction id (96 random bits, RFC 8489 section 6), to the
  session that sent the request; it teaches the mux the sender's address too;
- anything else (DTLS 20-63, SRTP/SRTCP 128-191) by the sender's address, learned above.
A datagram no session claims is dropped and counted. Limit: two sessions of this node
with the same remote address (a remote peer that multiplexes too) cannot be told apart
by DTLS/SRTP; the last one to authenticate from that address gets its packets.

aioice is extended, not forked: MuxConnection overrides only the host-candidate part of
`Connection.get_component_candidates`, and each session's StunProtocol is aioice's own,
with a MuxTransport in place of a socket of its own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any

import aioice.ice
from aioice import Candidate, Connection, stun
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import StunProtocol, server_reflexive_candidate
from aioice.utils import random_string

from gridwatch.media.ice_tcp import TcpListener, TcpStats, requested_session

log = logging.getLogger("gridwatch.ice_mux")

# One socket carries every session's packets: a deeper kernel queue than aioice's per
# session 256 KiB (aioice/turn.py UDP_SOCKET_BUFFER_SIZE); the kernel caps it at
# net.core.rmem_max / wmem_max.
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
# A tcptype passive host candidate ranks below every UDP host candidate (aioice's local
# preference 65535): RFC 6544 section 4.2, local preference = 2^13 * direction-pref
# (passive: 4) + other-pref (the highest, 8191).
TCP_LOCAL_PREFERENCE = (1 << 13) * 4 + 8191
# 8 ICE characters: 48 bits, so that ufrags of concurrent sessions, the mux's routing key,
# do not collide (aioice's 4 would, once in a few thousand sessions; RFC 8445 section
# 5.3 asks for at least 24 bits).
UFRAG_CHARS = 8
Address = tuple[str, int]


class MuxTransport:
    """What one session's StunProtocol sends through: the shared socket, as if its own.

    `remotes` are the addresses the mux routes to this session; closing unregisters it.
    """

    def __init__(self, shared: SharedSocket, protocol: StunProtocol, ufrag: str):
        self.shared = shared
        self.protocol = protocol
        self.ufrag = ufrag
        self.remotes: set[Address] = set()

    def sendto(self, data: bytes, addr: Address) -> None:
        self.shared.transport.sendto(data, addr)

    def close(self) -> None:
        self.shared.unregister(self)
        self.protocol.connection_lost(None)  # what aioice awaits in StunProtocol.close


class SharedSocket(asyncio.DatagramProtocol):
    """One UDP socket on (host address, port) and the sessions that share it."""

    transport: asyncio.DatagramTransport

    def __init__(self, mux: IceMux):
        self.mux = mux
        self.by_ufrag: dict[str, MuxTransport] = {}
        self.by_addr: dict[Address, MuxTransport] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def register(self, session: MuxTransport) -> None:
        """Route `session.ufrag`'s STUN to it; ValueError if another session has the ufrag."""
        if session.ufrag in self.by_ufrag:
            raise ValueError(f"ICE ufrag {session.ufrag!r} is in use by another session")
        self.by_ufrag[session.ufrag] = session

    def unregister(self, session: MuxTransport) -> None:
        if self.by_ufrag.get(session.ufrag) is session:
            del self.by_ufrag[session.ufrag]
        for addr in session.remotes:
            if self.by_addr.get(addr) is session:
                del self.by_addr[addr]
        session.remotes.clear()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        addr = (addr[0], addr[1])  # an IPv6 four-tuple, as aioice does
        session = self._route(data, addr)
        if session is None:
            self.mux.dropped += 1
            return
        self.mux.demuxed += 1
        session.protocol.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for one peer (port unreachable): that session's checks time out.
        log.debug("ice mux socket error", extra={"error": str(exc)})

    def _route(self, data: bytes, addr: Address) -> MuxTransport | None:
        if not data:  # an empty one would stop aiortc's DTLS reader
            return None
        if data[0] > 3:  # not STUN (RFC 7983 section 7)
            return self.by_addr.get(addr)
        try:
            message = stun.parse_message(data)
        except Exception:  # aioice raises struct.error too, on a truncated attribute
            return None
        if message.message_class == stun.Class.REQUEST:
            session, authentic = requested_session(message, self.by_ufrag)
            if authentic:
                self._learn(addr, session)
            return session
        session = self._transaction_owner(message.transaction_id, addr)
        if session is not None:
            self._learn(addr, session)
        return session

    def _transaction_owner(self, transaction_id: bytes, addr: Address) -> MuxTransport | None:
        known = self.by_addr.get(addr)
        if known is not None and transaction_id in known.protocol.transactions:
            return known
        # A first answer from this address (a STUN server's, or a check's we sent first).
        for session in self.by_ufrag.values():
            if transaction_id in session.protocol.transactions:
                return session
        return None

    def _learn(self, addr: Address, session: MuxTransport) -> None:
        previous = self.by_addr.get(addr)
        if previous is not session:
            if previous is not None:
                previous.remotes.discard(addr)
            self.by_addr[addr] = session
            session.remotes.add(addr)


class IceMux:
    """Every shared socket of this process, one per host address, all on `port`; and with
    `tcp_port`, a listener for ICE over TCP on each of those addresses (media/ice_tcp.py).

    `demuxed` and `dropped` count datagrams routed to a session and dropped for belonging
    to none, `tcp` the TCP listeners' counts; `sessions()` the ICE sessions (ufrags)
    registered, `tcp_connections()` the TCP connections bound to one.
    """

    def __init__(self, port: int, announce: list[str] | None = None, tcp_port: int | None = None):
        self.port = port
        self.tcp_port = tcp_port
        self.listeners: dict[str, TcpListener] = {}
        self.tcp = TcpStats()
        # Offered as host candidates too (a 1:1 NAT's or a container host's address that
        # forwards `port` here): a check sent there arrives on a bound socket, finds its
        # session by ufrag and is answered as a peer-reflexive pair (RFC 8445 7.3.1.3).
        self.announce = list(announce or [])
        self.sockets: dict[str, SharedSocket] = {}
        self.demuxed = 0
        self.dropped = 0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Bind the port (and listen on the TCP port) on every host address ICE offers now
        (aioice's `get_host_addresses`, as `use_host_addresses` chose them); OSError naming
        the address and port if one cannot be bound. Addresses that appear later are bound
        when a session first gathers on them."""
        for address in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True):
            await self.socket_for(address)
            if self.tcp_port is not None:
                await self.listener_for(address)

    async def socket_for(self, address: str) -> SharedSocket:
        """The shared socket on `address`, bound on first use; OSError if it cannot be."""
        async with self._lock:
            shared = self.sockets.get(address)
            if shared is None:
                loop = asyncio.get_running_loop()
                try:
                    transport, shared = await loop.create_datagram_endpoint(
                        lambda: SharedSocket(self), local_addr=(address, self.port)
                    )
                except OSError as e:
                    raise OSError(
                        e.errno, f"cannot bind UDP {address} port {self.port}: {e.strerror}"
                    ) from None
                sock = transport.get_extra_info("socket")
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
                self.sockets[address] = shared
                log.info("ice mux bound", extra={"address": address, "port": self.port})
            return shared

    async def listener_for(self, address: str) -> TcpListener:
        """The ICE-TCP listener on (`address`, tcp_port), listening from first use; OSError
        if it cannot."""
        assert self.tcp_port is not None
        async with self._lock:
            listener = self.listeners.get(address)
            if listener is None:
                listener = TcpListener(self.tcp)
                await listener.listen(address, self.tcp_port)
                self.listeners[address] = listener
                log.info("ice tcp listening", extra={"address": address, "port": self.tcp_port})
            return listener

    def new_ufrag(self) -> str:
        """A local ICE ufrag no registered session has."""
        taken = self.ufrags()
        while (ufrag := random_string(UFRAG_CHARS)) in taken:
            pass
        return ufrag

    def ufrags(self) -> set[str]:
        return {u for s in self.sockets.values() for u in s.by_ufrag}

    def sessions(self) -> int:
        return len(self.ufrags())

    def tcp_connections(self) -> int:
        return sum(listener.connections() for listener in self.listeners.values())

    def close(self) -> None:
        for shared in self.sockets.values():
            shared.transport.close()
        self.sockets.clear()
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()


class MuxConnection(Connection):
    """An aioice Connection whose host candidates are `mux`'s shared sockets (all on
    `mux.port`) instead of a socket of its own per address, and with `mux.tcp_port` a
    `tcptype passive` candidate per address on it; its server-reflexive (STUN) and relayed
    (TURN) candidates are gathered as aioice does.

    One component only (RTP and RTCP multiplexed, RFC 5761, as aiortc always asks):
    ValueError otherwise, since the ufrag could not tell two components apart. Its local
    ufrag is one no other session of the mux has (UFRAG_CHARS long) unless given.
    """

    def __init__(self, mux: IceMux, **kwargs: Any):
        if kwargs.get("components", 1) != 1:
            raise ValueError("a multiplexed ICE connection has one component (RFC 5761)")
        if kwargs.get("local_username") is None:
            kwargs["local_username"] = mux.new_ufrag()
        super().__init__(**kwargs)
        self.mux = mux

    async def get_component_candidates(
        self, component: int, addresses: list[str], timeout: int = 5
    ) -> list[Candidate]:
        host: list[StunProtocol] = []
        tcp: list[StunProtocol] = []
        for address in addresses:
            try:
                shared = await self.mux.socket_for(address)
            except OSError as e:  # as aioice does: that address offers no candidate
                log.warning("ice host address skipped", extra={"address": address, "error": str(e)})
                continue
            host.append(self._attach(shared, component))
            if self.mux.tcp_port is None:
                continue
            try:
                listener = await self.mux.listener_for(address)
            except OSError as e:  # its UDP candidate is still offered
                log.warning("ice tcp address skipped", extra={"address": address, "error": str(e)})
                continue
            tcp.append(self._attach_tcp(listener, address, component))
        self._protocols += host + tcp
        candidates = [p.local_candidate for p in host + tcp]
        bound = {c.host for c in candidates}
        candidates += [
            host_candidate(address, port, transport, component, i + 1)
            for transport, port in (("udp", self.mux.port), ("tcp", self.mux.tcp_port))
            for i, address in enumerate(self.mux.announce)
            if host and port is not None and address not in bound
        ]
        if self.stun_server:
            reflexive = [
                p for p in host if ipaddress.ip_address(p.local_candidate.host).version == 4
            ]
            found = await asyncio.gather(*(
                asyncio.wait_for(server_reflexive_candidate(p, self.stun_server), timeout)
                for p in reflexive
            ), return_exceptions=True)  # fmt: skip
            candidates += [r[0] for r in found if not isinstance(r, BaseException)]
        # With no host address aioice gathers just the relayed candidate (when TURN is set).
        return candidates + await super().get_component_candidates(component, [], timeout)

    def _attach(self, shared: SharedSocket, component: int) -> StunProtocol:
        protocol = StunProtocol(self)
        session = MuxTransport(shared, protocol, self.local_username)
        shared.register(session)
        protocol.connection_made(session)  # type: ignore[arg-type]
        host, port = shared.transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = host_candidate(host, port, "udp", component)
        return protocol

    def _attach_tcp(self, listener: TcpListener, address: str, component: int) -> StunProtocol:
        protocol = StunProtocol(self)
        listener.attach(protocol, self.local_username)
        assert self.mux.tcp_port is not None
        protocol.local_candidate = host_candidate(address, self.mux.tcp_port, "tcp", component)
        return protocol


def host_candidate(host: str, port: int, transport: str, component: int, rank: int = 0) -> Candidate:
    """A host candidate on (host, port): UDP, or TCP `tcptype passive` (RFC 6544); `rank`
    orders several of one transport (0 first) by local preference."""
    if transport == "udp":
        priority = candidate_priority(component, "host") - (rank << 8)
    else:
        priority = (1 << 24) * 126 + (1 << 8) * (TCP_LOCAL_PREFERENCE - rank) + 256 - component
    return Candidate(
        foundation=candidate_foundation("host", transport, host),
        component=component,
        transport=transport,
        priority=priority,
        host=host,
        port=port,
        type="host",
        tcptype="passive" if transport == "tcp" else None,
    )
