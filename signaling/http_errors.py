"""Every error leaves the server as JSON: {"error": CODE, "message": TEXT}."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError
from redis import exceptions as redis_errors

from signaling.config import format_errors

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


async def read_json(request: web.Request) -> dict:
    """The request's JSON object, or a 400/415 that says what is wrong with it."""
    if request.content_type not in ("application/json", ""):
        raise JsonError(415, "the body must be application/json")
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise JsonError(400, f"malformed JSON: {e}") from None
    if not isinstance(data, dict):
        raise JsonError(400, "the body must be a JSON object")
    return data
