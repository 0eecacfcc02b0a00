"""ONVIF WS-Discovery: multicast a Probe for video transmitters and collect the matches."""

from __future__ import annotations

import asyncio
import socket
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

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


@dataclass
class Device:
    address: str  # the endpoint reference (urn:uuid:...)
    xaddrs: list[str] = field(default_factory=list)  # device service URLs
    scopes: list[str] = field(default_factory=list)
    sender: str = ""


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
