"""Camera passwords with raw `@ : / #` in them (issue 16): the camera works with them, and
no API response and no log line shows any part of them.

The RTSP server requires Basic auth (rtsp_server.py --auth), so a camera comes online only
if FFmpeg was handed exactly the user and password written in its source URL.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from urllib.parse import quote

from support.procs import RTSP_SCRIPT, RtspServer

# Passwords as an operator types them into the source URL, raw.
AT_PASSWORD = "2024@Secret"
SLASH_PASSWORD = "Pa/ss#W0rd:9@x"
WRONG_PASSWORD = "2024@Wrong"
# Any of these in a response or a log line is (part of) a password.
LEAKS = ("Secret", "Pa/ss", "ss#W0rd", "W0rd:9", "Wrong", quote(AT_PASSWORD, safe=""),
         quote(SLASH_PASSWORD, safe=""))  # fmt: skip


class AuthRtspServer(RtspServer):
    """The loopback RTSP server, every mount behind Basic auth for `credentials`
    ("user:password", the password raw)."""

    def __init__(self, mounts: dict[str, str], credentials: list[str]):
        super().__init__(mounts)
        self.credentials = credentials

    def start(self, timeout: float = 20.0) -> AuthRtspServer:
        args = ["/usr/bin/python3", RTSP_SCRIPT, "--port", str(self.port)]
        for mount, spec in self.mounts.items():
            args += ["--mount", f"{mount}={spec}"]
        for pair in self.credentials:
            args += ["--auth", pair]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("READY"):
                return self
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"rtsp server exited with {self.proc.returncode}")
        raise TimeoutError("rtsp server not ready")


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_raw_at_slash_and_hash_passwords_work_and_never_show(
    gridwatch_factory, started, http
):
    rtsp = AuthRtspServer(
        {"/cam1": "testsrc:320x240@10:300"}, [f"admin:{AT_PASSWORD}", f"ops:{SLASH_PASSWORD}"]
    )
    started.append(rtsp.start())
    gw = gridwatch_factory({"media": {"read_timeout_s": 2, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5,
                                      "api_sources": ["rtsp"], "deny_hosts": []}})  # fmt: skip
    h = auth(gw.token("admin"))
    netloc = f"127.0.0.1:{rtsp.port}"
    cameras = {
        "gate": f"rtsp://admin:{AT_PASSWORD}@{netloc}/cam1",
        "yard": f"rtsp://ops:{SLASH_PASSWORD}@{netloc}/cam1",
        "wrong": f"rtsp://admin:{WRONG_PASSWORD}@{netloc}/cam1",
    }
    shown = {"gate": f"rtsp://admin:***@{netloc}/cam1", "yard": f"rtsp://ops:***@{netloc}/cam1",
             "wrong": f"rtsp://admin:***@{netloc}/cam1"}  # fmt: skip
    seen: list[str] = []  # every response body

    for camera_id, source in cameras.items():
        async with http.post(
            gw.base + "/api/cameras", json={"id": camera_id, "source": source}, headers=h
        ) as r:
            seen.append(await r.text())
            assert r.status == 201, seen[-1]
            assert (await r.json())["source"] == shown[camera_id]

    # The stream comes online only with the right credentials: a picture from each.
    for camera_id in ("gate", "yard"):
        async with http.get(f"{gw.base}/api/cameras/{camera_id}/snapshot.jpg", headers=h) as r:
            assert r.status == 200, await r.text()
            assert r.content_type == "image/jpeg" and (await r.read())[:2] == b"\xff\xd8"
    async with http.get(gw.base + "/api/cameras/wrong/snapshot.jpg", headers=h) as r:
        seen.append(await r.text())
        assert r.status == 503, seen[-1]

    async with http.get(gw.base + "/api/cameras", headers=h) as r:
        seen.append(await r.text())
        listed = {c["id"]: c for c in (await r.json())["cameras"]}
    assert {i: listed[i]["source"] for i in cameras} == shown
    assert listed["gate"]["state"]["online"] and listed["yard"]["state"]["online"]
    assert not listed["wrong"]["state"]["online"]
    assert "401" in (listed["wrong"]["state"]["last_error"] or ""), listed["wrong"]["state"]
    for camera_id in cameras:
        async with http.get(f"{gw.base}/api/cameras/{camera_id}", headers=h) as r:
            seen.append(await r.text())
            assert (await r.json())["source"] == shown[camera_id]

    # A change (the source given again, raw) answers redacted too.
    change = {"id": "yard", "name": "Yard", "source": cameras["yard"]}
    async with http.put(gw.base + "/api/cameras/yard", json=change, headers=h) as r:
        seen.append(await r.text())
        assert r.status == 200 and (await r.json())["source"] == shown["yard"], seen[-1]

    # Refused sources: the error names the problem, never the password.
    refused = [
        f"rtsp://admin:{AT_PASSWORD}@127.0.0.1:port/cam1",  # urlsplit's error quoted the port
        f"rtsp://admin:{AT_PASSWORD}<@{netloc}/cam1",
        f"rtsp://admin:{AT_PASSWORD}@{netloc}/cam1?mail=a@example.org",  # ambiguous
        f"rtsp://ops:{SLASH_PASSWORD}@bad host/cam1",
    ]
    for source in refused:
        async with http.post(
            gw.base + "/api/cameras", json={"id": "bad", "source": source}, headers=h
        ) as r:
            seen.append(await r.text())
            assert r.status == 400 and "source" in (await r.json())["message"], seen[-1]
    async with http.post(
        gw.base + "/api/cameras", json={"id": "gate", "source": cameras["gate"]}, headers=h
    ) as r:
        seen.append(await r.text())
        assert r.status == 409, seen[-1]

    await asyncio.sleep(0.5)  # the wrong camera's retries log their failures
    logs = gw.logs()
    assert f'"source": "{shown["gate"]}"' in logs and "stream source failed" in logs
    for text in [*seen, logs]:
        leaked = [leak for leak in LEAKS if leak in text]
        assert not leaked, f"{leaked} in {text[:2000]}"
