"""REST for tickets: open (idempotent by key), list, read with the audit log, act."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from dispatch.stats import report
from dispatch.tickets import STATES, NewTicket, Ticket, TransitionError, allowed_actions
from signaling import keys
from signaling.auth import Principal, require
from signaling.http_errors import JsonError, read_json, validated

log = logging.getLogger("gridwatch.tickets")
routes = web.RouteTableDef()

READ_ROLES = ("admin", "dispatcher", "viewer", "officer")
OPEN_ROLES = ("admin", "dispatcher", "officer", "device")
ACT_ROLES = ("admin", "dispatcher", "officer")


def _visible(principal: Principal, ticket: Ticket) -> bool:
    # An officer sees his own tickets; everyone else who may read sees all.
    return principal.role != "officer" or ticket.assignee == principal.username


def _view(ticket: Ticket) -> dict:
    data = ticket.model_dump(mode="json")
    data["actions"] = allowed_actions(ticket.state)
    return data


@routes.post("/api/tickets")
async def open_ticket(request: web.Request) -> web.Response:
    principal = require(request, *OPEN_ROLES)
    new = validated(NewTicket, await read_json(request), "invalid_ticket")
    if principal.role == "officer":
        new.source = "officer"
    ticket, made = await request.app[keys.DISPATCH].open(new, principal.username, principal.role)
    if made:
        log.info(
            "ticket opened",
            extra={"ticket": ticket.id, "category": ticket.category, "user": principal.username},
        )
    return web.json_response(_view(ticket), status=201 if made else 200)


@routes.get("/api/tickets")
async def list_tickets(request: web.Request) -> web.Response:
    principal = require(request, *READ_ROLES)
    state = request.query.get("state")
    if state is not None and state not in STATES:
        raise JsonError(400, f"state: must be one of {', '.join(STATES)}")
    try:
        limit = min(1000, max(1, int(request.query.get("limit", "100"))))
    except ValueError:
        raise JsonError(400, "limit: must be an integer") from None
    tickets = await request.app[keys.TICKETS].list(state, limit)
    return web.json_response({"tickets": [_view(t) for t in tickets if _visible(principal, t)]})


async def _ticket(request: web.Request, principal: Principal) -> Ticket:
    ticket = await request.app[keys.TICKETS].get(request.match_info["id"])
    if ticket is None:
        raise JsonError(404, f"no ticket {request.match_info['id']!r}")
    if not _visible(principal, ticket):
        raise JsonError(403, f"ticket {ticket.id} is not assigned to {principal.username}")
    return ticket


@routes.get("/api/stats")
async def stats(request: web.Request) -> web.Response:
    require(request, "admin", "dispatcher", "viewer")
    try:
        window = float(request.query.get("window_s", 86400))
    except ValueError:
        raise JsonError(400, "window_s: must be a number of seconds") from None
    if not 0 < window <= 366 * 86400:
        raise JsonError(400, "window_s: must be between 0 and a year")
    tickets = await request.app[keys.TICKETS].changed_since(time.time() - window)
    return web.json_response({"window_s": window, **report(tickets)})


@routes.get("/api/tickets/{id}")
async def get_ticket(request: web.Request) -> web.Response:
    principal = require(request, *READ_ROLES)
    ticket = await _ticket(request, principal)
    data = _view(ticket)
    data["log"] = await request.app[keys.TICKETS].log(ticket.id)
    return web.json_response(data)


@routes.get("/api/tickets/{id}/track")
async def ticket_track(request: web.Request) -> web.Response:
    principal = require(request, *READ_ROLES)
    ticket = await _ticket(request, principal)
    return web.json_response(await request.app[keys.DISPATCH].track(ticket))


@routes.get("/api/tickets/{id}/evidence")
async def ticket_evidence(request: web.Request) -> web.Response:
    principal = require(request, *READ_ROLES)
    ticket = await _ticket(request, principal)
    store = request.app[keys.EVIDENCE]
    return web.json_response(
        {
            "ticket": ticket.id,
            "evidence": [
                {"name": e, "url": f"/api/tickets/{ticket.id}/evidence/{e}"}
                if store.path(e) else {"name": e, "url": None}
                for e in ticket.evidence
            ],
        }
    )  # fmt: skip


@routes.get("/api/tickets/{id}/evidence/{name:.+}")
async def ticket_evidence_file(request: web.Request) -> web.FileResponse:
    principal = require(request, *READ_ROLES)
    ticket = await _ticket(request, principal)
    name = request.match_info["name"]
    # Only what the ticket lists, and only inside the evidence folder.
    path = request.app[keys.EVIDENCE].path(name) if name in ticket.evidence else None
    if path is None:
        raise JsonError(404, f"ticket {ticket.id} has no evidence {name!r}")
    return web.FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})


@routes.get("/api/tickets/{id}/candidates")
async def ticket_candidates(request: web.Request) -> web.Response:
    """The officers dispatch would offer this ticket to, for a dispatcher to choose from."""
    principal = require(request, "admin", "dispatcher")
    ticket = await _ticket(request, principal)
    found, reason = await request.app[keys.DISPATCH].candidates(ticket)
    return web.json_response(
        {
            "ticket": ticket.id,
            "candidates": [
                {
                    "officer": c.officer,
                    "distance_m": round(c.distance_m, 1),
                    "eta_s": round(c.eta_s, 1),
                }
                for c in found[:20]
            ],
            "reason": reason,
        }
    )


@routes.post("/api/tickets/{id}/actions")
async def act(request: web.Request) -> web.Response:
    principal = require(request, *ACT_ROLES)
    body = await read_json(request)
    action, why, officer = body.get("action"), body.get("reason", ""), body.get("officer")
    if not isinstance(action, str):
        raise JsonError(400, "action: a string is required")
    if not isinstance(why, str) or len(why) > 1000:
        raise JsonError(400, "reason: a string of at most 1000 characters")
    if officer is not None and not isinstance(officer, str):
        raise JsonError(400, "officer: must be an officer id")
    ticket_id = request.match_info["id"]
    if principal.role == "officer":
        await _ticket(request, principal)  # 403 for a ticket that is not his, before any 409
    try:
        ticket = await request.app[keys.DISPATCH].act(
            ticket_id, action, principal.username, principal.role, why=why, officer=officer
        )
    except TransitionError as e:
        raise JsonError(e.status, str(e), allowed=e.allowed) from None
    log.info(
        "ticket action",
        extra={
            "ticket": ticket_id,
            "action": action,
            "state": ticket.state,
            "user": principal.username,
        },
    )
    return web.json_response(_view(ticket))
