"""Response headers that keep the pages to themselves: a Content Security Policy (scripts,
styles, pictures and connections from this server only — the import maps by their hash,
map tiles from the centre's own tile server), no framing by other sites, no MIME
sniffing, no referrer sent elsewhere."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_INLINE = re.compile(r"<script type=\"importmap\">(.*?)</script>", re.S)


def page_policy(pages: list[Path], tile_url: str | None) -> str:
    """The CSP for the pages: their inline import maps allowed by hash, nothing else inline."""
    hashes = sorted({
        "'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
        for page in pages for m in _INLINE.findall(page.read_text())
    })  # fmt: skip
    tiles = ""
    if tile_url and tile_url.startswith(("http://", "https://")):
        parts = urlsplit(tile_url)
        tiles = f" {parts.scheme}://{parts.netloc}"
    return "; ".join([
        "default-src 'self'", f"script-src 'self' {' '.join(hashes)}", "style-src 'self'",
        f"img-src 'self' data: blob:{tiles}", "media-src 'self' blob:", "connect-src 'self'",
        "worker-src 'self'", "manifest-src 'self'", "object-src 'none'", "base-uri 'none'",
        "form-action 'self'", "frame-ancestors 'none'",
    ])  # fmt: skip


def security_headers(policy: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        # On every response (a file's type is known only once it is sent): harmless on data.
        response.headers.setdefault("Content-Security-Policy", policy)
        return response

    return middleware
