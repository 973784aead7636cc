// Stretch Companion's service worker: keeps the page's shell (HTML, script, style, icons)
// so the home-screen app opens even while the box restarts. It never stores an answer
// from /api/ (the box's state, history, settings, pairing) nor a data: URL: only the
// exact shell paths below, fetched from this origin.
"use strict";

const SHELL = __SHELL__;
const CACHE = "shell-__VERSION__";

self.addEventListener("install", (ev) => {
  ev.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (ev) => {
  ev.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

function isShell(request) {
  if (request.method !== "GET") return false;
  const url = new URL(request.url);
  return url.origin === self.location.origin && url.search === "" && SHELL.includes(url.pathname);
}

// The shell: the network first (a new page shows at once), the cache when the box is away.
// Everything else goes straight to the network, untouched.
self.addEventListener("fetch", (ev) => {
  if (!isShell(ev.request)) return;
  const key = new URL(ev.request.url).pathname;  // one entry a path (no #now, no query)
  ev.respondWith(fetch(ev.request).then((response) => {
    if (response.ok && response.type === "basic") {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(key, copy));
    }
    return response;
  }).catch(() => caches.match(key)));
});
