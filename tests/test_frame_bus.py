"""The detection frame bus on a Redis of its own (redis.frames_url): sampled frames go
there, and only there; tickets, leases and the rest stay in the durable Redis."""

from __future__ import annotations

import redis

from gridwatch.detectors.scenarios import ROAD
from support.procs import RedisServer
from support.scenario_run import ScenarioRun

ZONE = {"name": "np-1", "kind": "no_parking", "polygon": ROAD, "dwell_s": 6}


def test_frames_travel_on_their_own_redis_and_a_ticket_still_opens(tmp_path, users, scenario_videos):
    # A vehicle stops at 5 s: reported after its 6 s dwell.
    frames_server = RedisServer(tmp_path / "frames-redis")
    run = ScenarioRun(tmp_path, scenario_videos, {"cam0": ("park", [ZONE])}, users,
                      frames_server=frames_server)  # fmt: skip
    try:
        run.start()
        ticket = run.wait_ticket("cam0", until=25)
        assert ticket["camera"] == "cam0"
        bus = redis.Redis.from_url(frames_server.url)
        assert bus.xlen("gw:frames:cam0") > 0
        assert list(run.r.scan_iter("gw:frames:*")) == []  # none in the durable Redis
        assert run.r.exists("gw:lease:detect:cam0") and not bus.exists("gw:lease:detect:cam0")
        assert list(bus.scan_iter("gw:ticket*")) == []
        bus.close()
    finally:
        run.stop()
