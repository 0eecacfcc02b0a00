"""The architecture as code: every import of ours follows the layers written in
pyproject.toml ([tool.gridwatch.layers]), ARCHITECTURE.md draws the same arrows, the
detector worker's process loads neither the web server nor the ONVIF stack, and an
installed Gridwatch has one top-level name."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["gridwatch"]["layers"]


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, lazy ones inside functions too."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_every_import_follows_the_layers():
    assert set(LAYERS) == {"contracts", "web", "media", "dispatch", "recordings", "detectors", "signaling"}
    broken = []
    for package, allowed in LAYERS.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, module in imports_of(path):
                parts = module.split(".")
                if parts[0] in LAYERS:  # the old top-level names: never, installed or not
                    broken.append(f"{path.relative_to(ROOT)}:{line}: {module} (use gridwatch.{module})")
                elif parts[0] == "gridwatch" and len(parts) > 1:
                    if parts[1] != package and parts[1] not in allowed:
                        broken.append(f"{path.relative_to(ROOT)}:{line}: {package} may not import {module}")
    assert not broken, "\n".join(broken)


def test_the_layers_have_no_cycle_and_media_dispatch_recordings_detectors_stay_low():
    seen: dict[str, int] = {}

    def depth(p: str, path: tuple[str, ...] = ()) -> int:
        assert p not in path, f"cycle: {' -> '.join((*path, p))}"
        if p not in seen:
            seen[p] = 1 + max((depth(q, (*path, p)) for q in LAYERS[p]), default=0)
        return seen[p]

    for p in LAYERS:
        depth(p)
    assert LAYERS["contracts"] == [] and LAYERS["media"] == ["contracts"]
    for p in ("dispatch", "recordings", "detectors"):
        assert set(LAYERS[p]) <= {"media", "contracts"}


def test_architecture_md_draws_the_same_arrows():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    block = re.search(r"```text\nLAYERS\n(.*?)```", text, re.S)
    assert block, "ARCHITECTURE.md has no LAYERS block"
    drawn = {}
    for line in block.group(1).strip().splitlines():
        name, _, targets = line.partition("->")
        drawn[name.strip()] = sorted(t.strip() for t in targets.split(",") if t.strip() and t.strip() != "nothing")
    assert drawn == {p: sorted(a) for p, a in LAYERS.items()}


def test_the_detector_worker_loads_neither_the_web_server_nor_onvif():
    code = ("import sys; import gridwatch.signaling.cli, gridwatch.detectors.worker; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiohttp', 'zeep', 'onvif', 'aiortc'}))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_an_installed_gridwatch_has_one_top_level_name(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(target), str(ROOT)],
                   check=True, capture_output=True, cwd=tmp_path)  # fmt: skip
    names = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin")
    assert names == ["gridwatch"], names
    assert sorted(p.name for p in (target / "gridwatch").iterdir() if not p.name.startswith("__")) == sorted(LAYERS)
    assert (target / "gridwatch" / "web" / "static" / "wall" / "main.js").exists()
    assert (target / "gridwatch" / "detectors" / "models" / "gridwatch-demo.pt").exists()
