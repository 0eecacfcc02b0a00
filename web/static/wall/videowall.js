// The video wall: 1, 4, 9 or 16 tiles a page, pages when there are more sources than
// tiles, a double-click enlarges a tile, and the layout is kept per user on the server.
// Tiles fill the whole video area, at 4K as at 1080p: rows of equal height, each row's
// tiles sharing its width.
import { useEffect, useRef, useState } from "preact/hooks";
import { PtzPad } from "../ptz.js";
import { Player } from "./player.js";
import { store } from "./store.js";
import { html, useTopics } from "../ui.js";

export const players = new Map();  // stream id -> Player, for the tiles on screen
let listening = null;  // the one tile whose sound plays: a wall of voices is no use

// A speaker drawn, not an emoji: a command centre's machines may have no emoji font.
function speaker(on) {
  return html`<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true">
    <path d="M3 9v6h4l5 5V4L7 9H3z" fill="currentColor"/>
    ${on
      ? html`<path d="M16 8.5a5 5 0 0 1 0 7M18.5 6a8.5 8.5 0 0 1 0 12" stroke="currentColor" stroke-width="2" fill="none"/>`
      : html`<path d="M16 9l6 6M22 9l-6 6" stroke="currentColor" stroke-width="2"/>`}
  </svg>`;
}

// Listen to one tile (muting the one heard before), or mute it when it is the one.
function listenTo(id) {
  listening = listening === id ? null : id;
  for (const [pid, player] of players) player.listen(pid === listening);
  store.emit("listening");
}
const LAYOUTS = [1, 4, 9, 16];
const STATE_TEXT = { connecting: "connecting", playing: "live", nosignal: "no signal", offline: "offline",
  refused: "refused", retrying: "reconnecting", waiting: "waiting" };

export async function closePlayers() {
  await Promise.all([...players.values()].map((p) => p.close()));
  players.clear();
}

// A published stream (drone, phone) is played once its publisher is on; until then the
// tile waits for it rather than asking the server for a stream that is not there.
function Tile({ source, onStop, style }) {
  const box = useRef(null);
  const ready = source.kind === "camera" || !!store.streams.get(source.id)?.online;
  const [state, setState] = useState({ state: "connecting", detail: "" });
  const [steering, setSteering] = useState(false);
  useTopics(store, "listening");
  useEffect(() => {
    if (!ready) {
      setState({ state: "waiting", detail: "the publisher is not sending" });
      return undefined;
    }
    const player = new Player(source.id, (s, detail) => setState({ state: s, detail }));
    players.set(source.id, player);
    box.current.append(player.video);
    const off = store.on("camera-state", () => {
      const cam = store.cameras.get(source.id);
      if (cam) player.showSource(cam.state.online, cam.state.last_error);
    });
    return () => {
      off();
      if (listening === source.id) listening = null;
      if (players.get(source.id) === player) players.delete(source.id);
      player.close();
    };
  }, [source.id, ready]);
  const focused = store.focus === source.id;
  // PTZ for those who may steer (admin, dispatcher), on ONVIF cameras: the pad opens on
  // demand, in a corner, so that it never hides the picture by itself.
  const ptz = store.supervisor && source.kind === "camera" && /^onvif:/i.test(store.cameras.get(source.id)?.source || "");
  return html`
    <div class="tile" style=${style} data-camera=${source.id} data-state=${state.state} data-kind=${source.kind}
         onDblClick=${() => store.setFocus(focused ? null : source.id)}>
      <div class="video" ref=${box}></div>
      <div class="label">
        <span class="name">${source.name}</span>
        ${source.kind !== "camera" ? html`<span class="kind">${source.kind}</span>` : null}
        <span class="state" title=${state.detail}>${STATE_TEXT[state.state] || state.state}</span>
        <button class=${"listen" + (listening === source.id ? " on" : "")} title=${listening === source.id ? "Mute" : "Listen"}
                aria-pressed=${listening === source.id} onClick=${(e) => { e.stopPropagation(); listenTo(source.id); }}>
          ${speaker(listening === source.id)}</button>
        ${ptz ? html`<button class=${"ptz-toggle" + (steering ? " on" : "")} title=${steering ? "Close PTZ" : "Pan, tilt, zoom"}
                aria-pressed=${steering} onClick=${(e) => { e.stopPropagation(); setSteering(!steering); }}>PTZ</button>` : null}
        ${onStop ? html`<button class="stop" title="Stop" onClick=${onStop}>✕</button>` : null}
      </div>
      ${ptz && steering ? html`<div class="ptz-pop"><${PtzPad} cameraId=${source.id} /></div>` : null}
      ${["nosignal", "offline", "refused", "waiting"].includes(state.state)
        ? html`<div class="why">${STATE_TEXT[state.state]}${state.detail ? html`<br/><small>${state.detail}</small>` : null}</div>`
        : null}
    </div>`;
}

