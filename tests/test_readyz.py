"""GET /readyz, apart from /healthz: ready once the node has started and Redis answers;
503 while Redis is away, and from the moment SIGTERM arrives, before the node exits."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp

from support.procs import RedisServer

DELAY_S = 3.0  # server.shutdown_delay_s: /readyz says 503 this long before the node drains


async def ready(http: aiohttp.ClientSession, base: str) -> tuple[int, dict]:
    # A connection of its own each time: the node stops listening once it drains.
    async with http.get(base + "/readyz", headers={"Connection": "close"}) as r:
        return r.status, await r.json()


async def test_readyz_flips_to_503_on_sigterm_before_the_node_exits(gridwatch_factory, redis_server, http):
    gw = gridwatch_factory({"redis": {"url": redis_server.url}, "server": {"shutdown_delay_s": DELAY_S}})
    assert await ready(http, gw.base) == (200, {"ready": True})
    async with http.get(gw.base + "/api/openapi.json") as r:
        op = (await r.json())["paths"]["/readyz"]["get"]
    assert "security" not in op  # public, as /healthz

    gw.proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    async with asyncio.timeout(DELAY_S):
        while (answer := await ready(http, gw.base))[0] == 200:
            await asyncio.sleep(0.05)
    assert answer == (503, {"ready": False, "reason": "shutting_down"})
    assert gw.proc.poll() is None, "exited before /readyz could say so"
    async with http.get(gw.base + "/healthz") as r:  # alive, and still serving for the delay
        assert r.status == 200
    assert gw.token("admin")
    async with asyncio.timeout(DELAY_S + 5):
        while gw.proc.poll() is None:
            await asyncio.sleep(0.1)
    assert gw.proc.returncode == 0 and time.monotonic() - sent >= DELAY_S


async def test_readyz_says_503_while_redis_is_away(gridwatch_factory, redis_server, http):
    gw = gridwatch_factory({"redis": {"url": redis_server.url}})
    assert (await ready(http, gw.base))[0] == 200
    redis_server.kill()
    assert await ready(http, gw.base) == (503, {"ready": False, "reason": "redis_unavailable"})
    back = RedisServer(redis_server.dir, port=redis_server.port).start()
    try:
        async with asyncio.timeout(15):
            while (await ready(http, gw.base))[0] != 200:
                await asyncio.sleep(0.2)
    finally:
        back.stop()
