// What every panel of the wall uses: htm bound to Preact, the store subscription hook,
// and how times, states and people are written on screen.
import { h } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";
import { store } from "./store.js";

export const html = htm.bind(h);

// Re-render the calling component whenever one of `topics` changes in the store.
export function useTopics(...topics) {
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
