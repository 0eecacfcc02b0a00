"""Driving the command wall in Chromium: sign in, and read what the page shows — when a
row first appeared, where a marker stands, how much of the video area the tiles cover,
whether each tile decodes frames."""

from __future__ import annotations

from playwright.async_api import Page

# Records, in the page, when each ticket row and each pop-up first appeared (Unix s).
SEEN_SCRIPT = """() => {
  window.firstSeen = {};
  const note = () => {
    for (const el of document.querySelectorAll("li.ticket[data-ticket], .toast[data-ticket]")) {
      const key = `${el.classList.contains("toast") ? "toast" : "row"}:${el.dataset.ticket}`;
      if (!(key in window.firstSeen)) window.firstSeen[key] = Date.now() / 1000;
    }
  };
  new MutationObserver(note).observe(document.body, { childList: true, subtree: true });
  note();
}"""


async def sign_in(page: Page, base: str, user: str, password: str, path: str = "/") -> None:
    """Open a page (the wall, or `path`: "/ops#/cameras", ...) and sign in on it; returns
    once the page shows the user's screen."""
    await page.goto(base + path)
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#who", timeout=15000)


async def wait_marker_at(page: Page, selector: str, lat: float, lon: float, timeout_s: float = 5) -> None:
    """Wait until the marker stands where the map puts (lat, lon), within 2 px."""
    await page.wait_for_function(
        """([sel, lat, lon]) => {
          const el = document.querySelector(sel + " span");
          const map = window.gw && window.gw.map();
          if (!el || !map) return false;
          const r = el.getBoundingClientRect(), c = map.getContainer().getBoundingClientRect();
          const p = map.latLngToContainerPoint([lat, lon]);
          return Math.hypot(r.x + r.width / 2 - c.x - p.x, r.y + r.height / 2 - c.y - p.y) <= 2;
        }""",
        arg=[selector, lat, lon],
        timeout=timeout_s * 1000,
    )


async def frames_decoded(page: Page) -> dict[str, int]:
    """Each tile's frames decoded so far, from its peer connection's getStats()."""
    return await page.evaluate(
        """async () => {
          const out = {};
          for (const [id, p] of window.gw.players) out[id] = await p.framesDecoded();
          return out;
        }"""
    )


async def tile_coverage(page: Page) -> float:
    """The share of the video area (#tiles) that the tiles cover."""
    return await page.evaluate(
        """() => {
          const area = document.querySelector("#tiles").getBoundingClientRect();
          let covered = 0;
          for (const t of document.querySelectorAll("#tiles .tile")) {
            const r = t.getBoundingClientRect();
            const w = Math.min(r.right, area.right) - Math.max(r.left, area.left);
            const h = Math.min(r.bottom, area.bottom) - Math.max(r.top, area.top);
            if (w > 0 && h > 0) covered += w * h;
          }
          return covered / (area.width * area.height);
        }"""
    )


async def leaving_asks(page: Page, link: str) -> str:
    """Click `link` on a page with unsaved changes, dismiss the question the page asks
    (staying), and return its text; AssertionError when the page let go without asking."""
    asked: list[str] = []

    async def dismiss(dialog) -> None:
        asked.append(dialog.message)
        await dialog.dismiss()

    page.once("dialog", dismiss)
    await page.click(link)
    assert asked, f"{link}: the page let go of unsaved changes without asking"
    return asked[0]
