"""The dispatch config: deadlines, the search for officers, ETA speeds and roads, the
queue's waits, officers, tracks and grids."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from gridwatch.contracts.config import CAMERA_ID, Strict

Mode = Literal["foot", "bicycle", "ebike", "car"]

class Officer(Strict):
    id: Annotated[str, Field(pattern=CAMERA_ID)]
    name: str | None = None
    grid: str | None = None
    mode: Mode | None = None  # how he patrols; dispatch.default_mode when not given

class TracksConfig(Strict):
    # A phone sends a fix at least this often, standing still too (its page keeps the
    # fixes it could not send, with their own times, and sends them when back online).
    heartbeat_s: Annotated[float, Field(ge=1, le=300)] = 10.0

class GridWarn(Strict):
    window_s: Annotated[int, Field(gt=0, le=366 * 86400)] = 3600
    threshold: Annotated[int, Field(gt=0, le=1_000_000)] = 10

class GridsConfig(Strict):
    geojson: Path | None = None
    warn: GridWarn = GridWarn()

class CategoryConfig(Strict):
    mode: Literal["auto", "suggest"] = "auto"  # auto: offer to the nearest at once
    accept_s: Annotated[float, Field(gt=0, le=30 * 86400)] | None = None
    arrive_s: Annotated[float, Field(gt=0, le=30 * 86400)] | None = None
    resolve_s: Annotated[float, Field(gt=0, le=30 * 86400)] | None = None

class DispatchConfig(Strict):
    accept_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 120
    arrive_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 300
    resolve_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 3600
    arrive_radius_m: Annotated[float, Field(gt=0, le=10_000)] = 50
    remind_before_s: Annotated[float, Field(ge=0, le=30 * 86400)] = 60
    search_radius_m: Annotated[float, Field(gt=0, le=100_000)] = 5000
    search_count: Annotated[int, Field(ge=1, le=1000)] = 50
    # Speeds for an ETA (m/s, a city's traffic and crossings included), by how an officer
    # patrols; his own track's moving speed refines it.
    speeds: dict[Mode, Annotated[float, Field(gt=0, le=50)]] = {
        "foot": 1.4, "bicycle": 4.0, "ebike": 5.5, "car": 7.0}  # fmt: skip
    default_mode: Mode = "foot"
    # The centre's road network (GeoJSON lines): ETAs along it; else straight line x factor.
    roads: Path | None = None
    road_factor: Annotated[float, Field(ge=1, le=5)] = 1.3  # streets are longer than straight lines
    # A ticket nobody could take waits in the queue: reminded then escalated after this.
    wait_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 180
    decline_bar_s: Annotated[float, Field(ge=0, le=86400)] = 600  # a decline bars him this long
    # Tickets and officers that turn up within this of each other are matched together
    # (one assignment), not one at a time in arrival order.
    match_window_s: Annotated[float, Field(ge=0, le=10)] = 0.1
    # Offers go only to officers whose own phone reported within this (None: stale_s).
    reachable_s: Annotated[float, Field(gt=0, le=86400)] | None = None
    stale_s: Annotated[float, Field(gt=0, le=86400)] = 120
    track_retain_s: Annotated[float, Field(gt=0, le=366 * 86400)] = 7 * 86400
    claim_idle_s: Annotated[float, Field(gt=0, le=86400)] = 30  # violations a dead node held move on after this
    categories: dict[str, CategoryConfig] = {}

    def mode(self, category: str) -> str:
        cat = self.categories.get(category)
        return cat.mode if cat else "auto"

    def limits(self, category: str) -> dict[str, float]:
        cat = self.categories.get(category) or CategoryConfig()
        return {
            "accept": cat.accept_s or self.accept_s,
            "arrive": cat.arrive_s or self.arrive_s,
            "resolve": cat.resolve_s or self.resolve_s,
        }

    @staticmethod
    def steps() -> tuple[str, ...]:
        return ("accept", "arrive", "arrive:remind", "resolve", "resolve:remind", "wait", "wait:remind")
