"""Grids: GeoJSON polygons that tag tickets, and the surge warning per grid.

A grid whose ticket count in a sliding window reaches its threshold raises one
warning per window (`gw:grid:{name}:tickets` sorted set, `gw:grid:{name}:warned` flag).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import redis.asyncio as aioredis
from shapely import STRtree
from shapely.errors import GEOSException
from shapely.geometry import Point, shape
from shapely.validation import explain_validity


class GridError(ValueError):
    pass


def load_grids(path: Path) -> dict[str, object]:
    """Grid name -> polygon, from a FeatureCollection; errors name the feature."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GridError(f"grids.geojson: {path}: {e}") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise GridError(f"grids.geojson: {path}: must be a GeoJSON FeatureCollection")
    grids: dict[str, object] = {}
    for i, feature in enumerate(doc.get("features") or []):
        props = (feature or {}).get("properties") or {}
        name = props.get("name") or props.get("id") or feature.get("id")
        if not isinstance(name, str | int) or str(name) == "":
            raise GridError(f"grids.geojson: features.{i}: needs properties.name")
        try:
            geom = shape(feature.get("geometry"))
        except (GEOSException, AttributeError, KeyError, TypeError, ValueError) as e:
            raise GridError(f"grids.geojson: features.{i} ({name}): bad geometry: {e}") from None
        if geom.geom_type not in ("Polygon", "MultiPolygon") or not geom.is_valid:
            raise GridError(f"grids.geojson: features.{i} ({name}): {explain_validity(geom)}")
        if str(name) in grids:
            raise GridError(f"grids.geojson: features.{i}: duplicate name {name!r}")
        grids[str(name)] = geom
    return grids


class Grids:
    def __init__(
        self, redis: aioredis.Redis, polygons: dict[str, object], window_s: float, threshold: int
    ):
        self.redis = redis
        self.names = list(polygons)
        self.tree = STRtree(list(polygons.values())) if polygons else None
        self.window_s = window_s
        self.threshold = threshold

    def locate(self, lat: float, lon: float) -> str | None:
        if self.tree is None:
            return None
        hits = self.tree.query(Point(lon, lat), predicate="intersects")
        return self.names[min(hits)] if len(hits) else None

    async def states(self, names: list[str], now: float | None = None) -> dict[str, dict]:
        """Each grid's {count: tickets in the window, warning: raised in this window}."""
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.zcount(f"gw:grid:{name}:tickets", now - self.window_s, "+inf")
            pipe.exists(f"gw:grid:{name}:warned")
        got = await pipe.execute()
        return {name: {"count": got[2 * i], "warning": bool(got[2 * i + 1])}
                for i, name in enumerate(names)}  # fmt: skip

    async def count(self, grid: str, ticket_id: str, now: float | None = None) -> int | None:
        """Count a new ticket; returns the window's count when it raises the warning."""
        now = time.time() if now is None else now
        key = f"gw:grid:{grid}:tickets"
        async with self.redis.pipeline(transaction=True) as p:
            p.zadd(key, {ticket_id: now}).zremrangebyscore(key, "-inf", now - self.window_s)
            p.zcard(key).expire(key, int(self.window_s) + 60)
            _, _, n, _ = await p.execute()
        if n < self.threshold:
            return None
        # One warning per window, however many nodes see the threshold crossed.
        fresh = await self.redis.set(f"gw:grid:{grid}:warned", now, nx=True, ex=int(self.window_s))
        return n if fresh else None
