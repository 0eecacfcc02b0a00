"""Dispatch: nearest-officer query at 1k/10k/100k officers, ticket throughput, event to /ws.

    .venv/bin/python tests/bench/dispatch_bench.py [--officers 1000,10000,100000]

Each figure comes with a baseline measured in the same run on the same redis-server:
- nearest officer (GEOSEARCH + officer states + held tickets) against a linear scan
  in Python over the same officers' positions;
- ticket creation and transitions (Lua, audit log, events) against plain HSETs;
- ticket opened over HTTP -> its event on a /ws socket, against a bare Redis
  PUBLISH -> subscriber round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import tempfile
import time
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from common import ratio, start_gridwatch

from gridwatch.contracts.geo import Position
from gridwatch.dispatch.config import DispatchConfig
from gridwatch.dispatch.officers import Fix, Officers
from gridwatch.dispatch.reach import Reach
from gridwatch.dispatch.routing import Router, distance_m
from gridwatch.dispatch.tickets import NewTicket, Ticket, TicketStore
from support.procs import RedisServer, hashed_users

CENTRE = (31.26, 120.92)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def nearest(redis: aioredis.Redis, counts: list[int], queries: int) -> None:
    cfg = DispatchConfig(search_radius_m=3000, search_count=50, stale_s=3600)
    officers = Officers(redis, 86400)
    reach = Reach(officers, Router(cfg.road_factor), cfg, {})
    rng = random.Random(7)
    loaded = 0
    positions: list[tuple[str, float, float]] = []
    for n in counts:
        # A city of about 20 x 20 km; officers spread uniformly.
        batch = []
        for i in range(loaded, n):
            lat = CENTRE[0] + rng.uniform(-0.09, 0.09)
            lon = CENTRE[1] + rng.uniform(-0.1, 0.1)
            batch.append(Fix(officer=f"o{i}", lat=lat, lon=lon, time=time.time()))
            positions.append((f"o{i}", lat, lon))
        for k in range(0, len(batch), 2000):
            # As their own phones: an officer nobody can reach is no candidate.
            await officers.record(batch[k : k + 2000], {f.officer for f in batch[k : k + 2000]})
        loaded = n
        ours, scan = [], []
        for _ in range(queries):
            lat, lon = CENTRE[0] + rng.uniform(-0.05, 0.05), CENTRE[1] + rng.uniform(-0.05, 0.05)
            ticket = Ticket(
                id="T-bench", location=Position(lat=lat, lon=lon), created_at=0, updated_at=0
            )
            t0 = time.perf_counter()
            found, _ = await reach.candidates(ticket)
            ours.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            best = sorted((distance_m(lat, lon, a, b), o) for o, a, b in positions)[:50]
            scan.append((time.perf_counter() - t0) * 1000)
            assert (found and best[0][1] == found[0].officer) or math.isclose(
                best[0][0], found[0].distance_m, abs_tol=1
            )
        print(
            f"nearest, {n:6d} officers: p50={pct(ours, 0.5):.2f} ms p99={pct(ours, 0.99):.2f} ms "
            f"| linear scan p50={pct(scan, 0.5):.2f} ms | scan/ours={ratio(pct(scan, 0.5), pct(ours, 0.5))}",
            flush=True,
        )


async def throughput(redis: aioredis.Redis, n: int, concurrency: int) -> None:
    store = TicketStore(redis)
    new = NewTicket(category="illegal_parking", location=Position(lat=CENTRE[0], lon=CENTRE[1]))
    sem = asyncio.Semaphore(concurrency)
    ids: list[str] = []

    async def create() -> None:
        async with sem:
            t, _ = await store.create(new, "bench", "dispatcher")
            ids.append(t.id)

    t0 = time.perf_counter()
    await asyncio.gather(*(create() for _ in range(n)))
    create_rate = n / (time.perf_counter() - t0)

    async def move(tid: str) -> None:
        async with sem:
            await store.act(tid, "dispatch", "bench", "dispatcher", assignee="o1")
            await store.act(tid, "cancel", "bench", "dispatcher")

    t0 = time.perf_counter()
    await asyncio.gather(*(move(t) for t in ids))
    act_rate = 2 * n / (time.perf_counter() - t0)

    async def hset(i: int) -> None:
        async with sem:
            await redis.hset(f"bench:{i}", mapping={"data": "x" * 600, "state": "new"})

    t0 = time.perf_counter()
    await asyncio.gather(*(hset(i) for i in range(n)))
    raw_rate = n / (time.perf_counter() - t0)
    print(
        f"tickets: create {create_rate:.0f}/s, transition {act_rate:.0f}/s "
        f"| plain HSET {raw_rate:.0f}/s | create/HSET={ratio(create_rate, raw_rate)}",
        flush=True,
    )


async def to_ws(url: str, rounds: int) -> None:
    gw = start_gridwatch(
        Path(tempfile.mkdtemp(prefix="gw-dispatch-")),
        [],
        users=hashed_users({"viewer": "viewer", "dispatcher": "dispatcher"}),
        redis={"url": url},
        dispatch={"categories": {"illegal_parking": {"mode": "suggest"}}},
    )
    try:
        token = gw.token("viewer")
        latencies, baseline = [], []
        async with aiohttp.ClientSession() as http:
            # The wall (a viewer) watches; a dispatcher opens the tickets.
            ws = await http.ws_connect(
                gw.base + "/ws", headers={"Authorization": f"Bearer {token}"}
            )
            await ws.receive_json()  # hello
            admin = gw.token("dispatcher")
            for i in range(rounds):
                body = {
                    "category": "illegal_parking",
                    "location": {"lat": CENTRE[0], "lon": CENTRE[1]},
                    "key": f"b-{i}",
                }
                t0 = time.perf_counter()
                async with http.post(
                    gw.base + "/api/tickets",
                    json=body,
                    headers={"Authorization": f"Bearer {admin}"},
                ) as r:
                    assert r.status in (200, 201), await r.text()
                while True:
                    event = await ws.receive_json()
                    if event["type"] == "ticket.created":
                        break
                latencies.append((time.perf_counter() - t0) * 1000)
            await ws.close()
        redis = aioredis.from_url(url)
        pubsub = redis.pubsub()
        await pubsub.subscribe("bench:ping")
        await pubsub.get_message(timeout=1)
        for _ in range(rounds):
            t0 = time.perf_counter()
            await redis.publish("bench:ping", "x")
            while (await pubsub.get_message(timeout=1)) is None:
                pass
            baseline.append((time.perf_counter() - t0) * 1000)
        await pubsub.aclose()
        await redis.aclose()
        print(
            f"ticket opened -> /ws event: p50={pct(latencies, 0.5):.1f} ms p99={pct(latencies, 0.99):.1f} ms "
            f"| redis publish->subscriber p50={pct(baseline, 0.5):.2f} ms | ratio={ratio(pct(latencies, 0.5), pct(baseline, 0.5))}",
            flush=True,
        )
    finally:
        gw.stop()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--officers", default="1000,10000,100000")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--tickets", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--ws-rounds", type=int, default=100)
    args = p.parse_args()
    server = RedisServer(Path(tempfile.mkdtemp(prefix="gw-bench-redis-"))).start()
    redis = aioredis.from_url(server.url)
    try:
        await nearest(redis, [int(c) for c in args.officers.split(",")], args.queries)
        await throughput(redis, args.tickets, args.concurrency)
        await to_ws(server.url, args.ws_rounds)
    finally:
        await redis.aclose()
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
