"""REST for officers and their patrol tracks: batched GPS fixes, status, history."""

from __future__ import annotations

import time

from aiohttp import web

from dispatch.officers import FixBatch
from signaling import keys
from signaling.auth import Principal, require
from signaling.http_errors import JsonError, read_json, validated

routes = web.RouteTableDef()

WATCH_ROLES = ("admin", "dispatcher", "viewer")


def _officer_ids(request: web.Request) -> list[str]:
    cfg = request.app[keys.CONFIG]
    return sorted(
        {o.id for o in cfg.officers} | {u.username for u in cfg.users if u.role == "officer"}
    )


def _officer(request: web.Request, principal: Principal) -> str:
    """The officer in the URL: 404 if unknown; an officer may only name himself."""
    oid = request.match_info["id"]
    if principal.role == "officer" and principal.username != oid:
        raise JsonError(403, f"officer {principal.username} may not act for {oid}")
    if oid not in _officer_ids(request):
        raise JsonError(404, f"no officer {oid!r}")
    return oid


@routes.post("/api/tracks")
async def post_fixes(request: web.Request) -> web.Response:
    principal = require(request, "officer", "device", "admin", "dispatcher")
    batch = validated(FixBatch, await read_json(request), "invalid_fix")
    known = set(_officer_ids(request))
    for i, fix in enumerate(batch.fixes):
        if principal.role == "officer":
            if fix.officer not in (None, principal.username):
                raise JsonError(403, f"fixes.{i}.officer: an officer sends only his own fixes")
            fix.officer = principal.username
        elif fix.officer is None:
            raise JsonError(400, f"fixes.{i}.officer: required")
        if fix.officer not in known:
            raise JsonError(400, f"fixes.{i}.officer: unknown officer {fix.officer!r}")
    latest = await request.app[keys.OFFICERS].record(batch.fixes)
    await request.app[keys.DISPATCH].on_fixes(latest)
    return web.json_response({"stored": len(batch.fixes), "officers": sorted(latest)})


@routes.get("/api/officers")
async def list_officers(request: web.Request) -> web.Response:
    """Every officer's status and latest fix; `?tail_s=N` (at most an hour) adds his track
    of the last N seconds as `tail`: [[lon, lat, time], ...], oldest first."""
    require(request, *WATCH_ROLES)
    try:
        tail_s = float(request.query.get("tail_s", 0))
    except ValueError:
        raise JsonError(400, "tail_s: must be a number of seconds") from None
    if not 0 <= tail_s <= 3600:
        raise JsonError(400, "tail_s: must be between 0 and 3600")
    cfg = request.app[keys.CONFIG]
    officers = request.app[keys.OFFICERS]
    ids = _officer_ids(request)
    now = time.time()
    tails = await officers.tracks(ids, now - tail_s) if tail_s else {}
    known = {o.id: o for o in cfg.officers}
    out = []
    for st in await officers.states(ids):
        view = st.view(cfg.dispatch.stale_s, now)
        if o := known.get(st.id):
            view |= {"name": o.name, "grid": o.grid}
        if tail_s:
            view["tail"] = [[f.lon, f.lat, f.time] for f in tails[st.id]]
        out.append(view)
    return web.json_response({"officers": out, "stale_s": cfg.dispatch.stale_s})


def _window(request: web.Request) -> tuple[float, float | None]:
    try:
        since = float(request.query.get("from", time.time() - 3600))
        until = float(request.query["to"]) if "to" in request.query else None
    except ValueError:
        raise JsonError(400, "from/to: must be epoch seconds") from None
    return since, until


@routes.get("/api/officers/{id}/track")
async def officer_track(request: web.Request) -> web.Response:
    oid = _officer(request, require(request, "admin", "dispatcher", "viewer", "officer"))
    since, until = _window(request)
    fixes = await request.app[keys.OFFICERS].track(oid, since, until)
    return web.json_response(
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[f.lon, f.lat] for f in fixes]},
            "properties": {"officer": oid, "times": [f.time for f in fixes]},
        }
    )


@routes.post("/api/officers/{id}/duty")
async def set_duty(request: web.Request) -> web.Response:
    oid = _officer(request, require(request, "admin", "dispatcher", "officer"))
    on_duty = (await read_json(request)).get("on_duty")
    if not isinstance(on_duty, bool):
        raise JsonError(400, "on_duty: must be true or false")
    await request.app[keys.OFFICERS].set_duty(oid, on_duty)
    request.app[keys.DISPATCH].note_officers(oid)
    return web.json_response({"id": oid, "on_duty": on_duty})
