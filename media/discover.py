"""ONVIF WS-Discovery: multicast a Probe for video transmitters and collect the matches."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

log = logging.getLogger("gridwatch.discover")

GROUP, PORT = "239.255.255.250", 3702
NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "d": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
}
PROBE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"'
    ' xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"'
    ' xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"'
    ' xmlns:dn="http://www.onvif.org/ver10/network/wsdl">'
    "<s:Header>"
    '<a:Action s:mustUnderstand="1">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action>'
    "<a:MessageID>urn:uuid:{mid}</a:MessageID>"
    "<a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>"
    '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>'
    "</s:Header>"
    "<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>"
    "</s:Envelope>"
)


SCOPE = "onvif://www.onvif.org/"


@dataclass
class Device:
    address: str  # the endpoint reference (urn:uuid:...)
    xaddrs: list[str] = field(default_factory=list)  # device service URLs
    scopes: list[str] = field(default_factory=list)
    sender: str = ""  # the IP address the match came from

    def scope(self, kind: str) -> str | None:
        """The first `onvif://www.onvif.org/KIND/VALUE` scope's value, %XX decoded
        ("name", "hardware", "location"), or None."""
        prefix = f"{SCOPE}{kind}/"
        return next((unquote(s[len(prefix) :]) for s in self.scopes if s.startswith(prefix)), None)

    def source(self) -> str:
        """The camera source URL that reaches this device, without credentials:
        `onvif://HOST[:PORT]` from its device service URL (the one on the address that
        answered, when it lists several), or from that address when it lists none."""
        for xaddr in sorted(self.xaddrs, key=lambda x: urlsplit(x).hostname != self.sender):
            try:
                parts = urlsplit(xaddr)
                host, port = parts.hostname, parts.port
            except ValueError:  # a port out of range, a bracket left open: not a URL
                continue
            if parts.scheme == "http" and host:
                host = f"[{host}]" if ":" in host else host
                return f"onvif://{host}" + (f":{port}" if port and port != 80 else "")
        return f"onvif://{self.sender}"


def parse_matches(data: bytes, message_id: str, sender: str) -> list[Device]:
    """The ProbeMatch entries of a reply to our Probe; anything else yields nothing."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return []
    relates = root.find("s:Header/a:RelatesTo", NS)
    if relates is None or (relates.text or "").strip() != message_id:
        return []
    devices = []
    # Some devices leave out the ProbeMatches wrapper: take ProbeMatch wherever it is.
    for match in root.iter(f"{{{NS['d']}}}ProbeMatch"):
        address = match.findtext("a:EndpointReference/a:Address", "", NS).strip()
        xaddrs = match.findtext("d:XAddrs", "", NS).split()
        scopes = match.findtext("d:Scopes", "", NS).split()
        if address or xaddrs:
            devices.append(Device(address, xaddrs, scopes, sender))
    return devices


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, message_id: str):
        self.message_id = message_id
        self.devices: dict[str, Device] = {}

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        for device in parse_matches(data, self.message_id, addr[0]):
            self.devices.setdefault(device.address or device.xaddrs[0], device)


async def discover(timeout: float = 3.0, interface: str | None = None) -> list[Device]:
    """Probe from `interface` (an IPv4 address; None = the default route's) for `timeout` s."""
    mid = f"urn:uuid:{uuid.uuid4()}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((interface or "0.0.0.0", 0))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    if interface:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(lambda: _Collector(mid), sock=sock)
    try:
        probe = PROBE.format(mid=mid.removeprefix("urn:uuid:")).encode()
        for _ in range(2):  # UDP: a second probe covers one lost datagram
            transport.sendto(probe, (GROUP, PORT))
            await asyncio.sleep(timeout / 2)
    finally:
        transport.close()
    return sorted(collector.devices.values(), key=lambda d: d.xaddrs[:1])


class Scanner:
    """WS-Discovery for the API: one scan at a time per node. A caller who comes while a
    scan runs gets that scan's result (whatever timeout he asked for) rather than
    starting a second multicast storm."""

    def __init__(self, interface: ipaddress.IPv4Address | None = None):
        self.interface = str(interface) if interface else None
        self._running: asyncio.Task[list[Device]] | None = None

    async def scan(self, timeout: float) -> list[Device]:
        """The devices that answered; raises OSError when the probe cannot be sent from
        the interface (an address this host does not have)."""
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._scan(timeout))
        # Shielded: a caller who goes away does not end the scan the others wait for.
        return await asyncio.shield(self._running)

    async def _scan(self, timeout: float) -> list[Device]:
        found = await discover(timeout, self.interface)
        log.info("discovery scan", extra={"devices": len(found), "timeout_s": timeout,
                                          "interface": self.interface or "default"})  # fmt: skip
        return found
