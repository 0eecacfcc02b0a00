"""The `gridwatch` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gridwatch.signaling.config import Config, ConfigError
from gridwatch.signaling.logs import setup_logging
from gridwatch.signaling.settings import load_settings

log = logging.getLogger("gridwatch.server")
# Requests still in flight when the node shuts down (a recording download, a WHEP offer)
# get this long. The long-lived ones (/ws sockets) are closed first and never wait on it.
IN_FLIGHT_S = 2.0


async def _serve(
    config: Config,
    banner: str | None = None,
    sidecars: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> None:
    # The web app (aiohttp, aiortc, av) only where it serves: `gridwatch detect` and
    # `check-config` load neither it nor the ONVIF stack.
    from aiohttp import web

    from gridwatch.signaling.app import STOPPING, create_app
    from gridwatch.signaling.listener import KEEPALIVE_S, listen

    config.server.data_dir.mkdir(parents=True, exist_ok=True)
    runner = web.AppRunner(create_app(config), access_log=None, handle_signals=False,
                           keepalive_timeout=KEEPALIVE_S, shutdown_timeout=IN_FLIGHT_S)  # fmt: skip
    await runner.setup()
    server = await listen(
        runner, config.server.host, config.server.port, config.server.header_timeout_s
    )
    host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
    log.info("listening", extra={"url": f"http://{host}:{config.server.port}/"})
    if banner:
        print(banner, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with sidecars() if sidecars else contextlib.nullcontext():
        await stop.wait()
        log.info("shutting down", extra={"delay_s": config.server.shutdown_delay_s})
        # /readyz says 503 at once; requests are served as before for the delay, while the
        # load balancers that poll it stop sending any (kube-apiserver's shutdown delay).
        runner.app[STOPPING].set()
        await asyncio.sleep(config.server.shutdown_delay_s)
    began = time.monotonic()
    # No new connection from here; runner.cleanup() then refuses new requests and closes
    # the sockets, segments and leases (app.drain), waits for requests in flight, and
    # runs the app's cleanup (peers, producers, Redis).
    server.close()
    await runner.cleanup()
    log.info("stopped", extra={"seconds": round(time.monotonic() - began, 2)})


def load_checked(path: Path | None) -> Config:
    """The config (the file, secret files, the environment: signaling/settings.py), with
    the files it names (grids, map layers) read and checked too."""
    from gridwatch.signaling.basemap import load_basemap

    config = load_settings(path)
    load_basemap(config)
    check_evidence_key(config)
    return config


def check_evidence_key(config: Config) -> None:
    """A configured evidence key that exists must be usable (one that does not is made at
    start). ConfigError naming server.evidence_key; never the key itself."""
    from gridwatch.dispatch.evidence_key import KeyFileError, check_key_file

    path = config.server.evidence_key
    if path is not None and path.exists():
        try:
            check_key_file(path)
        except KeyFileError as e:
            raise ConfigError([f"server.evidence_key: {e}"]) from None


def config_or_report(path: Path | None) -> Config | None:
    """The config for a command that runs; None after printing every error."""
    try:
        return load_checked(path)
    except ConfigError as e:
        for line in e.errors:
            print(f"config error: {line}", file=sys.stderr)
        return None


def cmd_serve(args: argparse.Namespace) -> int:
    config = config_or_report(args.config)
    if config is None:
        return 2
    if not config.users:
        log.warning("no users in the config: nobody can log in (see gridwatch hash-password)")
    asyncio.run(_serve(config))
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    config = config_or_report(args.config)
    if config is None:
        return 2
    private_url = None
    if config.redis.url is None and config.redis.sentinel is None:
        # The node's private Redis, when this worker runs beside `gridwatch serve`.
        sock = (config.server.data_dir / "redis" / "redis.sock").resolve()
        if not sock.exists():
            print(
                f"config error: redis.url: not set, and no private Redis at {sock}", file=sys.stderr
            )
            return 2
        private_url = f"unix://{sock}"
    weights = config.detectors.weights
    if not weights.endswith(".yaml") and not Path(weights).is_file():
        print(
            f"config error: detectors.weights: no file {weights} (weights are never downloaded)",
            file=sys.stderr,
        )
        return 2
    asyncio.run(_detect(private_url, config))
    return 0


async def _detect(private_url: str | None, config: Config) -> None:
    from gridwatch.detectors.worker import Worker, yolo_factory
    from gridwatch.signaling.redis_connect import durable_client, frames_client

    client = durable_client(config.redis, private_url)
    bus = frames_client(config.redis)
    worker = asyncio.create_task(
        Worker(client, config.detectors, yolo_factory(config.detectors), bus).run()
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    if bus is not None:
        await bus.aclose()
    await client.aclose()


def cmd_demo(args: argparse.Namespace) -> int:
    from gridwatch.signaling import demo

    passwords = {"admin": secrets.token_urlsafe(9), demo.OFFICER: secrets.token_urlsafe(12)}
    args.data_dir.mkdir(parents=True, exist_ok=True)
    print("preparing the demo cameras ...", flush=True)
    config = demo.demo_config(args.port, args.data_dir, passwords)
    banner = (
        f"\n  Gridwatch demo: http://127.0.0.1:{args.port}/\n"
        f"  log in as  admin / {passwords['admin']}   (the command wall)\n"
        f"  officer    {demo.OFFICER} / {passwords[demo.OFFICER]}   (http://127.0.0.1:{args.port}/phone: sign in and\n"
        f"             you are the patrol officer; the simulation hands him over until you leave)\n"
        f"  ({len(config.cameras)} demo cameras; on {demo.STREET} a vehicle parks and a stall is\n"
        f"   set up every 90 s: tickets open, and officer {demo.OFFICER} (simulated) takes them.\n"
        f"   Ctrl-C stops)\n"
    )
    asyncio.run(_serve(config, banner, lambda: demo.sidecars(config, passwords)))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_checked(args.file)
    except ConfigError as e:
        for line in e.errors:
            print(line)
        print(f"{args.file}: {len(e.errors)} error(s)", file=sys.stderr)
        return 1
    print(f"{args.file}: OK ({len(config.cameras)} cameras, {len(config.users)} users)")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("no password given on standard input", file=sys.stderr)
        return 2
    from gridwatch.signaling.auth import hash_password

    print(hash_password(password))
    return 0


def cmd_verify_evidence(args: argparse.Namespace) -> int:
    """0: every file matches the manifest signed by the key given (--key); 3: the same,
    but checked only against the key inside the package (integrity, not origin); 1:
    something was altered, removed or added (each named); 2: the package or the key
    cannot be read at all."""
    from gridwatch.dispatch.evidence_verify import Unreadable, verify

    pem = None
    if args.key is not None:
        try:
            pem = args.key.read_bytes()[: 64 * 1024]
        except OSError as e:
            print(f"{args.key}: cannot read: {e.strerror}", file=sys.stderr)
            return 2
    try:
        report = verify(args.file, pem)
    except Unreadable as e:
        print(str(e), file=sys.stderr)
        return 2
    except ValueError as e:  # --key is not an Ed25519 public key
        print(f"{args.key}: {e}", file=sys.stderr)
        return 2
    print(f"{args.file}: evidence package of ticket {report.ticket or '?'}")
    for f in report.findings:
        print(f"  {'ok  ' if f.ok else 'FAIL'}  {f.name}: {f.message}")
    if report.embedded_key and report.key_fingerprint:
        print(
            "\nChecked against the key inside the package (signing-key.pem): this proves the\n"
            "package is unaltered since it was signed, not who signed it. Compare\n"
            f"  {report.key_fingerprint}\n"
            "with the node's published key (GET /api/evidence/key), or check again with --key."
        )
    elif report.key_fingerprint:
        print(f"\nChecked against the key given ({args.key}, {report.key_fingerprint}).")
    if report.ok and report.embedded_key:
        print("INTACT, ORIGIN UNPROVEN: every file matches the manifest, signed by the key "
              "inside the package (check again with --key)")
        return 3
    if report.ok:
        print("INTACT: every file matches the signed manifest")
        return 0
    names = ", ".join(dict.fromkeys(f.name for f in report.problems))
    print(f"ALTERED: {len(report.problems)} problem(s): {names}")
    return 1


def cmd_discover(args: argparse.Namespace) -> int:
    from gridwatch.media.discover import discover

    found = asyncio.run(discover(timeout=args.timeout, interface=args.interface))
    for device in found:
        print(f"{device.address}\t{' '.join(device.xaddrs)}\t{' '.join(device.scopes)}")
    print(f"{len(found)} device(s) found", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gridwatch", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the server")
    p.add_argument("--config", type=Path)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("detect", help="a detector worker")
    p.add_argument("--config", type=Path)
    p.set_defaults(func=cmd_detect)
    p = sub.add_parser("demo", help="the whole system with demo sources on embedded defaults")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--data-dir", type=Path, default=Path("var/demo"))
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("check-config", help="validate a config file and print its errors")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_check_config)
    p = sub.add_parser("hash-password", help="read a password on stdin, print its hash")
    p.set_defaults(func=cmd_hash_password)
    p = sub.add_parser("verify-evidence", help="check an evidence package's hashes and signature")
    p.add_argument("file", type=Path, help="the package (TICKET-evidence.zip)")
    p.add_argument("--key", type=Path, default=None,
                   help="the signing node's public key (PEM, from GET /api/evidence/key); "
                        "without it, the key inside the package: integrity, not origin")  # fmt: skip
    p.set_defaults(func=cmd_verify_evidence)
    p = sub.add_parser("discover", help="find ONVIF devices with WS-Discovery")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--interface", default=None, help="IPv4 address of the interface to probe from")
    p.set_defaults(func=cmd_discover)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
