"""Structured log lines (one JSON object per line) with secrets scrubbed."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from urllib.parse import quote

from gridwatch.media.sources import redact

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_secrets: dict[str, re.Pattern[str]] = {}


def _forms(secret: str) -> list[str]:
    # Source.url hands a password to FFmpeg percent-encoded: a message quoting that form
    # holds it too.
    return list(dict.fromkeys([secret, quote(secret, safe="")]))


def _pattern(secret: str) -> re.Pattern[str]:
    """`secret` where it stands as a whole (not inside a longer run of letters and digits):
    a password "admin" or "127" must not blank out the word "administrator" or an address."""
    return re.compile("|".join(rf"(?<![A-Za-z0-9]){re.escape(f)}(?![A-Za-z0-9])" for f in _forms(secret)))


def add_secret(value: str | None) -> None:
    """Register a literal secret (a stored camera's password) that must never be logged."""
    if value and len(value) >= 3 and value not in _secrets:
        _secrets[value] = _pattern(value)


def scrub_secret(text: str, secret: str | None) -> str:
    """`text` with `secret` (a password, in the forms it travels in) replaced by `***`
    where it stands as a whole; for one message, without registering it for the node."""
    if not secret or not any(f in text for f in _forms(secret)):
        return text
    return _secrets.get(secret, _pattern(secret)).sub("***", text)


def scrub(text: str) -> str:
    """A log line with every URL's password (media.sources.redact) and every registered
    secret taken out."""
    text = redact(text)
    for secret in list(_secrets):
        text = scrub_secret(text, secret)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(line, default=str, ensure_ascii=False))


class OneLineFromLibraries(logging.Filter):
    """A library's traceback (aiohttp on a malformed request, pyrtmp on a connection that
    does not speak RTMP, ...) becomes one line naming the cause; our own code keeps its
    tracebacks, which are bugs to fix."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.exc_info
            and record.exc_info[1] is not None
            and not record.name.startswith("gridwatch")
        ):
            exc = record.exc_info[1]
            record.msg, record.args = (
                f"{record.getMessage()}: {type(exc).__name__}: {str(exc)[:300]}",
                None,
            )
            record.exc_info = record.exc_text = None
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(OneLineFromLibraries())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter at INFO (every aiohttp request, every ICE check) drowns the
    # lines an operator needs; our own access log line is enough.
    for noisy in ("aiohttp.access", "aioice", "aiortc", "libav"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
