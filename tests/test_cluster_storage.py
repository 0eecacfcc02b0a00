"""Storage on many nodes (issue 19, must-show 3): two `gridwatch serve` nodes on one
redis-server, each with a data directory of its own, record one RTSP camera. The owner
is SIGKILLed mid-segment, the other takes the camera and records on, the dead node comes
back under its name and data directory (and takes the camera back). Then every segment
in the index plays (range request and decode) from every node, no entry says 0 s or 0
bytes while its file exists, and after retention every file on either disk is indexed
and every entry has its file; a ticket's pictures and clip lie on one node and every
node serves them, and the evidence package, whole. While the holder is down, its
segments answer 503 naming it."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import signal
import time
import zipfile

import av
import cv2
import numpy as np
import redis

from support.procs import GridwatchServer, settled
from support.waits import wait_for

LEASE_S = 3.0
RETAIN_S = 40.0  # retention deletes the first segments while the test runs
POSITION = {"lat": 31.2601, "lon": 120.9203}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def picture(colour: int) -> bytes:
    img = np.full((48, 64, 3), colour, np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def index(r: redis.Redis) -> dict[str, dict]:
    """The camera's segments as the index holds them: path -> segment JSON."""
    return {k.decode(): json.loads(v) for k, v in r.hgetall("gw:rec:cam:gate:meta").items()}


def owner(r: redis.Redis) -> str | None:
    held = r.get("gw:lease:record:gate")
    return held.decode() if held else None


def disk(node: GridwatchServer) -> dict[str, int]:
    """The segment files on a node's disk: path relative to its recordings root -> bytes."""
    root = node.workdir / "data" / "recordings"
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.glob("*/*/*.mp4")}


def decodes(data: bytes) -> int:
    """Frames decoded from an MP4 in memory (raises if one does not decode)."""
    with av.open(io.BytesIO(data)) as c:
        return sum(1 for _ in c.decode(video=0))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()



async def get(http, node: GridwatchServer, path: str, token: str, **headers) -> tuple[int, bytes]:
    async with http.get(node.base + path, headers={**auth(token), **headers}) as r:
        return r.status, await r.read()


