"""Gridwatch's pages: the static files, and the npm libraries they import.

The libraries are pinned by `web/package-lock.json` and installed into `web/node_modules`
by install.sh (`npm ci --prefix web`); the node serves them itself under `/vendor/`,
because a command centre's network reaches no CDN. The pages name them through an
import map (`index.html`, `phone.html`).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
NODE_MODULES = HERE / "node_modules"

# URL folder under /vendor/ -> the package's built files in node_modules
VENDOR = {
    "leaflet": "leaflet/dist",  # the map (BSD-2-Clause)
    "preact": "preact/dist",  # views (MIT)
    "preact-hooks": "preact/hooks/dist",
    "htm": "htm/dist",  # JSX-like templates without a build step (Apache-2.0)
    "chart.js": "chart.js/dist",  # statistics charts (MIT)
    "kurkle-color": "@kurkle/color/dist",  # chart.js's colour helper (MIT)
}


def vendor_dirs() -> tuple[dict[str, Path], list[str]]:
    """(URL folder -> directory) for the installed libraries, and the ones missing."""
    found = {name: NODE_MODULES / rel for name, rel in VENDOR.items()}
    missing = [rel.split("/dist")[0] for name, rel in VENDOR.items() if not found[name].is_dir()]
    return {n: p for n, p in found.items() if p.is_dir()}, missing
