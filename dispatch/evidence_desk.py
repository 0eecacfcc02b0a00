"""The tickets as the recorders see them (`recordings.service.EvidenceDesk`, satisfied by
shape: neither package imports the other; the process wiring hands this in)."""

from __future__ import annotations

import logging

from gridwatch.contracts.roles import SYSTEM
from gridwatch.contracts.states import TERMINAL
from gridwatch.dispatch.alerts import Alerts
from gridwatch.dispatch.tickets import TicketStore, TransitionError

log = logging.getLogger("gridwatch.dispatch")


class TicketEvidence:
    def __init__(self, tickets: TicketStore, alerts: Alerts):
        self.tickets = tickets
        self.alerts = alerts

    async def attach(self, ticket_id: str, rel: str, why: str) -> None:
        """Add an evidence clip to the ticket (logged as `evidence` by the recorder)."""
        try:
            await self.tickets.add_evidence(ticket_id, "recorder", SYSTEM, [rel], why)
        except TransitionError as e:
            log.warning("evidence clip not attached", extra={"ticket": ticket_id, "clip": rel, "why": str(e)})

    async def ended_before(self, ticket_id: str, when: float) -> bool:
        ticket = await self.tickets.get(ticket_id)
        return ticket is None or (ticket.state in TERMINAL and ticket.updated_at < when)

    async def alarm(self, event: dict, message: str, key: str) -> None:
        await self.alerts.raise_(event, event.get("kind", "disk_full"), message, key=key, level="critical")
