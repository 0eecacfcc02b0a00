"""ONVIF cameras: stream URIs, snapshots and PTZ through onvif-zeep-async.

WS-Security signs every call with a timestamp the device checks against its own clock
(within a few minutes), so a device whose clock is off (after a power cut, without NTP)
refuses a correct password with "Sender not Authorized". Each session therefore asks the
device its time first (GetSystemDateAndTime, which ONVIF lets anyone call) and signs with
that offset; when the device still refuses, the error says whether its clock or the
credentials are to blame.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from onvif import ONVIFCamera, ONVIFError
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError

from gridwatch.media.sources import Source, with_credentials

log = logging.getLogger("gridwatch.onvif")


# What a device that is down, slow, or lying about ONVIF makes the client raise.
DEVICE_ERRORS = (ONVIFError, ZeepError, aiohttp.ClientError, OSError, TimeoutError, ValueError)


# Offsets below this are measuring noise (the device answers whole seconds) and far inside
# any device's WS-Security window: not worth a word in an error.
CLOCK_NOTE_S = 5.0

SOAP_NS = "http://www.w3.org/2003/05/soap-envelope"
TT_NS = "http://www.onvif.org/ver10/schema"
GET_TIME = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<s:Envelope xmlns:s="{SOAP_NS}"><s:Body>'
    '<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/>'
    "</s:Body></s:Envelope>"
)
GET_TIME_ACTION = "http://www.onvif.org/ver10/device/wsdl/GetSystemDateAndTime"


PTZ_NS = "http://www.onvif.org/ver20/ptz/wsdl"  # the PTZ service's key in the device's xaddrs


class OnvifFailure(Exception):
    """The device did not answer as ONVIF says it should; the message says what failed.

    `reason` sorts it for callers that treat them differently: "credentials" (the device
    refused the username/password), "clock" (it refused WS-Security and its clock is, or may
    be, off), "no_ptz" (the device, or the source's profile, has no PTZ), "no_preset" (no
    preset with that token), or "device" (anything else: down, slow, not ONVIF).
    """

    def __init__(self, message: str, reason: str = "device"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DeviceClock:
    """What GetSystemDateAndTime told: `offset` = device UTC - our UTC, or why it is unknown."""

    offset: timedelta | None
    error: str = ""
    answered: bool = True  # False: no HTTP answer at all (down, unreachable, timed out)


def describe_offset(offset: timedelta) -> str:
    """'2 h 0 min ahead of ours', '3 min 5 s behind ours', '40 s ahead of ours'."""
    seconds = round(abs(offset.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        amount = f"{hours} h {minutes} min"
    elif minutes:
        amount = f"{minutes} min {secs} s"
    else:
        amount = f"{secs} s"
    return f"{amount} {'ahead of' if offset > timedelta(0) else 'behind'} ours"


def parse_device_time(reply: bytes) -> datetime:
    """The UTCDateTime of a GetSystemDateAndTime reply, as aware UTC.

    Raises ValueError when the reply is not XML, is a SOAP Fault (its reason is the
    message), or has no complete UTCDateTime.
    """
    try:
        root = ET.fromstring(reply)
    except ET.ParseError as e:
        raise ValueError(f"garbled reply ({e})") from None
    fault = root.find(f".//{{{SOAP_NS}}}Fault")
    if fault is not None:
        reason = fault.findtext(f".//{{{SOAP_NS}}}Reason/{{{SOAP_NS}}}Text", "").strip()
        raise ValueError(f"refused: {reason or 'SOAP Fault'}")
    utc = root.find(f".//{{{TT_NS}}}UTCDateTime")
    if utc is None:
        raise ValueError("no UTCDateTime in the reply")
    date, clock = utc.find(f"{{{TT_NS}}}Date"), utc.find(f"{{{TT_NS}}}Time")
    try:
        if date is None or clock is None:
            raise ValueError("no Date or Time")
        ymd = [int(date.findtext(f"{{{TT_NS}}}{n}", "")) for n in ("Year", "Month", "Day")]
        hms = [int(clock.findtext(f"{{{TT_NS}}}{n}", "")) for n in ("Hour", "Minute", "Second")]
        return datetime(*ymd, *hms, tzinfo=UTC)
    except ValueError as e:  # a missing or non-numeric field, or an impossible date
        raise ValueError(f"UTCDateTime unreadable ({e})") from None


def is_auth_refusal(e: BaseException) -> bool:
    """Did the device refuse our WS-Security token (rather than fail otherwise)?

    ONVIF's answer is a Fault with subcode ter:NotAuthorized ("Sender not Authorized");
    some devices only say it in the reason text, or answer HTTP 401 with no SOAP at all.
    """
    if isinstance(e, Fault):
        subcodes = [str(getattr(c, "localname", c)) for c in (e.subcodes or [])]
        return (
            any(c.endswith("NotAuthorized") for c in subcodes)
            or "not authorized" in str(e.message or "").lower()
        )
    return isinstance(e, TransportError) and e.status_code == 401


@dataclass
class PtzCommand:
    action: str  # move | stop | goto_preset
    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 0.0
    preset: str | None = None


@dataclass(frozen=True)
class PtzPosition:
    """Where the head points, in ONVIF's generic spaces: pan and tilt -1..1, zoom 0..1."""

    pan: float
    tilt: float
    zoom: float


