// Gema console: the only script. Every page works without it; it adds live updates from
// server-sent events (elements with data-live="<stream url>") and nothing else.
"use strict";

(function () {
  function updatePresence(msg) {
    // A registry row, or the health card of a device's page.
    var row = document.querySelector('[data-device-id="' + CSS.escape(msg.id) + '"]');
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

  // A payment applied since the page was read: its row (rendered by the server, the same
  // markup as the page's rows) goes on top, or replaces the row already shown.
  function addPayment(msg, table) {
    var body = table.tBodies[0];
    if (!body) return;
    var old = body.querySelector('tr[data-transaction-id="' + CSS.escape(msg.id) + '"]');
    var holder = document.createElement("tbody");
    holder.innerHTML = msg.html;
    var row = holder.querySelector("tr");
    if (!row) return;
    row.classList.add("new");
    if (old) {
      old.replaceWith(row);
    } else {
      body.insertBefore(row, body.firstChild);
    }
    var wrap = table.closest(".table-wrap");
    if (wrap) wrap.hidden = false;
    var empty = document.querySelector("[data-empty]");
    if (empty) empty.hidden = true;
  }

  var handlers = { presence: updatePresence, payment: addPayment };

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
