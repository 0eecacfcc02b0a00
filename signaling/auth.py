"""Passwords, bearer tokens and roles.

Tokens are itsdangerous-signed (expiry built in) and carry a random id so that a
logout revokes them: revoked ids live in Redis until the token would have expired.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from gridwatch.signaling.config import User
from gridwatch.signaling.http_errors import JsonError
from gridwatch.signaling.policy import rule_of

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
    """Signed tokens; `verify` also holds them against the users the config has now
    (username -> role): a removed or demoted user's tokens stop at once, on every route."""

    def __init__(self, secret: str, ttl_s: int, redis: aioredis.Redis, roles: dict[str, str]):
        self._s = URLSafeTimedSerializer(secret, salt="gridwatch.token")
        self.ttl_s = ttl_s
        self.redis = redis
        self.roles = roles

    def issue(self, username: str, role: str) -> str:
        return self._s.dumps({"u": username, "r": role, "j": secrets.token_urlsafe(12)})

    async def verify(self, token: str) -> Principal | None:
        try:
            data = self._s.loads(token, max_age=self.ttl_s)
            principal = Principal(data["u"], data["r"], data["j"])
        except (BadSignature, KeyError, TypeError):
            return None
        if self.roles.get(principal.username) != principal.role:
            log.warning("token of a user removed or changed", extra={"user": principal.username})
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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.cookies.get(COOKIE)


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def same_origin(request: web.Request, origins: list[str]) -> bool:
    """Whether the request's Origin (if a browser sent one) is this server or a listed one.
    Host and port are compared, not the scheme: a TLS proxy in front changes only that."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser: it cannot be made to carry a victim's cookie
    if origin in origins:
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


def auth_middleware(
    tokens_key: web.AppKey[Tokens], origins: list[str], require_node: Callable[[web.Request], Awaitable[str]]
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The route's rule (signaling.policy) is enforced here, before its handler: a public
    route is open; an internal one needs another node's token (`require_node`, from
    signaling/node_auth: the caller's name in request["node"]); any other needs a valid
    token (Tokens.verify) of a role the rule names (401, 403). A request that rides on
    the session cookie (not a bearer header) and changes something, or opens /ws, must
    come from this server's own pages: another origin's page in the same browser would
    otherwise act as the user (cross-site request forgery, WebSocket hijacking). Static files and unknown paths (404) need no rule."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        route = request.match_info.route
        rule = rule_of(route.handler) if route is not None else None
        if rule is None or rule.public:
            return await handler(request)
        if rule.internal:
            request["node"] = await require_node(request)
            return await handler(request)
        token = bearer(request)
        principal = await request.app[tokens_key].verify(token) if token else None
        if principal is None:
            raise JsonError(401, "a valid bearer token is required")
        from_cookie = "Authorization" not in request.headers
        if from_cookie and (request.method not in SAFE_METHODS or path == "/ws") and \
                not same_origin(request, origins):  # fmt: skip
            log.warning("cross-origin request refused",
                        extra={"origin": request.headers.get("Origin"), "path": path, "user": principal.username})  # fmt: skip
            raise JsonError(403, "cross-origin request refused", "cross_origin")
        if principal.role not in rule.roles:
            raise JsonError(403, f"role {principal.role!r} may not do this; needs one of {list(rule.roles)}")
        request["principal"] = principal
        return await handler(request)

    return middleware


def find_user(users: list[User], username: str, password: str) -> User | None:
    user = next((u for u in users if u.username == username), None)
    ok = verify_password(user.password_hash if user else _DUMMY_HASH, password)
    return user if ok and user else None


class PasswordChecks:
    """argon2 checks in their own threads, never on the event loop: at most `workers` at
    once (argon2 is slow on purpose, and a login flood must not take the cores that move
    the video), and at most `queue` waiting; past that a login is refused at once
    (BusyError) rather than queued behind a flood."""

    def __init__(self, workers: int = 1, queue: int = 8):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self.queue = queue
        self.waiting = 0

    async def check(self, users: list[User], username: str, password: str) -> User | None:
        if self.waiting >= self.queue:
            raise JsonError(429, "too many logins at once; try again in a second", retry_after_s=1)
        self.waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.pool, find_user, users, username, password
            )
        finally:
            self.waiting -= 1

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
