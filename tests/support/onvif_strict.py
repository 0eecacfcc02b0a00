"""ipycam on loopback, checking WS-Security the way real cameras do, with a clock of its own.

Usage: python onvif_strict.py [--clock-offset S] [--skew S] [--time-reply ok|refuse|garbled]
       --config camera_config.json --source clip.mp4   (the rest is `python -m ipycam`'s CLI)

--clock-offset S  the device's clock runs S seconds ahead of real UTC (negative: behind),
                  as after a power cut without NTP: GetSystemDateAndTime answers it, and
                  WS-Security timestamps are checked against it.
--skew S          how far a UsernameToken's Created may be from the device's clock (300 s,
                  as many cameras and ipycam itself allow).
--time-reply      ok: GetSystemDateAndTime needs no authentication (as ONVIF says);
                  refuse: it needs WS-Security like every other call (as AXIS devices do);
                  garbled: it answers something that is not XML.

Every other call needs a UsernameToken with PasswordDigest = Base64(SHA1(nonce + created +
password)); otherwise the reply is a SOAP 1.2 Fault env:Sender / ter:NotAuthorized,
"Sender not Authorized" (HTTP 401, as ipycam answers), the way cameras refuse a wrong
password and a stale timestamp alike.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import ipycam.onvif as onvif_mod
import ipycam_lo  # noqa: F401  (importing it keeps every ipycam socket on loopback)

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
SOAP = "http://www.w3.org/2003/05/soap-envelope"
DIGEST = "#PasswordDigest"

NOT_AUTHORIZED = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<env:Envelope xmlns:env="{SOAP}" xmlns:ter="http://www.onvif.org/ver10/error">'
    "<env:Body><env:Fault>"
    "<env:Code><env:Value>env:Sender</env:Value>"
    "<env:Subcode><env:Value>ter:NotAuthorized</env:Value></env:Subcode></env:Code>"
    '<env:Reason><env:Text xml:lang="en">Sender not Authorized</env:Text></env:Reason>'
    "</env:Fault></env:Body></env:Envelope>"
)


class Device:
    """The options above; `now()` is the device's own (shifted) UTC clock."""

    def __init__(self, clock_offset_s: float, skew_s: float, time_reply: str):
        self.offset = timedelta(seconds=clock_offset_s)
        self.skew_s = skew_s
        self.time_reply = time_reply

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def body_action(envelope: ET.Element) -> str:
    """The local name of the first element in the SOAP Body ('' when there is none)."""
    body = envelope.find(f"{{{SOAP}}}Body")
    first = next(iter(body), None) if body is not None else None
    return first.tag.rsplit("}", 1)[-1] if first is not None else ""


def parse_created(text: str) -> datetime | None:
    """A wsu:Created value ('2024-01-01T00:00:00Z', maybe with fractions) as aware UTC."""
    try:
        created = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def token_ok(envelope: ET.Element, username: str, password: str, device: Device) -> bool:
    """True when the envelope carries a fresh, correctly digested UsernameToken for us."""
    token = envelope.find(f".//{{{WSSE}}}UsernameToken")
    if token is None:
        return False
    user = token.findtext(f"{{{WSSE}}}Username", "")
    pw = token.find(f"{{{WSSE}}}Password")
    nonce = token.findtext(f"{{{WSSE}}}Nonce", "")
    created_text = token.findtext(f"{{{WSU}}}Created", "")
    if pw is None or not pw.get("Type", "").endswith(DIGEST) or not nonce:
        return False
    created = parse_created(created_text)
    # Unlike ipycam, an unreadable timestamp is a refusal, not a pass.
    if created is None or abs((device.now() - created).total_seconds()) > device.skew_s:
        return False
    digest = hashlib.sha1(base64.b64decode(nonce) + created_text.encode() + password.encode())
    expected = base64.b64encode(digest.digest()).decode()
    return hmac.compare_digest(user, username) and hmac.compare_digest(pw.text or "", expected)


def install(device: Device) -> None:
    """Patch ipycam's ONVIF service: shifted clock, strict tokens, ONVIF's NotAuthorized fault."""
    service = onvif_mod.ONVIFService
    original_fault = service.fault

    def verify_usernametoken(self: onvif_mod.ONVIFService, soap_body: str) -> bool:
        try:
            envelope = ET.fromstring(soap_body)
        except ET.ParseError:
            return False
        if body_action(envelope) == "GetSystemDateAndTime" and device.time_reply != "refuse":
            return True
        return token_ok(envelope, self.config.username, self.config.password, device)

    def get_system_date_time(self: onvif_mod.ONVIFService) -> str:
        if device.time_reply == "garbled":
            return "<tds:GetSystemDateAndTimeResponse><tt:UTCDate"  # cut off, not XML
        now = device.now()
        body = self._render(
            "get_system_date_time",
            hour=now.hour,
            minute=now.minute,
            second=now.second,
            year=now.year,
            month=now.month,
            day=now.day,
        )
        return self._wrap_envelope(body)

    def fault(self: onvif_mod.ONVIFService, reason: str) -> str:
        # ipycam refuses a token with "Sender not authorized" as env:Receiver; real devices
        # say env:Sender / ter:NotAuthorized.
        if reason.lower() == "sender not authorized":
            return NOT_AUTHORIZED
        return original_fault(self, reason)

    service.verify_usernametoken = verify_usernametoken
    service.get_system_date_time = get_system_date_time
    service.fault = fault


def main() -> int:
    ours = argparse.ArgumentParser(add_help=False)
    ours.add_argument("--clock-offset", type=float, default=0.0)
    ours.add_argument("--skew", type=float, default=300.0)
    ours.add_argument("--time-reply", choices=("ok", "refuse", "garbled"), default="ok")
    args, rest = ours.parse_known_args()
    install(Device(args.clock_offset, args.skew, args.time_reply))
    print(
        f"onvif_strict: clock {args.clock_offset:+.0f} s, skew {args.skew:.0f} s, "
        f"time reply {args.time_reply}, started {time.strftime('%H:%M:%S')}",
        flush=True,
    )

    from ipycam.__main__ import main as ipycam_main

    sys.argv = ["ipycam", *rest]
    return ipycam_main()


if __name__ == "__main__":
    sys.exit(main())
