"""Many nodes: 20,000 cameras on 10 simulated nodes, control loops only (no media),
the code of today (HEAD) against the code before placement (89f9334) in the same run.

    .venv/bin/python tests/bench/cluster_bench.py [--cameras 20000] [--nodes 10] [--lease-s 15]
                                                  [--window 30] [--no-serve]

One redis-server (support.procs.RedisServer, 127.0.0.1, stopped by PID). The registry
(`gw:cameras`) holds --cameras cameras, each with a zone, detection on and continuous
recording, so that both the samplers ("media" leases) and the recorders ("record"
leases) want every one; their sources (rtsp://127.0.0.1:9/...) are never pulled.

Each node is its own OS process (this script, `node` sub-command) running that
version's control loops with a task start that only does what the real ones do to the
node's hub (`hub.upsert`, lazy: no producer starts without a consumer) and then waits:
- after (the working tree): a real CameraStore (load: CameraFeed.load; then
  CameraFeed.follow), the real signaling.app.join_cluster (NodeRegistry, Placement and
  their wiring; cluster.node = node-N, the default capacity: none) and keep_placing
  loop, and two real LeasedWork (roles media and record, period lease_s/3, mine=
  placement.mine, woken by placement changes, as media_ctx and recordings_ctx wire
  them) whose wanted() are those of Samplers (cameras with detection and zones) and
  Recordings (cameras recording), both of the cameras placed on the node;
- before (89f9334): media/leases.py of 89f9334, written from `git show` into a temp
  folder and imported from there; its two LeasedWork (same roles and period) read the
  whole registry with media.cameras.stored_cameras (unchanged since) every cycle, as
  the old targets() and Recordings.cameras did, and hold() one camera at a time; the
  hub holds a stream per camera, as the old CameraStore.load upserted every camera.
Every node also runs a 10 ms ticker (event-loop lateness) and, on SIGUSR2, renders
/metrics as the server's handler does (generate_latest on the loop) from the real
signaling.metrics.Metrics with the collectors the server registers for these parts:
watch_streams (both), and watch_cluster where join_cluster registers it (a dozen
series). RecordingsCollector is left out: the no-op tasks make no Recorder, and it is
one series per recorder in both versions. Not run: media/camera_state.StateBoard and
the relays (their own work, not placement's).

Phases, per version: start the nodes together and wait until every camera's two
leases are held and the nodes' running tasks add up to the cameras (cold start);
check that each camera runs on exactly one node per role and count cameras per node;
a --window s steady window (lag, Redis commands/s, CPU); a /metrics render per node,
one node at a time; an 11th node joins (time to hold its share, fraction of cameras
whose media lease changed holder); the node holding the most cameras is SIGKILLed
(time until every camera it held is held by a live node, polled on the lease keys).

With --serve (default), a real `gridwatch serve` of each version (89f9334 from a
`git worktree`, put first on PYTHONPATH) runs against a registry of the same number
of cameras with neither zones nor recording (a single node with wanted cameras would
pull every source), and its /metrics is fetched: the size a scrape of one node is.

The machine is shared and small: each figure has its "before" measured in the same
run on the same Redis; lag under CPU contention includes the other nodes' work, so
node CPU (cores, from /proc) is shown too. Redis commands/s is INFO's
total_commands_processed, which counts the GET/PEXPIRE/SET inside a Lua script one by
one: a batched renewal is one round trip but still one command per key; Redis CPU
(used_cpu_user + used_cpu_sys) is the cost. An old node that cannot finish a cycle
within lease_s loses leases it still runs (counted in the check rows).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import redis
from common import cpu_seconds, ratio

from support.procs import GridwatchServer, RedisServer, hashed_users

ROOT = Path(__file__).resolve().parents[2]
BEFORE = "89f9334"
T = TypeVar("T")
STATS_S = 0.5  # how often a node appends its stats line
TICK_S = 0.01
ZONE = {"name": "z1", "kind": "no_parking", "polygon": [[0, 200], [640, 200], [640, 360], [0, 360]],
        "frame": [640, 360]}  # fmt: skip


def camera_ids(n: int) -> list[str]:
    return [f"cam-{i:05d}" for i in range(n)]


def fill_registry(r: redis.Redis, n: int, wanted: bool) -> None:
    """`n` cameras in gw:cameras as CameraStore.put writes them (model_dump_json)."""
    from gridwatch.media.cameras import KEY
    from gridwatch.media.config import Camera

    extra = (
        {"zones": [ZONE], "record": {"mode": "continuous"}, "detect": {"fps": 1}} if wanted else {}
    )
    template = Camera.model_validate({"id": "cam-0", "source": "rtsp://127.0.0.1:9/cam-0", **extra})
    pipe = r.pipeline(transaction=False)
    for i, cid in enumerate(camera_ids(n)):
        pipe.hset(KEY, cid, template.model_copy(update={"id": cid, "source": f"rtsp://127.0.0.1:9/{cid}"})
                  .model_dump_json())  # fmt: skip
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()


# --- one node (a child process) ------------------------------------------------------


class Probe:
    """What a node measures: loop lateness per tick (s), cycle and step durations (s)."""

    def __init__(self) -> None:
        self.lag: list[float] = []
        self.steps: dict[str, list[float]] = {}

    def timed(self, name: str, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def wrapper(*a: object, **k: object) -> T:
            t0 = time.perf_counter()
            try:
                return await fn(*a, **k)
            finally:
                self.steps.setdefault(name, []).append(time.perf_counter() - t0)

        return wrapper

    def timed_sync(self, name: str, fn: Callable[..., T]) -> Callable[..., T]:
        def wrapper(*a: object, **k: object) -> T:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.steps.setdefault(name, []).append(time.perf_counter() - t0)

        return wrapper

    async def tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK_S
            await asyncio.sleep(TICK_S)
            self.lag.append(loop.time() - due)


def append_line(path: Path, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


def old_leases_module(path: Path) -> ModuleType:
    """media/leases.py as it was at 89f9334 (its source at `path`)."""
    spec = importlib.util.spec_from_file_location("gridwatch_before_leases", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def node_main(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis
    from prometheus_client import generate_latest

    from gridwatch.media.cameras import stored_cameras
    from gridwatch.media.config import Camera
    from gridwatch.media.hub import StreamHub
    from gridwatch.media.sampler import Target
    from gridwatch.media.sources import parse_source
    from gridwatch.media.webrtc import Viewers, rtc_configuration
    from gridwatch.signaling.metrics import Metrics

    r = aioredis.Redis.from_url(args.redis)
    probe = Probe()
    hub = StreamHub()
    metrics = Metrics()
    metrics.watch_streams(hub, Viewers(rtc_configuration([])))
    out = Path(args.out)

    async def start(item: str, spec: object) -> None:
        source = spec.source if isinstance(spec, Target) else spec[0]
        hub.upsert(item, parse_source(source))
        await asyncio.Event().wait()  # the sampler or recorder, until stopped

    def media_of(cameras: list[Camera]) -> dict[str, Target]:  # Samplers' targets()/_wanted
        return {c.id: Target(c.id, c.source, c.detect_source, c.detect.fps)
                for c in cameras if c.detect.enabled and c.zones}  # fmt: skip

    def record_of(
        cameras: list[Camera],
    ) -> dict[str, tuple]:  # Recordings._wanted (no pushed streams)
        return {c.id: (c.source, c.record) for c in cameras if c.record.mode != "off"}

    loops: dict[str, Awaitable[None]] = {}
    died: list[str] = []  # the loops that raised, and why
    share = lambda: None  # noqa: E731 - the placement's count for this node (HEAD only)
    if args.version == "before":
        old = old_leases_module(Path(args.old_leases))
        read = probe.timed("stored_cameras", stored_cameras)
        for c in await read(r):  # the old CameraStore.load: a stream per camera
            hub.upsert(c.id, parse_source(c.source))

        async def media_wanted() -> dict:
            return media_of(await read(r))

        async def record_wanted() -> dict:
            return record_of(await read(r))

        media = old.LeasedWork(old.Leases(r, "media", args.name, args.lease_s), media_wanted, start,
                               args.lease_s / 3)  # fmt: skip
        record = old.LeasedWork(old.Leases(r, "record", args.name, args.lease_s), record_wanted, start,
                                args.lease_s / 3)  # fmt: skip
    else:
        from aiohttp import web

        from gridwatch.media.cameras import CameraStore
        from gridwatch.media.leases import LeasedWork, Leases
        from gridwatch.media.published import PublishedStreams
        from gridwatch.signaling import keys
        from gridwatch.signaling.app import join_cluster, keep_placing
        from gridwatch.signaling.config import Config

        # media_ctx's steps, with an app that holds only what join_cluster reads.
        app = web.Application()
        app[keys.CONFIG] = Config.model_validate({"cluster": {"node": args.name}, "media": {"lease_s": args.lease_s},
                                                  "redis": {"url": args.redis}})  # fmt: skip
        app[keys.REDIS], app[keys.METRICS] = r, metrics
        published = app[keys.PUBLISHED] = PublishedStreams(r, args.name, lambda node: node in app[keys.NODES].live)
        store = CameraStore(r, hub, lambda camera: None)
        feed = store.feed
        feed.load = probe.timed("feed.load", feed.load)
        await store.load([])
        registry, placement = await join_cluster(app, store)
        placement.update = probe.timed_sync("placement.update", placement.update)

        # As the server's targets() and Recordings._wanted: the cameras placed here only.
        def owned() -> list[Camera]:
            return [c for i in placement.owned() if (c := store.feed.cameras.get(i)) is not None]

        async def media_wanted() -> dict:
            return media_of(owned())

        async def record_wanted() -> dict:
            return record_of(owned())

        media = LeasedWork(Leases(r, "media", args.name, args.lease_s), media_wanted, start, args.lease_s / 3,
                           mine=placement.mine)  # fmt: skip
        record = LeasedWork(Leases(r, "record", args.name, args.lease_s), record_wanted, start, args.lease_s / 3,
                            mine=placement.mine)  # fmt: skip
        placement.listeners.append(lambda changed: media.wake())
        placement.listeners.append(lambda changed: record.wake())
        loops = {"feed": feed.follow(), "placing": keep_placing(registry, placement, hub, published, args.lease_s)}
        share = lambda: placement.counts().get(args.name, 0)  # noqa: E731
    media._take_and_drop = probe.timed("media cycle", media._take_and_drop)
    record._take_and_drop = probe.timed("record cycle", record._take_and_drop)

    def dump_running() -> None:
        body = {"media": sorted(media.running), "record": sorted(record.running)}
        tmp = out / f"{args.name}.running.tmp"
        tmp.write_text(json.dumps(body))
        tmp.rename(out / f"{args.name}.running.json")

    def scrape() -> None:  # what Metrics.handler does, on the loop
        t0 = time.perf_counter()
        body = generate_latest(metrics.registry)
        ms = (time.perf_counter() - t0) * 1000
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        tmp = out / f"{args.name}.metrics.tmp"
        tmp.write_text(json.dumps({"bytes": len(body), "series": series, "ms": ms}))
        tmp.rename(out / f"{args.name}.metrics.json")

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, dump_running)
    loop.add_signal_handler(signal.SIGUSR2, scrape)

    async def report() -> None:
        while True:
            await asyncio.sleep(STATS_S)
            lag, probe.lag = probe.lag, []
            steps, probe.steps = probe.steps, {}
            line = {"t": time.time(), "lag": [round(x, 5) for x in lag], "steps": steps,
                    "media": len(media.running), "record": len(record.running), "share": share(), "died": died}  # fmt: skip
            append_line(out / f"{args.name}.jsonl", json.dumps(line))

    async def guarded(name: str, loop: Awaitable[None]) -> None:
        # As in the server (signaling.app.running): a loop that raises ends alone, the
        # others go on; said in the stats, since the server would only say it at exit.
        try:
            await loop
        except Exception as e:  # recorded, not handled
            died.append(f"{name}: {type(e).__name__}: {e}")

    named = {"ticker": probe.tick(), "media": media.run(), "record": record.run(), **loops}
    await asyncio.gather(report(), *(guarded(n, c) for n, c in named.items()))


# --- the conductor ---------------------------------------------------------------------


class Node:
    """A node process and the stats lines it wrote."""

    def __init__(
        self, name: str, version: str, url: str, out: Path, lease_s: float, old_leases: Path
    ):
        self.name, self.out = name, out
        self.started = time.time()
        args = [sys.executable, __file__, "node", "--name", name, "--version", version, "--redis", url,
                "--out", str(out), "--lease-s", str(lease_s), "--old-leases", str(old_leases)]  # fmt: skip
        self.log = open(out / f"{name}.log", "wb")
        self.proc = subprocess.Popen(
            args, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL
        )
        self._read = 0
        self.lines: list[dict] = []

    def poll(self) -> list[dict]:
        path = self.out / f"{self.name}.jsonl"
        if path.exists():
            with open(path) as f:
                f.seek(self._read)
                for raw in f:
                    if not raw.endswith("\n"):
                        break
                    self._read += len(raw.encode())
                    self.lines.append(json.loads(raw))
        if self.proc.poll() is not None and self.proc.returncode != -signal.SIGKILL:
            raise RuntimeError(
                f"{self.name} exited {self.proc.returncode}: {(self.out / f'{self.name}.log').read_text()[-3000:]}"
            )
        return self.lines

    def last(self) -> dict:
        lines = self.poll()
        return lines[-1] if lines else {}

    def ask(self, sig: int, suffix: str, timeout: float = 120) -> dict:
        """Signal the node and wait for the file it writes in answer."""
        path = self.out / f"{self.name}.{suffix}.json"
        path.unlink(missing_ok=True)
        self.proc.send_signal(sig)
        deadline = time.monotonic() + timeout
        while not path.exists():
            self.poll()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} wrote no {suffix} in {timeout} s")
            time.sleep(0.05)
        return json.loads(path.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def holders(r: redis.Redis, role: str, ids: list[str]) -> dict[str, str | None]:
    """Lease holder of each camera for `role` (None: free)."""
    out: dict[str, str | None] = {}
    for i in range(0, len(ids), 5000):
        chunk = ids[i : i + 5000]
        for cid, v in zip(chunk, r.mget([f"gw:lease:{role}:{c}" for c in chunk]), strict=True):
            out[cid] = v.decode() if v is not None else None
    return out


def wait_for(
    what: str, cond: Callable[[], bool], timeout: float, every: float = 0.25
) -> float | None:
    """Seconds until cond() is true; None past `timeout` (said on stdout)."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            print(f"  {what}: not within {timeout:.0f} s", flush=True)
            return None
        time.sleep(every)
    return time.monotonic() - t0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def redis_counters(r: redis.Redis) -> tuple[int, float]:
    info = r.info("all")
    return int(info["total_commands_processed"]), float(info["used_cpu_sys"]) + float(
        info["used_cpu_user"]
    )