// Each tile's share of the area: rows as square as the count allows, the last row's
// tiles wider. One flat, keyed list, so a tile that moves keeps its session.
function placed(tiles) {
  const cols = Math.max(1, Math.ceil(Math.sqrt(tiles.length)));
  const nrows = Math.max(1, Math.ceil(tiles.length / cols));
  return tiles.map((t, i) => {
    const row = Math.floor(i / cols);
    const inRow = row === nrows - 1 ? tiles.length - row * cols : cols;
    return [t, { width: `${100 / inRow}%`, height: `${100 / nrows}%` }];
  });
}

function Sources() {
  useTopics(store, "cameras", "streams", "layout");
  const [open, setOpen] = useState(false);
  const hidden = new Set(store.layout.hidden);
  const onWall = new Set(store.layout.streams);
  const toggle = (s) => {
    if (s.kind === "camera") {
      store.setLayout({ hidden: hidden.has(s.id) ? store.layout.hidden.filter((h) => h !== s.id) : [...store.layout.hidden, s.id] });
    } else {
      if (onWall.has(s.id)) store.setLayout({ streams: store.layout.streams.filter((h) => h !== s.id) });
      else store.addStream(s.id);
    }
  };
  return html`
    <span class="sources">
      <button id="sources-button" onClick=${() => setOpen(!open)}>Sources ▾</button>
      ${open ? html`
        <ul class="menu" id="sources-menu">
          ${store.sources().map((s) => html`
            <li key=${s.id}><label>
              <input type="checkbox" data-source=${s.id}
                     checked=${s.kind === "camera" ? !hidden.has(s.id) : onWall.has(s.id)} onChange=${() => toggle(s)}/>
              ${s.name} ${s.kind !== "camera" ? html`<em>${s.kind}</em>` : null}
            </label></li>`)}
        </ul>` : null}
    </span>`;
}

export function VideoWall({ onStopStream }) {
  useTopics(store, "cameras", "streams", "layout", "focus");
  const shown = store.shown();
  const per = store.layout.layout;
  const pages = Math.max(1, Math.ceil(shown.length / per));
  const page = Math.min(store.layout.page, pages - 1);
  const focused = store.focus && shown.find((s) => s.id === store.focus);
  const tiles = focused ? [focused] : shown.slice(page * per, page * per + per);

  // The server's state of the cameras on screen: why a dark tile is dark.
  const ids = tiles.filter((t) => t.kind === "camera").map((t) => t.id).join(",");
  useEffect(() => {
    const poll = () => store.pollCameras(ids ? ids.split(",") : []).catch(() => {});
    poll();
    const timer = setInterval(poll, 3000);
    return () => clearInterval(timer);
  }, [ids]);

  return html`
    <section id="videowall">
      <div class="toolbar">
        ${LAYOUTS.map((n) => html`
          <button class=${per === n ? "on" : ""} data-layout=${n} title=${`${n} tiles`}
                  onClick=${() => store.setLayout({ layout: n, page: 0 })}>${n}</button>`)}
        <button id="page-prev" disabled=${page === 0} onClick=${() => store.setLayout({ page: page - 1 })}>‹</button>
        <span id="page">${page + 1} / ${pages}</span>
        <button id="page-next" disabled=${page >= pages - 1} onClick=${() => store.setLayout({ page: page + 1 })}>›</button>
        <${Sources} />
        ${focused ? html`<button id="unfocus" onClick=${() => store.setFocus(null)}>Back to ${per} tiles</button>` : null}
      </div>
      <div id="tiles" data-count=${tiles.length}>
        ${tiles.length === 0 ? html`<p class="empty">No sources on the wall: choose some under Sources.</p>` : null}
        ${placed(tiles).map(([s, style]) => html`<${Tile} key=${s.id} source=${s} style=${style}
            onStop=${s.kind !== "camera" && onStopStream ? () => onStopStream(s.id) : null} />`)}
      </div>
    </section>`;
}
