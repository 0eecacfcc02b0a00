import { $, api, bindLogin, Call, Signal, WhipPublisher } from "./common.js";

// The officer's phone: presence, calls with the command centre, the camera on request,
// and GPS fixes for dispatch.

let signal = null;
let me = null;
let ringing = null;  // {call, from, ice_servers}
let call = null;     // the Call in progress
let handover = null; // the new call's id while a desk hands this call to another
const publisher = new WhipPublisher();
const desks = new Map();

function setStatus(state) {
  $("#status").dataset.state = state;
  $("#status").textContent = state.replace("_", " ");
}

function notice(text) { $("#notice").textContent = text; }

function showDesks() {
  const list = $("#desks");
  list.replaceChildren();
  for (const [user, p] of desks) {
    const li = document.createElement("li");
    li.dataset.user = user;
    li.append(`${user} (${p.status.replace("_", " ")})`);
    const button = document.createElement("button");
    button.textContent = "Call";
    button.disabled = p.status !== "available" || call !== null;
    button.onclick = () => signal.send({ type: "call.invite", to: user });
    li.append(button);
    list.append(li);
  }
}

function onPresence(p) {
  if (p.user === me.username) { setStatus(p.status); return; }
  if (!["admin", "dispatcher"].includes(p.role) && !desks.has(p.user)) return;
  if (p.status === "offline") desks.delete(p.user); else desks.set(p.user, p);
  showDesks();
}

function startCall(id, peer, iceServers) {
  $("#ring").hidden = true;
  ringing = null;
  call = new Call(signal, id, peer, iceServers, { remote: $("#remote"), local: $("#local") });
  $("#call-peer").textContent = peer;
  $("#call").hidden = false;
  showDesks();
  return call;
}

function endCall(reason) {
  if (call) call.end();
  call = null;
  $("#call").hidden = true;
  $("#ring").hidden = true;
  ringing = null;
  if (reason) notice(`Call ended: ${reason.replace("_", " ")}`);
  showDesks();
}

async function onMessage(m) {
  switch (m.type) {
    case "presence.list": for (const p of m.users) onPresence(p); break;
    case "presence": onPresence(m); break;
    case "call.ring":
      ringing = m;
      $("#ring-from").textContent = m.transferred_by ? `${m.from} (from ${m.transferred_by})` : m.from;
      $("#ring").hidden = false;
      break;
    case "call.ringing": startCall(m.call, m.to, m.ice_servers); notice(`Calling ${m.to}…`); break;
    case "call.accept":
      if (handover === m.call) {
        // The new desk took the call: the phone offers to it, as the inviting side.
        const old = call;
        handover = null;
        startCall(m.call, m.by, old.iceServers);
        old.end();
      }
      if (call && call.id === m.call) await call.offer();
      break;
    case "call.transfer": handover = m.new_call; notice(`Handing over to ${m.to}…`); break;
    case "sdp": if (call && call.id === m.call) await call.onSdp(m.sdp); break;
    case "call.record": if (call && call.id === m.call) await call.record(m.stream); break;
    case "ice": if (call && call.id === m.call) await call.onIce(m.candidate); break;
    case "call.hangup":
      // A transferred call goes on with the new desk, which rings as a new call.
      if (call && call.id === m.call && m.reason !== "transferred") endCall(m.reason);
      if (ringing && ringing.call === m.call) endCall(m.reason);
      break;
    case "call.decline": case "call.timeout": case "call.busy":
      if (!call || !m.call || call.id === m.call) endCall(m.type.slice(5));
      break;
    case "publish.request":
      if (m.stop) { publisher.stop(); $("#sharing").hidden = true; break; }
      try {
        await publisher.start(m.stream);
        $("#sharing").hidden = false;
      } catch (err) { notice(`Camera not shared: ${err.message}`); }
      break;
    case "error": notice(m.message); break;
  }
}

document.addEventListener("click", async (e) => {
  if (e.target.id === "accept" && ringing) {
    const r = ringing;
    signal.send({ type: "call.accept", call: r.call });
    startCall(r.call, r.from, r.ice_servers);
  } else if (e.target.id === "decline" && ringing) {
    signal.send({ type: "call.decline", call: ringing.call });
    endCall();
  } else if (e.target.id === "hangup" && call) {
    call.hangup();
    endCall();
  }
});

function sendFixes() {
  if (!navigator.geolocation) return;
  navigator.geolocation.watchPosition((pos) => {
    const c = pos.coords;
    const fix = { type: "track.fix", lat: c.latitude, lon: c.longitude, time: pos.timestamp / 1000 };
    if (c.accuracy != null) fix.accuracy = c.accuracy;
    if (c.speed != null) fix.speed = c.speed;
    if (c.heading != null && !Number.isNaN(c.heading)) fix.heading = c.heading;
    signal.send(fix);
  }, () => {}, { enableHighAccuracy: true });
}

async function showPhone() {
  me = await (await api("/api/me")).json();
  $("#who").textContent = `${me.username} (${me.role})`;
  $("#login").hidden = true;
  $("#main").hidden = false;
  signal = new Signal((m) => onMessage(m).catch((err) => notice(err.message)));
  sendFixes();
}

function showLogin() {
  if (signal) signal.close();
  $("#main").hidden = true;
  $("#login").hidden = false;
}

document.addEventListener("signed-out", showLogin);
bindLogin($("#login"), $("#login-error"), showPhone);
showPhone().catch(showLogin);
