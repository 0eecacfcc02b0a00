"""REST for officers and their patrol tracks: batched GPS fixes, status, history."""

from __future__ import annotations

import time
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gridwatch.contracts.roles import DESK, WALL
from gridwatch.dispatch.officers import FixBatch
from gridwatch.signaling import keys
from gridwatch.signaling.auth import Principal
from gridwatch.signaling.http_errors import JsonError
from gridwatch.signaling.policy import allow, body, query

routes = web.RouteTableDef()
Seconds = Annotated[float, Field(allow_inf_nan=False, ge=0, le=1e10)]


class OfficersQuery(BaseModel):
    tail_s: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] = 0


class TrackQuery(BaseModel):
    since: Seconds | None = Field(None, alias="from")
    until: Seconds | None = Field(None, alias="to")


class DutyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on_duty: Annotated[bool, Field(strict=True)]


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
@allow("officer", "device", *DESK, body=FixBatch,
       owner="An officer sends only his own fixes; a device or a dispatcher names the officer.")
async def post_fixes(request: web.Request) -> web.Response:
    """GPS fixes, up to 1000, each with its own time. Each fix stands alone: the good ones
    are stored and the bad ones named in `rejected` ([{index, error}]); 400 only when
    none is good. Fixes an officer sends himself mark his phone as online."""
    principal = request["principal"]
    batch = await body(request, FixBatch, "invalid_fix")
    fixes, rejected = batch.parse()
    known = set(_officer_ids(request))
    good = []
    for i, fix in fixes:
        if principal.role == "officer":
            if fix.officer not in (None, principal.username):
                raise JsonError(403, f"fixes.{i}.officer: an officer sends only his own fixes")
            fix.officer = principal.username
        elif fix.officer is None:
            rejected.append({"index": i, "error": "officer: required"})
            continue
        if fix.officer not in known:
            rejected.append({"index": i, "error": f"officer: unknown officer {fix.officer!r}"})
            continue
        good.append(fix)
    rejected.sort(key=lambda r: r["index"])
    if not good:
        why = "; ".join(f"fixes.{r['index']}.{r['error']}" for r in rejected[:10])
        raise JsonError(400, why, "invalid_fix", rejected=rejected)
    own = {principal.username} if principal.role == "officer" else set()
    latest = await request.app[keys.OFFICERS].record(good, own)
    await request.app[keys.DISPATCH].on_fixes(latest)
    return web.json_response({"stored": len(good), "officers": sorted(latest), "rejected": rejected})


@routes.get("/api/officers")
@allow(*WALL, query=OfficersQuery)
async def list_officers(request: web.Request) -> web.Response:
    """Every officer's status and latest fix; `?tail_s=N` (at most an hour) adds his track
    of the last N seconds as `tail`: [[lon, lat, time], ...], oldest first."""
    tail_s = query(request, OfficersQuery).tail_s
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


@routes.get("/api/officers/{id}/track")
@allow(*WALL, "officer", query=TrackQuery, owner="An officer sees only his own track.")
async def officer_track(request: web.Request) -> web.Response:
    """An officer's fixes between `from` and `to` (Unix s; the last hour by default), as GeoJSON."""
    oid = _officer(request, request["principal"])
    window = query(request, TrackQuery)
    since = window.since if window.since is not None else time.time() - 3600
    fixes = await request.app[keys.OFFICERS].track(oid, since, window.until)
    return web.json_response(
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[f.lon, f.lat] for f in fixes]},
            "properties": {"officer": oid, "times": [f.time for f in fixes]},
        }
    )


@routes.post("/api/officers/{id}/duty")
@allow(*DESK, "officer", body=DutyBody, owner="An officer sets only his own duty.")
async def set_duty(request: web.Request) -> web.Response:
    """On or off duty: an officer off duty is offered nothing."""
    oid = _officer(request, request["principal"])
    on_duty = (await body(request, DutyBody, "bad_request")).on_duty
    await request.app[keys.OFFICERS].set_duty(oid, on_duty)
    dispatch = request.app[keys.DISPATCH]
    dispatch.note_officers(oid)
    if on_duty:
        dispatch.matcher.poke()  # a waiting ticket may go to him now
    return web.json_response({"id": oid, "on_duty": on_duty})
