"""Every error leaves the server as JSON: {"error": CODE, "message": TEXT}."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError
from redis import exceptions as redis_errors

from gridwatch.contracts.config import format_errors

log = logging.getLogger("gridwatch.http")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}


class JsonError(Exception):
    """Raised by handlers; the middleware turns it into the JSON error response."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra: object):
        super().__init__(message)
        self.status = status
        self.body = {"error": code or CODES.get(status, "error"), "message": message, **extra}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except JsonError as exc:
        return web.json_response(exc.body, status=exc.status)
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as e:
        log.warning("redis unavailable", extra={"path": request.path, "error": str(e)})
        return web.json_response(
            {"error": "unavailable", "message": "shared state (Redis) is unavailable; try again"},
            status=503,
            headers={"Retry-After": "2"},
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 413:
            message = f"request body too large (limit {request.app._client_max_size} bytes)"
        body = {"error": CODES.get(exc.status, "error"), "message": message}
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return web.json_response(body, status=exc.status, headers=headers)
    except Exception:
        log.exception("unhandled error", extra={"method": request.method, "path": request.path})
        return web.json_response(
            {"error": "internal", "message": "internal server error"}, status=500
        )


async def stream_file(request: web.Request, response: web.StreamResponse, f: BinaryIO,
                      chunk: int = 1 << 20) -> web.StreamResponse:  # fmt: skip
    """Send the open file `f` as `response`'s body, read `chunk` bytes at a time off the
    event loop. A client that goes away mid-download (closes, resets, stops reading until
    the transport drops it) ends the send with one log line, not an unhandled error."""
    await response.prepare(request)
    try:
        while data := await asyncio.to_thread(f.read, chunk):
            await response.write(data)
        await response.write_eof()
    except ConnectionResetError:
        log.info("client went away mid-download", extra={"path": request.path})
    return response


def validated(
    schema: type[BaseModel] | TypeAdapter, data: object, code: str, prefix: str = ""
) -> Any:
    """`data` checked against a pydantic model, or a 400 whose message names every bad field."""
    try:
        if isinstance(schema, TypeAdapter):
            return schema.validate_python(data)
        return schema.model_validate(data)
    except ValidationError as e:
        raise JsonError(400, prefix + "; ".join(format_errors(e)), code) from None


MAX_DEPTH = 32  # nesting of a JSON body; every request the API takes is far flatter
MAX_INT = 2**53  # beyond this a number is not an id, a count or a time the API takes
MAX_NUMBER_CHARS = 32


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The body, read as it streams (chunked or not), or a 413 past `limit` bytes
    (the app's client_max_size by default)."""
    limit = request.app._client_max_size if limit is None else limit
    if (request.content_length or 0) > limit:
        raise JsonError(413, f"request body too large (limit {limit} bytes)", "too_large")
    chunks, size = [], 0
    try:
        while size <= limit and (chunk := await request.content.read(limit + 1 - size)):
            chunks.append(chunk)  # read() gives what has arrived, not all that was asked
            size += len(chunk)
    except ConnectionResetError:
        raise JsonError(400, "the client went away while sending its body", "client_gone") from None
    data = b"".join(chunks)
    if len(data) > limit:
        raise JsonError(413, f"request body too large (limit {limit} bytes)", "too_large")
    return data


def _number(text: str) -> int | float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"number {text[:12]}... is too long")
    value = float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"number {text[:12]} is out of range")
    if abs(value) > MAX_INT:
        raise ValueError(f"number {text[:12]} is out of range")
    return value


def _constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _check(value: object, depth: int = 0) -> None:
    """Refuse nesting deeper than MAX_DEPTH and strings that are not Unicode text."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH}")
    if isinstance(value, str):
        value.encode("utf-8")  # a lone surrogate (\ud800) raises here, not in a handler
    elif isinstance(value, dict):
        for k, v in value.items():
            _check(k, depth + 1)
            _check(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check(v, depth + 1)


def parse_json(raw: bytes) -> object:
    """Strict JSON: UTF-8 (RFC 8259, whatever charset a client declares), finite numbers
    within +-2^53, no NaN or Infinity, no lone surrogates, at most MAX_DEPTH deep.
    Raises JsonError 400 naming what is wrong."""
    try:
        text = raw.decode("utf-8")
        if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(text):
            raise ValueError(f"nested deeper than {MAX_DEPTH}")
        data = json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_constant)
        _check(data)
    except UnicodeError as e:
        raise JsonError(400, f"malformed JSON: not UTF-8 text ({e.reason})") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise JsonError(400, f"malformed JSON: {e}") from None
    return data


def _too_deep(text: str) -> bool:
    """Bracket depth outside strings, counted before parsing: json.loads recurses."""
    depth, in_string, escaped = 0, False, False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif c in "]}":
            depth -= 1
    return False


async def read_json(request: web.Request) -> dict:
    """The request's JSON object (see parse_json), or a 400/413/415 saying what is wrong."""
    if request.content_type not in ("application/json", ""):
        raise JsonError(415, "the body must be application/json")
    data = parse_json(await read_body(request))
    if not isinstance(data, dict):
        raise JsonError(400, "the body must be a JSON object")
    return data