@dataclass(frozen=True)
class PtzPreset:
    token: str  # the device's (ONVIF ReferenceToken, at most 64 characters)
    name: str


@dataclass(frozen=True)
class PtzStatus:
    """What GetStatus and GetPresets told; position and moving are None where the device
    does not report them (both are optional in ONVIF, and some devices refuse GetStatus)."""

    position: PtzPosition | None
    moving: bool | None
    presets: list[PtzPreset]


@dataclass
class Session:
    """One device conversation: its services sign with the device's clock when it told us."""

    cam: ONVIFCamera
    media: Any
    token: str  # the chosen media profile
    clock: DeviceClock
    ptz: bool  # the profile has a PTZ configuration and the device a PTZ service


def refusal_text(e: BaseException) -> str:
    """What the device said when it refused our token ("Sender not Authorized", "HTTP 401")."""
    if isinstance(e, Fault):
        return str(e.message or "SOAP Fault")
    return f"HTTP {getattr(e, 'status_code', '?')}"


MOVE_TIMEOUT = timedelta(seconds=3)  # see ContinuousMove; web/static/ptz.js repeats every 1 s
MAX_SNAPSHOT = 16 * 1024 * 1024  # bytes: a 4K JPEG is a few MB


async def own_address(uri: str, source: Source, schemes: tuple[str, ...], what: str) -> None:
    """Raise OnvifFailure unless `uri`, handed out by the device `source` names, is one of
    `schemes` on the device's own host (the name the source gives, or an address that
    name resolves to). The device is not trusted to send us, with its credentials, to a
    host of its choosing: another camera, the node itself, a service behind it."""
    parts = urlsplit(uri)
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() not in schemes or not host:
        raise OnvifFailure(f"ONVIF device {source.host} handed out {what} as {parts.scheme or '?'}: "
                           f"only {', '.join(schemes)} is used")  # fmt: skip
    wanted = (source.host or "").lower().strip("[]")
    if host == wanted:
        return
    try:
        ipaddress.ip_address(host)
        infos = await asyncio.get_running_loop().getaddrinfo(wanted, None, proto=socket.IPPROTO_TCP)
    except (ValueError, OSError, UnicodeError):
        infos = []
    if host not in {info[4][0] for info in infos}:
        raise OnvifFailure(f"ONVIF device {source.host} handed out {what} on another host ({host}): "
                           "only the device's own address is used")  # fmt: skip


