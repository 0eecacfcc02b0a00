"""The system clock's synchronisation state, as the operating system reports it.

Read with adjtimex(2) (`modes = 0`: read only, no privilege needed) through ctypes,
from the C library: the kernel's own view of its clock discipline, which NTP daemons
(chrony, ntpd, systemd-timesyncd) keep up to date. The kernel says the clock is
unsynchronised when `STA_UNSYNC` is set in `status` or the call returns `TIME_ERROR`;
`maxerror` and `esterror` are its maximum and estimated error in microseconds (the
daemon sets them, the kernel grows `maxerror` by 500 ppm while nobody does).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import time

SOURCE = "adjtimex(2)"
STA_UNSYNC = 0x0040
STA_NANO = 0x2000
TIME_ERROR = 5
STATES = {
    0: "TIME_OK",
    1: "TIME_INS",
    2: "TIME_DEL",
    3: "TIME_OOP",
    4: "TIME_WAIT",
    5: "TIME_ERROR",
}


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """`struct timex` of <sys/timex.h> (Linux, glibc and musl alike)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


_adjtimex = None


def _libc_adjtimex():
    global _adjtimex
    if _adjtimex is None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.adjtimex
        fn.argtypes = [ctypes.POINTER(_Timex)]
        fn.restype = ctypes.c_int
        _adjtimex = fn
    return _adjtimex


def clock_state() -> dict:
    """This machine's clock as the kernel reports it now:

    `{source: "adjtimex(2)", read_at: Unix s, synchronised: bool, state: "TIME_OK"|...,
    status: int (the STA_* flags), maxerror_us: int, esterror_us: int, offset_us: float}`.
    Where the call is not available (not Linux, no C library) `{source, read_at,
    synchronised: None, error: str}`: never raises."""
    now = time.time()
    if not sys.platform.startswith("linux"):
        return {
            "source": SOURCE,
            "read_at": now,
            "synchronised": None,
            "error": f"not available on {sys.platform}",
        }
    tx = _Timex()  # modes = 0: read only
    try:
        ret = _libc_adjtimex()(ctypes.byref(tx))
    except (OSError, AttributeError) as e:
        return {"source": SOURCE, "read_at": now, "synchronised": None, "error": str(e)}
    if ret < 0:
        err = ctypes.get_errno()
        return {"source": SOURCE, "read_at": now, "synchronised": None, "error": f"errno {err}"}
    unsync = bool(tx.status & STA_UNSYNC) or ret == TIME_ERROR
    offset_us = tx.offset / 1000 if tx.status & STA_NANO else float(tx.offset)
    return {
        "source": SOURCE,
        "read_at": now,
        "synchronised": not unsync,
        "state": STATES.get(ret, str(ret)),
        "status": tx.status,
        "maxerror_us": tx.maxerror,
        "esterror_us": tx.esterror,
        "offset_us": offset_us,
    }
