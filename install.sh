#!/usr/bin/env bash
# Installs Gridwatch on Debian: system packages (apt), then a virtualenv in .venv.
#   ./install.sh          what `gridwatch serve` and `gridwatch demo` need
#   ./install.sh --test   also what the test suite needs (RTSP server, chromium, ...)
set -euo pipefail
cd "$(dirname "$0")"

APT_RUN=(redis-server ffmpeg python3 python3-venv python3-pip libgl1 libglib2.0-0
  darknet opencv-doc)  # real pictures and street footage: the demo's street camera is composed of them
# GStreamer's rtsp-server (run by Debian's python3) is the RTSP camera in tests.
# fonts-wqy-zenhei: the CJK font that draws Chinese plates on the scenario videos (park-plate).
APT_TEST=(chromium fonts-wqy-zenhei gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
  gstreamer1.0-plugins-bad gstreamer1.0-libav)

packages=("${APT_RUN[@]}")
# npm installs the pages' libraries (web/package-lock.json); Debian's nodejs brings it.
command -v npm >/dev/null || packages+=(nodejs npm)
# The detectors (ultralytics, with torch pinned to the build on this machine's disk).
extras="[detect]"
if [[ "${1:-}" == "--test" ]]; then
  packages+=("${APT_TEST[@]}")
  extras="[detect,test]"
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> apt-get install ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
echo "==> pip install -e .$extras"
.venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
echo "==> npm ci --prefix web (the pages' libraries, pinned by web/package-lock.json)"
npm ci --prefix web --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error
echo "==> installed: .venv/bin/gridwatch"
