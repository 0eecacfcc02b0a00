// The operations screens (admin and dispatcher): cameras, their zones drawn on the
// picture, PTZ, and recordings on a timeline. One page; the part shown follows the URL's
// hash (#/cameras, #/cameras/new, #/cameras/ID, #/cameras/ID/zones, #/recordings/ID), so
// every screen can be bookmarked, reloaded and opened from the wall.
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { $, api, bindLogin } from "../common.js";
import { html } from "../ui.js";
import { CameraForm, CameraList } from "./cameras.js";
import { CameraPage } from "./camera.js";
import { ZoneEditor } from "./zones.js";
import { Recordings } from "./recordings.js";

export const OPS_ROLES = ["admin", "dispatcher"];

// The hash as a route: [screen, camera id or null]. Camera ids are [a-z0-9_-], so they
// need no decoding beyond decodeURIComponent.
export function route(hash = location.hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "recordings") return ["recordings", parts[1] || null];
  if (parts[0] !== "cameras" || !parts[1]) return ["cameras", null];
  if (parts[1] === "new") return ["new", null];
  if (parts[2] === "zones") return ["zones", parts[1]];
  return ["camera", parts[1]];
}

export function go(path) { location.hash = path; }

// Unsaved changes, while `dirty`: the browser asks before the page goes, and `question`
// is asked before a link within the page takes it elsewhere.
export function useLeaveGuard(dirty, question) {
  const dirtyRef = useRef(dirty);
  dirtyRef.current = dirty;
  useEffect(() => {
    const unload = (e) => { if (dirtyRef.current) { e.preventDefault(); e.returnValue = ""; } };
    const link = (e) => {
      const a = e.target.closest && e.target.closest("a[href]");
      if (!a || !dirtyRef.current || a.getAttribute("href") === location.hash) return;
      if (!confirm(question)) { e.preventDefault(); e.stopPropagation(); }
    };
    addEventListener("beforeunload", unload);
    document.addEventListener("click", link, true);
    return () => { removeEventListener("beforeunload", unload); document.removeEventListener("click", link, true); };
  }, []);
}

function useRoute() {
  const [r, setR] = useState(route());
  useEffect(() => {
    const on = () => setR(route());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return r;
}

function Screen({ me }) {
  const [screen, id] = useRoute();
  if (screen === "new") return html`<${CameraForm} me=${me} />`;
  if (screen === "camera") return html`<${CameraPage} me=${me} cameraId=${id} key=${id} />`;
  if (screen === "zones") return html`<${ZoneEditor} me=${me} cameraId=${id} key=${id} />`;
  if (screen === "recordings") return html`<${Recordings} me=${me} cameraId=${id} key=${id || ""} />`;
  return html`<${CameraList} me=${me} />`;
}

// The header every signed-in user gets; `children`: the screens' links.
function Header({ me, children = null }) {
  return html`
    <header>
      <h1>Gridwatch</h1>
      ${children}
      <span id="who">${me.username} (${me.role})</span>
      <button id="logout" onClick=${logout}>Log out</button>
    </header>`;
}

function App({ me }) {
  const [screen] = useRoute();
  const on = (s) => (s.includes(screen) ? "on" : "");
  return html`
    <${Header} me=${me}>
      <nav>
        <a href="/" id="to-wall">Wall</a>
        <a href="#/cameras" id="to-cameras" class=${on(["cameras", "new", "camera", "zones"])}>Cameras</a>
        <a href="#/recordings" id="to-recordings" class=${on(["recordings"])}>Recordings</a>
      </nav>
    </${Header}>
    <main class="ops"><${Screen} me=${me} /></main>`;
}

// A viewer or an officer: where his own page is, and a way to sign in as someone else.
function NotForRole({ me }) {
  return html`
    <${Header} me=${me} />
    <main class="ops"><p role="alert" id="not-for-role">The operations screens are for administrators and
      dispatchers; you are signed in as ${me.role}.${" "}<a href=${me.role === "officer" ? "/phone" : "/"}
      id="to-own-page">Go to your page</a>.</p></main>`;
}

async function show() {
  const me = await (await api("/api/me")).json();
  $("#login").hidden = true;
  render(OPS_ROLES.includes(me.role) ? html`<${App} me=${me} />` : html`<${NotForRole} me=${me} />`, $("#app"));
}

function showLogin() {
  render(null, $("#app"));
  $("#login").hidden = false;
}

async function logout() {
  await api("/api/logout", { method: "POST" }).catch(() => {});
  showLogin();
}

document.addEventListener("signed-out", showLogin);
bindLogin($("#login"), $("#login-error"), () => show().catch(showLogin));
show().catch(showLogin);
