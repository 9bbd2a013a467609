// fjord's live updates: the server sends a "change" event over
// Server-Sent Events whenever an app, mirror or repo changes; when the
// change concerns this page (body[data-live]), the page fetches itself
// again and swaps its #live region in place. No framework, no build step.
(function () {
  "use strict";
  var want = document.body.getAttribute("data-live");
  var region = document.getElementById("live");
  var state = document.getElementById("live-state");
  if (!want || !region || !window.EventSource) return;

  function concerns(ev) {
    if (want === "apps") return ev.kind === "app" || ev.kind === "app-deleted";
    if (want.indexOf("app:") === 0) return (ev.kind === "app" || ev.kind === "app-deleted") && ev.name === want.slice(4);
    if (want === "mirrors") return ev.kind === "mirror" || ev.kind === "refs";
    if (want === "repos") return ev.kind === "refs" || ev.kind === "mirror";
    return false;
  }

  // One refresh at a time; events during a refresh cause one more.
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (resp) {
        // Logged out, or the app is gone: the whole page says so.
        if (resp.status === 401 || resp.status === 404) { location.reload(); return null; }
        return resp.text();
      })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var next = doc.getElementById("live");
        if (next) {
          region.innerHTML = next.innerHTML;
          window.fjordLiveUpdated = Date.now();
          document.dispatchEvent(new CustomEvent("fjord:updated"));
        }
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  // After a lost stream (fjord restarted) changes may have been missed:
  // refresh once it is back.
  var lost = false;
  var es = new EventSource("/ui/events");
  es.addEventListener("open", function () {
    if (state) state.textContent = "Live: updates as they happen.";
    if (lost) { lost = false; refresh(); }
  });
  es.addEventListener("error", function () {
    lost = true;
    if (state) state.textContent = "Live updates paused: reconnecting…";
  });
  es.addEventListener("change", function (e) {
    var ev;
    try { ev = JSON.parse(e.data); } catch (x) { return; }
    if (concerns(ev)) refresh();
  });
})();
