"""A ticket's states (the CAD life cycle) and the sets every part reasons with."""

from __future__ import annotations

from typing import Literal

State = Literal[
    "new", "dispatched", "accepted", "on_scene", "resolved", "verified", "closed",
    "rejected", "reassigned", "cancelled", "suspended",
]  # fmt: skip
STATES: tuple[str, ...] = State.__args__  # type: ignore[attr-defined]
TERMINAL = frozenset({"closed", "rejected", "cancelled"})
ACTIVE = frozenset({"dispatched", "accepted", "on_scene"})  # the assignee is busy with it
WAITING = frozenset({"new", "reassigned"})  # waiting for an officer
