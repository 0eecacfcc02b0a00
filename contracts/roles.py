"""Who may do what: the role names every process and page uses."""

from __future__ import annotations

from typing import Literal

Role = Literal["admin", "dispatcher", "officer", "viewer", "device"]
ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]
WALL = ("admin", "dispatcher", "viewer")  # who watches the wall: tickets, officers, cameras
DESK = ("admin", "dispatcher")  # who dispatches, sees alerts and acknowledges them
SYSTEM = "system"  # deadline timers, detectors, track-based arrival (never a user's role)