def plain(e: BaseException) -> str:
    """`e` as an operator reads it: a connection that failed, anywhere in its chain, says
    where and why ("cannot connect to 192.0.2.10:80: Connection refused") instead of the
    HTTP library's own wording (its "ssl:default" and call details)."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, aiohttp.ClientConnectorError):
            error = seen.os_error
            why = os.strerror(error.errno) if error.errno else str(error) or type(error).__name__
            return f"cannot connect to {seen.host}:{seen.port}: {why}"
        seen = seen.__cause__ or seen.__context__
    return str(e) or type(e).__name__


def failure(what: str, e: BaseException, clock: DeviceClock) -> OnvifFailure:
    """An OnvifFailure for `e`, raised by the call `what` ("PTZ stop failed", ...).

    A WS-Security refusal is told apart: with the device's clock right (or corrected and
    close to ours) it is the username or password; with the clock unreadable, or far off
    even though we signed with it, the message names the clock.
    """
    if not is_auth_refusal(e):
        return OnvifFailure(f"{what}: {plain(e)}")
    said = refusal_text(e)
    if clock.offset is None:
        return OnvifFailure(
            f"{what}: WS-Security refused ({said}) and the device clock could not be read "
            f"(GetSystemDateAndTime: {clock.error}): a device clock that is off (set it, "
            "or its NTP) or a wrong username or password",
            "clock",
        )
    if abs(clock.offset.total_seconds()) >= CLOCK_NOTE_S:
        return OnvifFailure(
            f"{what}: device clock is {describe_offset(clock.offset)}; WS-Security refused "
            f"({said}) even signed with the device's time: set the device clock (or its NTP), "
            "and check the username and password",
            "clock",
        )
    return OnvifFailure(
        f"{what}: wrong username or password (WS-Security refused: {said})", "credentials"
    )


class Onvif:
    """Talks to the devices behind `onvif://` sources; one short session per call."""

    def __init__(self, timeout_s: float = 5.0):
        self.timeout_s = timeout_s

    async def device_clock(self, source: Source) -> DeviceClock:
        """Ask the device its time, unauthenticated (ONVIF allows it, for exactly this).

        Never raises: a device that refuses (AXIS asks for a token), garbles or does not
        answer gives a DeviceClock with offset None and the reason in `error`.
        """
        host = f"[{source.host}]" if ":" in source.host else source.host
        url = f"http://{host}:{source.port or 80}/onvif/device_service"
        headers = {
            "Content-Type": f'application/soap+xml; charset=utf-8; action="{GET_TIME_ACTION}"'
        }
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                sent = time.time()
                async with http.post(url, data=GET_TIME, headers=headers) as resp:
                    reply = await resp.read()
                received = time.time()
            device = parse_device_time(reply)
        except ValueError as e:  # it answered, but no time we can use
            return DeviceClock(None, str(e))
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            return DeviceClock(None, plain(e), answered=False)
        # The device read its clock somewhere in the round trip, and answers whole seconds
        # (truncated): compare its mid-second with our mid-trip.
        ours = datetime.fromtimestamp((sent + received) / 2, UTC)
        return DeviceClock(device + timedelta(seconds=0.5) - ours)

    async def _session(self, source: Source) -> Session:
        """Clock read, services, profiles; raises OnvifFailure (see `failure`)."""
        device = f"ONVIF device {source.host}:{source.port}"
        clock = await self.device_clock(source)
        if not clock.answered:
            # Down or unreachable: waiting out the library's own timeouts would only double
            # the time to say so.
            raise OnvifFailure(f"{device} did not answer: {clock.error}")
        if clock.offset is not None and abs(clock.offset.total_seconds()) >= CLOCK_NOTE_S:
            log.info(
                "onvif device clock is off; signing with its time",
                extra={
                    "device": device,
                    "offset_s": round(clock.offset.total_seconds()),
                },
            )
        # adjust_time: the library reads the clock again in update_xaddrs() and keeps the
        # offset (dt_diff) for every service it creates here, PTZ included. Only when our
        # read worked: the library's read raises on a garbled reply, and a device that
        # refuses it may well have a right clock. (Our own read comes first because it never
        # raises and says why it failed.)
        # no_cache: zeep would otherwise write a cache database into the home directory.
        cam = ONVIFCamera(
            source.host,
            source.port or 80,
            source.username or "",
            source.password or "",
            no_cache=True,
            adjust_time=clock.offset is not None,
        )
        try:
            await cam.update_xaddrs()
            media = await cam.create_media_service()
            profiles = await media.GetProfiles()
        except (*DEVICE_ERRORS, AttributeError) as e:  # AttributeError: a reply without UTCDateTime
            await cam.close()
            if not is_auth_refusal(e):
                raise OnvifFailure(f"{device} did not answer: {plain(e)}") from None
            raise failure(device, e, clock) from None
        index = int(source.params.get("profile", "0"))
        if not profiles or index >= len(profiles):
            await cam.close()
            raise OnvifFailure(f"ONVIF profile {index} not found ({len(profiles or [])} profiles)")
        profile = profiles[index]
        has_ptz = getattr(profile, "PTZConfiguration", None) is not None and PTZ_NS in cam.xaddrs
        return Session(cam, media, profile.token, clock, has_ptz)

    async def stream_uri(self, source: Source) -> str:
        """The profile's RTSP URI with the source's credentials in it; raises OnvifFailure."""
        s = await self._session(source)
        try:
            reply = await s.media.GetStreamUri(
                {
                    "ProfileToken": s.token,
                    "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                }
            )
        except DEVICE_ERRORS as e:
            raise failure("GetStreamUri failed", e, s.clock) from None
        finally:
            await s.cam.close()
        await own_address(reply.Uri, source, ("rtsp", "rtsps"), "its stream")
        return with_credentials(reply.Uri, source.username, source.password)

    async def snapshot(self, source: Source) -> bytes | None:
        """The device's own JPEG (GetSnapshotUri), or None when it offers none."""
        s = await self._session(source)
        try:
            uri = (await s.media.GetSnapshotUri({"ProfileToken": s.token})).Uri
        except DEVICE_ERRORS:
            return None
        finally:
            await s.cam.close()
        # The JPEG itself is plain HTTP (digest or basic), no WS-Security: no clock in it.
        if not uri:
            return None
        try:
            await own_address(uri, source, ("http", "https"), "its snapshot")
        except OnvifFailure as e:
            log.warning("onvif snapshot uri refused", extra={"device": source.host, "error": str(e)})
            return None
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        user, pw = source.username or "", source.password or ""
        attempts: list[dict[str, Any]] = [
            {"middlewares": (aiohttp.DigestAuthMiddleware(user, pw),)},
            {"auth": aiohttp.BasicAuth(user, pw)},
        ]
        for kwargs in attempts:
            try:
                async with aiohttp.ClientSession(timeout=timeout, **kwargs) as http:
                    # No redirect (to a host it chooses), and no picture beyond MAX_SNAPSHOT.
                    async with http.get(uri, allow_redirects=False) as resp:
                        body = await resp.content.read(MAX_SNAPSHOT + 1)
                        if resp.status == 200 and body[:2] == b"\xff\xd8" and len(body) <= MAX_SNAPSHOT:
                            return body
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue
        return None

    @contextlib.asynccontextmanager
    async def _ptz(self, source: Source, what: str) -> AsyncIterator[tuple[Any, str]]:
        """The PTZ service and the profile token, for one call `what` ("PTZ stop", ...).

        Raises OnvifFailure: "no_ptz" when the profile or the device has no PTZ, otherwise
        as `failure` sorts what the device raised inside the block."""
        s = await self._session(source)
        try:
            if not s.ptz:
                raise OnvifFailure(
                    f"ONVIF device {source.host}:{source.port} has no PTZ on this profile", "no_ptz"
                )
            # Created after update_xaddrs(), so it signs with the device's clock too.
            yield await s.cam.create_ptz_service(), s.token
        except DEVICE_ERRORS as e:
            raise failure(f"{what} failed", e, s.clock) from None
        finally:
            await s.cam.close()

    async def ptz(self, source: Source, cmd: PtzCommand) -> None:
        """Move, stop or go to a preset; raises OnvifFailure."""
        async with self._ptz(source, f"PTZ {cmd.action}") as (ptz, token):
            if cmd.action == "move":
                await ptz.ContinuousMove(
                    {
                        "ProfileToken": token,
                        "Velocity": {
                            "PanTilt": {"x": cmd.pan, "y": cmd.tilt},
                            "Zoom": {"x": cmd.zoom},
                        },
                        # The device stops by itself if no newer move comes (a page closed
                        # or cut off while a button was held); pads repeat the move sooner.
                        "Timeout": MOVE_TIMEOUT,
                    }
                )
            elif cmd.action == "stop":
                await ptz.Stop({"ProfileToken": token, "PanTilt": True, "Zoom": True})
            else:
                await ptz.GotoPreset({"ProfileToken": token, "PresetToken": cmd.preset})

    async def ptz_status(self, source: Source) -> PtzStatus:
        """Position, movement and presets (GetStatus, GetPresets); raises OnvifFailure."""
        async with self._ptz(source, "PTZ status") as (ptz, token):
            try:
                status = await ptz.GetStatus({"ProfileToken": token})
            except Fault as e:
                if is_auth_refusal(e):
                    raise
                # A device without GetStatus (ONVIF lets it go) still has presets to show.
                log.info("onvif GetStatus refused", extra={"device": source.host, "error": str(e)})
                status = None
            presets = await ptz.GetPresets({"ProfileToken": token})
        return PtzStatus(_position(status), _moving(status), [_preset(p) for p in presets or []])

    async def set_preset(self, source: Source, name: str) -> PtzPreset:
        """A new preset named `name` at the current position (SetPreset); raises OnvifFailure."""
        async with self._ptz(source, "PTZ set preset") as (ptz, token):
            made = await ptz.SetPreset({"ProfileToken": token, "PresetName": name})
        if not made:
            raise OnvifFailure("PTZ set preset failed: the device returned no preset token")
        return PtzPreset(str(made), name)

    async def remove_preset(self, source: Source, preset: str) -> None:
        """Remove the preset `preset` (a token); raises OnvifFailure, "no_preset" when the
        device lists no such preset (devices answer that with faults of their own making)."""
        async with self._ptz(source, "PTZ remove preset") as (ptz, token):
            listed = await ptz.GetPresets({"ProfileToken": token})
            if preset not in {p.token for p in listed or []}:
                raise OnvifFailure(f"no preset {preset!r} on this camera", "no_preset")
            await ptz.RemovePreset({"ProfileToken": token, "PresetToken": preset})


