"""Leases in Redis: which node or worker owns a camera (`gw:lease:{role}:{camera}`).

A holder renews its lease well within the TTL; when it dies, the lease runs out and
another takes the camera over. Renewal and release check the holder, so a holder
that was too slow can never extend or drop a lease someone else has taken since. A
holder that stops cleanly (a node shutting down) releases its leases at once, so
another node, or this one restarted, takes the cameras without waiting for the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Generic, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gridwatch.contracts.retry import forever

log = logging.getLogger("gridwatch.leases")
RETRY_S = 0.25  # the first quick retry of a lease another node is about to release
T = TypeVar("T")

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Take each lease that is free, renew each that is ours: one round trip for a node's
# cameras, whatever their number. KEYS: the leases; ARGV: holder, ttl ms. -> 1/0 each.
_HOLD_MANY = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2]); out[i] = 1
  elseif redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then out[i] = 1
  else out[i] = 0 end
end
return out
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases:
    def __init__(self, redis: aioredis.Redis, role: str, holder: str, ttl_s: float):
        self.redis = redis
        self.role = role
        self.holder = holder
        self.ttl_ms = int(ttl_s * 1000)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._hold_many = redis.register_script(_HOLD_MANY)

    def key(self, item: str) -> str:
        return f"gw:lease:{self.role}:{item}"

    async def hold(self, item: str) -> bool:
        """Take the lease if it is free, or renew it if it is ours; False if another holds it."""
        if await self._renew(keys=[self.key(item)], args=[self.holder, self.ttl_ms]):
            return True
        return bool(await self.redis.set(self.key(item), self.holder, nx=True, px=self.ttl_ms))

    async def hold_many(self, items: list[str], batch: int = 1000) -> set[str]:
        """`hold` for many items, `batch` per round trip: the ones held now."""
        held: set[str] = set()
        for i in range(0, len(items), batch):
            chunk = items[i : i + batch]
            got = await self._hold_many(keys=[self.key(x) for x in chunk], args=[self.holder, self.ttl_ms])
            held.update(x for x, ok in zip(chunk, got, strict=True) if ok)
        return held

    async def release(self, item: str) -> None:
        await self._release(keys=[self.key(item)], args=[self.holder])


class LeasedWork(Generic[T]):
    """One task per wanted item (a camera) whose lease this node holds.

    Every lease_s/3, or at once after `wake()`, the wanted items are read again and
    kept to those this node does (`mine`: the camera placement): a task whose item is
    no longer wanted or no longer ours, or changed, is stopped and its lease released;
    one whose lease another took is stopped; a free lease is taken and its task
    started. A cycle's Redis work is one batched round trip for all the node's leases.

    A task is stopped by `stop(item)` when given (it asks the task to end on its own:
    a recorder closes its segment) and cancelled only if it has not ended `stop_s`
    later. `close()` (or cancelling `run()`) stops every task and releases its lease.
    """

    def __init__(
        self,
        leases: Leases,
        wanted: Callable[[], Awaitable[dict[str, T]]],
        start: Callable[[str, T], Coroutine[None, None, None]],
        period_s: float,
        stop: Callable[[str], None] | None = None,
        stop_s: float = 2.0,
        mine: Callable[[str], bool] = lambda item: True,
    ):
        self.leases = leases
        self.wanted = wanted
        self.start = start
        self.period_s = period_s
        self.stop = stop
        self.stop_s = stop_s
        self.mine = mine
        self._woken = asyncio.Event()
        self._misses = 0  # cycles in a row that could not hold every wanted item
        self.running: dict[str, tuple[T, asyncio.Task]] = {}
        self.closed = False
        # A cycle and close() never interleave: a cycle's hold() landing after close()
        # released the lease would take it again for a node that is going away.
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        try:
            await forever(self._cycle_and_nap, f"{self.leases.role} leases", log)
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop every task and release its lease; no task starts after this. Idempotent.
        A lease that cannot be released (Redis away) runs out by its TTL as after a crash."""
        async with self._lock:
            self.closed = True
            await self._stop_all()

    async def _stop_all(self) -> None:
        # All at once: a node's shutdown waits for the slowest task, not for their sum.
        await asyncio.gather(*(self._stop_and_release(item) for item in list(self.running)))

    async def _stop_and_release(self, item: str) -> None:
        try:
            await self._stop(item)
        except (RedisError, OSError) as e:  # its last write (a segment's index entry) lost
            log.warning("task stopped without redis", extra={"role": self.leases.role,
                                                             "item": item, "error": str(e)})  # fmt: skip
        except Exception:  # one task's fault must not keep the others' leases held
            log.exception("task failed while stopping", extra={"role": self.leases.role, "item": item})
        try:
            await self.leases.release(item)
        except (RedisError, OSError) as e:
            log.warning("lease not released", extra={"role": self.leases.role, "item": item,
                                                     "error": str(e)})  # fmt: skip

    def wake(self) -> None:
        """Run a cycle now (the placement changed), not at the end of the period."""
        self._woken.set()

    async def _cycle_and_nap(self) -> None:
        await self._cycle()
        # Items of ours that another still holds (it is closing its segment before it
        # lets go, on a move or a shutdown) are tried again soon, then less often: not
        # a whole period later, which would leave that long a hole in the recording.
        nap = min(self.period_s, RETRY_S * 2**self._misses) if self._misses else self.period_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), nap)
        self._woken.clear()

    async def _cycle(self) -> None:
        async with self._lock:
            if not self.closed:
                await self._take_and_drop()

    async def _take_and_drop(self) -> None:
        wanted = {item: spec for item, spec in (await self.wanted()).items() if self.mine(item)}
        # Stopped all at once, not one after another: each may take stop_s to close its
        # segment, and a node that hands 100 cameras over must not take 100 times that
        # before it takes the cameras it is given in their place.
        gone = [item for item, (spec, _) in self.running.items() if item not in wanted or spec != wanted[item]]
        await asyncio.gather(*(self._stop_and_release(item) for item in gone))
        held = await self.leases.hold_many(list(wanted))
        self._misses = self._misses + 1 if len(held) < len(wanted) else 0
        # Lost (we were too slow): the holder has it now.
        await asyncio.gather(*(self._stop_quietly(item) for item in wanted if item not in held and item in self.running))
        for item, spec in wanted.items():
            if item not in held:
                continue
            if item not in self.running:
                task = asyncio.create_task(
                    self.start(item, spec), name=f"{self.leases.role}-{item}"
                )
                self.running[item] = (spec, task)

    async def _stop_quietly(self, item: str) -> None:
        """_stop, a task's own failure logged: it must not end the loop of all the others."""
        try:
            await self._stop(item)
        except Exception:
            log.exception("task failed", extra={"role": self.leases.role, "item": item})

    async def _stop(self, item: str) -> None:
        _, task = self.running.pop(item)
        if self.stop is not None and not task.done():
            self.stop(item)
            # asyncio.wait, not wait_for: it never cancels the task it waits on.
            await asyncio.wait([task], timeout=self.stop_s)
            if not task.done():
                log.warning("task did not stop in time, cancelled",
                            extra={"role": self.leases.role, "item": item, "seconds": self.stop_s})  # fmt: skip
        task.cancel()
        # Bounded too: a task cancelled inside a write its thread still holds (a hung
        # disk) must not hold the node; its lease is released all the same.
        done, _ = await asyncio.wait([task], timeout=self.stop_s)
        if done:
            with contextlib.suppress(asyncio.CancelledError):
                await task
