// The wall's state: a snapshot from the API, kept current by the /ws events, and loaded
// again whenever the socket comes back (events sent while it was down are not replayed
// live, so the snapshot is the truth). Panels subscribe by topic and re-render.
import { getJson, postJson } from "../common.js";
import { beep, Topics } from "../ui.js";

export const TERMINAL = new Set(["closed", "rejected", "cancelled"]);
export const SUPERVISORS = ["admin", "dispatcher"];
const TAIL_S = 300;  // how much of each officer's track the map draws behind him
const TOAST_S = 20;  // a new violation's pop-up stays this long (or until clicked)
const KEEP_DONE = 300;  // ended tickets the board keeps (a wall runs for days; the API has the rest)

const OPEN = ["new", "reassigned", "dispatched", "accepted", "on_scene", "suspended", "resolved", "verified"];

// Every open ticket (page after page: however old) and the last ones reported.
async function loadTickets() {
  const tickets = new Map();
  const open = `/api/tickets?limit=1000&${OPEN.map((s) => `state=${s}`).join("&")}`;
  let page = { next: "" };
  while (page.next !== null) {
    page = await getJson(page.next ? `${open}&cursor=${encodeURIComponent(page.next)}` : open);
    for (const t of page.tickets) tickets.set(t.id, t);
  }
  for (const t of (await getJson("/api/tickets?limit=300")).tickets) tickets.set(t.id, t);
  return { tickets: [...tickets.values()] };
}

class Store extends Topics {
  constructor() {
    super();
    this.me = null;
    this.tickets = new Map();   // id -> ticket, as the API gives it
    this.officers = new Map();  // id -> {id, name, status, lat, lon, fix_time, ticket, tail}
    this.staleS = 120;
    this.alerts = new Map();    // id -> {alert, event}, open alerts
    this.toasts = [];           // new tickets just reported: {ticket, until}
    this.toasted = new Set();   // tickets that have popped up once
    this.cameras = new Map();   // id -> camera (with its live state)
    this.streams = new Map();   // published streams (drones, phones) on this node
    this.presence = new Map();  // user -> presence
    this.basemap = null;        // /api/map
    this.grids = null;          // /api/map/grids
    this.layout = { layout: 9, page: 0, hidden: [], streams: [] };
    this.selected = null;       // the ticket in the detail panel
    this.track = null;          // the selected ticket's track (GeoJSON Feature)
    this.focus = null;          // the stream enlarged on the video wall
    this.view = "wall";         // what the centre shows: the video wall or the statistics
    this.wsUp = false;
    this.seen = new Map();      // ticket id -> when its newest event reached the page (probe)
    this.latencies = [];        // event received -> row on the board, ms (benchmark probe)
  }

  get supervisor() { return this.me && SUPERVISORS.includes(this.me.role); }

  // --- loading -----------------------------------------------------------------

  // Events that arrive while the snapshot is on its way are held and applied after it:
  // the snapshot may have been read before they happened.
  async load() {
    const sup = this.supervisor;
    this.held = this.held || [];
    this.loads = (this.loads || 0) + 1;
    let got;
    try {
      got = await Promise.all([
        getJson("/api/cameras"),
        getJson("/api/streams"),
        sup ? loadTickets() : null,
        sup ? getJson(`/api/officers?tail_s=${TAIL_S}`) : null,
        sup ? getJson("/api/alerts") : null,
      ]);
    } catch (err) {
      if (--this.loads === 0) this.replay();
      throw err;
    }
    this.apply(...got);
    if (--this.loads === 0) this.replay();
  }

  replay() {
    const held = this.held || [];
    this.held = null;
    for (const m of held) this.onEvent(m);
  }

  apply(cameras, streams, tickets, officers, alerts) {
    const sup = this.supervisor;
    this.cameras = new Map(cameras.cameras.map((c) => [c.id, c]));
    this.streams = new Map(streams.streams.map((s) => [s.id, s]));
    if (sup) {
      this.tickets = new Map(tickets.tickets.map((t) => [t.id, t]));
      this.staleS = officers.stale_s;
      this.officers = new Map(officers.officers.map((o) => [o.id, o]));
      const open = new Map(alerts.alerts.map((a) => [a.id, { alert: a, event: null }]));
      for (const [id, a] of this.alerts) if (open.has(id)) open.get(id).event = a.event;
      this.alerts = open;
    }
    this.emit("cameras", "streams", "tickets", "officers", "alerts");
  }

