// The officer's phone: what it knows (his tickets, reminders, the link to the centre, his
// GPS, a camera request, a call) and what views subscribe to.
import { getJson } from "../common.js";
import { Topics } from "../ui.js";

export const WORKING = new Set(["accepted", "on_scene"]);

class PhoneState extends Topics {
  constructor() {
    super();
    this.me = null;            // /api/me: username, name, on_duty, heartbeat_s
    this.presence = "offline"; // available | in_call | offline, as the centre sees him
    this.link = false;         // /ws up
    this.reachable = true;     // the last request reached the server
    this.gps = { state: "searching", accuracy: null, at: null, queued: 0 };
    this.tickets = new Map();  // his tickets
    this.reminders = new Map(); // ticket id -> {step, at}
    this.desks = new Map();    // dispatchers online: user -> presence
    this.cameraAsk = null;     // {by, stream}: a dispatcher asks for his camera
    this.sharing = null;       // {to, stream} while his camera is shown in the centre
    this.notice = "";
  }

  set(changes, ...topics) { Object.assign(this, changes); this.emit(...topics); }

  // His tickets from the server, kept on the phone too: offline, he still sees his case.
  async loadTickets() {
    const { tickets } = await getJson("/api/tickets?limit=50");
    this.tickets = new Map(tickets.map((t) => [t.id, t]));
    this.saveTickets();
    this.emit("tickets");
  }

  cachedTickets() {
    const kept = JSON.parse(localStorage.getItem(`gw-tickets:${this.me.username}`) || "[]");
    this.tickets = new Map(kept.map((t) => [t.id, t]));
    this.emit("tickets");
  }

  saveTickets() {
    try {
      localStorage.setItem(`gw-tickets:${this.me.username}`, JSON.stringify([...this.tickets.values()]));
    } catch { /* full: the server has them */ }
  }

  putTicket(ticket) {
    const known = this.tickets.get(ticket.id);
    if (known && known.updated_at > ticket.updated_at) return;
    this.tickets.set(ticket.id, ticket);
    this.saveTickets();
    this.emit("tickets");
  }

  // The ticket offered to him now (ringing), and the one he works on.
  offered() {
    return [...this.tickets.values()].find((t) => t.state === "dispatched" && t.assignee === this.me.username);
  }

  current() {
    const mine = [...this.tickets.values()].filter((t) => t.assignee === this.me.username);
    return mine.find((t) => WORKING.has(t.state)) || mine.find((t) => t.state === "resolved");
  }

  history() {
    return [...this.tickets.values()].sort((a, b) => b.updated_at - a.updated_at);
  }
}

export const phone = new PhoneState();
