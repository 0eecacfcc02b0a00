"""Requests between the nodes of one centre: `/internal/...` routes, called by other
nodes only (the relay of a stream from its owner, recordings and evidence kept on
another node).

The caller sends `Authorization: Bearer TOKEN`, a token signed with the centre's shared
secret (the one user tokens are signed with, `signaling.auth.shared_secret`, under a
salt of its own, so that neither kind of token passes for the other), carrying the
calling node's name and expiring TTL_S seconds after it was made (itsdangerous's
timestamp; the nodes' clocks must agree within that, as NTP keeps them).

For a caller: `node_headers(app)` gives the headers of one request. For a handler:
`@allow(internal=True)` on the route (signaling/policy.py); the auth middleware then
calls `require_node(request)`, so the handler runs only for another node, whose name is
`request["node"]`.
"""

from __future__ import annotations

import time

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from gridwatch.signaling import keys
from gridwatch.signaling.auth import bearer
from gridwatch.signaling.http_errors import JsonError

SALT = "gridwatch.node"
TTL_S = 60  # a token is made per request: it only has to outlast the request's start


class NodeTokens:
    """Short-lived tokens naming the node that made them (see the module's docstring)."""

    def __init__(self, secret: str, ttl_s: float = TTL_S):
        self._s = URLSafeTimedSerializer(secret, salt=SALT)
        self.ttl_s = ttl_s

    def issue(self, node: str) -> str:
        return self._s.dumps({"n": node})

    def verify(self, token: str) -> str | None:
        """The calling node's name; None for a token that is not a node token of this
        centre, or older than ttl_s."""
        try:
            # The age checked here, both ways: itsdangerous refuses a token stamped even a
            # second in its future, and nodes' clocks differ by that much.
            data, stamped = self._s.loads(token, return_timestamp=True)
        except BadSignature:
            return None
        if abs(time.time() - stamped.timestamp()) > self.ttl_s:
            return None
        node = data.get("n") if isinstance(data, dict) else None
        return node if isinstance(node, str) and node else None


def node_headers(app: web.Application) -> dict[str, str]:
    """The headers of one request from this node to another's /internal routes."""
    token = app[keys.NODE_TOKENS].issue(app[keys.NODES].me.node)
    return {"Authorization": f"Bearer {token}"}


async def require_node(request: web.Request) -> str:
    """The calling node's name. JsonError 401 without a token or with one that is neither
    a node's nor a user's of this centre (or expired); 403 for a user's token: users
    never call internal routes, whatever their role."""
    token = bearer(request) if "Authorization" in request.headers else None  # never the cookie
    if token is None:
        raise JsonError(401, "a node token is required (internal route)")
    node = request.app[keys.NODE_TOKENS].verify(token)
    if node is not None:
        return node
    if await request.app[keys.TOKENS].verify(token) is not None:
        raise JsonError(403, "internal routes are for the centre's nodes, not for users")
    raise JsonError(401, "a valid node token is required (internal route)")
