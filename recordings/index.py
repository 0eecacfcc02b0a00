"""The segment index in Redis, shared by every node: by camera, ordered by start time.

`gw:rec:cam:{camera}` (sorted set) path -> start; `gw:rec:cam:{camera}:meta` (hash)
path -> segment JSON (with `node`, the node whose disk holds the file);
`gw:rec:cameras` (set) the cameras with segments. (The `cam:`
keeps a camera's keys apart from the node-wide ones: a camera may be called "cameras"
or "evidence".) A segment is indexed
when it opens (end null) and again when it closes, so a crash leaves an open entry
that the next start repairs from the file.

`gw:rec:cam:{camera}:marks` (sorted set) mark JSON (`id`: its entry on the mark stream, `at`,
`ticket` or null) -> at: the marks of one camera, written by the node that records it
(the mark stream holds every camera's, and only the latest ten thousand), trimmed with
its segments, so that a timeline finds a camera's marks and tickets by time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis

from gridwatch.contracts.records import load_all
from gridwatch.recordings.segments import Segment

LONGEST_S = 3600  # no segment is longer: bounds the look-back of a time-range query


@dataclass(frozen=True)
class Mark:
    id: str  # the entry id on the mark stream: two marks at one time stay two
    at: float  # Unix s
    ticket: str | None = None  # the ticket whose evidence the mark asked for


CAMERAS = "gw:rec:cameras"
RESERVED = ("cameras", "evidence")  # node-wide keys that a camera's keys once shared a prefix with


def segments_key(camera: str) -> str:
    return f"gw:rec:cam:{camera}"


def meta_key(camera: str) -> str:
    return f"gw:rec:cam:{camera}:meta"


def marks_key(camera: str) -> str:
    return f"gw:rec:cam:{camera}:marks"


async def move_old_keys(redis: aioredis.Redis) -> int:
    """Move the index of a version that kept a camera's keys at `gw:rec:{camera}` to
    where they are now; the number of keys moved. Key by key, and merged into what is
    there already (a node of the old version still writing during a rolling upgrade, a
    move cut short by a crash). A camera named like a node-wide key (RESERVED) cannot be
    told apart from it there and is left to be indexed afresh."""
    moved = 0
    for raw in await redis.smembers(CAMERAS):
        camera = raw.decode()
        if camera in RESERVED:
            continue
        for old, new in ((f"gw:rec:{camera}", segments_key(camera)), (f"gw:rec:{camera}:meta", meta_key(camera)),
                         (f"gw:rec:{camera}:marks", marks_key(camera))):  # fmt: skip
            kind = (await redis.type(old)).decode()
            if kind == "none":
                continue
            if kind == "zset":
                await redis.zunionstore(new, [new, old], aggregate="MIN")
            elif kind == "hash":
                present = set(await redis.hkeys(new))  # what the new version wrote is newer
                if missing := {k: v for k, v in (await redis.hgetall(old)).items() if k not in present}:
                    await redis.hset(new, mapping=missing)
            await redis.delete(old)
            moved += 1
    return moved


class SegmentIndex:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def put(self, seg: Segment) -> None:
        await (
            self.redis.pipeline(transaction=True)
            .zadd(segments_key(seg.camera), {seg.path: seg.start})
            .hset(meta_key(seg.camera), seg.path, json.dumps(seg.as_json()))
            .sadd(CAMERAS, seg.camera)
            .execute()
        )

    async def remove(self, seg: Segment) -> None:
        await (
            self.redis.pipeline(transaction=True)
            .zrem(segments_key(seg.camera), seg.path)
            .hdel(meta_key(seg.camera), seg.path)
            .execute()
        )

    async def _load(self, camera: str, paths: list[bytes]) -> list[Segment]:
        if not paths:
            return []
        blobs = await self.redis.hmget(meta_key(camera), paths)
        return load_all(Segment, zip((p.decode() for p in paths), blobs, strict=True), "segment")

    async def between(self, camera: str, start: float, end: float) -> list[Segment]:
        """Segments that overlap [start, end], oldest first."""
        paths = await self.redis.zrangebyscore(segments_key(camera), start - LONGEST_S, end)
        segments = await self._load(camera, paths)
        return [s for s in segments if s.start <= end and (s.end is None or s.end >= start)]

    async def get(self, camera: str, path: str) -> Segment | None:
        """The segment indexed at `path` (relative to the recordings root), or None."""
        found = await self._load(camera, [path.encode()])
        return found[0] if found else None

    async def indexed(self, camera: str, paths: list[str]) -> set[str]:
        """Those of `paths` that the index holds."""
        if not paths:
            return set()
        blobs = await self.redis.hmget(meta_key(camera), paths)
        return {p for p, b in zip(paths, blobs, strict=True) if b is not None}

    async def all(self, camera: str) -> list[Segment]:
        """Every segment of `camera`, oldest first."""
        entries = await self.redis.hgetall(meta_key(camera))
        segments = load_all(Segment, ((k.decode(), b) for k, b in entries.items()), "segment")
        return sorted(segments, key=lambda s: s.start)

    async def open_ones(self, camera: str) -> list[Segment]:
        return [s for s in await self.all(camera) if s.end is None]

    async def add_mark(self, camera: str, mark: Mark) -> None:
        """Index one mark of `camera` (the same mark twice is kept once)."""
        await self.redis.zadd(marks_key(camera), {json.dumps(asdict(mark)): mark.at})

    async def marks(self, camera: str, start: float, end: float, limit: int) -> list[Mark]:
        """At most `limit` marks of `camera` in [start, end], oldest first."""
        blobs = await self.redis.zrangebyscore(marks_key(camera), start, end, start=0, num=limit)
        return load_all(Mark, ((marks_key(camera), b) for b in blobs), "mark")

    async def forget_marks(self, camera: str, before: float) -> None:
        """Drop the marks of `camera` older than `before` (Unix s): retention."""
        await self.redis.zremrangebyscore(marks_key(camera), "-inf", f"({before}")

    async def known(self, camera: str) -> bool:
        """Whether `camera` has segments (a published stream is no registered camera)."""
        return bool(await self.redis.sismember(CAMERAS, camera))

    async def cameras(self) -> list[str]:
        return sorted(c.decode() for c in await self.redis.smembers(CAMERAS))
