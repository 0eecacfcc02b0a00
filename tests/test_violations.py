"""Violations on the Redis stream become tickets once, even when a node dies holding one."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time

import redis

from support.procs import GridwatchServer, RedisServer, settled
from support.waits import wait_for

POSITION = {"lat": 31.2601, "lon": 120.9203}


def violation(vid: str, camera: str = "gate", kind: str = "no_parking", **extra) -> dict:
    now = time.time()
    return {"violation": json.dumps({"id": vid, "camera": camera, "zone": "np-1", "kind": kind, "label": "car",
                                     "first_seen": now - 130, "confirmed": now,
                                     "evidence": [f"/evidence/{vid}/first.jpg"], **extra})}  # fmt: skip


async def tickets_by_key(http, gw, token) -> dict[str, list[dict]]:
    async with http.get(
        gw.base + "/api/tickets?limit=1000", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        found: dict[str, list[dict]] = {}
        for t in (await r.json())["tickets"]:
            found.setdefault(t["key"], []).append(t)
        return found


async def test_violations_open_tickets_once_and_survive_a_dead_consumer(tmp_path, users, http):
    store = RedisServer(tmp_path / "redis").start()
    r = redis.Redis.from_url(store.url)
    # A node that read an entry and died before acknowledging it.
    r.xgroup_create("gw:violations", "dispatch", id="0", mkstream=True)
    r.xadd("gw:violations", violation("v-held"))
    held = r.xreadgroup("dispatch", "dead-node", {"gw:violations": ">"}, count=1)
    assert held and r.xpending("gw:violations", "dispatch")["pending"] == 1
    gw = GridwatchServer(
        tmp_path / "node",
        {"users": users, "redis": {"url": store.url}, "dispatch": {"claim_idle_s": 1},
         "cameras": [{"id": "gate", "source": "lavfi:testsrc", "position": POSITION}]},
    ).start()  # fmt: skip
    try:
        token = gw.token("dispatcher")
        r.xadd("gw:violations", violation("v-1"))
        r.xadd("gw:violations", violation("v-1"))  # a detector that retried
        r.xadd(
            "gw:violations",
            violation("v-2", kind="no_stall", location={"lat": 31.27, "lon": 120.93}),
        )
        r.xadd("gw:violations", violation("v-3", camera="nowhere"))  # no position anywhere
        r.xadd("gw:violations", {"violation": "{not json"})
        # A plate the reader should never have sent: the ticket opens without it.
        r.xadd("gw:violations", violation("v-4", plate={"text": "not a plate", "confidence": 7}))
        async with asyncio.timeout(15):
            while True:
                found = await tickets_by_key(http, gw, token)
                if {"v-1", "v-2", "v-4", "v-held"} <= set(found):
                    break
                await asyncio.sleep(0.2)
        assert {k: len(v) for k, v in found.items()} == {"v-1": 1, "v-2": 1, "v-4": 1, "v-held": 1}
        assert found["v-4"][0]["plate"] is None and "plate dropped from a violation" in gw.logs()
        t1 = found["v-1"][0]
        assert (
            t1["category"] == "illegal_parking"
            and t1["source"] == "camera"
            and t1["camera"] == "gate"
        )
        assert t1["location"] == POSITION and t1["evidence"] == ["/evidence/v-1/first.jpg"]
        assert (
            found["v-2"][0]["category"] == "street_stall"
            and found["v-2"][0]["location"]["lat"] == 31.27
        )
        async with asyncio.timeout(10):
            while r.xpending("gw:violations", "dispatch")["pending"]:
                await asyncio.sleep(0.2)
        dead = [
            json.loads(f[b"fields"]) | {"why": f[b"why"].decode()}
            for _, f in r.xrange("gw:violations:dead")
        ]
        assert len(dead) == 2
        assert any("no position" in d["why"] for d in dead) and any(
            "malformed" in d["why"] for d in dead
        )
        assert "detector entry cannot be acted on" in gw.logs()
    finally:
        gw.stop()
        r.close()
        store.stop()


async def test_a_node_held_up_after_reading_an_entry_leaves_it_to_the_node_that_claimed_it(tmp_path, users, http):
    store = RedisServer(tmp_path / "redis").start()
    r = redis.Redis.from_url(store.url)

    def node(name: str) -> GridwatchServer:
        return GridwatchServer(tmp_path / name, {
            "users": users, "redis": {"url": store.url}, "cluster": {"node": name},
            "dispatch": {"claim_idle_s": 1},
            "cameras": [{"id": "gate", "source": "lavfi:testsrc", "position": POSITION}]}).start()  # fmt: skip

    a, b = node("na"), node("nb")
    try:
        await settled([a, b])
        token = a.token("dispatcher")
        consumer_of = {f"{socket.gethostname()}-{n.proc.pid}": n for n in (a, b)}
        # Redis hands a new entry to one of the nodes blocked in XREADGROUP: the one that
        # blocked first. Until it is the stopped one, another violation.
        for attempt in range(20):
            vid = f"v-held-up-{attempt}"
            a.proc.send_signal(signal.SIGSTOP)
            try:
                r.xadd("gw:violations", {**violation(vid), "first.jpg": b"\xff\xd8 a picture"})
                holder = await wait_for("the entry read", lambda: r.xpending_range(
                    "gw:violations", "dispatch", "-", "+", 10), 10)  # fmt: skip
                if consumer_of[holder[0]["consumer"].decode()] is b:
                    await wait_for("b's ticket", lambda: r.xlen("gw:violations") == 0, 10)
                    continue
                # b claims it after claim_idle_s and acts on it while a is stopped.
                await wait_for("b took it over and acted", lambda: r.xlen("gw:violations") == 0, 30)
            finally:
                a.proc.send_signal(signal.SIGCONT)
            break
        else:
            raise AssertionError("the stopped node never got an entry")
        # Resumed, a comes to the entry it had read: it acts on it, or leaves it.
        await wait_for("a came to the entry", lambda: a.records("violation")
                       or a.records("detector entry skipped: another node took it over"), 10)  # fmt: skip
        folders = [n for n in (a, b) if (n.workdir / "data" / "evidence" / vid).is_dir()]
        assert folders == [b] and r.hget("gw:evidence:holders", vid) == b"nb"
        assert {k: len(v) for k, v in (await tickets_by_key(http, a, token)).items()}[vid] == 1
        assert not a.tracebacks() and not b.tracebacks()
    finally:
        for n in (a, b):
            n.stop()
        store.stop()
