"""A city patrol against the real server: officers on foot and on e-bikes patrol a 6 km
district, their phones send fixes over /ws, incidents come at random (Poisson, with hot
spots), officers accept after 5-60 s, sometimes decline or ignore an offer, walk or ride
to the scene (along a street grid), work there and resolve; a dispatcher verifies and
closes. Arrival is left to the server (it judges it from the fixes).

    .venv/bin/python tests/bench/patrol_sim.py --officers 200 --per-day 10000 --minutes 12
    .venv/bin/python tests/bench/patrol_sim.py --officers 50 --per-day 10000 --minutes 8

Time runs `--speedup` times faster than the wall clock, in the world and in the server's
config alike (speeds x k; deadlines, delays and fix intervals / k), so that hours of a
shift fit in minutes; every figure printed is in the world's seconds. It prints, for the
incidents reported during the run (each followed for 300 s after):
- the share on scene within 300 s among incidents someone free could reach in 300 s
  (the officer's true speed along the streets), and the same for an oracle run on the
  same incidents and officers that knows every officer's true position and speed and
  offers each incident at once to the one who is truly soonest there (the baseline);
- p50/p90 per step from the report (offered, accepted, on scene, resolved, closed);
- the pending queue's longest length and oldest age, sampled;
- waiting tickets found without a reason, or past `wait_s` without an escalation;
- `/api/stats` against the simulation's own count of the same tickets.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridwatch.signaling.auth import hash_password
from support.procs import GridwatchServer, RedisServer, hashed_users

CENTRE = (31.26, 120.92)
M_LAT = 111_320.0
M_LON = M_LAT * math.cos(math.radians(CENTRE[0]))
RADIUS_M = 3000.0  # a 6 km district
TARGET_S = 300.0
HOT_SPOTS = [(-900.0, 400.0), (700.0, -600.0), (300.0, 1200.0)]
PROFILE = {"foot": 1.4, "ebike": 5.5}  # m/s, the config's profiles (the world's seconds)
TRUE = {"foot": (1.1, 1.7), "ebike": (4.0, 7.0)}  # each officer's own speed is drawn here
WORK_S = (60.0, 300.0)
ACCEPT_S = (5.0, 60.0)
P_DECLINE, P_IGNORE = 0.08, 0.04
PASSWORD = "patrol-pw"


def ll(x: float, y: float) -> dict:
    return {"lat": CENTRE[0] + y / M_LAT, "lon": CENTRE[1] + x / M_LON}


def street_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Along a street grid: east-west then north-south."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def step_towards(p: tuple[float, float], t: tuple[float, float], d: float) -> tuple[float, float]:
    x, y = p
    dx = t[0] - x
    if abs(dx) > 1e-6:
        m = min(d, abs(dx))
        return (x + math.copysign(m, dx), y) if m == d else step_towards((t[0], y), t, d - m)
    dy = t[1] - y
    return (x, y + math.copysign(min(d, abs(dy)), dy))


@dataclass
class Incident:
    n: int
    at: float  # world seconds since the start
    pos: tuple[float, float]
    rng_seed: int
    reachable: bool = False
    ticket: str | None = None
    arrived_at: float | None = None  # world seconds: the officer stood there (the sim's count)


@dataclass
class Officer:
    id: str
    mode: str
    speed: float  # his true speed, m/s
    pos: tuple[float, float]
    rng: random.Random
    target: tuple[float, float] | None = None  # a patrol leg's end, or the scene
    ticket: str | None = None
    state: str = "patrol"  # patrol, deciding, to_scene, working
    ws: aiohttp.ClientWebSocketResponse | None = None
    token: str = ""
    offers_while_busy: int = 0

    def patrol_leg(self) -> tuple[float, float]:
        while True:
            d = self.rng.uniform(100, 400)
            dx, dy = self.rng.choice([(1, 0), (-1, 0), (0, 1), (0, -1)])
            t = (self.pos[0] + dx * d, self.pos[1] + dy * d)
            if math.hypot(*t) < RADIUS_M:
                return t

    def move(self, dt: float) -> None:
        if self.state == "patrol":
            if self.target is None or self.pos == self.target:
                self.target = self.patrol_leg()
            self.pos = step_towards(self.pos, self.target, self.speed * dt)
        elif self.state == "to_scene" and self.target:
            self.pos = step_towards(self.pos, self.target, self.speed * dt)


def make_world(n_officers: int, per_day: float, world_s: float, seed: int):
    rng = random.Random(seed)
    officers = []
    for i in range(n_officers):
        mode = "ebike" if i % 5 < 2 else "foot"
        r, a = RADIUS_M * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        officers.append(Officer(f"p{i:03d}", mode, rng.uniform(*TRUE[mode]), (r * math.cos(a), r * math.sin(a)),
                                random.Random(seed * 1000 + i)))  # fmt: skip
    incidents, t, n = [], 0.0, 0
    while True:
        t += rng.expovariate(per_day / 86400)
        if t > world_s:
            break
        if rng.random() < 0.6:
            hx, hy = rng.choice(HOT_SPOTS)
            pos = (rng.gauss(hx, 300), rng.gauss(hy, 300))
        else:
            r, a = RADIUS_M * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            pos = (r * math.cos(a), r * math.sin(a))
        incidents.append(Incident(n, t, pos, rng.randrange(1 << 30)))
        n += 1
    return officers, incidents


def behaviour(incident: Incident, officer: str) -> tuple[str, float, float]:
    """What an officer does with an offer of this incident (the same in both runs):
    (accept/decline/ignore, seconds to decide, seconds of work on scene)."""
    rng = random.Random(f"{incident.rng_seed}/{officer}")
    roll = rng.random()
    what = "ignore" if roll < P_IGNORE else "decline" if roll < P_IGNORE + P_DECLINE else "accept"
    return what, rng.uniform(*ACCEPT_S), rng.uniform(*WORK_S)


def reachable(officers: list[Officer], pos: tuple[float, float]) -> bool:
    return any(o.state == "patrol" and street_m(o.pos, pos) / o.speed <= TARGET_S for o in officers)


# --- the oracle ------------------------------------------------------------------


def oracle(officers: list[Officer], incidents: list[Incident], accept_s: float, tail_s: float) -> dict:
    """The same incidents and officers, dispatched by one who knows every officer's true
    position and speed: each waiting incident (oldest first) is offered at once to the free
    officer truly soonest there; declines and ignores as in the real run; 1 s steps."""
    world = [Officer(o.id, o.mode, o.speed, o.pos, random.Random(o.id)) for o in officers]
    by_id = {o.id: o for o in world}
    waiting: list[Incident] = []
    barred: dict[int, set[str]] = {}
    pending: list[tuple[float, int, str, str, Incident]] = []  # (due, seq, officer, what, incident)
    arrived: dict[int, float] = {}
    reach: dict[int, bool] = {}
    queue = sorted(incidents, key=lambda i: i.at)
    end = (queue[-1].at if queue else 0) + tail_s
    t, k, seq = 0.0, 0, 0
    while t <= end:
        while k < len(queue) and queue[k].at <= t:
            reach[queue[k].n] = reachable(world, queue[k].pos)
            waiting.append(queue[k])
            k += 1
        while pending and pending[0][0] <= t:
            _, _, oid, what, inc = heapq.heappop(pending)
            o = by_id[oid]
            if what == "decided":
                act, _, work = behaviour(inc, oid)
                if act == "accept":
                    o.state, o.target = "to_scene", inc.pos
                    o.work, o.inc = work, inc  # type: ignore[attr-defined]
                else:
                    o.state, o.ticket = "patrol", None
                    barred.setdefault(inc.n, set()).add(oid)
                    waiting.insert(0, inc)
            elif what == "done":
                o.state, o.ticket, o.target = "patrol", None, None
        for inc in list(waiting):
            free = [o for o in world if o.state == "patrol" and o.id not in barred.get(inc.n, ())]
            if not free:
                break
            best = min(free, key=lambda o: street_m(o.pos, inc.pos) / o.speed)
            waiting.remove(inc)
            best.state, best.ticket = "deciding", str(inc.n)
            act, decide, _ = behaviour(inc, best.id)
            seq += 1
            heapq.heappush(pending, (t + (accept_s if act == "ignore" else decide), seq, best.id, "decided", inc))
        for o in world:
            o.move(1.0)
            if o.state == "to_scene" and o.pos == o.target:
                inc = o.inc  # type: ignore[attr-defined]
                arrived.setdefault(inc.n, t)
                o.state = "working"
                seq += 1
                heapq.heappush(pending, (t + o.work, seq, o.id, "done", inc))  # type: ignore[attr-defined]
        t += 1.0
    return {"reach": reach, "arrived": arrived}


def share(incidents: list[Incident], arrived: dict[int, float], reach: dict[int, bool]) -> tuple[float, int]:
    pool = [i for i in incidents if reach[i.n]]
    ok = sum(1 for i in pool if i.n in arrived and arrived[i.n] - i.at <= TARGET_S)
    return (ok / len(pool) if pool else float("nan")), len(pool)


# --- the real run -----------------------------------------------------------------


class Run:
    def __init__(self, gw: GridwatchServer, officers: list[Officer], incidents: list[Incident], k: float,
                 cfg: dict):  # fmt: skip
        self.gw, self.officers, self.incidents, self.k, self.cfg = gw, officers, incidents, k, cfg
        self.by_id = {o.id: o for o in officers}
        self.by_ticket: dict[str, Incident] = {}
        self.t0 = 0.0
        self.queue_max, self.queue_oldest = 0, 0.0
        self.no_reason: set[str] = set()
        self.no_escalation: set[str] = set()
        self.errors: list[str] = []
        self.tasks: set[asyncio.Task] = set()

    def world(self) -> float:
        return (time.monotonic() - self.t0) * self.k

    def spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def call(self, http, method, path, token, **kw):
        async with http.request(method, self.gw.base + path, headers={"Authorization": f"Bearer {token}"}, **kw) as r:
            body = await r.json()
            return r.status, body

    async def login(self, http, user: str) -> str:
        async with http.post(self.gw.base + "/api/login", json={"username": user, "password": PASSWORD}) as r:
            return (await r.json())["token"]

    async def run(self, world_s: float, tail_s: float) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            self.desk = await self.login(http, "desk")
            for o in self.officers:
                o.token = await self.login(http, o.id)
                o.ws = await http.ws_connect(self.gw.base + "/ws", headers={"Authorization": f"Bearer {o.token}"},
                                             heartbeat=None, max_msg_size=0)  # fmt: skip
                self.spawn(self.listen(http, o))
            self.t0 = time.monotonic()
            self.spawn(self.fixes())
            self.spawn(self.watch(http))
            k, n = 0, len(self.incidents)
            last = time.monotonic()
            while (now_w := self.world()) <= world_s + tail_s:
                while k < n and self.incidents[k].at <= now_w:
                    inc = self.incidents[k]
                    inc.reachable = reachable(self.officers, inc.pos)
                    self.spawn(self.report(http, inc))
                    k += 1
                dt = (time.monotonic() - last) * self.k
                last = time.monotonic()
                for o in self.officers:
                    o.move(dt)
                    inc = self.by_ticket.get(o.ticket or "")
                    if (inc and inc.arrived_at is None and o.state in ("to_scene", "working")
                            and math.dist(o.pos, inc.pos) <= self.cfg["arrive_radius_m"]):  # fmt: skip
                        inc.arrived_at = self.world()
                await asyncio.sleep(0.05)
            for o in self.officers:
                await o.ws.close()
            for t in list(self.tasks):
                t.cancel()

    async def report(self, http, inc: Incident) -> None:
        body = {"category": "street_stall", "location": ll(*inc.pos), "key": f"inc-{inc.n}"}
        status, t = await self.call(http, "POST", "/api/tickets", self.desk, json=body)
        if status not in (200, 201):
            self.errors.append(f"create: {status} {t}")
            return
        inc.ticket = t["id"]
        self.by_ticket[t["id"]] = inc
        inc.at_server = t["created_at"]  # type: ignore[attr-defined]

    async def fixes(self) -> None:
        """Each phone sends a fix every 5-10 world seconds (the server needs them to judge
        arrival and freshness)."""
        due = {o.id: random.uniform(0, 5) for o in self.officers}
        while True:
            now = self.world()
            for o in self.officers:
                if due[o.id] <= now:
                    due[o.id] = now + random.uniform(5, 10)
                    try:
                        await o.ws.send_json({"type": "track.fix", **ll(*o.pos), "time": time.time()})
                    except ConnectionError:
                        return
            await asyncio.sleep(0.02)

    async def listen(self, http, o: Officer) -> None:
        async for msg in o.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            m = json.loads(msg.data)
            if m.get("id"):
                await o.ws.send_json({"type": "ack", "id": m["id"]})
            t = m.get("ticket")
            if not isinstance(t, dict):
                continue
            if m["type"] == "ticket.dispatch" and t["assignee"] == o.id and t["state"] == "dispatched":
                if o.state != "patrol":
                    o.offers_while_busy += 1
                    continue
                self.spawn(self.decide(http, o, t["id"]))
            elif m["type"] in ("ticket.decline", "ticket.reassign", "ticket.cancel") and o.ticket == t["id"]:
                o.state, o.ticket, o.target = "patrol", None, None
            elif m["type"] == "ticket.arrive" and o.ticket == t["id"] and o.state == "to_scene":
                o.state = "working"
                self.spawn(self.work(http, o, t["id"]))

    async def decide(self, http, o: Officer, tid: str) -> None:
        inc = self.by_ticket.get(tid)
        while inc is None:  # the offer overtook the creation's answer
            await asyncio.sleep(0.01)
            inc = self.by_ticket.get(tid)
        what, decide_s, _ = behaviour(inc, o.id)
        o.state, o.ticket = "deciding", tid
        if what == "ignore":
            return  # the server passes it on after accept_s; the event frees him
        await asyncio.sleep(decide_s / self.k)
        if o.ticket != tid:
            return
        status, _t = await self.call(http, "POST", f"/api/tickets/{tid}/actions", o.token,
                                    json={"action": what, "reason": "busy with a citizen" if what == "decline" else ""})  # fmt: skip
        if status != 200:
            o.state, o.ticket = "patrol", None
            return
        if what == "accept":
            o.state, o.target = "to_scene", inc.pos
        else:
            o.state, o.ticket, o.target = "patrol", None, None

    async def work(self, http, o: Officer, tid: str) -> None:
        _, _, work_s = behaviour(self.by_ticket[tid], o.id)
        await asyncio.sleep(work_s / self.k)
        await self.call(http, "POST", f"/api/tickets/{tid}/actions", o.token, json={"action": "resolve"})
        o.state, o.ticket, o.target = "patrol", None, None
        for action in ("verify", "close"):
            await self.call(http, "POST", f"/api/tickets/{tid}/actions", self.desk, json={"action": action})

    async def watch(self, http) -> None:
        """Every 2 s: the queue, and the waiting tickets' reasons and escalations."""
        wait_s = self.cfg["wait_s"]
        while True:
            await asyncio.sleep(2.0)
            _, stats = await self.call(http, "GET", "/api/stats?window_s=60", self.desk)
            q = stats["queue"]
            self.queue_max = max(self.queue_max, q["length"])
            self.queue_oldest = max(self.queue_oldest, (q["oldest_s"] or 0) * self.k)
            _, page = await self.call(http, "GET", "/api/tickets?state=new&state=reassigned&limit=1000", self.desk)
            now = time.time()
            for t in page["tickets"]:
                since = t["times"].get(t["state"], t["created_at"])
                if not t["note"] and now - since > 1.5:  # a round has passed since it began to wait
                    self.no_reason.add(t["id"])
                if now - since > wait_s + 2.0 and not t["overdue"]:
                    self.no_escalation.add(t["id"])


