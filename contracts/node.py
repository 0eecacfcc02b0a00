"""This process's name in leases, presence and consumer groups."""

from __future__ import annotations

import os
import socket


def node_id() -> str:
    """`{hostname}-{pid}`: unique among the live processes of a centre."""
    return f"{socket.gethostname()}-{os.getpid()}"