def run_version(version: str, r: redis.Redis, url: str, args: argparse.Namespace, work: Path,
                old_leases: Path) -> dict[str, object]:  # fmt: skip
    """One version through every phase: its figures, by name."""
    print(
        f"{version}: {args.nodes} nodes, {args.cameras} cameras, lease_s {args.lease_s}", flush=True
    )
    out = work / version
    out.mkdir()
    r.flushall()
    fill_registry(r, args.cameras, wanted=True)
    ids = camera_ids(args.cameras)
    res: dict[str, object] = {}
    nodes = [
        Node(f"node-{i}", version, url, out, args.lease_s, old_leases) for i in range(args.nodes)
    ]
    try:

        def all_held() -> bool:
            running = [n.last() for n in nodes]
            # >=: an overloaded old node may run a camera whose lease another took since.
            return (all(running) and sum(x["media"] for x in running) >= len(ids)
                    and sum(x["record"] for x in running) >= len(ids))  # fmt: skip

        res["cold start: every camera running (s)"] = wait_for(
            "cold start", all_held, args.settle_timeout
        )
        # The new version: every node agrees on the placement before the figures.
        if version == "after":
            wait_for(
                "shares", lambda: all(n.last()["media"] == n.last()["share"] for n in nodes), 60
            )
        time.sleep(args.lease_s / 3 + 1)  # one more cycle each: nothing left to move
        per_node, seen = [], {"media": set(), "record": set()}
        overlaps = 0
        for n in nodes:
            running = n.ask(signal.SIGUSR1, "running")
            per_node.append(len(running["media"]))
            for role in seen:
                overlaps += len(seen[role] & set(running[role]))
                seen[role] |= set(running[role])
        missing = sum(len(set(ids) - s) for s in seen.values())
        fair = len(ids) / len(nodes)
        res["check: cameras running on 2 nodes (role)"] = overlaps
        res["check: cameras running on no node (role)"] = missing
        res["check: cameras per node, min"] = min(per_node)
        res["check: cameras per node, max"] = max(per_node)
        res["check: nodes within 10% of fair share"] = sum(
            abs(c - fair) <= 0.1 * fair for c in per_node
        )
        print(
            f"  cameras per node (media): {per_node}; on 2 nodes {overlaps}, on none {missing}",
            flush=True,
        )

        # Steady state.
        for n in nodes:
            n.poll()
        cmds0, rcpu0 = redis_counters(r)
        t0, cpu0 = time.time(), [cpu_seconds(n.proc.pid) for n in nodes]
        time.sleep(args.window)
        cmds1, rcpu1 = redis_counters(r)
        t1, cpu1 = time.time(), [cpu_seconds(n.proc.pid) for n in nodes]
        span = t1 - t0
        lag_max, lag_p99 = [], []
        steps: dict[str, list[float]] = {}
        for n in nodes:
            window = [x for x in n.poll() if t0 <= x["t"] <= t1 + STATS_S]
            lags = [v for x in window for v in x["lag"]]
            lag_max.append(max(lags, default=float("nan")) * 1000)
            lag_p99.append(pct(lags, 0.99) * 1000)
            for x in window:
                for name, durations in x["steps"].items():
                    steps.setdefault(name, []).extend(durations)
        res["loop lag max, median node (ms)"] = pct(lag_max, 0.5)
        res["loop lag max, worst node (ms)"] = max(lag_max)
        res["loop lag p99, median node (ms)"] = pct(lag_p99, 0.5)
        res["loop lag p99, worst node (ms)"] = max(lag_p99)
        res["node CPU, mean (cores)"] = (
            sum(b - a for a, b in zip(cpu0, cpu1, strict=True)) / len(nodes) / span
        )
        res["Redis commands/s (all nodes)"] = (cmds1 - cmds0) / span
        res["Redis commands/s per node"] = (cmds1 - cmds0) / span / len(nodes)
        res["Redis CPU (cores)"] = (rcpu1 - rcpu0) / span
        for name in ("media cycle", "record cycle"):
            res[f"{name} in window: count"] = len(steps.get(name, []))
            res[f"{name} in window: p50 (ms)"] = pct(steps.get(name, []), 0.5) * 1000
        # /metrics, one node at a time (a few: the nodes of one version are alike).
        scrapes = [n.ask(signal.SIGUSR2, "metrics") for n in nodes[: args.scrapes]]
        res["/metrics bytes per node (median)"] = pct([s["bytes"] for s in scrapes], 0.5)
        res["/metrics series per node (median)"] = pct([s["series"] for s in scrapes], 0.5)
        res["/metrics render on the loop (ms, median)"] = pct([s["ms"] for s in scrapes], 0.5)

        # An 11th node joins.
        before = holders(r, "media", ids)
        joined = Node(f"node-{len(nodes)}", version, url, out, args.lease_s, old_leases)
        nodes.append(joined)

        def has_share() -> bool:
            last = joined.last()
            if not last:
                return False
            target = last["share"] if last["share"] is not None else len(ids) / len(nodes)
            return last["media"] >= 0.9 * target and last["record"] >= 0.9 * target and all_held()

        took = wait_for("join", has_share, args.join_timeout)
        after = holders(r, "media", ids)
        res["join: new node holds its share (s)"] = took
        res["join: cameras on the new node"] = joined.last().get("media", 0)
        res["join: cameras that moved (%)"] = (
            100 * sum(before[c] != after[c] for c in ids) / len(ids)
        )

        # The node holding the most cameras dies.
        counts = {n.name: 0 for n in nodes}
        for h in after.values():
            if h in counts:
                counts[h] += 1
        victim = max(nodes, key=lambda n: counts[n.name])
        held = {role: [c for c, h in holders(r, role, ids).items() if h == victim.name]
                for role in ("media", "record")}  # fmt: skip
        victim.kill()

        def taken_over() -> bool:
            return all(h not in (None, victim.name) for role, cams in held.items()
                       for h in holders(r, role, cams).values())  # fmt: skip

        res["node killed: its cameras"] = len(held["media"])
        res["node killed: all its cameras held by others (s)"] = wait_for(
            "takeover", taken_over, args.kill_timeout
        )

        # Over the whole run (start, join, death): the loops' steps and the worst stall.
        steps = {}
        for n in nodes:
            for x in n.poll():
                for name, durations in x["steps"].items():
                    steps.setdefault(name, []).extend(durations)
        dead = sorted({d for n in nodes for x in n.lines[-1:] for d in x["died"]})
        res["whole run: node loops that died"] = len(dead)
        for d in dead:
            print(f"  a loop died: {d[:300]}", flush=True)
        res["whole run: loop lag max, worst node (ms)"] = max(max(x["lag"], default=0) for n in nodes
                                                              for x in n.lines) * 1000  # fmt: skip
        for name, durations in sorted(steps.items()):
            res[f"whole run: {name}: count"] = len(durations)
            res[f"whole run: {name}: p50 (ms)"] = pct(durations, 0.5) * 1000
            res[f"whole run: {name}: max (ms)"] = max(durations) * 1000
    finally:
        for n in nodes:
            n.kill()
    return res


