"""The mark stream (`gw:record:marks`): how dispatch asks the recorders to keep footage
and cut evidence clips, without either importing the other. Entries: `camera`, `at`
(Unix s) and, for evidence, `ticket` and `folder` (its folder in the evidence store)."""

from __future__ import annotations

import redis.asyncio as aioredis

MARKS = "gw:record:marks"
MAXLEN = 10_000


async def add_mark(redis: aioredis.Redis, camera: str, at: float, ticket: str | None = None,
                   folder: str | None = None) -> None:  # fmt: skip
    """Ask whichever node records `camera` to keep [at - pre_s, at + post_s]; with a ticket,
    to attach that as an evidence clip (its file in the evidence folder `folder`)."""
    fields: dict[str, str | float] = {"camera": camera, "at": at}
    if ticket:
        fields |= {"ticket": ticket, "folder": folder or ticket}
    await redis.xadd(MARKS, fields, maxlen=MAXLEN, approximate=True)
