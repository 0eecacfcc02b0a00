from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright

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
def started() -> Iterator[list]:
    """The servers a test starts; each is stopped (by its PID) after the test."""
    servers: list[RtspServer | GridwatchServer] = []
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def rtsp_factory(started: list):
    def make(mounts: dict[str, str], port: int | None = None) -> RtspServer:
        started.append(server := RtspServer(mounts, port).start())
        return server

    return make


@pytest.fixture
def gridwatch_factory(tmp_path: Path, users: list[dict], started: list):
    def make(config: dict | None = None, name: str = "gw") -> GridwatchServer:
        started.append(
            server := GridwatchServer(tmp_path / name, {"users": users, **(config or {})}).start()
        )
        return server

    return make


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
def scenario_videos(tmp_path_factory) -> Path:
    """Where the scenario videos are rendered, once per test session."""
    return tmp_path_factory.mktemp("scenario-videos")


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # Chromium hides host candidates behind mDNS names that aiortc cannot resolve.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


@pytest.fixture
async def browser():
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,  # playwright gives each launch a fresh profile of its own
            headless=True,
        )
        yield b
        await b.close()
