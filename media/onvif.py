"""ONVIF cameras: stream URIs, snapshots and PTZ through onvif-zeep-async."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from onvif import ONVIFCamera, ONVIFError
from zeep.exceptions import Error as ZeepError

from gridwatch.media.sources import Source, with_credentials

log = logging.getLogger("gridwatch.onvif")


# What a device that is down, slow, or lying about ONVIF makes the client raise.
DEVICE_ERRORS = (ONVIFError, ZeepError, aiohttp.ClientError, OSError, TimeoutError, ValueError)


class OnvifFailure(Exception):
    """The device did not answer as ONVIF says it should; the message says what failed."""


@dataclass
class PtzCommand:
    action: str  # move | stop | goto_preset
    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 0.0
    preset: str | None = None


class Onvif:
    """Talks to the devices behind `onvif://` sources; one short session per call."""

    def __init__(self, timeout_s: float = 5.0):
        self.timeout_s = timeout_s

    async def _session(self, source: Source) -> tuple[ONVIFCamera, Any, str]:
        # no_cache: zeep would otherwise write a cache database into the home directory.
        cam = ONVIFCamera(
            source.host,
            source.port or 80,
            source.username or "",
            source.password or "",
            no_cache=True,
        )
        try:
            await cam.update_xaddrs()
            media = await cam.create_media_service()
            profiles = await media.GetProfiles()
        except DEVICE_ERRORS as e:
            await cam.close()
            raise OnvifFailure(
                f"ONVIF device {source.host}:{source.port} did not answer: {e}"
            ) from None
        index = int(source.params.get("profile", "0"))
        if not profiles or index >= len(profiles):
            await cam.close()
            raise OnvifFailure(f"ONVIF profile {index} not found ({len(profiles or [])} profiles)")
        return cam, media, profiles[index].token

    async def stream_uri(self, source: Source) -> str:
        cam, media, token = await self._session(source)
        try:
            reply = await media.GetStreamUri(
                {
                    "ProfileToken": token,
                    "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                }
            )
        except DEVICE_ERRORS as e:
            raise OnvifFailure(f"GetStreamUri failed: {e}") from None
        finally:
            await cam.close()
        return with_credentials(reply.Uri, source.username, source.password)

    async def snapshot(self, source: Source) -> bytes | None:
        """The device's own JPEG (GetSnapshotUri), or None when it offers none."""
        cam, media, token = await self._session(source)
        try:
            uri = (await media.GetSnapshotUri({"ProfileToken": token})).Uri
        except DEVICE_ERRORS:
            return None
        finally:
            await cam.close()
        if not uri:
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
                    async with http.get(uri) as resp:
                        body = await resp.read()
                        if resp.status == 200 and body[:2] == b"\xff\xd8":
                            return body
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue
        return None

    async def ptz(self, source: Source, cmd: PtzCommand) -> None:
        cam, _media, token = await self._session(source)
        try:
            ptz = await cam.create_ptz_service()
            if cmd.action == "move":
                await ptz.ContinuousMove(
                    {
                        "ProfileToken": token,
                        "Velocity": {
                            "PanTilt": {"x": cmd.pan, "y": cmd.tilt},
                            "Zoom": {"x": cmd.zoom},
                        },
                    }
                )
            elif cmd.action == "stop":
                await ptz.Stop({"ProfileToken": token, "PanTilt": True, "Zoom": True})
            else:
                await ptz.GotoPreset({"ProfileToken": token, "PresetToken": cmd.preset})
        except DEVICE_ERRORS as e:
            raise OnvifFailure(f"PTZ {cmd.action} failed: {e}") from None
        finally:
            await cam.close()