  async loadStatic() {
    const [layout, basemap] = await Promise.all([
      getJson("/api/me/layout"),
      this.supervisor ? getJson("/api/map") : null,
    ]);
    this.layout = layout;
    this.basemap = basemap;
    if (basemap) await this.loadGrids();
    this.emit("layout", "map");
  }

  async loadGrids() {
    if (!this.basemap || !this.basemap.grids.count) return;
    this.grids = await getJson("/api/map/grids");
    this.emit("grids");
  }

  // The live state of the cameras on the wall now (online, codec, last error).
  async pollCameras(ids) {
    if (!ids.length) return;
    const q = ids.map((id) => `id=${encodeURIComponent(id)}`).join("&");
    const { cameras } = await getJson(`/api/cameras?${q}`);
    for (const c of cameras) this.cameras.set(c.id, c);
    this.emit("camera-state");
  }

  // A publisher was just asked to start: look for its stream every second for a while.
  expectStream(id, seconds = 30) {
    const until = Date.now() + seconds * 1000;
    const look = () => this.pollStreams().catch(() => {}).then(() => {
      if (!this.streams.get(id)?.online && Date.now() < until) setTimeout(look, 1000);
    });
    look();
  }

  async pollStreams() {
    const { streams } = await getJson("/api/streams");
    this.streams = new Map(streams.map((s) => [s.id, s]));
    this.emit("streams");
  }

  // --- live events ----------------------------------------------------------------

  onEvent(m) {
    if (this.held) { this.held.push(m); return; }
    if (m.alert) this.addAlert(m);
    if (m.type === "alert.ack") {
      this.alerts.delete(m.alert.id);
      this.emit("alerts");
    } else if ((m.type.startsWith("ticket.") || m.alert) && m.ticket && typeof m.ticket === "object") {
      this.putTicket(m.ticket, m.type);
    } else if (m.type === "officers") {
      this.staleS = m.stale_s;
      for (const o of m.officers) this.putOfficer(o);
      this.emit("officers");
    } else if (m.type === "camera") {
      this.refreshCamera(m.id, m.deleted).catch(() => {});
    }
    if (m.type === "warning" && m.grid) this.loadGrids().catch(() => {});
  }

  putTicket(ticket, type) {
    if (type === "ticket.created" && !this.toasted.has(ticket.id)) {
      this.toasted.add(ticket.id);
      this.toast(ticket);
    }
    const known = this.tickets.get(ticket.id);
    if (known && known.updated_at >= ticket.updated_at) return;  // seen already, or older
    this.tickets.set(ticket.id, ticket);
    this.seen.set(ticket.id, performance.now());
    if (TERMINAL.has(ticket.state)) this.prune();
    this.emit("tickets");
    if (this.selected === ticket.id) this.emit("selected");
  }

  // Only the newest KEEP_DONE ended tickets stay in the page, so its memory stays flat.
  prune() {
    const done = [...this.tickets.values()].filter((t) => TERMINAL.has(t.state));
    if (done.length <= KEEP_DONE + 50) return;
    done.sort((a, b) => a.updated_at - b.updated_at);
    for (const t of done.slice(0, done.length - KEEP_DONE)) {
      if (t.id === this.selected) continue;
      this.tickets.delete(t.id);
      this.seen.delete(t.id);
    }
  }

  putOfficer(o) {
    const known = this.officers.get(o.id) || { tail: [] };
    const tail = known.tail || [];
    if (o.fix_time && o.fix_time !== known.fix_time) tail.push([o.lon, o.lat, o.fix_time]);
    const cut = o.fix_time - TAIL_S;
    while (tail.length && tail[0][2] < cut) tail.shift();
    this.officers.set(o.id, { ...known, ...o, tail });
  }

  // How an officer stands now: a fix older than stale_s makes him stale on screen too.
  officerStatus(o) {
    if (o.status === "off_duty") return o.status;
    if (!o.fix_time || Date.now() / 1000 - o.fix_time > this.staleS) return "stale";
    return o.status;
  }

