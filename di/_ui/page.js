// The status page's own script: fetch the live part again every poll and swap it in;
// say "stale" when no new round has arrived for two intervals. It reads, never writes.
"use strict";
(function () {
  var body = document.body;
  var live = document.getElementById("live");
  var stale = document.getElementById("stale");
  var freshness = document.getElementById("freshness");
  var interval = (parseFloat(body.getAttribute("data-interval")) || 5) * 1000;
  var poll = Math.max(250, Math.min(interval / 2, 5000));
  var version = null;
  var changed = Date.now();
  var busy = false;

  function current() {
    var summary = live.querySelector(".summary");
    return summary ? summary.getAttribute("data-version") : null;
  }

  function mark() {
    var quiet = Date.now() - changed;
    var isStale = quiet > 2 * interval + poll;
    body.classList.toggle("stale", isStale);
    stale.hidden = !isStale;
    if (isStale) {
      stale.textContent = "Stale: no new round for " + Math.round(quiet / 1000) + " s";
    }
  }

  function tick() {
    if (busy) {
      return;
    }
    busy = true;
    fetch("ui/live", { cache: "no-store", credentials: "same-origin" })
      .then(function (answer) {
        if (!answer.ok) {
          throw new Error("HTTP " + answer.status);
        }
        return answer.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        var now = current();
        if (now !== version) {
          version = now;
          changed = Date.now();
        }
        freshness.textContent = "Live: polled " + new Date().toISOString().slice(11, 19) + " UTC";
      })
      .catch(function () {
        freshness.textContent = "Live: the server did not answer";
      })
      .then(function () {
        busy = false;
        mark();
      });
  }

  version = current();
  body.classList.add("js");
  freshness.textContent = "Live";
  setInterval(tick, poll);
  setInterval(mark, 1000);
})();
