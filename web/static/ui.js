// What every page builds its views from: htm bound to Preact, a small store of topics
// that views subscribe to, and how times, states and evidence are written on screen.
import { h } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);

// Named topics that views subscribe to; topics changed in one task are announced once,
// on the next frame (or soon, when the page is hidden).
export class Topics {
  constructor() {
    this.listeners = new Map();
    this.dirty = new Set();
  }
  on(topic, fn) {
    if (!this.listeners.has(topic)) this.listeners.set(topic, new Set());
    this.listeners.get(topic).add(fn);
    return () => this.listeners.get(topic).delete(fn);
  }
  emit(...topics) {
    const first = this.dirty.size === 0;
    for (const t of topics) this.dirty.add(t);
    if (!first) return;
    const flush = () => {
      const due = [...this.dirty];
      this.dirty.clear();
      for (const t of due) for (const fn of this.listeners.get(t) || []) fn();
    };
    if (document.hidden) setTimeout(flush, 50); else requestAnimationFrame(flush);
  }
}

// Re-render the calling component whenever one of `topics` changes in `store`.
export function useTopics(store, ...topics) {
  const [, bump] = useState(0);
  useEffect(() => {
    const offs = topics.map((t) => store.on(t, () => bump((n) => n + 1)));
    return () => offs.forEach((off) => off());
  }, []);
}

// Re-render every `ms` (ages and countdowns that move on their own).
export function useTick(ms = 1000) {
  const [, bump] = useState(0);
  useEffect(() => {
    const timer = setInterval(() => bump((n) => n + 1), ms);
    return () => clearInterval(timer);
  }, [ms]);
}

export const STATE_LABELS = {
  new: "new", dispatched: "offered", accepted: "accepted", on_scene: "on scene",
  resolved: "resolved", verified: "verified", closed: "closed", rejected: "rejected",
  reassigned: "reassigning", cancelled: "cancelled", suspended: "suspended",
};

export function label(text) { return String(text || "").replaceAll("_", " "); }

export function age(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}

export function clock(unix) {
  if (!unix) return "";
  return new Date(unix * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

export function duration(seconds) {
  if (seconds == null) return "—";
  return seconds < 120 ? `${Math.round(seconds)} s` : `${(seconds / 60).toFixed(1)} min`;
}

export const now = () => Date.now() / 1000;

// A ticket's evidence file URL (names as the ticket lists them).
export function evidenceUrl(ticketId, name) {
  return `/api/tickets/${encodeURIComponent(ticketId)}/evidence/${name.split("/").map(encodeURIComponent).join("/")}`;
}

// The picture that best shows a violation: the confirmation, else the first one there is.
export function snapshotOf(ticket) {
  const pics = (ticket.evidence || []).filter((e) => e.endsWith(".jpg") || e.endsWith(".png"));
  const best = pics.find((e) => e.endsWith("/confirmed.jpg")) || pics[0];
  return best ? evidenceUrl(ticket.id, best) : null;
}

let audio = null;
// A short tone (n beeps) where the browser allows sound; silent where it does not.
export function beep(n, high = false) {
  try {
    audio = audio || new AudioContext();
    if (audio.state === "suspended") audio.resume().catch(() => {});
    for (let i = 0; i < n; i++) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = high ? 988 : 784;
      gain.gain.value = 0.08;
      osc.connect(gain).connect(audio.destination);
      const t = audio.currentTime + i * 0.22;
      osc.start(t);
      osc.stop(t + 0.14);
    }
  } catch { /* no audio device: what is on screen is enough */ }
}
