"""Cameras: stored in Redis (shared by every node), served by /api/cameras."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from urllib.parse import quote

from aiohttp import web

from gridwatch.detectors.rules import class_faults
from gridwatch.media.config import Camera, MediaConfig, Zone
from gridwatch.media.sources import SECRET_PARAMS, parse_source, redact, split_authority
from gridwatch.signaling import keys
from gridwatch.signaling.http_errors import JsonError
from gridwatch.signaling.logs import add_secret

log = logging.getLogger("gridwatch.cameras")

HIDDEN = "***"  # a password as the API shows it (media.sources.redact)


async def check_api_camera(camera: Camera, media: MediaConfig, stored: Camera | None = None) -> None:
    """A camera from the API may use only `media.api_sources` schemes and reach no host
    in `media.deny_hosts` (see check_api_source); JsonError 400 naming the field. A URL
    the stored camera already has (a rename of a config camera) is not new input."""
    for field, url in (("source", camera.source), ("detect_source", camera.detect_source)):
        if url is None or (stored is not None and url == getattr(stored, field)):
            continue
        await check_api_source(field, url, media)


async def check_api_source(field: str, url: str, media: MediaConfig) -> None:
    """`url` (a valid source) uses one of `media.api_sources`' schemes and names no host in
    `media.deny_hosts` (its name resolved now); JsonError 400 "forbidden_source" naming
    `field` otherwise."""
    scheme = url.partition(":")[0].lower()
    if scheme not in media.api_sources:
        raise JsonError(400, f"{field}: {scheme}: sources come from the config file only; through the API: "
                             f"{', '.join(media.api_sources)} (media.api_sources)", "forbidden_source")  # fmt: skip
    host = parse_source(url).host
    if host is None or not media.deny_hosts:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as e:
        raise JsonError(400, f"{field}: host {host!r} does not resolve ({e})", "forbidden_source") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if any(address in net for net in media.deny_hosts):
            raise JsonError(400, f"{field}: host {host} ({address}) is not one this node may reach "
                                 f"(media.deny_hosts)", "forbidden_source")  # fmt: skip


def _origin(url: str) -> tuple[str, str | None, str | None, int | None]:
    """Scheme, user name, host and port: whom a password in `url` is handed to."""
    source = parse_source(url)
    return url.partition(":")[0].lower(), source.username, source.host, source.port


def with_stored_password(field: str, url: str, stored: list[str | None]) -> str:
    """`url` itself, or, when its password is `***` (as the API shows every password), `url`
    with the password of the first of the `stored` URLs that has the same scheme, user
    name, host and port: a stored password goes back only to the device it was typed for,
    never to a host the caller chooses. `url` must be a valid source (parse_source).

    JsonError 400 "hidden_password" naming `field` when no stored URL qualifies."""
    scheme, sep, rest = url.partition("://")
    authority = split_authority(rest) if sep else None
    if authority is None or authority.password != HIDDEN:
        return url
    origin = _origin(url)
    for candidate in stored:
        if candidate is not None and _origin(candidate) == origin:
            password = parse_source(candidate).password
            if password is None:
                break
            kind = parse_source(url).kind
            written = password if kind == "rtmp" else quote(password, safe="")  # as parse_source reads it
            return f"{scheme}://{authority.user}:{written}@{authority.host_port}{rest[authority.end:]}"
    raise JsonError(400, f"{field}: the password is hidden ({HIDDEN}) and this camera has none stored for "
                         f"that scheme, user, host and port: type the password", "hidden_password")  # fmt: skip


def keep_stored_passwords(camera: Camera, stored: Camera | None) -> Camera:
    """`camera` from the API (PUT /api/cameras/{id}) with each `source`/`detect_source`
    password given as `***` (a form that got the camera from GET and never shows
    passwords) replaced by the stored camera's, under with_stored_password's rule;
    JsonError 400 naming the field where that rule refuses."""
    stored_urls = [stored.source, stored.detect_source] if stored is not None else []
    kept = {}
    for field in ("source", "detect_source"):
        url = getattr(camera, field)
        if url is not None and (restored := with_stored_password(field, url, stored_urls)) != url:
            kept[field] = restored
    return camera.model_copy(update=kept) if kept else camera


async def camera_or_404(request: web.Request, camera_id: str | None = None) -> Camera:
    """The stored camera `camera_id` (the URL's `{id}` when None); JsonError 404 when
    there is none."""
    camera_id = request.match_info["id"] if camera_id is None else camera_id
    camera = await request.app[keys.CAMERAS].get(camera_id)
    if camera is None:
        raise JsonError(404, f"no camera {camera_id!r}")
    return camera


def check_zone_classes(zones: list[Zone], groups: dict[str, str]) -> None:
    """JsonError 400 "invalid_zones" naming each class a zone names that its kind's rule
    never counts (detectors.rules.class_faults; `groups`: detectors.classes)."""
    if refused := class_faults(zones, groups):
        raise JsonError(400, "; ".join(f"zones.{i}.classes.{j}: {why}" for i, j, why in refused), "invalid_zones")


def register_secrets(camera: Camera) -> None:
    for url in (camera.source, camera.detect_source):
        if url:
            source = parse_source(url)
            add_secret(source.password)
            for name, value in source.params.items():
                if name.lower() in SECRET_PARAMS:
                    add_secret(value)


def public_view(camera: Camera, state: dict, viewers: int) -> dict:
    """What the API shows: no password, ever, and the stream's live state as its owner
    node sees it (media/camera_state.py live_state: `status` online/offline/idle,
    `online` is `status == "online"`) with `viewers` on this node."""
    data = camera.model_dump(mode="json")
    data["source"] = redact(camera.source)
    if camera.detect_source:
        data["detect_source"] = redact(camera.detect_source)
    data["state"] = {**state, "viewers": viewers}
    return data


