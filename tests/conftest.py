from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.procs import GridwatchServer, RedisServer, RtspServer, hashed_users

if not shutil.which("redis-server"):
    raise RuntimeError("redis-server is not installed: run ./install.sh --test")


@pytest.fixture(scope="session")
def users() -> list[dict]:
    return hashed_users()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def rtsp_factory() -> Iterator:
    started: list[RtspServer] = []

    def make(mounts: dict[str, str], port: int | None = None) -> RtspServer:
        server = RtspServer(mounts, port).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def gridwatch_factory(tmp_path: Path, users: list[dict]) -> Iterator:
    started: list[GridwatchServer] = []

    def make(config: dict | None = None, name: str = "gw") -> GridwatchServer:
        cfg = {"users": users, **(config or {})}
        server = GridwatchServer(tmp_path / name, cfg).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as session:
        yield session