def serve_metrics(version: str, r: redis.Redis, url: str, args: argparse.Namespace, work: Path,
                  pythonpath: str | None) -> dict[str, object]:  # fmt: skip
    """/metrics of a real `gridwatch serve` of `version` with the registry full."""
    r.flushall()
    fill_registry(r, args.cameras, wanted=False)
    server = GridwatchServer(work / f"serve-{version}", {"users": hashed_users({"viewer": "viewer"}),
                                                        "redis": {"url": url}})  # fmt: skip
    env_before = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = pythonpath
    try:
        server.start(timeout=120)
    finally:
        if pythonpath is not None:
            if env_before is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = env_before
    try:
        t0 = time.perf_counter()
        with urllib.request.urlopen(server.base + "/metrics", timeout=120) as resp:
            body = resp.read()
        ms = (time.perf_counter() - t0) * 1000
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        return {"real server /metrics bytes": len(body), "real server /metrics series": series,
                "real server /metrics time (ms)": ms}  # fmt: skip
    finally:
        server.stop()


def old_tree(work: Path) -> tuple[Path, str]:
    """89f9334 as a worktree, and a PYTHONPATH on which `gridwatch.*` is that tree."""
    tree = work / "before-tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), BEFORE], check=True,
                   capture_output=True)  # fmt: skip
    ns = work / "before-path" / "gridwatch"
    ns.mkdir(parents=True)
    for part in ("contracts", "media", "signaling", "detectors", "dispatch", "web", "recordings"):
        (ns / part).symlink_to(tree / part)
    return tree, str(ns.parent)


