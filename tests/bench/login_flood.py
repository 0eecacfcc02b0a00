"""Authentication must never slow the node: /healthz latency while 20 clients flood
/api/login with wrong passwords (random usernames, each client from its own loopback
address), against the same /healthz with no flood, in the same run.

    .venv/bin/python tests/bench/login_flood.py [--seconds 20] [--clients 20]

Printed: /healthz p50 and p95 without and with the flood, and their ratio; how the
logins were answered (401: the password was checked; 429: refused before any hashing,
throttled per address or because the hashing queue was full).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from common import ratio

from support.procs import GridwatchServer, hashed_users


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def probe(base: str, seconds: float) -> list[float]:
    """/healthz every 50 ms for `seconds`; the latencies in ms."""
    out = []
    async with aiohttp.ClientSession() as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            async with http.get(base + "/healthz") as r:
                await r.read()
            out.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.05)
    return out


async def flood(base: str, client: int, seconds: float, answers: collections.Counter) -> None:
    connector = aiohttp.TCPConnector(local_addr=(f"127.0.1.{client + 1}", 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            body = {"username": secrets.token_hex(6), "password": secrets.token_hex(8)}
            async with http.post(base + "/api/login", json=body) as r:
                answers[r.status] += 1


async def main(args: argparse.Namespace) -> None:
    gw = GridwatchServer(Path(tempfile.mkdtemp(prefix="login-flood-")), {"users": hashed_users()}).start()
    try:
        quiet = await probe(gw.base, args.seconds)
        answers: collections.Counter = collections.Counter()
        flooded, *_ = await asyncio.gather(
            probe(gw.base, args.seconds), *(flood(gw.base, c, args.seconds, answers) for c in range(args.clients))
        )
    finally:
        gw.stop()
    print(f"/healthz without a flood: p50 {statistics.median(quiet):.1f} ms  p95 {pct(quiet, .95):.1f} ms  (n={len(quiet)})")
    print(f"/healthz during {args.clients} clients flooding /api/login: p50 {statistics.median(flooded):.1f} ms  "
          f"p95 {pct(flooded, .95):.1f} ms  (n={len(flooded)})")  # fmt: skip
    print(f"p50 ratio {ratio(statistics.median(flooded), statistics.median(quiet))}, "
          f"p95 ratio {ratio(pct(flooded, .95), pct(quiet, .95))}")  # fmt: skip
    print(f"logins answered: {dict(sorted(answers.items()))} (401 checked, 429 refused before hashing)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