async def test_a_node_dies_mid_segment_and_comes_back_every_node_serves_everything(
    redis_server, rtsp_factory, gridwatch_factory, http
):
    rtsp = rtsp_factory({"/cam": "testsrc:160x120@10:200,gop=10"})

    def node(name: str) -> GridwatchServer:
        return gridwatch_factory({
            "redis": {"url": redis_server.url},
            "cluster": {"node": name},
            "media": {"lease_s": LEASE_S},
            # A node stopped while blocked in XREADGROUP is handed the violation by Redis;
            # the other claims it after claim_idle_s (30 s by default, past the wait).
            "dispatch": {"categories": {"illegal_parking": {"mode": "suggest"}}, "claim_idle_s": 2},
            "cameras": [{"id": "gate", "source": rtsp.url("/cam"), "position": POSITION,
                         "record": {"mode": "continuous", "retain_days": RETAIN_S / 86400}}],
            "recordings": {"segment_s": 2, "min_free_mb": 0, "check_s": 1, "pre_s": 2, "post_s": 2},
        }, name=name)  # fmt: skip

    r = redis.Redis.from_url(redis_server.url)
    nodes = {"na": node("na"), "nb": node("nb")}
    await settled(list(nodes.values()))
    first = await wait_for("the camera recorded", lambda: owner(r), 20)
    dead, other = nodes[first], nodes["nb" if first == "na" else "na"]
    other_name = "nb" if first == "na" else "na"
    token = dead.token("dispatcher")

    # SIGKILL mid-segment: two closed segments and an open one with bytes on disk.
    def mid_segment():
        segs = index(r).values()
        opened = [s for s in segs if s["end"] is None and s["node"] == first]
        closed = [s for s in segs if s["end"] is not None]
        return (
            opened[0]
            if len(closed) >= 2 and opened and disk(dead).get(opened[0]["path"], 0) > 0
            else None
        )

    left_open = await wait_for("an open segment with bytes", mid_segment, 30)
    dead.proc.kill()
    dead.proc.wait()
    killed = time.time()
    size_at_kill = disk(dead)[left_open["path"]]

    # The other node takes the camera and records on; it leaves the dead node's open
    # segment alone (its file is not on its disk) and answers 503 naming the holder.
    await wait_for("the camera taken over", lambda: owner(r) == other_name, LEASE_S + 5)
    await wait_for("recording on the other node", lambda: any(
        s["node"] == other_name and s["start"] > killed and s["end"] for s in index(r).values()), 15)  # fmt: skip
    # Neither "repaired" as 0 s / 0 bytes nor dropped from the index.
    assert index(r).get(left_open["path"], {"end": "gone"})["end"] is None, index(r).get(
        left_open["path"]
    )
    status, body = await get(
        http, other, f"/recordings/{left_open['path']}", other.token("dispatcher")
    )
    assert status == 503 and json.loads(body)["error"] == "holder_unavailable", body
    assert json.loads(body)["node"] == first

    # The dead node comes back (same name, same disk): it repairs its own open segment.
    dead.start()
    await settled(list(nodes.values()))
    repaired = await wait_for("the open segment repaired by its node",
                              lambda: index(r)[left_open["path"]]["end"] is not None and index(r)[left_open["path"]], 20)  # fmt: skip
    assert repaired["size"] == disk(dead)[left_open["path"]] >= size_at_kill > 0
    assert repaired["end"] > repaired["start"]
    back = await wait_for("the camera back on its node, recording", lambda: owner(r) == first and min(
        (s["start"] for s in index(r).values() if s["node"] == first and s["start"] > killed), default=None), 20)  # fmt: skip
    await wait_for("a closed segment after the move back", lambda: any(
        s["node"] == first and s["start"] > killed and s["end"] for s in index(r).values()), 15)  # fmt: skip

    # A ticket whose pictures land on the node that does not record the camera (the
    # recorder is stopped while the other consumes the violation): its clip, cut across
    # the move back, joins them there.
    event = {"id": "gate:np-1:cluster", "camera": "gate", "zone": "np-1", "kind": "no_parking", "label": "vehicle",
             "box": [10, 20, 30, 40], "first_seen": back - 60, "confirmed": back}  # fmt: skip
    fields = {"violation": json.dumps(event), "first.jpg": picture(40), "confirmed.jpg": picture(120),
              "crop.jpg": picture(200)}  # fmt: skip
    dead.proc.send_signal(signal.SIGSTOP)
    try:
        r.xadd("gw:violations", fields)
        await wait_for("the violation consumed", lambda: r.xlen("gw:violations") == 0, 30)
    finally:
        dead.proc.send_signal(signal.SIGCONT)
    async with http.get(other.base + "/api/tickets", headers=auth(token)) as resp:
        (ticket,) = (await resp.json())["tickets"]
    ticket_id = ticket["id"]

    async def evidence() -> dict[str, str | None]:
        async with http.get(
            f"{other.base}/api/tickets/{ticket_id}/evidence", headers=auth(token)
        ) as resp:
            return {e["name"]: e["url"] for e in (await resp.json())["evidence"]}

    deadline = time.monotonic() + 40
    while not any(n.endswith("clip.mp4") for n in await evidence()):
        assert time.monotonic() < deadline, other.logs()[-3000:] + dead.logs()[-3000:]
        await asyncio.sleep(0.5)
    listed = await evidence()
    folder = next(iter(listed)).split("/")[0]
    holders = [n for n in nodes.values() if (n.workdir / "data" / "evidence" / folder).is_dir()]
    assert holders == [other], [n.workdir for n in holders]  # one place: where the pictures were
    here = other.workdir / "data" / "evidence"
    assert {p.name for p in (here / folder).iterdir()} >= {
        "first.jpg",
        "confirmed.jpg",
        "crop.jpg",
        "clip.mp4",
    }
    for name, url in listed.items():
        assert url is not None, name
        want = sha((here / name).read_bytes())
        for n in nodes.values():
            status, body = await get(http, n, url, token)
            assert status == 200 and sha(body) == want, (n.workdir.name, name, status)
    assert decodes((here / folder / "clip.mp4").read_bytes()) >= 3 * 10
    for n in nodes.values():
        status, body = await get(http, n, f"/api/tickets/{ticket_id}/evidence.zip", token)
        assert status == 200, body[:300]
        with zipfile.ZipFile(io.BytesIO(body)) as z:
            manifest = json.loads(z.read("manifest.json"))
            assert manifest["evidence"]["missing"] == []
            assert sha(z.read("clip.mp4")) == sha((here / folder / "clip.mp4").read_bytes())
            assert sha(z.read(f"originals/{folder}/crop.jpg")) == sha(
                (here / folder / "crop.jpg").read_bytes()
            )

    # A clip across the moves, from each node (pieces fetched from the node that holds them).
    span = sorted(s["start"] for s in index(r).values() if s["end"])
    for n in nodes.values():
        async with http.get(n.base + "/api/recordings/clip", headers=auth(token),
                            params={"camera": "gate", "from": killed - 3, "to": back + 3}) as resp:  # fmt: skip
            assert resp.status == 200, await resp.text()
            assert decodes(await resp.read()) >= 10 * (back - killed)
    assert span

    # Every closed segment in the index plays from every node: a range request, and the
    # whole file decodes; none says 0 s or 0 bytes while its file is on its node's disk.
    for path, seg in index(r).items():
        if seg["end"] is None:
            continue  # the one being written now
        files = disk(nodes[seg["node"]])
        if path not in files:
            assert path not in index(r), f"{path} indexed but not on {seg['node']}'s disk"
            continue  # retention took it meanwhile
        assert seg["size"] == files[path] > 0 and seg["end"] > seg["start"], seg
        for n in nodes.values():
            status, head = await get(http, n, f"/recordings/{path}", token, Range="bytes=0-99")
            if status == 404 and path not in index(r):
                continue
            assert status == 206 and len(head) == 100, (n.workdir.name, path, status)
            status, whole = await get(http, n, f"/recordings/{path}", token)
            assert status == 200 and whole[:100] == head and len(whole) == seg["size"]
            assert decodes(whole) > 0
    metrics = {name: n.metrics() for name, n in nodes.items()}
    assert all(m["gridwatch_node_files_fetches_total"] > 0 for m in metrics.values()), metrics

    # Retention ran (the first segments are gone, on both nodes' disks), then: stopped
    # cleanly, every file on each disk is indexed as that node's, every entry has its file.
    await wait_for("retention deleted segments on both nodes",
                   lambda: all("segment deleted" in n.logs() for n in nodes.values()), RETAIN_S + 10)  # fmt: skip
    for n in nodes.values():
        n.stop()
    final = index(r)
    on_disk = {name: disk(n) for name, n in nodes.items()}
    for name, files in on_disk.items():
        for path, size in files.items():
            assert path in final and final[path]["node"] == name, f"{path} on {name} not indexed"
            assert final[path]["size"] == size and final[path]["end"] is not None
    for path, seg in final.items():
        assert path in on_disk[seg["node"]], f"{path} indexed, no file on {seg['node']}"