  async refreshCamera(id, deleted) {
    if (deleted) {
      this.cameras.delete(id);
      if (this.focus === id) this.focus = null;
    } else {
      const { cameras } = await getJson(`/api/cameras?id=${encodeURIComponent(id)}`);
      for (const c of cameras) this.cameras.set(c.id, c);
    }
    this.emit("cameras");
  }

  // --- alerts and pop-ups ---------------------------------------------------------

  addAlert(event) {
    if (this.alerts.has(event.alert.id)) return;
    this.alerts.set(event.alert.id, { alert: event.alert, event });
    this.emit("alerts");
    beep(event.alert.level === "critical" ? 3 : 2, event.alert.level === "critical");
  }

  async ackAlert(id) {
    await postJson(`/api/alerts/${encodeURIComponent(id)}/ack`, {});
    this.alerts.delete(id);
    this.emit("alerts");
  }

  toast(ticket) {
    this.toasts = [{ ticket, until: Date.now() + TOAST_S * 1000 },
      ...this.toasts.filter((t) => t.ticket.id !== ticket.id)].slice(0, 4);
    this.emit("toasts");
    beep(1);
    setTimeout(() => this.emit("toasts"), TOAST_S * 1000 + 50);
  }

  dismissToast(id) {
    this.toasts = this.toasts.filter((t) => t.ticket.id !== id);
    this.emit("toasts");
  }

  // --- selection, video wall ------------------------------------------------------

  select(ticketId) {
    this.selected = ticketId;
    this.track = null;
    this.emit("selected", "track");
  }

  setTrack(feature) { this.track = feature; this.emit("track"); }

  // Every source the wall can show, cameras first: [{id, name, kind, online}].
  sources() {
    const cams = [...this.cameras.values()]
      .sort((a, b) => (a.name || a.id).localeCompare(b.name || b.id))
      .map((c) => ({ id: c.id, name: c.name || c.id, kind: "camera" }));
    const published = [...this.streams.values()].map((s) => ({ id: s.id, name: s.id, kind: s.via }));
    return [...cams, ...published];
  }

  // What the wall shows, in order: the cameras not hidden, then the streams put on it.
  shown() {
    const hidden = new Set(this.layout.hidden);
    const cams = this.sources().filter((s) => s.kind === "camera" && !hidden.has(s.id));
    const streams = this.layout.streams.filter((id) => !this.cameras.has(id))
      .map((id) => ({ id, name: id, kind: this.streams.get(id)?.via || "stream" }));
    return [...streams, ...cams];
  }

  // A published stream onto the wall, first, and the page that shows it.
  addStream(id) {
    if (!this.layout.streams.includes(id)) this.setLayout({ streams: [id, ...this.layout.streams], page: 0 });
  }

  setLayout(changes) {
    this.layout = { ...this.layout, ...changes };
    this.emit("layout");
    clearTimeout(this.saving);
    this.saving = setTimeout(() => postJson("/api/me/layout", this.layout, "PUT").catch(() => {}), 500);
  }

  // Show a source on the wall and enlarge it (a camera clicked on the map).
  openVideo(id) {
    const changes = {};
    if (this.layout.hidden.includes(id)) changes.hidden = this.layout.hidden.filter((h) => h !== id);
    if (!this.cameras.has(id) && !this.layout.streams.includes(id)) changes.streams = [id, ...this.layout.streams];
    if (Object.keys(changes).length) this.setLayout(changes);
    this.focus = id;
    this.view = "wall";
    this.emit("focus", "view");
  }

  setFocus(id) { this.focus = id; this.emit("focus"); }
  setView(view) { this.view = view; this.emit("view"); }
  setWs(up) { this.wsUp = up; this.emit("ws"); }

  // The board calls this once rows are on screen: event-to-row latency, for the benchmark.
  rendered(ids) {
    const t = performance.now();
    for (const id of ids) {
      const at = this.seen.get(id);
      if (at !== undefined) { this.latencies.push(t - at); this.seen.delete(id); }
    }
    if (this.latencies.length > 10000) this.latencies.splice(0, 5000);
  }
}

export const store = new Store();
