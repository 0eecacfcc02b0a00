"""Evidence files of tickets (detector snapshots, clips, photos), under `data_dir/evidence`.

Each violation gets a folder named after its id; a ticket lists its files by their
path relative to the root. A folder's files lie on one node: `gw:evidence:holders`
(hash) maps a folder to the node (cluster.node) whose disk holds it, and a file kept
apart from its folder (`folder/name`, its holder was unreachable) to its own node;
every node serves them by fetching from the holder, or reads them directly when
`recordings.shared_storage` says every node mounts the same data directory.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import redis.asyncio as aioredis

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
HOLDERS = "gw:evidence:holders"


async def holder(redis: aioredis.Redis, rel: str) -> str | None:
    """The node holding evidence file `rel` (`folder/name`): its own record, else its
    folder's; None when neither is recorded (saved by a version that did not record)."""
    own, folder = await redis.hmget(HOLDERS, [rel, rel.split("/", 1)[0]])
    found = own or folder
    return found.decode() if found else None


async def hold(redis: aioredis.Redis, key: str, node: str, first: bool = False) -> None:
    """Record that `node` holds folder `key` (or the single file `folder/name`); with
    `first`, only when nobody holds it yet."""
    if first:
        await redis.hsetnx(HOLDERS, key, node)
    else:
        await redis.hset(HOLDERS, key, node)


class EvidenceStore:
    def __init__(self, root: Path):
        self.root = root.resolve()

    @staticmethod
    def name(folder: str, name: str) -> str:
        """The name a file of `folder` is saved and listed under (unsafe characters as `_`)."""
        return f"{EvidenceStore.folder(folder)}/{_UNSAFE.sub('_', name)}"

    @staticmethod
    def folder(folder: str) -> str:
        """The folder's name on disk and in `gw:evidence:holders` (unsafe characters as `_`)."""
        return _UNSAFE.sub("_", folder)

    def place(self, folder: str, name: str) -> tuple[str, Path]:
        """Where a file of a violation goes: (its name as tickets list it, its path)."""
        rel = self.name(folder, name)
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return rel, path

    def save(self, folder: str, name: str, data: bytes) -> str:
        """Write a file (idempotent: a redelivered violation writes the same bytes); its name."""
        rel, path = self.place(folder, name)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)  # never a half-written picture, even if the node dies here
        return rel

    def adopt(self, rel: str, src: Path) -> Path:
        """Move the finished file `src` in as `rel` (a name from `name`): never half a
        file under that name, even across file systems. Its path."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        shutil.move(src, tmp)
        tmp.replace(path)
        return path

    def remove(self, rel: str) -> None:
        """Delete a file saved moments ago that its ticket could not take."""
        if (path := self.path(rel)) is not None:
            path.unlink(missing_ok=True)

    def path(self, rel: str) -> Path | None:
        """The file for a name a ticket lists; None if it is not a file inside the root."""
        try:
            path = (self.root / rel).resolve()
            if not path.is_relative_to(self.root) or not path.is_file():
                return None
        except (OSError, ValueError):  # a name too long, NUL in it: no such file
            return None
        return path
