"""What a centre is judged on, measured from the report (the ticket's creation), as NFPA
1710 reports response times: for each step (offered, accepted, on scene, resolved, closed)
the 50th and 90th percentile of the time from the report to the first time the ticket
reached it; the on-time rate (on scene within the category's `arrive_s` of the report,
a ticket never reached counting as late once that time has passed); open, waiting and
overdue tickets now; overall, per grid and per category.

Rates and steps cover the tickets reported in the window; `open`, `waiting` and
`overdue` are the centre's state now, whenever those tickets were reported.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

from gridwatch.contracts.states import ACTIVE, TERMINAL, WAITING
from gridwatch.dispatch.tickets import Ticket

DROPPED = {"rejected", "cancelled"}  # no case: neither on time nor late
# step -> the state whose first time ends it
STEPS = {"offered": "dispatched", "accepted": "accepted", "on_scene": "on_scene",
         "resolved": "resolved", "closed": "closed"}  # fmt: skip


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50_s": None, "p90_s": None}
    p50, p90 = np.percentile(values, [50, 90])
    return {"n": len(values), "p50_s": round(float(p50), 1), "p90_s": round(float(p90), 1)}


def overdue(t: Ticket, arrive_s: float, now: float) -> bool:
    """Open and late: escalated, or not on scene `arrive_s` after the report."""
    if t.state in TERMINAL:
        return False
    return t.overdue or ("on_scene" not in t.first and now - t.created_at > arrive_s)


def summarise(reported: list[Ticket], current: list[Ticket], arrive_s: Callable[[str], float],
              now: float) -> dict:  # fmt: skip
    """`reported`: the tickets reported in the window; `current`: the open ones now."""
    counted = [t for t in reported if t.state not in DROPPED]
    on_time = late = 0
    for t in counted:
        limit = arrive_s(t.category)
        arrived = t.first.get("on_scene")
        if arrived is not None and arrived - t.created_at <= limit:
            on_time += 1
        elif arrived is not None or now - t.created_at > limit:
            late += 1  # never reached counts as late once its time has passed
    decided = on_time + late
    steps = {name: _percentiles([t.first[state] - t.created_at for t in counted if state in t.first])
             for name, state in STEPS.items()}  # fmt: skip
    return {
        "tickets": len(reported),
        "open": len(current),
        "waiting": sum(t.state in WAITING for t in current),
        "active": sum(t.state in ACTIVE for t in current),
        "overdue": sum(overdue(t, arrive_s(t.category), now) for t in current),
        "closed": sum(t.state == "closed" for t in reported),
        "closure_rate": round(sum(t.state == "closed" for t in counted) / len(counted), 4) if counted else None,
        "on_time": on_time,
        "late": late,
        "on_time_rate": round(on_time / decided, 4) if decided else None,
        "steps": steps,
        "median_response_s": steps["accepted"]["p50_s"],
        "median_arrival_s": steps["on_scene"]["p50_s"],
    }


def report(reported: list[Ticket], current: list[Ticket], arrive_s: Callable[[str], float], now: float) -> dict:
    """`summarise` overall, per grid and per category."""
    groups: dict[str, dict[str, tuple[list[Ticket], list[Ticket]]]] = {"grids": defaultdict(lambda: ([], [])),
                                                                        "categories": defaultdict(lambda: ([], []))}  # fmt: skip
    for which, ts in enumerate((reported, current)):
        for t in ts:
            groups["grids"][t.grid or "(none)"][which].append(t)
            groups["categories"][t.category][which].append(t)
    out = {"all": summarise(reported, current, arrive_s, now)}
    for name, by in groups.items():
        out[name] = {k: summarise(r, c, arrive_s, now) for k, (r, c) in sorted(by.items())}
    return out