def fmt(v: object) -> str:
    if v is None:
        return "never"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def conduct(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="gw-cluster-bench-") as tmp:
        work = Path(tmp)
        old_leases = work / "leases_89f9334.py"
        old_leases.write_text(subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:media/leases.py"],
                                             check=True, capture_output=True, text=True).stdout)  # fmt: skip
        server = RedisServer(work / "redis").start()
        r = redis.Redis.from_url(server.url)
        # The nodes' lease writes, not the disk, are measured: no AOF fsync per second.
        r.config_set("appendonly", "no")
        tree = None
        try:
            results = {
                v: run_version(v, r, server.url, args, work, old_leases)
                for v in ("before", "after")
            }
            if args.serve:
                tree, path = old_tree(work)
                results["before"].update(serve_metrics("before", r, server.url, args, work, path))
                results["after"].update(serve_metrics("after", r, server.url, args, work, None))
        finally:
            r.close()
            server.stop()
            if tree is not None:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )
    names = list(dict.fromkeys([*results["before"], *results["after"]]))
    print(f"\n{args.cameras} cameras, {args.nodes} nodes (+1 joining), lease_s {args.lease_s}, "
          f"window {args.window:.0f} s, {os.cpu_count()} cores")  # fmt: skip
    print(f"{'metric':48} {'before ' + BEFORE:>16} {'after HEAD':>14} {'after/before':>13}")
    for name in names:
        a, b = results["before"].get(name, "-"), results["after"].get(name, "-")
        both = isinstance(a, int | float) and isinstance(b, int | float)
        print(f"{name:48} {fmt(a):>16} {fmt(b):>14} {ratio(b, a) if both else '':>13}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd")
    node = sub.add_parser("node")
    node.add_argument("--name", required=True)
    node.add_argument("--version", choices=["before", "after"], required=True)
    node.add_argument("--redis", required=True)
    node.add_argument("--out", required=True)
    node.add_argument("--lease-s", type=float, required=True)
    node.add_argument("--old-leases", required=True)
    p.add_argument("--cameras", type=int, default=20_000)
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--lease-s", type=float, default=15.0, help="media.lease_s (the default: 15)")
    p.add_argument("--window", type=float, default=30.0, help="steady-state window, s")
    p.add_argument("--settle-timeout", type=float, default=240.0)
    p.add_argument("--join-timeout", type=float, default=60.0)
    p.add_argument("--kill-timeout", type=float, default=120.0)
    p.add_argument("--scrapes", type=int, default=3, help="nodes whose /metrics is rendered")
    p.add_argument(
        "--no-serve", dest="serve", action="store_false", help="skip the real servers' /metrics"
    )
    args = p.parse_args()
    if args.cmd == "node":
        asyncio.run(node_main(args))
    else:
        conduct(args)


if __name__ == "__main__":
    main()
