"""The node's listening socket: aiohttp's handlers, plus a deadline for a connection's
first request. aiohttp waits for ever for a client that opens a connection and sends its
request a byte at a time (slowloris); hundreds of them would hold the node's sockets. A
connection that has not sent a whole request head within server.header_timeout_s is
closed (one warning line per minute, with the count)."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

log = logging.getLogger("gridwatch.server")

KEEPALIVE_S = 15.0  # an idle connection between two requests is closed after this


class FirstRequestDeadline:
    """A protocol factory around aiohttp's: each connection gets `seconds` for its first
    request head."""

    def __init__(self, server: web.Server, seconds: float):
        self.server = server
        self.seconds = seconds
        self.closed = 0
        self._told = 0.0

    def __call__(self):
        handler = self.server()
        asyncio.get_running_loop().call_later(self.seconds, self._check, handler)
        return handler

    def _check(self, handler) -> None:
        # _request_count: requests whose head aiohttp has parsed on this connection.
        if handler.transport is not None and getattr(handler, "_request_count", 1) == 0:
            handler.transport.close()
            self.closed += 1
            if time.monotonic() - self._told > 60:
                self._told = time.monotonic()
                log.warning("connections closed: no request within the deadline",
                            extra={"seconds": self.seconds, "closed_so_far": self.closed})  # fmt: skip


async def listen(runner: web.AppRunner, host: str, port: int, header_timeout_s: float) -> asyncio.Server:
    """Serve `runner`'s app on host:port (close the returned server before runner.cleanup)."""
    assert runner.server is not None, "runner.setup() first"
    factory = FirstRequestDeadline(runner.server, header_timeout_s)
    return await asyncio.get_running_loop().create_server(factory, host, port, reuse_address=True)
