// The officer's page as an installed app: its own files are kept on the phone, so the
// page opens (and keeps his GPS fixes) while the command centre cannot be reached.
// Network first, the cache when the network fails: an update reaches the phone at the
// next start with a connection. The API is never cached.
const CACHE = "gridwatch-phone-v1";
const SHELL = [
  "/phone",
  "/static/phone.webmanifest", "/static/base.css", "/static/phone.css",
  "/static/common.js", "/static/ui.js",
  "/static/phone/main.js", "/static/phone/state.js", "/static/phone/gps.js",
  "/static/phone/tickets.js", "/static/phone/camera.js", "/static/phone/calls.js",
  "/static/icons/icon-192.png", "/static/icons/icon-512.png", "/static/icons/icon-512-maskable.png",
  "/vendor/preact/preact.mjs", "/vendor/preact-hooks/hooks.mjs", "/vendor/htm/htm.mjs",
  "/vendor/leaflet/leaflet-src.esm.js", "/vendor/leaflet/leaflet.css",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin || !SHELL.includes(url.pathname)) return;
  event.respondWith(fetch(event.request).then((response) => {
    if (response.ok) {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(url.pathname, copy));
    }
    return response;
  }).catch(() => caches.match(url.pathname)));
});
