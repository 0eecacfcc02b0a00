// GPS that never goes silent: every position the phone reports (watchPosition, high
// accuracy), and a fresh fix at least every heartbeat_s while he stands still, so that the
// centre never takes a waiting officer for a lost one. Fixes go into a queue kept in
// localStorage (it survives a reload) and leave it only once the server has stored them,
// with their own times: offline for a minute, the walk arrives whole when he is back.
import { phone } from "./state.js";

const BATCH = 500;        // fixes per request (the server takes up to 1000)
const MAX_QUEUE = 20000;  // past this the oldest go: days offline, not minutes
const HOLD_S = 600;       // a position the phone has not contradicted stands this long

export class Gps {
  constructor(username, heartbeatS) {
    this.key = `gw-fixes:${username}`;
    this.heartbeatS = heartbeatS;
    this.queue = JSON.parse(localStorage.getItem(this.key) || "[]");
    this.lastTime = this.queue.length ? this.queue[this.queue.length - 1].time : 0;
    this.lastQueued = 0;
    this.report({ queued: this.queue.length });
  }

  start() {
    if (!navigator.geolocation) { this.report({ state: "unavailable" }); return; }
    this.watch = navigator.geolocation.watchPosition((p) => this.take(p), (e) => this.failed(e),
      { enableHighAccuracy: true, maximumAge: 0, timeout: 30000 });
    this.timer = setInterval(() => this.heartbeat(), 1000);
    this.online = () => this.flush();
    window.addEventListener("online", this.online);
    this.flush();
  }

  stop() {
    if (this.watch !== undefined) navigator.geolocation.clearWatch(this.watch);
    clearInterval(this.timer);
    window.removeEventListener("online", this.online);
  }

  // Standing still, watchPosition stays quiet (many phones report only a change): ask
  // for a fresh fix when one is due; if none comes in time, the last position, which the
  // phone has not contradicted, is sent again with the time now ("still here") — for
  // HOLD_S at most, after which he is shown as lost rather than where he once was.
  heartbeat() {
    const t = Date.now() / 1000;
    const wait = Math.min(5, this.heartbeatS / 2);  // asked this early, the fallback is on time
    if (this.asking || t - this.lastQueued < this.heartbeatS - wait) return;
    this.asking = true;
    navigator.geolocation.getCurrentPosition(
      (p) => { this.asking = false; this.take(p, true); },
      (e) => {
        this.asking = false;
        if (e.code === e.TIMEOUT && this.last && t - this.last.time < HOLD_S) this.take(this.last.pos, true);
        else this.failed(e);
      },
      { enableHighAccuracy: true, maximumAge: 0, timeout: wait * 1000 });
  }

  take(pos, heartbeat = false) {
    const c = pos.coords;
    // A heartbeat of a phone whose position has not changed may come back with the
    // previous fix's time; it still says "I am here, now".
    let time = pos.timestamp / 1000;
    if (heartbeat && time <= this.lastTime) time = Date.now() / 1000;
    if (time <= this.lastTime) return;  // the same fix twice
    if (!heartbeat || !this.last || pos !== this.last.pos) this.last = { pos, time };
    const fix = { lat: c.latitude, lon: c.longitude, time };
    if (Number.isFinite(c.accuracy)) fix.accuracy = Math.min(c.accuracy, 10000);
    if (Number.isFinite(c.speed) && c.speed >= 0) fix.speed = Math.min(c.speed, 100);
    if (Number.isFinite(c.heading) && c.heading >= 0) fix.heading = c.heading % 360;
    this.lastTime = time;
    this.lastQueued = Date.now() / 1000;
    this.queue.push(fix);
    if (this.queue.length > MAX_QUEUE) this.queue.splice(0, this.queue.length - MAX_QUEUE);
    this.save();
    this.report({ state: "ok", accuracy: fix.accuracy ?? null, at: time, lat: fix.lat, lon: fix.lon });
    this.flush();
  }

  failed(err) {
    const state = err.code === err.PERMISSION_DENIED ? "denied" : "lost";
    this.report({ state, error: err.message });
  }

  save() {
    try { localStorage.setItem(this.key, JSON.stringify(this.queue)); } catch { /* full: kept in memory */ }
    this.report({ queued: this.queue.length });
  }

  // Send what is queued, oldest first; a fix leaves the queue once the server stored it.
  async flush() {
    if (this.flushing || !this.queue.length) return;
    this.flushing = true;
    try {
      while (this.queue.length) {
        const batch = this.queue.slice(0, BATCH);
        const r = await fetch("/api/tracks", {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify({ fixes: batch }),
        });
        if (r.status === 401) { document.dispatchEvent(new Event("signed-out")); break; }
        if (!r.ok && r.status !== 400) break;  // the server is busy: the next fix tries again
        // 400: fixes the server will never take (a clock far off): dropped, not stuck.
        this.queue.splice(0, batch.length);
        this.save();
      }
      phone.set({ reachable: true }, "link");
    } catch {
      phone.set({ reachable: false }, "link");  // offline: kept, sent with the next fix
    } finally {
      this.flushing = false;
    }
  }

  report(changes) {
    phone.gps = { ...phone.gps, ...changes };
    phone.emit("gps");
  }
}
