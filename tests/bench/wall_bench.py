"""The command wall under a centre's load, measured in the page (headless Chromium):

    .venv/bin/python tests/bench/wall_bench.py [--minutes 10] [--tiles 16] [--tickets 500] [--officers 200]
        [--ended 340]

One `gridwatch serve` with N RTSP cameras (one GStreamer server playing a pre-encoded
640x360 15 fps file: nothing is encoded while measuring), M officers whose phones (a
device batching their fixes) report every 5 s, T open tickets, and a ticket event every
second (a new ticket, a dispatch or a cancellation, about as many ending as opening). The wall is signed in as a dispatcher at 1920x1080.

Baseline, in the same run: the same wall for a minute with no tiles and no officer
moving, tickets arriving at the same rate. Then the full load for --minutes. Printed:
- event to row: from the /ws event reaching the page to its row on the board (the page's
  own probe, store.latencies), p50/p95, and the ratio to the baseline;
- API to row: from the ticket's creation on the server to its row on screen (Unix time
  both sides, same machine), p50/p95;
- frames decoded per tile per second (getStats), against the cameras' 15 fps;
- the page's JS heap after a forced GC every 30 s: first, last, largest, last/first, and
  the same from the moment the officers' tails are full (TAIL_S in store.js, 5 minutes:
  until then the map's tails grow by design).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from common import camera_file, ratio
from playwright.async_api import async_playwright

from support.browser import CHROMIUM, CHROMIUM_ARGS
from support.procs import PASSWORDS, GridwatchServer, RtspServer, hashed_users
from support.wall import SEEN_SCRIPT, frames_decoded, sign_in

CENTRE = (31.26, 120.92)
FIX_PERIOD_S = 5.0
TAIL_S = 300  # the page keeps this much of each officer's track (store.js)
HEAP_EVERY_S = 30


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


class Load:
    """What the centre does meanwhile: officers walking, tickets opening and dispatched."""

    def __init__(self, http: aiohttp.ClientSession, base: str, tokens: dict[str, str], officers: int):
        self.http, self.base, self.tokens = http, base, tokens
        self.rng = random.Random(7)
        self.pos = {f"o-{i:03d}": [CENTRE[0] + self.rng.uniform(-0.01, 0.01),
                                   CENTRE[1] + self.rng.uniform(-0.01, 0.01)] for i in range(officers)}  # fmt: skip
        self.created: dict[str, float] = {}  # ticket id -> created_at (server clock)
        self.waiting: list[str] = []  # opened, not yet dispatched or cancelled

    async def post(self, path: str, body: dict, user: str) -> dict:
        async with self.http.post(self.base + path, json=body,
                                  headers={"Authorization": f"Bearer {self.tokens[user]}"}) as r:  # fmt: skip
            return await r.json()

    async def ticket(self) -> None:
        lat, lon = (c + self.rng.uniform(-0.01, 0.01) for c in CENTRE)
        t = await self.post("/api/tickets", {"category": "street_stall", "location": {"lat": lat, "lon": lon},
                                             "description": "bench"}, "dispatcher")  # fmt: skip
        self.created[t["id"]] = t["created_at"]
        self.waiting.append(t["id"])

    async def dispatch_one(self) -> None:
        if self.waiting:
            tid = self.waiting.pop(0)
            officer = self.rng.choice(list(self.pos))
            await self.post(f"/api/tickets/{tid}/actions", {"action": "dispatch", "officer": officer}, "dispatcher")

    async def cancel_one(self) -> None:
        if self.waiting:
            tid = self.waiting.pop(0)
            await self.post(f"/api/tickets/{tid}/actions", {"action": "cancel", "reason": "bench"}, "dispatcher")

    async def tickets_forever(self) -> None:
        """A ticket event a second: as many tickets open as end, so the page's own data
        stays the same size and its heap can be judged flat or not."""
        while True:
            roll = self.rng.random()
            await (self.ticket() if roll < 0.4 else self.dispatch_one() if roll < 0.6 else self.cancel_one())
            await asyncio.sleep(1.0)

    async def officers_forever(self) -> None:
        """Every officer sends a fix every FIX_PERIOD_S; one batch a second."""
        ids = list(self.pos)
        per_second = max(1, round(len(ids) / FIX_PERIOD_S))
        i = 0
        while True:
            batch = []
            for _ in range(per_second):
                oid = ids[i % len(ids)]
                i += 1
                p = self.pos[oid]
                p[0] += self.rng.uniform(-3e-5, 3e-5)
                p[1] += self.rng.uniform(-3e-5, 3e-5)
                batch.append({"officer": oid, "lat": p[0], "lon": p[1], "time": time.time()})
            await self.post("/api/tracks", {"fixes": batch}, "tracker")
            await asyncio.sleep(1.0)


async def heap_mb(cdp) -> float:
    await cdp.send("HeapProfiler.collectGarbage")
    metrics = (await cdp.send("Performance.getMetrics"))["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize") / 2**20


async def latencies(page, load: Load, since: float) -> tuple[list[float], list[float]]:
    """(event -> row ms from the page's probe, API -> row ms for tickets created since)."""
    in_page = await page.evaluate("() => window.gw.store.latencies.splice(0)")
    seen = await page.evaluate("() => window.firstSeen")
    api = [(seen[f"row:{tid}"] - at) * 1000 for tid, at in load.created.items()
           if at >= since and f"row:{tid}" in seen]  # fmt: skip
    return in_page, api


def report(name: str, values: list[float]) -> str:
    return f"{name}: p50 {pct(values, 0.5):7.1f} ms  p95 {pct(values, 0.95):7.1f} ms  (n={len(values)})"


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="wall-bench-"))
    media = camera_file(640, 360, 15, 400)
    rtsp = RtspServer({f"/cam{i}": f"file:{media}" for i in range(args.tiles)}).start()
    officers = [{"id": f"o-{i:03d}"} for i in range(args.officers)]
    cameras = [{"id": f"cam-{i:02d}", "source": rtsp.url(f"/cam{i}")} for i in range(args.tiles)]
    gw = GridwatchServer(work / "gw", {
        "users": hashed_users({"dispatcher": "dispatcher", "tracker": "device"}),
        "cameras": cameras, "officers": officers,
        "dispatch": {"categories": {"street_stall": {"mode": "suggest"}}, "stale_s": 60},
    }).start()  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http, async_playwright() as p:
            tokens = {u: gw.token(u) for u in ("dispatcher", "tracker")}
            load = Load(http, gw.base, tokens, args.officers)
            # As many ended tickets as the page keeps (KEEP_DONE in store.js), then the open
            # ones: the page starts at its steady size.
            print(f"seeding {args.ended} ended and {args.tickets} open tickets ...", flush=True)
            for _ in range(args.ended // 20):
                await asyncio.gather(*(load.ticket() for _ in range(20)))
                await asyncio.gather(*(load.cancel_one() for _ in range(20)))
            for _ in range(args.tickets // 20):
                await asyncio.gather(*(load.ticket() for _ in range(20)))
            await load.post("/api/tracks", {"fixes": [{"officer": o, "lat": la, "lon": lo, "time": time.time()}
                                                      for o, (la, lo) in load.pos.items()]}, "tracker")  # fmt: skip
            async with http.put(gw.base + "/api/me/layout", json={"layout": 16, "hidden": [c["id"] for c in cameras]},
                                headers={"Authorization": f"Bearer {tokens['dispatcher']}"}) as r:  # fmt: skip
                assert r.status == 200

            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = await browser.new_page(viewport={"width": 1920, "height": 1080})
            cdp = await page.context.new_cdp_session(page)
            await cdp.send("Performance.enable")
            await sign_in(page, gw.base, "dispatcher", PASSWORDS["dispatcher"])
            await page.wait_for_selector("#board li.ticket")
            await page.evaluate(SEEN_SCRIPT)

            print("baseline: no tiles, officers still, a ticket event a second, 60 s ...", flush=True)
            since = time.time()
            task = asyncio.create_task(load.tickets_forever())
            await asyncio.sleep(60)
            base_page, base_api = await latencies(page, load, since)

            print(f"load: {args.tiles} tiles, {args.officers} officers moving, {args.minutes} min ...", flush=True)
            await page.evaluate("() => window.gw.store.setLayout({ layout: 16, hidden: [] })")
            movers = asyncio.create_task(load.officers_forever())
            for i in range(args.tiles):
                await page.wait_for_selector(f".tile[data-camera=cam-{i:02d}][data-state=playing]", timeout=60000)
            since = time.time()
            heap = [await heap_mb(cdp)]
            f0, t0 = await frames_decoded(page), time.monotonic()
            end = time.monotonic() + args.minutes * 60
            while time.monotonic() < end:
                await asyncio.sleep(min(HEAP_EVERY_S, max(0.0, end - time.monotonic())))
                heap.append(await heap_mb(cdp))
                print(f"  heap {heap[-1]:.1f} MB", flush=True)
            f1, t1 = await frames_decoded(page), time.monotonic()
            load_page, load_api = await latencies(page, load, since)
            rows = await page.locator("#board li.ticket").count()
            task.cancel()
            movers.cancel()
            await browser.close()
    finally:
        gw.stop()
        rtsp.stop()

    fps = [(f1[c] - f0.get(c, 0)) / (t1 - t0) for c in f1]
    print(f"\n{args.tiles} tiles, {len(load.created)} tickets ({rows} rows on the board), {args.officers} officers, "
          f"{args.minutes} min")  # fmt: skip
    print(report("baseline event->row", base_page))
    print(report("load     event->row", load_page), f"  p95 vs baseline {ratio(pct(load_page, .95), pct(base_page, .95))}")
    print(report("baseline API->row  ", base_api))
    print(report("load     API->row  ", load_api), f"  p95 vs baseline {ratio(pct(load_api, .95), pct(base_api, .95))}")
    print(f"frames decoded per tile: min {min(fps):.1f}/s  median {statistics.median(fps):.1f}/s  of 15/s "
          f"({ratio(statistics.median(fps), 15)})")  # fmt: skip
    print(f"JS heap: first {heap[0]:.1f} MB  last {heap[-1]:.1f} MB  max {max(heap):.1f} MB  "
          f"last/first {ratio(heap[-1], heap[0])}")  # fmt: skip
    full = heap[TAIL_S // HEAP_EVERY_S + 1:]
    if len(full) > 1:
        print(f"JS heap once the tails are full ({len(full)} samples): first {full[0]:.1f} MB  "
              f"last {full[-1]:.1f} MB  max {max(full):.1f} MB  last/first {ratio(full[-1], full[0])}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--tiles", type=int, default=16)
    parser.add_argument("--tickets", type=int, default=500)
    parser.add_argument("--ended", type=int, default=340)
    parser.add_argument("--officers", type=int, default=200)
    sys.exit(asyncio.run(main(parser.parse_args())))
