"""A point on the map, as every part of Gridwatch gives one: a camera's place, an
incident's, the map's centre."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Redis GEO (Web Mercator) takes latitudes up to this; nobody patrols closer to a pole.
GEO_LAT = 85.05112878


class Position(BaseModel):
    """WGS 84 degrees: `lat` within ±GEO_LAT, `lon` within ±180; finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    lat: Annotated[float, Field(ge=-GEO_LAT, le=GEO_LAT)]
    lon: Annotated[float, Field(ge=-180, le=180)]
