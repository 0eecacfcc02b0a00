"""How far an officer really is from an incident: along the centre's road network when it
provides one (GeoJSON lines; networkx shortest paths, one Dijkstra per incident, cached),
else the straight line times a road factor. An officer the roads do not connect to the
place (across a river with no bridge) is unreachable, whatever the straight line says.
"""

from __future__ import annotations

import itertools
import json
import math
from functools import lru_cache
from pathlib import Path

import networkx as nx
import numpy as np
from scipy.spatial import cKDTree
from shapely.geometry import LineString, MultiLineString, shape
from shapely.ops import unary_union

EARTH_M = 6_371_008.8
SNAP_FACTOR = 1.3  # off the network (to the nearest node) a walk is not straight either


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_M * math.asin(math.sqrt(a))


class RoadError(ValueError):
    pass


class Router:
    """Distances in metres from an incident to officers: `road_m(to, froms)`."""

    def __init__(self, road_factor: float, roads: Path | None = None, cutoff_m: float = 20_000):
        self.road_factor = road_factor
        self.cutoff_m = cutoff_m
        self.graph: nx.Graph | None = None
        if roads is not None:
            self._load(roads)

    def _load(self, path: Path) -> None:
        try:
            doc = json.loads(Path(path).read_text())
            lines = [shape(f["geometry"]) for f in doc["features"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RoadError(f"dispatch.roads: {path}: {e}") from None
        lines = [g for g in lines if isinstance(g, LineString | MultiLineString)]
        if not lines:
            raise RoadError(f"dispatch.roads: {path}: no LineString features")
        # Noded: lines that cross share a vertex there, so that a turn is possible.
        merged = unary_union(lines)
        parts = list(merged.geoms) if hasattr(merged, "geoms") else [merged]
        graph = nx.Graph()
        for part in parts:
            coords = list(part.coords)
            for (lon1, lat1), (lon2, lat2) in itertools.pairwise(coords):
                a, b = (round(lon1, 7), round(lat1, 7)), (round(lon2, 7), round(lat2, 7))
                graph.add_edge(a, b, weight=distance_m(lat1, lon1, lat2, lon2))
        self.graph = graph
        self.nodes = list(graph.nodes)
        lat0 = math.radians(float(np.mean([n[1] for n in self.nodes])))
        self._scale = np.array([math.cos(lat0), 1.0]) * math.radians(1) * EARTH_M  # lon, lat -> metres
        self.tree = cKDTree(np.array(self.nodes) * self._scale)
        self._from_node = lru_cache(maxsize=512)(self._dijkstra)

    def _nearest(self, lat: float, lon: float) -> tuple[tuple[float, float], float]:
        d, i = self.tree.query(np.array([lon, lat]) * self._scale)
        return self.nodes[int(i)], float(d)

    def _dijkstra(self, node: tuple[float, float]) -> dict:
        return nx.single_source_dijkstra_path_length(self.graph, node, cutoff=self.cutoff_m)

    def road_m(self, to: tuple[float, float], froms: list[tuple[float, float]]) -> list[float]:
        """Metres from each (lat, lon) in `froms` to `to`; math.inf where no road leads."""
        if self.graph is None:
            return [distance_m(*f, *to) * self.road_factor for f in froms]
        target, snap_t = self._nearest(*to)
        lengths = self._from_node(target)  # the roads are two-way: one search serves all
        out = []
        for lat, lon in froms:
            node, snap = self._nearest(lat, lon)
            along = lengths.get(node)
            out.append(math.inf if along is None else along + (snap + snap_t) * SNAP_FACTOR)
        return out