def scaled_config(k: float) -> dict:
    return {"accept_s": 120 / k, "arrive_s": TARGET_S / k, "resolve_s": 3600 / k, "wait_s": 180 / k,
            "remind_before_s": 60 / k, "stale_s": 120 / k, "decline_bar_s": 600 / k, "arrive_radius_m": 50,
            "search_radius_m": 8000, "speeds": {m: v * k for m, v in PROFILE.items()}}  # fmt: skip


def pcts(values: list[float]) -> str:
    if not values:
        return "n=0"
    p50, p90 = np.percentile(values, [50, 90])
    return f"p50 {p50:.0f} s, p90 {p90:.0f} s (n={len(values)})"


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--officers", type=int, default=200)
    p.add_argument("--per-day", type=float, default=10000)
    p.add_argument("--minutes", type=float, default=12, help="wall-clock minutes of incidents")
    p.add_argument("--speedup", type=float, default=5)
    p.add_argument("--seed", type=int, default=14)
    a = p.parse_args()
    k = a.speedup
    world_s = a.minutes * 60 * k
    officers, incidents = make_world(a.officers, a.per_day, world_s, a.seed)
    cfg = scaled_config(k)
    pw = hash_password(PASSWORD)
    users = [*hashed_users({"viewer": "viewer"}), {"username": "desk", "password_hash": pw, "role": "dispatcher"}]
    users += [{"username": o.id, "password_hash": pw, "role": "officer"} for o in officers]
    work = Path(tempfile.mkdtemp(prefix="gw-patrol-"))
    redis = RedisServer(work / "redis").start()
    gw = GridwatchServer(work / "gw", {
        "users": users, "redis": {"url": redis.url}, "dispatch": cfg,
        "tracks": {"heartbeat_s": min(10.0, cfg["stale_s"] / 2)},
        "officers": [{"id": o.id, "mode": o.mode} for o in officers],
    }).start()  # fmt: skip
    print(f"{a.officers} officers ({sum(o.mode == 'ebike' for o in officers)} on e-bikes), "
          f"{len(incidents)} incidents in {world_s / 3600:.1f} h of world time ({a.per_day:.0f}/day), "
          f"time x{k:g}", flush=True)  # fmt: skip
    run = Run(gw, [Officer(o.id, o.mode, o.speed, o.pos, random.Random(o.id)) for o in officers], incidents, k, cfg)
    try:
        await run.run(world_s, TARGET_S)
        async with aiohttp.ClientSession() as http:
            tickets, cursor = {}, None
            while True:
                q = "/api/tickets?limit=1000" + (f"&cursor={cursor}" if cursor else "")
                _, page = await run.call(http, "GET", q, run.desk)
                tickets.update({t["id"]: t for t in page["tickets"]})
                if (cursor := page["next"]) is None:
                    break
            stamps = [t["created_at"] for t in tickets.values()]
            _, stats = await run.call(http, "GET", f"/api/stats?from={min(stamps)}&to={max(stamps)}", run.desk)
    finally:
        gw.stop()
        redis.stop()
    arrived = {}
    for inc in incidents:
        t = tickets.get(inc.ticket or "")
        if t and "on_scene" in t["first"]:
            arrived[inc.n] = inc.at + (t["first"]["on_scene"] - t["created_at"]) * k
    real, pool = share(incidents, arrived, {i.n: i.reachable for i in incidents})
    orc = oracle(officers, incidents, cfg["accept_s"] * k, TARGET_S)
    best, opool = share(incidents, orc["arrived"], orc["reach"])
    print(f"on scene within {TARGET_S:.0f} s, of incidents someone free could reach in time: "
          f"{real:.1%} (of {pool}) | oracle {best:.1%} (of {opool}) | oracle/ours={best / real:.2f}x", flush=True)  # fmt: skip
    steps = {"offered": "dispatched", "accepted": "accepted", "on scene": "on_scene", "resolved": "resolved", "closed": "closed"}
    for name, state in steps.items():
        vals = [(t["first"][state] - t["created_at"]) * k for t in tickets.values() if state in t["first"]]
        print(f"  report -> {name}: {pcts(vals)}", flush=True)
    print(f"queue: longest {run.queue_max}, oldest {run.queue_oldest:.0f} s | "
          f"waiting without a reason: {len(run.no_reason)} | past wait_s without escalation: {len(run.no_escalation)} | "
          f"offers to a busy officer: {sum(o.offers_while_busy for o in run.officers)}", flush=True)  # fmt: skip
    limit = cfg["arrive_s"]
    on_time = sum(1 for t in tickets.values() if "on_scene" in t["first"] and t["first"]["on_scene"] - t["created_at"] <= limit)
    late = sum(1 for t in tickets.values()
               if t["state"] not in ("rejected", "cancelled") and not ("on_scene" in t["first"] and t["first"]["on_scene"] - t["created_at"] <= limit)
               and ("on_scene" in t["first"] or time.time() - t["created_at"] > limit))  # fmt: skip
    walked = sum(1 for i in incidents if i.arrived_at is not None and i.arrived_at - i.at <= TARGET_S)
    s = stats["all"]
    print(f"/api/stats: tickets {s['tickets']}, on time {s['on_time']}, late {s['late']}, closed {s['closed']} | "
          f"the simulation's count: tickets {len(tickets)}, on time {on_time}, late {late}, "
          f"closed {sum(t['state'] == 'closed' for t in tickets.values())} "
          f"(officers who stood there within {TARGET_S:.0f} s by their own clock: {walked})", flush=True)  # fmt: skip
    if run.errors:
        print(f"errors: {run.errors[:5]}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
