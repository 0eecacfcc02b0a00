// Alerts that stay until a dispatcher acknowledges them (reminders, escalations, tickets
// nobody can take, grid surges, a full disk), and the pop-up of each new ticket with its
// snapshot.
import { useState } from "preact/hooks";
import { store } from "./store.js";
import { age, html, label, now, snapshotOf, useTick, useTopics } from "../ui.js";

const KIND = { reminder: "Reminder", escalation: "Escalation",
  surge: "Grid surge", disk_full: "Disk full" };

function AlertCard({ alert }) {
  const [error, setError] = useState("");
  const ack = () => store.ackAlert(alert.id).catch((e) => setError(e.message));
  return html`
    <li class=${`alert lv-${alert.level}`} data-alert=${alert.id} data-kind=${alert.kind}>
      <strong>${KIND[alert.kind] || label(alert.kind)}</strong>
      <span class="age">${age(now() - alert.at)} ago</span>
      <p>${alert.message}</p>
      ${alert.ticket ? html`<button class="open" onClick=${() => store.select(alert.ticket)}>Open ${alert.ticket}</button>` : null}
      <button class="ack primary" onClick=${ack}>Acknowledge</button>
      ${error ? html`<p class="error">${error}</p>` : null}
    </li>`;
}

export function Alerts() {
  useTopics(store, "alerts");
  useTick(10000);
  const alerts = [...store.alerts.values()].map((a) => a.alert).sort((a, b) => b.at - a.at);
  return html`
    <section id="alerts" data-count=${alerts.length} hidden=${alerts.length === 0}>
      <h2>Alerts <b>${alerts.length}</b></h2>
      <ul>${alerts.map((a) => html`<${AlertCard} key=${a.id} alert=${a} />`)}</ul>
    </section>`;
}

export function Toasts() {
  useTopics(store, "toasts", "tickets");
  const live = store.toasts.filter((t) => t.until > Date.now());
  return html`
    <div id="toasts">
      ${live.map((toast) => {
        const ticket = store.tickets.get(toast.ticket.id) || toast.ticket;
        const img = snapshotOf(ticket);
        return html`
          <div class="toast" key=${ticket.id} data-ticket=${ticket.id}
               onClick=${() => { store.select(ticket.id); store.dismissToast(ticket.id); }}>
            ${img ? html`<img src=${img} alt="snapshot"/>` : null}
            <div>
              <strong>New: ${label(ticket.category)}</strong> <span class="id">${ticket.id}</span>
              <p>${ticket.camera ? `${ticket.camera}: ` : ""}${ticket.description || ""}</p>
              <small>${ticket.assignee ? `offered to ${ticket.assignee}` : ticket.note || "waiting for dispatch"}</small>
            </div>
            <button class="close" title="Dismiss" onClick=${(e) => { e.stopPropagation(); store.dismissToast(ticket.id); }}>✕</button>
          </div>`;
      })}
    </div>`;
}
