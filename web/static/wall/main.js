// The command wall: sign in, then one screen with the alerts and the ticket board, the
// video wall (or the statistics), the map and the officers. An officer who opens it is
// sent to his phone page; a viewer gets the video wall alone.
import { render } from "preact";
import { $, api, bindLogin, Signal } from "../common.js";
import { Alerts, Toasts } from "./alerts.js";
import { Board } from "./board.js";
import { desk, DeskPanel, startDesk } from "./desk.js";
import { Detail } from "./detail.js";
import { MapPanel, mapLayers } from "./map.js";
import { Stats } from "./stats.js";
import { store } from "./store.js";
import { html, useTopics } from "../ui.js";
import { closePlayers, players, VideoWall } from "./videowall.js";

let signal = null;
let timers = [];

function Banner() {
  useTopics(store, "ws");
  return store.wsUp ? null : html`<div id="ws-banner" role="alert">Connection to the server lost — live
    events are paused; reconnecting…</div>`;
}

function Header() {
  useTopics(store, "alerts", "view");
  const me = store.me;
  return html`
    <header>
      <h1>Gridwatch</h1>
      ${store.supervisor ? html`
        <nav>
          <button id="show-wall" class=${store.view === "wall" ? "on" : ""} onClick=${() => store.setView("wall")}>Video</button>
          <button id="show-stats" class=${store.view === "stats" ? "on" : ""} onClick=${() => store.setView("stats")}>Statistics</button>
        </nav>
        <a id="to-ops" href="/ops" target="_blank" rel="noopener">Operations</a>
        <span id="alert-count" data-count=${store.alerts.size}>${store.alerts.size} alert${store.alerts.size === 1 ? "" : "s"}</span>` : null}
      <span id="who">${me.username} (${me.role})</span>
      <button id="logout" onClick=${logout}>Log out</button>
    </header>`;
}

function Centre() {
  useTopics(store, "view");
  return store.view === "stats" && store.supervisor
    ? html`<${Stats} />`
    : html`<${VideoWall} onStopStream=${desk ? (id) => desk.stopStream(id) : null} />`;
}

function App() {
  const sup = store.supervisor;
  return html`
    <${Header} />
    <${Banner} />
    <main class=${sup ? "wall dispatch" : "wall video-only"}>
      ${sup ? html`<div class="left"><${Alerts} /><${Board} /></div>` : null}
      <div class="centre"><${Centre} /></div>
      ${sup ? html`<div class="right"><${MapPanel} /><${DeskPanel} /></div>` : null}
      ${sup ? html`<${Detail} />` : null}
    </main>
    ${sup ? html`<${Toasts} />` : null}`;
}

async function onMessage(m) {
  if (m.type === "hello") {
    store.setWs(true);
    await store.load();  // what happened while the socket was down
  } else if (desk && (m.type.startsWith("call.") || m.type.startsWith("presence") || m.type.startsWith("publish.")
      || m.type === "sdp" || m.type === "ice" || m.type === "error")) {
    await desk.onMessage(m);
  } else {
    store.onEvent(m);
  }
}

async function showWall() {
  const me = await (await api("/api/me")).json();
  if (me.role === "officer") { location.replace("/phone"); return; }
  store.me = me;
  $("#login").hidden = true;
  await store.loadStatic();
  await store.load();
  signal = new Signal((m) => onMessage(m), (up) => store.setWs(up));
  if (store.supervisor) startDesk(signal);
  render(html`<${App} />`, $("#app"));
  timers = [setInterval(() => store.pollStreams().catch(() => {}), 5000)];
  if (store.supervisor) timers.push(setInterval(() => store.loadGrids().catch(() => {}), 15000));
  window.gw = { store, players, map: () => mapLayers && mapLayers.map, desk: () => desk };  // tests, benchmarks
}

function showLogin() {
  timers.forEach(clearInterval);
  if (signal) { signal.close(); signal = null; }
  if (desk) desk.close();
  render(null, $("#app"));
  closePlayers();
  $("#login").hidden = false;
}

// Video sessions end at the server before the token that opened them is revoked.
async function logout() {
  await closePlayers();
  await api("/api/logout", { method: "POST" }).catch(() => {});
  showLogin();
}

document.addEventListener("signed-out", showLogin);
bindLogin($("#login"), $("#login-error"), () => showWall().catch(showLogin));
showWall().catch(showLogin);
