"""REST for the command wall: the base map and the grids' state, alerts and their
acknowledgement, the published streams a wall can show, and each user's wall layout."""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gridwatch.contracts.roles import DESK, WALL
from gridwatch.dispatch.alerts import AlertError
from gridwatch.signaling import keys
from gridwatch.signaling.access import may_watch
from gridwatch.signaling.http_errors import JsonError
from gridwatch.signaling.policy import allow, body, query

routes = web.RouteTableDef()

StreamId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]


class WallLayout(BaseModel):
    """A user's video wall: tiles per page, the page shown, cameras left off the wall and
    published streams (drones, phones) put on it, in order."""

    model_config = ConfigDict(extra="forbid")
    layout: Literal[1, 4, 9, 16] = 9
    page: Annotated[int, Field(ge=0, le=10_000)] = 0
    hidden: Annotated[list[StreamId], Field(max_length=20_000)] = []
    streams: Annotated[list[StreamId], Field(max_length=64)] = []


@routes.get("/api/map")
@allow(*WALL, "officer")
async def base_map(request: web.Request) -> web.Response:
    """Where the map starts, the tile server (if the centre runs one) and the layers."""
    basemap = request.app[keys.MAP]
    cfg = basemap.config
    center = cfg.center.model_dump() if cfg.center else None
    if center is None:
        placed = [c.position for c in await request.app[keys.CAMERAS].all() if c.position]
        if placed:
            center = {"lat": sum(p.lat for p in placed) / len(placed),
                      "lon": sum(p.lon for p in placed) / len(placed)}  # fmt: skip
    return web.json_response(
        {
            "center": center,
            "zoom": cfg.zoom,
            "tile_url": cfg.tile_url,
            "tile_attribution": cfg.tile_attribution,
            "tile_max_zoom": cfg.tile_max_zoom,
            "layers": [
                {"name": name, "kind": kind, "url": f"/api/map/layers/{name}"}
                for name, (kind, _) in basemap.layers.items()
            ],
            "grids": {"url": "/api/map/grids", "count": len(basemap.grids)},
        }
    )


@routes.get("/api/map/layers/{name}")
@allow(*WALL, "officer")
async def map_layer(request: web.Request) -> web.Response:
    """One of the centre's base layers, as GeoJSON."""
    layer = request.app[keys.MAP].layers.get(request.match_info["name"])
    if layer is None:
        raise JsonError(404, f"no map layer {request.match_info['name']!r}")
    return web.Response(body=layer[1], content_type="application/geo+json",
                        headers={"Cache-Control": "private, max-age=3600"})  # fmt: skip


@routes.get("/api/map/grids")
@allow(*WALL)
async def map_grids(request: web.Request) -> web.Response:
    """The grids as GeoJSON, each with its tickets in the surge window and whether it warns."""
    basemap, grids = request.app[keys.MAP], request.app[keys.GRIDS]
    counts = await grids.states(list(basemap.grids))
    features = [
        {**f, "properties": {**f["properties"], **counts[f["properties"]["name"]]}}
        for f in basemap.grid_features
    ]
    return web.json_response({"type": "FeatureCollection", "features": features,
                              "window_s": grids.window_s, "threshold": grids.threshold})  # fmt: skip


class AlertsQuery(BaseModel):
    state: Literal["open", "acked"] = "open"


@routes.get("/api/alerts")
@allow(*DESK, query=AlertsQuery)
async def list_alerts(request: web.Request) -> web.Response:
    """Open alerts (or `?state=acked`: acknowledged in the last week), newest first."""
    alerts = await request.app[keys.ALERTS].list(query(request, AlertsQuery).state)
    return web.json_response({"alerts": [a.model_dump(mode="json") for a in alerts]})


@routes.post("/api/alerts/{id}/ack")
@allow(*DESK)
async def ack_alert(request: web.Request) -> web.Response:
    """Acknowledge an alert, for every wall (409 when it already is)."""
    principal = request["principal"]
    try:
        alert = await request.app[keys.ALERTS].ack(request.match_info["id"], principal.username)
    except AlertError as e:
        raise JsonError(e.status, str(e)) from None
    return web.json_response(alert.model_dump(mode="json"))


@routes.get("/api/streams")
@allow(*WALL, "officer", owner="An officer sees only the streams he may watch.")
async def published_streams(request: web.Request) -> web.Response:
    """Streams published to any node of the centre (drones, phones, encoders) that the
    caller may watch; those on other nodes as their node last said (the state board)."""
    principal = request["principal"]
    app = request.app
    cfg = app[keys.CONFIG]
    here = {s.id: s for s in list(app[keys.HUB].streams.values()) if s.pushed}
    elsewhere = [i for i in await app[keys.PUBLISHED].everywhere() if i not in here]
    states = await app[keys.STATE_BOARD].read(elsewhere)
    out = [{"id": s.id, "via": s.source.params.get("via"), "online": s.state.online,
            "width": s.state.width, "height": s.state.height} for s in here.values()]  # fmt: skip
    out += [{"id": i, "via": st.get("via"), "online": st["online"], "width": st["width"], "height": st["height"]}
            for i, st in states.items()]  # fmt: skip
    return web.json_response({"streams": sorted((s for s in out if may_watch(cfg, principal, s["id"])),
                                                key=lambda s: s["id"])})  # fmt: skip


def _layout_key(username: str) -> str:
    return f"gw:layout:{username}"


@routes.get("/api/me/layout")
@allow(*WALL, owner="A user reads and writes his own layout only.")
async def get_layout(request: web.Request) -> web.Response:
    """The caller's video wall layout."""
    principal = request["principal"]
    blob = await request.app[keys.REDIS].get(_layout_key(principal.username))
    try:
        layout = WallLayout.model_validate_json(blob) if blob else WallLayout()
    except ValidationError:  # saved by an older version: start from the default
        layout = WallLayout()
    return web.json_response(layout.model_dump())


@routes.put("/api/me/layout")
@allow(*WALL, body=WallLayout, owner="A user reads and writes his own layout only.")
async def put_layout(request: web.Request) -> web.Response:
    """Keep the caller's video wall layout."""
    principal = request["principal"]
    layout = await body(request, WallLayout, "invalid_layout")
    await request.app[keys.REDIS].set(_layout_key(principal.username), layout.model_dump_json())
    return web.json_response(layout.model_dump())
