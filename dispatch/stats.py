"""What a centre is judged on: open and overdue cases, closure and on-time rates,
response and arrival times — overall, per grid and per category."""

from __future__ import annotations

import statistics
from collections import defaultdict

from dispatch.tickets import Ticket

OPEN_STATES = {
    "new",
    "dispatched",
    "accepted",
    "on_scene",
    "resolved",
    "verified",
    "reassigned",
    "suspended",
}
DONE = {"resolved", "verified", "closed"}
DROPPED = {"rejected", "cancelled"}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def summarise(tickets: list[Ticket]) -> dict:
    counted = [t for t in tickets if t.state not in DROPPED]
    done = [t for t in counted if t.state in DONE or "resolved" in t.times]
    # Response: from the report to an officer taking it; arrival: from dispatch to the scene.
    response = [t.times["accepted"] - t.created_at for t in counted if "accepted" in t.times]
    arrival = [t.times["on_scene"] - t.times["dispatched"] for t in counted
               if "on_scene" in t.times and "dispatched" in t.times]  # fmt: skip
    return {
        "tickets": len(tickets),
        "open": sum(t.state in OPEN_STATES for t in tickets),
        "overdue": sum(t.overdue and t.state in OPEN_STATES for t in tickets),
        "closed": sum(t.state == "closed" for t in tickets),
        "closure_rate": round(sum(t.state == "closed" for t in counted) / len(counted), 4)
        if counted
        else None,
        "on_time_rate": round(sum(not t.overdue for t in done) / len(done), 4) if done else None,
        "median_response_s": _median(response),
        "median_arrival_s": _median(arrival),
    }


def report(tickets: list[Ticket]) -> dict:
    by_grid: dict[str, list[Ticket]] = defaultdict(list)
    by_category: dict[str, list[Ticket]] = defaultdict(list)
    for t in tickets:
        by_grid[t.grid or "(none)"].append(t)
        by_category[t.category].append(t)
    return {
        "all": summarise(tickets),
        "grids": {g: summarise(ts) for g, ts in sorted(by_grid.items())},
        "categories": {c: summarise(ts) for c, ts in sorted(by_category.items())},
    }
