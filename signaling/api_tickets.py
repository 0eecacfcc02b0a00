"""REST for tickets: open (idempotent by key), list, read with the audit log, act."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import cv2
import numpy as np
from aiohttp import web

from dispatch.stats import report
from dispatch.tickets import STATES, TERMINAL, NewTicket, Ticket, TransitionError, allowed_actions
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
    store = request.app[keys.TICKETS]
    if principal.role == "officer":  # his own, however many others there are
        tickets = [t for t in await store.assigned(principal.username, limit)
                   if _visible(principal, t) and state in (None, t.state)]  # fmt: skip
    else:
        tickets = await store.list(state, limit)
    return web.json_response({"tickets": [_view(t) for t in tickets]})


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


PHOTO_TYPES = {b"\xff\xd8\xff": ("image/jpeg", "jpg"), b"\x89PNG\r\n\x1a\n": ("image/png", "png")}
PHOTO_STATES = {"accepted", "on_scene", "resolved"}  # the assignee's photos: at the scene


def _decoded_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a picture that really decodes; None otherwise."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if image is None else (image.shape[1], image.shape[0])


@routes.post("/api/tickets/{id}/evidence")
async def upload_photo(request: web.Request) -> web.Response:
    """A photo from the scene (the officer resolving the ticket, or a dispatcher): the
    body is the JPEG or PNG itself, checked by its content, at most server.max_photo_bytes;
    stored with the ticket's evidence and logged. 201 {name, url}."""
    principal = require(request, "officer", "admin", "dispatcher")
    ticket = await _ticket(request, principal)
    if principal.role == "officer" and ticket.state not in PHOTO_STATES:
        raise JsonError(409, f"ticket {ticket.id} is {ticket.state}: photos are taken at the scene")
    if ticket.state in TERMINAL:
        raise JsonError(409, f"ticket {ticket.id} is {ticket.state}: its evidence is closed")
    limit = request.app[keys.CONFIG].server.max_photo_bytes
    data = await request.content.read(limit + 1)  # not request.read(): its cap is for JSON
    if len(data) > limit:
        raise JsonError(413, f"a photo is at most {limit // 1024} KB")
    kind = next((t for magic, t in PHOTO_TYPES.items() if data.startswith(magic)), None)
    if kind is None:
        raise JsonError(415, "a photo must be a JPEG or PNG file", "unsupported_media_type")
    size = await asyncio.to_thread(_decoded_size, data)
    if size is None:
        raise JsonError(415, f"the {kind[1].upper()} does not decode", "unsupported_media_type")
    store = request.app[keys.EVIDENCE]
    name = f"photo-{int(time.time() * 1000)}-{secrets.token_hex(2)}.{kind[1]}"
    rel = await asyncio.to_thread(store.save, f"{ticket.key or ticket.id}-photos", name, data)
    why = f"photo {name} ({size[0]}x{size[1]}, {len(data) // 1024} KB)"
    try:
        await request.app[keys.TICKETS].add_evidence(ticket.id, principal.username, principal.role, [rel], why)
    except TransitionError as e:
        await asyncio.to_thread(store.remove, rel)
        raise JsonError(e.status, str(e)) from None
    log.info("photo added", extra={"ticket": ticket.id, "user": principal.username, "bytes": len(data)})
    return web.json_response({"name": rel, "url": f"/api/tickets/{ticket.id}/evidence/{rel}"}, status=201)


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
