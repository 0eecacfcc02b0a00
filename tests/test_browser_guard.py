"""The browser tests' own guard: a page that reaches for anything but loopback is stopped
and named, so a page that would need the internet (a CDN, public tiles) fails its test."""

from __future__ import annotations

import pytest
from conftest import GuardedBrowser, is_loopback_url
from playwright.async_api import async_playwright

from support.browser import CHROMIUM, CHROMIUM_ARGS


def test_loopback_urls():
    assert is_loopback_url("http://127.0.0.1:8080/api/me")
    assert is_loopback_url("ws://127.0.0.2/ws")
    assert is_loopback_url("http://localhost/x")
    assert is_loopback_url("http://[::1]:80/")
    assert is_loopback_url("data:image/png;base64,AAAA")
    assert not is_loopback_url("https://unpkg.com/leaflet/dist/leaflet.js")
    assert not is_loopback_url("http://192.0.2.1/tile.png")
    assert not is_loopback_url("http://127.0.0.1.example.com/")


@pytest.mark.browser
async def test_a_request_outside_loopback_is_stopped_and_named():
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        guarded = GuardedBrowser(b)
        page = await guarded.new_page()
        failed = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        await page.set_content('<img src="http://192.0.2.1/tile.png">')
        await page.wait_for_function("() => document.images[0].complete")
        await b.close()
    assert guarded.outside == ["http://192.0.2.1/tile.png"]
    assert failed == ["http://192.0.2.1/tile.png"]  # aborted here: nothing left the machine
