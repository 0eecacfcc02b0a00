"""The STUN/TURN servers handed to a browser, in hello, call.ring and WHEP/WHIP answers.

With `webrtc.turn_secret` set, TURN credentials are made per user and expire after
`webrtc.turn_ttl_s`, as coturn's REST API scheme has them (use-auth-secret): the username
is `EXPIRY:USER` and the password base64(HMAC-SHA1(secret, username)). A credential that
leaks is good for one user for an hour, not for everyone for ever. The node's own peer
connections use none of these: it is the reachable side.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from gridwatch.media.config import WebRTCConfig


def ice_servers_for(cfg: WebRTCConfig, user: str, now: float | None = None) -> list[dict]:
    """RTCIceServer dicts for `user`: configured ones, TURN ones with their own credential."""
    servers = []
    for server in cfg.ice_servers:
        entry = server.model_dump(exclude_none=True)
        urls = [server.urls] if isinstance(server.urls, str) else server.urls
        if cfg.turn_secret and any(u.startswith(("turn:", "turns:")) for u in urls):
            expiry = int((time.time() if now is None else now) + cfg.turn_ttl_s)
            username = f"{expiry}:{user}"
            digest = hmac.new(cfg.turn_secret.encode(), username.encode(), hashlib.sha1).digest()
            entry |= {"username": username, "credential": base64.b64encode(digest).decode()}
        servers.append(entry)
    return servers
