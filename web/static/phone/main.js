// The officer's phone page, his whole tool: presence, tickets from offer to resolution,
// GPS that keeps reporting, calls, his camera shared with his consent, on and off duty.
// It starts from its own cache when the server cannot be reached, keeps his position
// meanwhile, and catches up when the connection is back.
import { render } from "preact";
import { $, api, bindLogin, captures, getJson, postJson, Signal } from "../common.js";
import { html, label, useTick, useTopics } from "../ui.js";
import { CallPanel, Calls } from "./calls.js";
import { CameraPanel, CameraShare } from "./camera.js";
import { Gps } from "./gps.js";
import { phone } from "./state.js";
import { History, Offer, Working } from "./tickets.js";

const ME_KEY = "gw-me";
let signal = null, gps = null, calls = null, share = null;

function Status() {
  useTopics(phone, "gps", "link", "presence", "duty");
  useTick(5000);
  const g = phone.gps;
  const gpsText = { ok: `GPS ±${g.accuracy == null ? "?" : Math.round(g.accuracy)} m`, searching: "GPS: searching",
    denied: "GPS: not allowed", lost: "GPS: no signal", unavailable: "GPS: none" }[g.state];
  const fresh = g.at && Date.now() / 1000 - g.at < 60;
  return html`
    <div id="status-bar">
      <span id="status" data-state=${phone.presence}>${label(phone.presence)}</span>
      <span id="gps-state" data-state=${g.state} class=${fresh ? "" : "old"}>${gpsText}</span>
      <span id="link-state" data-state=${phone.link && phone.reachable ? "online" : "offline"}>
        ${phone.link && phone.reachable ? "online" : "offline"}${g.queued ? ` · ${g.queued} fix${g.queued === 1 ? "" : "es"} waiting` : ""}</span>
      <label class="duty"><input id="on-duty" type="checkbox" checked=${phone.me.on_duty}
        onChange=${(e) => setDuty(e.target.checked)}/> on duty</label>
    </div>`;
}

function Desks() {
  useTopics(phone, "desks", "call");
  return html`
    <section class="card">
      <h2>Command centre</h2>
      <ul id="desks">
        ${[...phone.desks.entries()].map(([user, p]) => html`
          <li key=${user} data-user=${user}>${user} (${label(p.status)})
            <button disabled=${p.status !== "available" || !!calls.call}
                    onClick=${() => signal.send({ type: "call.invite", to: user })}>Call</button></li>`)}
      </ul>
    </section>`;
}

function Tickets() {
  useTopics(phone, "tickets");
  const offered = phone.offered();
  const current = phone.current();
  return html`
    ${offered ? html`<${Offer} key=${offered.id} ticket=${offered} />` : null}
    ${current ? html`<${Working} key=${current.id} ticket=${current} />` : null}
    ${!offered && !current ? html`<section class="card dim" id="idle">No case for you now${phone.me.on_duty ? "" : " (off duty)"}.</section>` : null}`;
}

function App() {
  useTopics(phone, "link", "notice");
  const offline = !(phone.link && phone.reachable);
  return html`
    <header>
      <h1>Gridwatch</h1>
      <span id="who">${phone.me.name || phone.me.username}</span>
      <button id="logout" onClick=${logout}>Log out</button>
    </header>
    ${offline ? html`<div id="offline-banner" role="alert">Offline — your position is kept and sent when the
      connection is back.</div>` : null}
    <main id="main">
      <${Status} />
      <${CameraPanel} share=${share} />
      <${CallPanel} calls=${calls} />
      <${Tickets} />
      <${Desks} />
      <${History} />
      <p id="notice" role="status">${phone.notice}</p>
    </main>`;
}

async function setDuty(onDuty) {
  try {
    await postJson(`/api/officers/${encodeURIComponent(phone.me.username)}/duty`, { on_duty: onDuty });
    phone.me = { ...phone.me, on_duty: onDuty };
    localStorage.setItem(ME_KEY, JSON.stringify(phone.me));
    phone.emit("duty");
  } catch (e) { phone.set({ notice: e.message }, "notice"); }
}

function onPresence(p) {
  if (p.user === phone.me.username) { phone.set({ presence: p.status }, "presence"); return; }
  if (!["admin", "dispatcher"].includes(p.role) && !phone.desks.has(p.user)) return;
  if (p.status === "offline") phone.desks.delete(p.user); else phone.desks.set(p.user, p);
  phone.emit("desks");
}

async function onMessage(m) {
  if (m.type === "hello") {
    phone.set({ link: true, reachable: true }, "link");
    await phone.loadTickets();
    gps.flush();
  } else if (m.type === "presence.list") {
    phone.desks.clear();
    for (const p of m.users) onPresence(p);
  } else if (m.type === "presence") {
    onPresence(m);
  } else if (m.type === "ticket.reminder") {
    phone.reminders.set(m.ticket.id, { step: m.step, at: Date.now() / 1000 });
    phone.putTicket(m.ticket);
    phone.emit("reminders");
  } else if (m.type.startsWith("ticket.") && m.ticket && typeof m.ticket === "object") {
    phone.putTicket(m.ticket);
  } else if (m.type === "publish.request") {
    share.onRequest(m);
  } else if (m.type.startsWith("call.") || m.type === "sdp" || m.type === "ice") {
    await calls.onMessage(m);
  } else if (m.type === "error") {
    phone.set({ notice: m.message }, "notice");
  }
}

function run(me) {
  phone.me = me;
  $("#login").hidden = true;
  gps = new Gps(me.username, me.heartbeat_s || 10);
  signal = new Signal((m) => onMessage(m).catch((err) => phone.set({ notice: err.message }, "notice")),
    (up) => phone.set({ link: up, presence: up ? phone.presence : "offline" }, "link", "presence"));
  calls = new Calls(signal);
  share = new CameraShare(signal);
  phone.cachedTickets();  // until the server answers
  render(html`<${App} />`, $("#app"));
  gps.start();
  window.gwPhone = { phone, gps, calls, captures };  // for tests: what the page holds
}

async function start() {
  let me;
  try {
    me = await getJson("/api/me");
  } catch (err) {
    if (err.status === 401 || err.message === "signed out") { showLogin(); return; }
    me = JSON.parse(localStorage.getItem(ME_KEY) || "null");  // the server is unreachable
    if (!me) { showLogin(); $("#login-error").textContent = "The command centre cannot be reached."; return; }
    phone.reachable = false;
  }
  if (me.role !== "officer") { location.replace("/"); return; }
  localStorage.setItem(ME_KEY, JSON.stringify(me));
  run(me);
}

function stopAll() {
  if (share) share.stop();
  if (calls && calls.call) calls.call.end();
  if (gps) gps.stop();
  if (signal) signal.close();
  signal = gps = calls = share = null;
}

function showLogin() {
  stopAll();
  render(null, $("#app"));
  $("#login").hidden = false;
}

async function logout() {
  if (share) share.stop(true);
  await gps.flush();
  await api("/api/logout", { method: "POST" }).catch(() => {});
  localStorage.removeItem(ME_KEY);
  showLogin();
}

document.addEventListener("signed-out", showLogin);
bindLogin($("#login"), $("#login-error"), () => start());
if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});
start();
