"""REST for tickets: open (idempotent by key), list, read with the audit log, act."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Annotated

import cv2
import numpy as np
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gridwatch.contracts.evidence import hold
from gridwatch.contracts.plates import as_plate
from gridwatch.contracts.roles import DESK, WALL
from gridwatch.contracts.states import TERMINAL
from gridwatch.dispatch.stats import report
from gridwatch.dispatch.tickets import (
    NewTicket,
    Ticket,
    TicketFilter,
    TransitionError,
    allowed_actions,
)
from gridwatch.signaling import keys, node_files
from gridwatch.signaling.auth import Principal
from gridwatch.signaling.http_errors import JsonError, read_body
from gridwatch.signaling.policy import allow, body, query

log = logging.getLogger("gridwatch.tickets")
routes = web.RouteTableDef()

READ = (*WALL, "officer")
OWN = "An officer sees and acts on only the tickets assigned to him."


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    window_s: Annotated[float, Field(gt=0, le=366 * 86400, allow_inf_nan=False)] = 86400
    since: Annotated[float, Field(ge=0, le=1e10, allow_inf_nan=False)] | None = Field(None, alias="from")
    until: Annotated[float, Field(ge=0, le=1e10, allow_inf_nan=False)] | None = Field(None, alias="to")


class PlateQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Annotated[str, Field(min_length=1, max_length=32)]
    reason: Annotated[str, Field(max_length=1000)] = ""
    officer: Annotated[str, Field(min_length=1, max_length=64)] | None = None


def _visible(principal: Principal, ticket: Ticket) -> bool:
    # An officer sees his own tickets; everyone else who may read sees all.
    return principal.role != "officer" or ticket.assignee == principal.username


def _view(ticket: Ticket) -> dict:
    data = ticket.model_dump(mode="json")
    data["actions"] = allowed_actions(ticket.state)
    return data


@routes.post("/api/tickets")
@allow(*DESK, "officer", "device", body=NewTicket)
async def open_ticket(request: web.Request) -> web.Response:
    """Open a ticket (idempotent by `key`: 200 with the existing one when seen before)."""
    principal = request["principal"]
    new = await body(request, NewTicket, "invalid_ticket")
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
@allow(*READ, query=TicketFilter, owner=OWN)
async def list_tickets(request: web.Request) -> web.Response:
    """Tickets newest reported first, filtered by `state` (repeatable), `category`, `grid`,
    `assignee`, `from`/`to` (reported, Unix s); `limit` (at most 1000) a page, and `next`
    the cursor of the following page (`?cursor=`), null on the last. An officer: his own."""
    tickets, cursor = await _page(request)
    return web.json_response({"tickets": [_view(t) for t in tickets], "next": cursor})


@routes.get("/api/tickets/logs")
@allow(*DESK, query=TicketFilter)
async def ticket_logs(request: web.Request) -> web.Response:
    """The audit logs of a page of tickets (the listing's filters and cursor), in bulk:
    {logs: {ticket id: [entries]}, next}."""
    tickets, cursor = await _page(request)
    logs = await request.app[keys.TICKETS].logs([t.id for t in tickets])
    return web.json_response({"logs": logs, "next": cursor})


async def _page(request: web.Request) -> tuple[list[Ticket], str | None]:
    principal = request["principal"]
    f = query(request, TicketFilter)
    if principal.role == "officer":  # his own, however many others there are
        if f.assignee not in (None, principal.username):
            raise JsonError(403, f"officer {principal.username} sees only his own tickets")
        f.assignee = principal.username
    try:
        return await request.app[keys.TICKETS].page(f)
    except ValueError:
        raise JsonError(400, "cursor: not a cursor this server gave", "bad_query") from None


async def _ticket(request: web.Request, principal: Principal) -> Ticket:
    ticket = await request.app[keys.TICKETS].get(request.match_info["id"])
    if ticket is None:
        raise JsonError(404, f"no ticket {request.match_info['id']!r}")
    if not _visible(principal, ticket):
        raise JsonError(403, f"ticket {ticket.id} is not assigned to {principal.username}")
    return ticket


@routes.get("/api/stats")
@allow(*WALL, query=StatsQuery)
async def stats(request: web.Request) -> web.Response:
    """What the centre is judged on (dispatch.stats), for the tickets reported between
    `from` and `to` (Unix s; default the last `window_s`), overall, per grid, per
    category; `queue`: tickets waiting for an officer now and the oldest one's age (s)."""
    q = query(request, StatsQuery)
    now = time.time()
    until = q.until if q.until is not None else now
    since = q.since if q.since is not None else until - q.window_s
    if since > until:
        raise JsonError(400, "from: after to", "bad_query")
    store = request.app[keys.TICKETS]
    reported, current = await store.reported(since, until), await store.open_now()
    cfg = request.app[keys.CONFIG].dispatch
    out = report(reported, current, lambda c: cfg.limits(c)["arrive"], now)
    length, oldest = await store.queue()
    return web.json_response({"from": since, "to": until, "window_s": until - since, **out,
                              "queue": {"length": length, "oldest_s": round(now - oldest, 1) if oldest else None}})  # fmt: skip


@routes.get("/api/tickets/{id}")
@allow(*READ, owner=OWN)
async def get_ticket(request: web.Request) -> web.Response:
    principal = request["principal"]
    ticket = await _ticket(request, principal)
    data = _view(ticket)
    data["log"] = await request.app[keys.TICKETS].log(ticket.id)
    return web.json_response(data)


@routes.get("/api/tickets/{id}/track")
@allow(*READ, owner=OWN)
async def ticket_track(request: web.Request) -> web.Response:
    principal = request["principal"]
    ticket = await _ticket(request, principal)
    return web.json_response(await request.app[keys.DISPATCH].track(ticket))


@routes.get("/api/tickets/{id}/evidence")
@allow(*READ, owner=OWN)
async def ticket_evidence(request: web.Request) -> web.Response:
    principal = request["principal"]
    ticket = await _ticket(request, principal)
    served = await node_files.available(request.app, ticket.evidence)  # by this node or its holder
    return web.json_response(
        {
            "ticket": ticket.id,
            "evidence": [
                {"name": e, "url": f"/api/tickets/{ticket.id}/evidence/{e}"}
                if e in served else {"name": e, "url": None}
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
@allow(*DESK, "officer", body_types=("image/jpeg", "image/png"), owner=OWN)
async def upload_photo(request: web.Request) -> web.Response:
    """A photo from the scene (the officer resolving the ticket, or a dispatcher): the
    body is the JPEG or PNG itself, checked by its content, at most server.max_photo_bytes;
    stored with the ticket's evidence and logged. 201 {name, url}."""
    principal = request["principal"]
    ticket = await _ticket(request, principal)
    if principal.role == "officer" and ticket.state not in PHOTO_STATES:
        raise JsonError(409, f"ticket {ticket.id} is {ticket.state}: photos are taken at the scene")
    if ticket.state in TERMINAL:
        raise JsonError(409, f"ticket {ticket.id} is {ticket.state}: its evidence is closed")
    limit = request.app[keys.CONFIG].server.max_photo_bytes
    try:
        data = await read_body(request, limit)
    except JsonError as e:
        raise JsonError(413, f"a photo is at most {limit // 1024} KB", "too_large") from e
    kind = next((t for magic, t in PHOTO_TYPES.items() if data.startswith(magic)), None)
    if kind is None:
        raise JsonError(415, "a photo must be a JPEG or PNG file", "unsupported_media_type")
    size = await asyncio.to_thread(_decoded_size, data)
    if size is None:
        raise JsonError(415, f"the {kind[1].upper()} does not decode", "unsupported_media_type")
    store = request.app[keys.EVIDENCE]
    name = f"photo-{int(time.time() * 1000)}-{secrets.token_hex(2)}.{kind[1]}"
    rel = await asyncio.to_thread(store.save, f"{ticket.key or ticket.id}-photos", name, data)
    await hold(request.app[keys.REDIS], rel, request.app[keys.NODES].me.node)  # served by every node
    why = f"photo {name} ({size[0]}x{size[1]}, {len(data) // 1024} KB)"
    try:
        await request.app[keys.TICKETS].add_evidence(ticket.id, principal.username, principal.role, [rel], why)
    except TransitionError as e:
        await asyncio.to_thread(store.remove, rel)
        raise JsonError(e.status, str(e)) from None
    log.info("photo added", extra={"ticket": ticket.id, "user": principal.username, "bytes": len(data)})
    return web.json_response({"name": rel, "url": f"/api/tickets/{ticket.id}/evidence/{rel}"}, status=201)


@routes.get("/api/tickets/{id}/evidence/{name:.+}")
@allow(*READ, owner=OWN)
async def ticket_evidence_file(request: web.Request) -> web.StreamResponse:
    principal = request["principal"]
    ticket = await _ticket(request, principal)
    name = request.match_info["name"]
    # Only what the ticket lists, and only inside the evidence folder (here or on its holder).
    if name not in ticket.evidence:
        raise JsonError(404, f"ticket {ticket.id} has no evidence {name!r}")
    return await node_files.serve_evidence(request, name)


@routes.get("/api/plates/{plate}/tickets")
@allow(*DESK, query=PlateQuery)
async def plate_tickets(request: web.Request) -> web.Response:
    """Repeat offenders: the tickets whose vehicle carried this plate, newest reported first.

    `plate` in the GA 36-2018 form (e.g. 沪AD7521; percent-encoded in the path, as
    %E6%B2%AA for 沪; a dot after the second character, spaces and lower-case letters are
    taken): 400 `bad_plate` otherwise. A plate no ticket carries lists none (200, an empty
    list; never 404). At most `limit` (1000), newest first; `count`: all of them."""
    raw = request.match_info["plate"]  # aiohttp has percent-decoded it
    plate = as_plate(raw) if len(raw) <= 32 else None
    if plate is None:
        raise JsonError(
            400,
            f"{raw[:32]!r} is not a plate: province, letter, 5 or 6 of A-Z (no I, O) and 0-9",
            "bad_plate",
        )
    q = query(request, PlateQuery)
    tickets, count = await request.app[keys.TICKETS].by_plate(plate, q.limit)
    return web.json_response(
        {"plate": plate, "count": count, "tickets": [_view(t) for t in tickets]}
    )


@routes.get("/api/tickets/{id}/candidates")
@allow(*DESK)
async def ticket_candidates(request: web.Request) -> web.Response:
    """The officers who could take this ticket now, fastest first, each with his ETA and
    why (road metres, speed, mode), for a dispatcher to choose from; or the reason none."""
    ticket = await _ticket(request, request["principal"])
    found, reason = await request.app[keys.DISPATCH].candidates(ticket)
    return web.json_response(
        {
            "ticket": ticket.id,
            "candidates": [
                {
                    "officer": c.officer,
                    "distance_m": round(c.distance_m, 1),
                    "road_m": round(c.road_m, 1),
                    "mode": c.mode,
                    "speed_mps": round(c.speed_mps, 2),
                    "eta_s": round(c.eta_s, 1),
                    "why": c.why,
                }
                for c in found[:20]
            ],
            "reason": reason,
        }
    )


@routes.post("/api/tickets/{id}/actions")
@allow(*DESK, "officer", body=ActionBody, owner=OWN)
async def act(request: web.Request) -> web.Response:
    """A transition (dispatch, accept, decline, arrive, resolve, verify, close, ...): 409
    naming the allowed ones when the state does not allow it, 403 when the role does not."""
    principal = request["principal"]
    ask = await body(request, ActionBody, "bad_request")
    action, why, officer = ask.action, ask.reason, ask.officer
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
