// The ticket board: every ticket the wall knows, live; counts per state, filters (state,
// category, grid, overdue, unassigned), and a click opens the ticket's detail.
import { useLayoutEffect, useState } from "preact/hooks";
import { store, TERMINAL } from "./store.js";
import { age, html, label, now, STATE_LABELS, useTick, useTopics } from "../ui.js";

const MAX_ROWS = 300;  // past this the board asks for narrower filters
const ORDER = ["new", "reassigned", "dispatched", "accepted", "on_scene", "suspended", "resolved",
  "verified", "closed", "rejected", "cancelled"];
const PRIORITY = { urgent: 0, high: 1, normal: 2, low: 3 };
const WAITING = new Set(["new", "reassigned"]);

function matches(t, f) {
  if (f.state === "open" ? TERMINAL.has(t.state) : f.state && t.state !== f.state) return false;
  if (f.category && t.category !== f.category) return false;
  if (f.grid && (t.grid || "") !== f.grid) return false;
  if (f.overdue && !t.overdue) return false;
  if (f.unassigned && (t.assignee || TERMINAL.has(t.state))) return false;
  return true;
}

// Open tickets first (overdue, then by priority), then the newest change.
function rank(a, b) {
  const openA = !TERMINAL.has(a.state), openB = !TERMINAL.has(b.state);
  if (openA !== openB) return openA ? -1 : 1;
  if (a.overdue !== b.overdue) return a.overdue ? -1 : 1;
  const p = (PRIORITY[a.priority] ?? 2) - (PRIORITY[b.priority] ?? 2);
  return p || b.updated_at - a.updated_at;
}

function Row({ t }) {
  const since = t.times?.[t.state] || t.updated_at;
  return html`
    <li class="ticket" data-ticket=${t.id} data-state=${t.state} data-overdue=${t.overdue ? "1" : null}
        aria-selected=${store.selected === t.id} onClick=${() => store.select(t.id)}>
      <span class="id">${t.id}</span>
      <span class=${`badge st-${t.state}`}>${STATE_LABELS[t.state] || t.state}</span>
      ${t.overdue ? html`<span class="badge overdue">overdue</span>` : null}
      ${t.priority !== "normal" ? html`<span class=${`badge pr-${t.priority}`}>${t.priority}</span>` : null}
      <span class="what">${label(t.category)}${t.camera ? html` · <em>${t.camera}</em>` : null}</span>
      <span class="who">${t.assignee || (WAITING.has(t.state) ? "unassigned" : "")}</span>
      <span class="grid">${t.grid || ""}</span>
      <span class="age" title=${`in this state for ${age(now() - since)}`}>${age(now() - t.created_at)}</span>
      ${t.note && WAITING.has(t.state) ? html`<span class="note">${t.note}</span>` : null}
    </li>`;
}

export function Board() {
  useTopics(store, "tickets", "selected");
  useTick(5000);
  const [f, setF] = useState({ state: "open", category: "", grid: "", overdue: false, unassigned: false });
  const all = [...store.tickets.values()];
  const counts = {};
  for (const t of all) counts[t.state] = (counts[t.state] || 0) + 1;
  const categories = [...new Set(all.map((t) => t.category))].sort();
  const grids = [...new Set(all.map((t) => t.grid).filter(Boolean))].sort();
  const list = all.filter((t) => matches(t, f)).sort(rank);
  const rows = list.slice(0, MAX_ROWS);
  const set = (k) => (e) => setF({ ...f, [k]: e.target.type === "checkbox" ? e.target.checked : e.target.value });

  // Event to row, measured in the page (tests/bench/wall_bench.py reads it).
  useLayoutEffect(() => { store.rendered(rows.map((t) => t.id)); });

  return html`
    <section id="board">
      <h2>Tickets <small>${list.length} shown</small></h2>
      <div class="counts">
        ${ORDER.filter((s) => counts[s]).map((s) => html`
          <button class=${`count st-${s}${f.state === s ? " on" : ""}`} data-count=${s}
                  onClick=${() => setF({ ...f, state: f.state === s ? "open" : s })}>
            ${STATE_LABELS[s]} <b>${counts[s]}</b></button>`)}
      </div>
      <div class="filters">
        <select name="state" value=${f.state} onChange=${set("state")}>
          <option value="open">open</option><option value="">all</option>
          ${ORDER.map((s) => html`<option value=${s}>${STATE_LABELS[s]}</option>`)}
        </select>
        <select name="category" value=${f.category} onChange=${set("category")}>
          <option value="">every category</option>
          ${categories.map((c) => html`<option value=${c}>${label(c)}</option>`)}
        </select>
        <select name="grid" value=${f.grid} onChange=${set("grid")}>
          <option value="">every grid</option>
          ${grids.map((g) => html`<option value=${g}>${g}</option>`)}
        </select>
        <label><input type="checkbox" name="overdue" checked=${f.overdue} onChange=${set("overdue")}/> overdue</label>
        <label><input type="checkbox" name="unassigned" checked=${f.unassigned} onChange=${set("unassigned")}/> unassigned</label>
      </div>
      <ul class="tickets">
        ${rows.map((t) => html`<${Row} key=${t.id} t=${t} />`)}
      </ul>
      ${list.length > rows.length ? html`<p class="more">${list.length - rows.length} more: narrow the filters</p>` : null}
    </section>`;
}
