"""Evidence files of tickets (detector snapshots), under `data_dir/evidence`.

Each violation gets a folder named after its id; a ticket lists its files by their
path relative to the root. Several nodes need this folder on shared storage (NFS and
the like) to serve each other's evidence.
"""

from __future__ import annotations

import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class EvidenceStore:
    def __init__(self, root: Path):
        self.root = root.resolve()

    @staticmethod
    def name(folder: str, name: str) -> str:
        """The name a file of `folder` is saved and listed under (unsafe characters as `_`)."""
        return f"{_UNSAFE.sub('_', folder)}/{_UNSAFE.sub('_', name)}"

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
