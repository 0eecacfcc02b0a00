"""Who may call which route, and what each takes: one rule per route, declared on its
handler with `@allow(...)`, enforced for every request by the auth middleware before the
handler runs, listed by /api/openapi.json, and checked route by route by the tests (a
route without a rule stops the node at start).

A rule names the roles that may call the route at all; what a role may do with the one
resource named (an officer and *his* ticket, *his* track) is the handler's own check,
written in `owner` for the docs and the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gridwatch.contracts.config import format_errors
from gridwatch.contracts.roles import ROLES
from gridwatch.signaling.http_errors import JsonError, read_json, validated

H = TypeVar("H", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Rule:
    roles: tuple[str, ...] = ()  # who may call it; empty with public=True: anyone
    public: bool = False
    body: type[BaseModel] | None = None  # the JSON body's model
    body_types: tuple[str, ...] = ()  # a body that is not JSON (application/sdp, image/jpeg)
    query: type[BaseModel] | None = None
    owner: str = ""  # the resource-level check the handler makes, in words
    summary: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    internal: bool = False  # other nodes only, never a user (signaling/node_auth)


def allow(*roles: str, public: bool = False, body: type[BaseModel] | None = None,
          body_types: tuple[str, ...] = (), query: type[BaseModel] | None = None,
          owner: str = "", internal: bool = False) -> Callable[[H], H]:  # fmt: skip
    """Declare a handler's rule; its docstring's first line is the route's summary.
    `internal`: a route of /internal/ that only the centre's other nodes call, with a
    node token (signaling/node_auth), and no role."""
    unknown = set(roles) - set(ROLES)
    if unknown or (not roles and not public and not internal) or (internal and (roles or public)):
        raise ValueError(f"a rule needs known roles, public=True or internal=True (alone), not {sorted(unknown)}")

    def mark(handler: H) -> H:
        summary = (handler.__doc__ or "").strip().split("\n")[0]
        handler.rule = Rule(tuple(roles), public, body, body_types, query, owner, summary,  # type: ignore[attr-defined]
                            internal=internal)  # fmt: skip
        return handler

    return mark


def rule_of(handler: object) -> Rule | None:
    return getattr(handler, "rule", None)


def check_rules(app: web.Application) -> None:
    """Every route the app serves has a rule, or is a static folder, and a route is
    internal (signaling/node_auth) exactly when it is under /internal/; ValueError
    otherwise."""
    misplaced = [
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if (rule := rule_of(route.handler)) is not None
        and rule.internal != route.resource.canonical.startswith("/internal/")
    ]  # fmt: skip
    if misplaced:
        raise ValueError(f"internal routes must be exactly those under /internal/: {', '.join(misplaced)}")
    missing = [
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if not isinstance(route.resource, web.StaticResource) and rule_of(route.handler) is None
        and route.method != "HEAD"
    ]  # fmt: skip
    if missing:
        raise ValueError(f"routes without an access rule: {', '.join(missing)}")


def query(request: web.Request, model: type[M]) -> M:
    """The query string as `model` (repeated keys become lists where it takes a list), or a
    400 naming each field that is wrong."""
    data: dict[str, object] = {}
    for key in request.query:
        values = request.query.getall(key)
        wants_list = key in model.model_fields and _is_list(model.model_fields[key].annotation)
        data[key] = values if wants_list else values[-1]
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise JsonError(400, "; ".join(format_errors(e)), "bad_query") from None


async def body(request: web.Request, model: type[M], code: str = "invalid") -> M:
    """The JSON body as `model` (read by http_errors.read_json), or a 400 naming each field."""
    return validated(model, await read_json(request), code)


def _is_list(annotation: object) -> bool:
    return "list" in str(annotation)
