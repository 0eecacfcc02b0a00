"""Files on other nodes, as the recordings see them: a segment or an evidence file lies on
the disk of the node that wrote it, and another node copies it over the nodes' internal
addresses (`signaling.node_files` satisfies `Peers`; the recordings never import it)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Unreachable(Exception):
    """The node holding a file is not live, or did not hand the file over. `node`: that
    node; the message says what was asked of it and why it failed."""

    def __init__(self, node: str, message: str):
        super().__init__(message)
        self.node = node


class Peers(Protocol):
    async def download(self, node: str, path: str, dest: Path) -> None:
        """Copy the file at `path` (an `/internal/...` route) from `node` into `dest`,
        streamed; Unreachable when the node is not live or answers anything but 200."""

    async def upload(self, node: str, path: str, src: Path) -> None:
        """PUT the file `src` to `path` (an `/internal/...` route) on `node`, streamed;
        Unreachable when the node is not live or does not answer 2xx."""


def recording_path(rel: str) -> str:
    """The internal route of a segment file (`rel` relative to the recordings root)."""
    return f"/internal/recordings/{rel}"


def evidence_path(rel: str) -> str:
    """The internal route of an evidence file (`rel` as tickets list it)."""
    return f"/internal/evidence/{rel}"
