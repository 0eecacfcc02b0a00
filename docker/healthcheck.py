"""The containers' health checks (docker/Dockerfile HEALTHCHECK), run inside the container:

    python healthcheck.py server [--config FILE] [--path /healthz]
    python healthcheck.py worker [--config FILE]

`server`: the node in this container answers 200 at `--path` on its own port
(`server.port`) within 3 s. `worker`: this container's detector worker beat its heartbeat
in `gw:workers` (the sorted set every worker scores with the time of its last cycle,
detectors/worker.py) within `detectors.lease_s`, read where the worker writes it
(signaling/redis_connect.py); a worker that cannot reach Redis or has
not loaded its model has no recent beat.

The config is read as the `gridwatch` command reads it (the file, secret files, the
environment), so the check follows the port and Redis the process was given. Exit status
0 healthy, 1 unhealthy (Docker's HEALTHCHECK contract), with one line saying why.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from gridwatch.signaling.cli import load_checked
from gridwatch.signaling.config import Config, ConfigError

TIMEOUT_S = 3.0


def server(config: Config, path: str) -> str | None:
    """None when the node answers 200 at `path`, else why not."""
    host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
    url = f"http://{host}:{config.server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
            return None if reply.status == 200 else f"{url}: HTTP {reply.status}"
    except urllib.error.HTTPError as e:  # 503 from /readyz while starting or draining
        return f"{url}: HTTP {e.code}"
    except OSError as e:
        return f"{url}: {e}"


async def worker(config: Config) -> str | None:
    """None when a worker of this host (node id `{hostname}-{pid}`, contracts/node.py) beat
    within `detectors.lease_s` in the durable Redis (redis.url or redis.sentinel), else
    why not."""
    from redis.exceptions import RedisError

    from gridwatch.detectors.worker import WORKERS
    from gridwatch.signaling.redis_connect import durable_client

    try:
        client = durable_client(config.redis)
    except ValueError as e:  # no Redis configured: a worker in a container needs the centre's
        return str(e)
    since = time.time() - config.detectors.lease_s
    try:
        live = await asyncio.wait_for(client.zrangebyscore(WORKERS, since, "+inf"), TIMEOUT_S)
    except (RedisError, OSError, TimeoutError) as e:
        return f"redis: {e or 'no answer'}"
    finally:
        await client.aclose()
    prefix = f"{socket.gethostname()}-".encode()
    if not any(name.startswith(prefix) for name in live):
        return f"no heartbeat from a worker on {socket.gethostname()} in {WORKERS} since {since:.0f}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["server", "worker"])
    parser.add_argument("--config", type=Path)
    parser.add_argument("--path", default="/healthz", help="server: the route to ask")
    args = parser.parse_args(argv)
    try:
        config = load_checked(args.config)
    except ConfigError as e:
        print(f"unhealthy: config: {e.errors[0]}")
        return 1
    why = server(config, args.path) if args.role == "server" else asyncio.run(worker(config))
    print(f"unhealthy: {why}" if why else "healthy")
    return 1 if why else 0


if __name__ == "__main__":
    sys.exit(main())