async def test_shared_storage_any_node_repairs_and_serves_from_the_common_disk(
    redis_server, rtsp_factory, gridwatch_factory, http, tmp_path
):
    """`recordings.shared_storage`: both nodes mount one data directory. The node that
    takes over a SIGKILLed owner's camera repairs its open segment from the common disk
    at once, and serves every segment itself (nothing fetched from another node)."""
    rtsp = rtsp_factory({"/cam": "testsrc:160x120@10:200,gop=10"})
    common = tmp_path / "common"

    def node(name: str) -> GridwatchServer:
        return gridwatch_factory({
            "server": {"data_dir": str(common)},
            "redis": {"url": redis_server.url},
            "cluster": {"node": name},
            "media": {"lease_s": LEASE_S},
            "cameras": [{"id": "gate", "source": rtsp.url("/cam"), "record": {"mode": "continuous"}}],
            "recordings": {"segment_s": 2, "min_free_mb": 0, "check_s": 1, "shared_storage": True},
        }, name=name)  # fmt: skip

    r = redis.Redis.from_url(redis_server.url)
    nodes = {"na": node("na"), "nb": node("nb")}
    await settled(list(nodes.values()))
    first = await wait_for("the camera recorded", lambda: owner(r), 20)
    dead, other = nodes[first], nodes["nb" if first == "na" else "na"]
    root = common / "recordings"

    def mid_segment():
        opened = [s for s in index(r).values() if s["end"] is None]
        return opened[0] if opened and (root / opened[0]["path"]).is_file() and (
            root / opened[0]["path"]).stat().st_size > 0 else None  # fmt: skip

    left_open = await wait_for("an open segment with bytes", mid_segment, 30)
    dead.proc.kill()
    dead.proc.wait()
    repaired = await wait_for("the open segment repaired by the node that took over",
                              lambda: index(r)[left_open["path"]]["end"] and index(r)[left_open["path"]], LEASE_S + 10)  # fmt: skip
    assert repaired["size"] == (root / left_open["path"]).stat().st_size > 0
    token = other.token("dispatcher")
    status, body = await get(
        http, other, f"/recordings/{left_open['path']}", token, Range="bytes=0-99"
    )
    assert status == 206 and len(body) == 100
    assert other.metrics()["gridwatch_node_files_fetches_total"] == 0
