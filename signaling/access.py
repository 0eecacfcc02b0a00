"""Who may watch and who may publish which stream: the role rules in one place."""

from __future__ import annotations

from fnmatch import fnmatchcase

from gridwatch.contracts.roles import DESK, WALL
from gridwatch.signaling.auth import Principal
from gridwatch.signaling.config import Config, User


def phone_stream(username: str) -> str:
    """The stream an officer's phone publishes to (and the wall pulls onto a tile)."""
    return f"phone-{username.lower()}"


def _user(config: Config, principal: Principal) -> User | None:
    return next((u for u in config.users if u.username == principal.username), None)


def _matches(stream_id: str, patterns: list[str]) -> bool:
    return any(fnmatchcase(stream_id, p) for p in patterns)


def may_watch(config: Config, principal: Principal, stream_id: str) -> bool:
    if principal.role in WALL:
        return True
    if principal.role == "officer":
        user = _user(config, principal)
        return stream_id == phone_stream(principal.username) or bool(
            user and _matches(stream_id, user.watch)
        )
    return False


def may_publish(config: Config, principal: Principal, stream_id: str) -> bool:
    """Cameras are never published to (they are pulled); checked by the caller."""
    if principal.role in DESK:
        return True
    if principal.role == "officer":
        return stream_id == phone_stream(principal.username)
    if principal.role == "device":
        user = _user(config, principal)
        return bool(user and _matches(stream_id, user.publish))
    return False
