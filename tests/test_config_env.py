"""Config from the environment and secret files as well as the YAML file (signaling/settings.py):
the environment over secret files over the file; errors name the variable or the file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import redis
import yaml

from support.procs import GRIDWATCH, GridwatchServer, free_port

SECRET = "s3cret-Value-that-must-not-show"


def run(tmp_path: Path, config: dict, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`gridwatch ARGS FILE` with `config` in FILE and `env` added to the environment."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([GRIDWATCH, *args, str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})  # fmt: skip


def secrets(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir(exist_ok=True)
    for name, value in files.items():
        (folder / name).write_text(value + "\n")  # as `echo value > file` writes it
    return folder


def test_environment_over_secret_files_over_the_file(tmp_path, users, redis_server, monkeypatch):
    # The file says one port, a secret file another, the environment a third: the node
    # listens on the third. The Redis URL comes from a secret file only.
    env_port = free_port()
    folder = secrets(tmp_path, {"server__port": str(free_port()), "redis__url": redis_server.url})
    monkeypatch.setenv("GRIDWATCH_SECRETS_DIR", str(folder))
    monkeypatch.setenv("GRIDWATCH_SERVER__PORT", str(env_port))
    monkeypatch.setenv("GRIDWATCH_SERVER__ORIGINS", '["https://wall.city.example"]')  # JSON list
    gw = GridwatchServer(tmp_path / "gw", {"users": users, "server": {"port": free_port()}},
                         port=env_port).start()  # fmt: skip
    try:
        gw.token("admin")
        # The node's token secret is in the Redis the secret file named, not a private one.
        assert redis.Redis.from_url(redis_server.url).exists("gw:secret")
        assert not (tmp_path / "gw" / "data" / "redis").exists()
    finally:
        gw.stop()


def test_check_config_names_the_variable_and_the_secret_file_never_the_value(tmp_path):
    folder = secrets(tmp_path, {"redis__url": f"http://user:{SECRET}@redis.internal"})
    r = run(tmp_path, {"server": {"port": 8080}}, {
        "GRIDWATCH_SECRETS_DIR": str(folder),
        "GRIDWATCH_SERVER__PORT": "99999",
        "GRIDWATCH_SERVER__COLOUR": "blue",
        "GRIDWATCH_SERVR__PORT": "8081",  # a misspelt section is not silently ignored
    }, "check-config")  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("server.port:") and "GRIDWATCH_SERVER__PORT" in line for line in lines), lines
    assert any(line.startswith("server.colour:") and "GRIDWATCH_SERVER__COLOUR" in line for line in lines), lines
    assert any(line.startswith("redis.url:") and f"secret file {folder / 'redis__url'}" in line
               for line in lines), lines  # fmt: skip
    assert any(line.startswith("GRIDWATCH_SERVR__PORT: no such setting") for line in lines), lines
    assert SECRET not in r.stdout + r.stderr


def test_a_bad_json_list_and_a_missing_secrets_dir_are_errors(tmp_path):
    r = run(tmp_path, {}, {"GRIDWATCH_USERS": "[{not json"}, "check-config")
    assert r.returncode == 1 and '"users"' in r.stdout and "JSON" in r.stdout, r.stdout
    r = run(tmp_path, {}, {"GRIDWATCH_SECRETS_DIR": str(tmp_path / "nowhere")}, "check-config")
    assert r.returncode == 1 and "GRIDWATCH_SECRETS_DIR: no directory" in r.stdout, r.stdout


def test_the_detector_worker_reads_the_environment_too(tmp_path):
    r = run(tmp_path, {"redis": {"url": "redis://127.0.0.1:1/0"}},
            {"GRIDWATCH_DETECTORS__WEIGHTS": str(tmp_path / "nope.pt")}, "detect", "--config")  # fmt: skip
    assert r.returncode == 2 and "detectors.weights: no file" in r.stderr, r.stderr


@pytest.mark.parametrize("config", [
    {"cluster": {"internal_url": "http://10.0.0.5:8080"}},
    {"redis": {"frames_url": "redis://127.0.0.1:6380/0"}},
])  # fmt: skip
def test_a_cluster_config_without_a_shared_redis_is_refused(tmp_path, config):
    r = run(tmp_path, config, {}, "check-config")
    assert r.returncode == 1 and r.stdout.startswith("redis.url: needed by"), r.stdout
    r = run(tmp_path, config, {}, "serve", "--config")
    assert r.returncode == 2 and "redis.url: needed by" in r.stderr, r.stderr
    # The shared Redis from the environment makes the same file good.
    r = run(tmp_path, config, {"GRIDWATCH_REDIS__URL": "redis://127.0.0.1:6379/0"}, "check-config")
    assert r.returncode == 0, r.stdout


def test_redis_url_and_sentinel_exclude_each_other(tmp_path):
    sentinel = {"master": "gw", "addresses": ["127.0.0.1:26379"]}
    r = run(tmp_path, {"redis": {"sentinel": sentinel}},
            {"GRIDWATCH_REDIS__URL": "redis://127.0.0.1:6379/0"}, "check-config")  # fmt: skip
    assert r.returncode == 1, r.stdout
    assert "set redis.url or redis.sentinel, not both (from environment variable GRIDWATCH_REDIS__URL)" in r.stdout


def test_the_variables_kubernetes_sets_for_a_service_called_gridwatch_are_not_errors(tmp_path):
    r = run(tmp_path, {}, {"GRIDWATCH_PORT": "tcp://10.96.0.12:8080", "GRIDWATCH_SERVICE_HOST": "10.96.0.12",
                           "GRIDWATCH_PORT_8080_TCP_ADDR": "10.96.0.12"}, "check-config")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
