from __future__ import annotations

import contextlib
import ipaddress
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright
from playwright.async_api import Error as PlaywrightError

sys.path.insert(0, str(Path(__file__).parent))

from support.browser import CHROMIUM, CHROMIUM_ARGS
from support.onvif_device import IpyCam
from support.procs import GridwatchServer, RedisServer, RtspServer, hashed_users, make_video, stop

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
    # No server may have logged a traceback: every fault it handles has a line of its own.
    tracebacks = [t for s in servers if isinstance(s, GridwatchServer) for t in s.tracebacks()]
    assert not tracebacks, f"tracebacks in the server's log: {tracebacks[:3]}"


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


ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"


def is_loopback_url(url: str) -> bool:
    """True for data:, blob: and about: URLs and for any URL to 127.0.0.0/8 or ::1."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "chrome-error"):
        return True
    host = parts.hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class GuardedBrowser:
    """Chromium for one test: a request from any of its pages to anything but loopback is
    stopped before it leaves and recorded (the `browser` fixture then fails the test), and
    every page is kept as a screenshot when the test ends. `browser` is None for a
    persistent profile (its one context is guarded instead)."""

    def __init__(self, browser: Browser | None):
        self.browser = browser
        self.pages: list[Page] = []
        self.outside: list[str] = []
        self.refused: list[str] = []

    def _check(self, url: str) -> bool:
        if is_loopback_url(url):
            return True
        self.outside.append(url)
        return False

    async def _route(self, route: Route) -> None:
        if self._check(route.request.url):
            await route.continue_()
        else:
            await route.abort("blockedbyclient")

    def _page(self, page: Page) -> None:
        if page not in self.pages:
            self.pages.append(page)
            page.on("websocket", lambda ws: self._check(ws.url))
            page.on("console", self._console)

    def _console(self, message) -> None:
        # A page the Content Security Policy breaks fails its test, not only the user.
        if "Content Security Policy" in message.text:
            self.refused.append(message.text[:300])

    async def guard(self, context: BrowserContext) -> BrowserContext:
        await context.route("**/*", self._route)
        context.on("page", self._page)
        for page in context.pages:
            self._page(page)
        return context

    async def new_context(self, **options) -> BrowserContext:
        return await self.guard(await self.browser.new_context(**options))

    async def new_page(self, **options) -> Page:
        page = await (await self.new_context(**options)).new_page()
        self._page(page)
        return page

    async def screenshots(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for i, page in enumerate(self.pages):
            if not page.is_closed():
                with contextlib.suppress(PlaywrightError):
                    await page.screenshot(path=str(ARTIFACTS / f"{name}-{i}.png"), timeout=5000)


@pytest.fixture
async def browsers(request):
    """Launches guarded Chromiums for one test, `await browsers(*extra_flags)`; each is
    screenshot and closed when the test ends, and a request outside loopback fails it."""
    async with async_playwright() as p:
        launched: list[GuardedBrowser] = []

        contexts: list[BrowserContext] = []

        async def launch(*flags: str) -> GuardedBrowser:
            # Playwright gives each launch a fresh profile of its own.
            b = await p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *flags], headless=True)
            launched.append(guarded := GuardedBrowser(b))
            return guarded

        async def persistent(profile: Path, **options) -> BrowserContext:
            """A browser with a profile on disk (not incognito: an app can be installed)."""
            context = await p.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, **options)
            launched.append(guarded := GuardedBrowser(None))
            contexts.append(context)
            return await guarded.guard(context)

        launch.persistent = persistent
        yield launch
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
        for i, guarded in enumerate(launched):
            await guarded.screenshots(name if i == 0 else f"{name}-b{i}")
            if guarded.browser:
                await guarded.browser.close()
        for context in contexts:
            await context.close()
        outside = [url for g in launched for url in g.outside]
        assert not outside, f"the pages reached outside loopback: {outside[:5]}"
        refused = [text for g in launched for text in g.refused]
        assert not refused, f"the Content Security Policy refused: {refused[:3]}"


@pytest.fixture
async def browser(browsers) -> GuardedBrowser:
    """One guarded Chromium (see `browsers`)."""
    return await browsers()


# The ONVIF device (ipycam) ------------------------------------------------------------


@pytest.fixture(scope="module")
def onvif_scene(tmp_path_factory) -> Path:
    video = tmp_path_factory.mktemp("onvif") / "scene.mp4"
    make_video(video, "640x360", 15, 10)
    return video


@pytest.fixture
async def ipycam(tmp_path, onvif_scene):
    workdir = tmp_path / "ipycam"
    workdir.mkdir()
    cam = IpyCam(workdir, onvif_scene)
    try:
        await cam.ready()
        yield cam
    finally:
        stop(cam.proc)