def _number(value: object) -> float | None:
    """A finite float, or None (absent, or a device that writes NaN)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _position(status: Any) -> PtzPosition | None:
    """GetStatus's Position, or None when it has no pan/tilt; zoom 0 when it has none."""
    position = getattr(status, "Position", None)
    pan_tilt = getattr(position, "PanTilt", None)
    pan, tilt = _number(getattr(pan_tilt, "x", None)), _number(getattr(pan_tilt, "y", None))
    if pan is None or tilt is None:
        return None
    zoom = _number(getattr(getattr(position, "Zoom", None), "x", None))
    return PtzPosition(pan, tilt, zoom or 0.0)


def _moving(status: Any) -> bool | None:
    """True when pan/tilt or zoom is MOVING, False when both it tells are IDLE, None when
    the device says neither (no MoveStatus, or UNKNOWN)."""
    move = getattr(status, "MoveStatus", None)
    states = {str(getattr(move, axis, None) or "").upper() for axis in ("PanTilt", "Zoom")}
    if "MOVING" in states:
        return True
    return False if "IDLE" in states and states <= {"IDLE", ""} else None


def _preset(preset: Any) -> PtzPreset:
    """A GetPresets entry; one without a name is shown by its token."""
    token = str(preset.token)
    return PtzPreset(token, str(getattr(preset, "Name", None) or token))
