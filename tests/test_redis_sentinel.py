"""The durable Redis behind Redis Sentinel (redis.sentinel): a node finds the master
through the Sentinel, and after the master dies and the Sentinel promotes its replica,
goes on with the new master, its tickets and sessions intact."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import aiohttp
import redis

from support.procs import PASSWORDS, free_port, stop, wait_port
from support.waits import wait_for

MASTER = "gw-main"
LOCATION = {"lat": 31.2601, "lon": 120.9203}
FAILOVER_S = 30  # down-after 1 s, election, promotion: a few s, more on a loaded machine
RECOVER_S = 20  # from the promotion to the node writing to the new master


def redis_proc(workdir: Path, port: int, *args: str) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["redis-server", *args, "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
                            stdin=subprocess.DEVNULL)  # fmt: skip
    wait_port(port, 10)
    return proc


def sentinel_proc(workdir: Path, port: int, master_port: int) -> subprocess.Popen:
    # Sentinel rewrites its config file, so it gets one of its own in the test's folder.
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                    f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 1\n"
                    f"sentinel down-after-milliseconds {MASTER} 1000\n"
                    f"sentinel failover-timeout {MASTER} 5000\n")  # fmt: skip
    proc = subprocess.Popen(["redis-server", str(conf), "--sentinel", "--logfile", str(workdir / "sentinel.log")],
                            stdin=subprocess.DEVNULL)  # fmt: skip
    wait_port(port, 10)
    return proc



async def login(http: aiohttp.ClientSession, base: str) -> str | None:
    """A token, or None while the node cannot reach Redis."""
    body = {"username": "admin", "password": PASSWORDS["admin"]}
    async with http.post(base + "/api/login", json=body) as r:
        return (await r.json())["token"] if r.status == 200 else None


async def test_a_node_through_sentinel_survives_the_masters_death(tmp_path, gridwatch_factory, http):
    ports = {"master": free_port(), "replica": free_port(), "sentinel": free_port()}
    procs = {"master": redis_proc(tmp_path / "master", ports["master"], "--appendonly", "yes")}
    try:
        procs["replica"] = redis_proc(tmp_path / "replica", ports["replica"], "--appendonly", "yes",
                                      "--replicaof", "127.0.0.1", str(ports["master"]))  # fmt: skip
        procs["sentinel"] = sentinel_proc(tmp_path / "sentinel", ports["sentinel"], ports["master"])
        sentinel = redis.Redis(port=ports["sentinel"])
        # The Sentinel learns of the replica from the master's INFO: it can promote it then.
        await wait_for("the sentinel knows the replica", lambda: sentinel.sentinel_slaves(MASTER), 30)

        gw = gridwatch_factory({"redis": {"sentinel": {"master": MASTER,
                                                       "addresses": [f"127.0.0.1:{ports['sentinel']}"]}}})
        token = await login(http, gw.base)
        assert token
        h = {"Authorization": f"Bearer {token}"}
        async with http.post(gw.base + "/api/tickets", headers=h,
                             json={"category": "other", "location": LOCATION}) as r:  # fmt: skip
            assert r.status in (200, 201), await r.text()
            ticket = (await r.json())["id"]
        master = redis.Redis(port=ports["master"])
        assert master.exists("gw:secret")  # the node writes to the master Sentinel named
        assert master.wait(1, 5000) == 1  # the replica has it all before the master dies
        master.close()

        procs["master"].kill()
        procs["master"].wait()
        await wait_for("the sentinel promotes the replica",
                    lambda: sentinel.sentinel_get_master_addr_by_name(MASTER)[1] == ports["replica"],
                    FAILOVER_S)  # fmt: skip
        deadline = time.monotonic() + RECOVER_S
        while (token := await login(http, gw.base)) is None:
            assert time.monotonic() < deadline, f"no login {RECOVER_S} s after the failover"
            await asyncio.sleep(0.3)
        h = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{gw.base}/api/tickets/{ticket}", headers=h) as r:
            assert r.status == 200  # the ticket made before the failover
        async with http.post(gw.base + "/api/tickets", headers=h,
                             json={"category": "other", "location": LOCATION}) as r:  # fmt: skip
            assert r.status in (200, 201), await r.text()
        async with http.get(gw.base + "/readyz") as r:
            assert r.status == 200
        sentinel.close()
    finally:
        for proc in procs.values():
            stop(proc)
