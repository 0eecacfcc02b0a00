"""Child processes that must not outlive the node that started them."""

from __future__ import annotations

import ctypes
import signal


def die_with_parent() -> None:
    """For preexec_fn: the kernel sends SIGTERM when the parent dies, even by SIGKILL (Linux)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
