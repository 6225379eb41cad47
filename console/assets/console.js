// Gema console: the only script. Every page works without it; it adds live updates from
// server-sent events (elements with data-live="<stream url>") and nothing else.
"use strict";

(function () {
  function updatePresence(msg) {
    var row = document.querySelector('tr[data-device-id="' + CSS.escape(msg.id) + '"]');
    if (!row) return;
    var cell = row.querySelector("[data-presence]");
    if (cell) {
      cell.setAttribute("data-state", msg.state);
      var badge = document.createElement("span");
      badge.className = "badge " + msg.state;
      badge.textContent = msg.text;
      cell.replaceChildren(badge);
    }
    var reasons = row.querySelector("[data-reasons]");
    if (reasons) reasons.textContent = msg.reasons;
  }

  var handlers = { presence: updatePresence };

  function listen(el) {
    var url = el.getAttribute("data-live");
    if (!url || typeof EventSource === "undefined") return;
    var source = new EventSource(url);
    Object.keys(handlers).forEach(function (name) {
      source.addEventListener(name, function (e) {
        try {
          handlers[name](JSON.parse(e.data), el);
        } catch (err) {
          // A malformed event is skipped; the next one carries the full state again.
        }
      });
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // Other pages register their own event kinds here.
  window.gemaLive = handlers;

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(listen);
  });
})();
