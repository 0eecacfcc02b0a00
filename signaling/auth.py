"""Passwords, bearer tokens and roles.

Tokens are itsdangerous-signed (expiry built in) and carry a random id so that a
logout revokes them: revoked ids live in Redis until the token would have expired.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from signaling.config import User
from signaling.http_errors import JsonError

log = logging.getLogger("gridwatch.auth")

COOKIE = "gw_session"
_hasher = PasswordHasher()
# Verifying against this when the user is unknown keeps the response time the same.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(8))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Principal:
    username: str
    role: str
    jti: str


class Tokens:
    def __init__(self, secret: str, ttl_s: int, redis: aioredis.Redis):
        self._s = URLSafeTimedSerializer(secret, salt="gridwatch.token")
        self.ttl_s = ttl_s
        self.redis = redis

    def issue(self, username: str, role: str) -> str:
        return self._s.dumps({"u": username, "r": role, "j": secrets.token_urlsafe(12)})

    async def verify(self, token: str) -> Principal | None:
        try:
            data = self._s.loads(token, max_age=self.ttl_s)
            principal = Principal(data["u"], data["r"], data["j"])
        except (BadSignature, KeyError, TypeError):
            return None
        if await self.redis.exists(f"gw:revoked:{principal.jti}"):
            return None
        return principal

    async def revoke(self, principal: Principal) -> None:
        await self.redis.set(f"gw:revoked:{principal.jti}", 1, ex=self.ttl_s)


async def shared_secret(redis: aioredis.Redis, configured: str | None) -> str:
    """The token signing key: configured, or made once and shared by every node via Redis."""
    if configured:
        return configured
    await redis.set("gw:secret", secrets.token_urlsafe(32), nx=True)
    return (await redis.get("gw:secret")).decode()


PUBLIC_PATHS = ("/healthz", "/metrics", "/api/login")
PROTECTED_PREFIXES = ("/api", "/whep", "/whip", "/ws", "/recordings")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.cookies.get(COOKIE)


def auth_middleware(tokens_key: web.AppKey[Tokens]) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in PUBLIC_PATHS or not path.startswith(PROTECTED_PREFIXES):
            return await handler(request)
        token = bearer(request)
        principal = await request.app[tokens_key].verify(token) if token else None
        if principal is None:
            raise JsonError(401, "a valid bearer token is required")
        request["principal"] = principal
        return await handler(request)

    return middleware


def require(request: web.Request, *roles: str) -> Principal:
    principal: Principal = request["principal"]
    if principal.role not in roles:
        raise JsonError(403, f"role {principal.role!r} may not do this; needs one of {list(roles)}")
    return principal


def find_user(users: list[User], username: str, password: str) -> User | None:
    user = next((u for u in users if u.username == username), None)
    ok = verify_password(user.password_hash if user else _DUMMY_HASH, password)
    return user if ok and user else None
