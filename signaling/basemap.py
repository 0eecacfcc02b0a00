"""The wall's base map, read once at start: the centre's GeoJSON layers (roads, buildings,
water, ...), the grids (which also tag tickets), and the tile server the centre may run.

Every file is checked when the node starts (and by `gridwatch check-config`): an error
names the config field and the feature, never a stack trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from shapely.geometry import mapping

from gridwatch.dispatch.grids import GridError, load_grids
from gridwatch.signaling.config import Config, ConfigError, MapConfig

MAX_LAYER_BYTES = 50 * 1024 * 1024
GEOMETRIES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon",
              "MultiPolygon", "GeometryCollection"}  # fmt: skip


@dataclass
class BaseMap:
    """`grids`: name -> shapely polygon; `grid_features`: the same as GeoJSON features;
    `layers`: layer name -> (kind, the FeatureCollection as JSON bytes)."""

    config: MapConfig = field(default_factory=MapConfig)
    grids: dict[str, object] = field(default_factory=dict)
    grid_features: list[dict] = field(default_factory=list)
    layers: dict[str, tuple[str, bytes]] = field(default_factory=dict)


def _layer(path: Path, where: str) -> bytes:
    try:
        if path.stat().st_size > MAX_LAYER_BYTES:
            raise ConfigError([f"{where}: {path}: larger than {MAX_LAYER_BYTES // 2**20} MB"])
        doc = json.loads(path.read_bytes())
    except OSError as e:
        raise ConfigError([f"{where}: {path}: cannot read: {e.strerror}"]) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError([f"{where}: {path}: not JSON: {e}"]) from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ConfigError([f"{where}: {path}: must be a GeoJSON FeatureCollection"])
    features = doc.get("features")
    if not isinstance(features, list):
        raise ConfigError([f"{where}: {path}: features must be a list"])
    for i, f in enumerate(features):
        geometry = f.get("geometry") if isinstance(f, dict) else None
        if not isinstance(geometry, dict) or geometry.get("type") not in GEOMETRIES:
            raise ConfigError([f"{where}: {path}: features.{i}: needs a GeoJSON geometry"])
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def load_basemap(config: Config) -> BaseMap:
    """Read and check the grids and the map layers; raises ConfigError naming the field."""
    grids: dict[str, object] = {}
    if config.grids.geojson:
        try:
            grids = load_grids(config.grids.geojson)
        except GridError as e:
            raise ConfigError([str(e)]) from None
    features = [{"type": "Feature", "properties": {"name": name}, "geometry": mapping(shape)}
                for name, shape in grids.items()]  # fmt: skip
    layers = {
        layer.name: (layer.kind, _layer(layer.geojson, f"map.layers.{i}.geojson"))
        for i, layer in enumerate(config.map.layers)
    }
    return BaseMap(config.map, grids, features, layers)
