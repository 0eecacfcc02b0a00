"""The CLI contract: check-config, hash-password, serve with private or external Redis."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis
import yaml

from gridwatch.signaling.auth import verify_password
from support.procs import GRIDWATCH, GridwatchServer


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [GRIDWATCH, *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_check_config_accepts_a_good_file(tmp_path: Path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "server": {"port": 8081},
                "cameras": [
                    {
                        "id": "gate-east",
                        "source": "rtsp://user:pass@192.0.2.10/stream1",
                        "detect_source": "rtsp://user:pass@192.0.2.10/stream2",
                        "position": {"lat": 31.26, "lon": 120.92},
                        "record": {"mode": "continuous", "retain_days": 7},
                        "detect": {"fps": 2},
                        "zones": [
                            {
                                "name": "np-1",
                                "kind": "no_parking",
                                "polygon": [[0, 0], [100, 0], [100, 80]],
                                "frame": [640, 360],
                                "dwell_s": 120,
                                "hours": "07:00-19:00",
                            }
                        ],
                    },
                    {"id": "cam-2", "source": "onvif://admin:pw@192.0.2.11:8000?profile=1"},
                ],
                "dispatch": {"arrive_s": 300},
            }
        )
    )
    r = run("check-config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK (2 cameras" in r.stdout


def test_check_config_prints_every_error_with_its_field(tmp_path: Path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "server": {"port": 99999, "colour": "blue"},
                "webrtc": {"host_addresses": ["not-an-ip"]},
                "users": [{"username": "a", "password_hash": "x", "role": "emperor"}],
                "cameras": [
                    {"id": "c1", "source": "ftp://x/y"},
                    {
                        "id": "c1",
                        "source": "lavfi:testsrc",
                        "zones": [
                            {
                                "name": "z",
                                "kind": "no_parking",
                                "polygon": [[0, 0]],
                                "hours": "25:00-26:00",
                            }
                        ],
                    },
                ],
            }
        )
    )
    r = run("check-config", str(cfg))
    assert r.returncode == 1
    out = r.stdout
    for field in [
        "server.port",
        "server.colour",
        "webrtc.host_addresses",
        "users.0.role",
        "cameras.0.source",
        "cameras.1.zones.0.polygon",
        "cameras.1.zones.0.hours",
    ]:
        assert field in out, f"{field} missing from:\n{out}"
    # Duplicate ids are checked once the fields are valid.
    cfg.write_text(yaml.safe_dump({"cameras": [{"id": "c1", "source": "lavfi:testsrc"}] * 2}))
    r = run("check-config", str(cfg))
    assert r.returncode == 1 and "duplicate ids ['c1']" in r.stdout
    # So are a zone's classes, against what the detectors count for its kind.
    zone = {"name": "road", "kind": "no_parking", "polygon": [[0.1, 0.5], [0.9, 0.5], [0.9, 0.9]],
            "classes": ["car", "carr"]}  # fmt: skip
    cfg.write_text(yaml.safe_dump({"cameras": [{"id": "c1", "source": "lavfi:testsrc", "zones": [zone]}]}))
    r = run("check-config", str(cfg))
    assert r.returncode == 1 and "cameras.0.zones.0.classes.1: 'carr' is not a class" in r.stdout, r.stdout


def test_check_config_rejects_unreadable_and_non_yaml(tmp_path: Path):
    r = run("check-config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 1 and "cannot read" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed\n")
    r = run("check-config", str(bad))
    assert r.returncode == 1 and "not valid YAML" in r.stdout
    bad.write_text("- just\n- a list\n")
    r = run("check-config", str(bad))
    assert r.returncode == 1 and "mapping" in r.stdout


def test_hash_password_round_trip():
    r = run("hash-password", stdin="correct horse\n")
    assert r.returncode == 0
    digest = r.stdout.strip()
    assert digest.startswith("$argon2")
    assert verify_password(digest, "correct horse")
    assert not verify_password(digest, "wrong horse")
    assert run("hash-password", stdin="").returncode == 2


def test_serve_refuses_a_bad_config(tmp_path: Path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("server: {port: -1}\n")
    r = subprocess.run(
        [GRIDWATCH, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2 and "server.port" in r.stderr


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_starts_and_stops_a_private_redis(tmp_path: Path, users):
    gw = GridwatchServer(tmp_path, {"users": users}).start()
    try:
        redis_dir = tmp_path / "data" / "redis"
        sock = redis_dir / "redis.sock"
        assert sock.exists()
        client = redis.Redis(unix_socket_path=str(sock))
        assert client.config_get("appendonly")["appendonly"] == "yes"
        pid = int(client.info("server")["process_id"])
        client.close()
        gw.token("admin")  # the token secret lives in the private Redis
    finally:
        gw.stop()
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(pid), "the private redis-server outlived gridwatch"
    assert any(redis_dir.rglob("*.aof*")), "no AOF written"


def test_serve_uses_an_external_redis(tmp_path: Path, users, redis_server):
    gw = GridwatchServer(
        tmp_path,
        {
            "users": users,
            "redis": {"url": redis_server.url},
            "cameras": [{"id": "c1", "source": "lavfi:testsrc"}],
        },
    ).start()
    try:
        client = redis.Redis.from_url(redis_server.url)
        assert client.hexists("gw:cameras", "c1")
        assert not (tmp_path / "data" / "redis").exists()
    finally:
        gw.stop()


def test_detect_refuses_missing_weights_and_redis(tmp_path: Path):
    cfg = tmp_path / "d.yaml"
    cfg.write_text(yaml.safe_dump({"redis": {"url": "redis://127.0.0.1:1/0"},
                                   "detectors": {"weights": str(tmp_path / "nope.pt")}}))  # fmt: skip
    r = subprocess.run(
        [GRIDWATCH, "detect", "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert (
        r.returncode == 2
        and "detectors.weights: no file" in r.stderr
        and "never downloaded" in r.stderr
    )
    cfg.write_text(yaml.safe_dump({"server": {"data_dir": str(tmp_path / "none")},
                                   "detectors": {"weights": "yolov8n.yaml"}}))  # fmt: skip
    r = subprocess.run(
        [GRIDWATCH, "detect", "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "redis.url: not set" in r.stderr
