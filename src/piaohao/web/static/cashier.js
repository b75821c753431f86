/* The cashier's small progressive layer. Without it every page still works (plain forms, links
   and a refresh); with it: the time left counts down, a busy form cannot be sent twice, and the
   QR and result pages follow the trade's real status (read from the JSON twin of pay_url, a
   bounded number of times) instead of trusting the buyer's return. */
(function () {
  "use strict";

  function clockText(seconds) {
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    var mm = (m < 10 ? "0" : "") + m, ss = (s < 10 ? "0" : "") + s;
    return h ? h + ":" + mm + ":" + ss : mm + ":" + ss;
  }

  function countdown() {
    var timer = document.querySelector("[data-seconds-left]");
    if (!timer) { return; }
    // The server said how many seconds were left when it drew the page; count from our own
    // monotonic clock, so a wrong clock on the phone changes nothing.
    var left0 = parseInt(timer.getAttribute("data-seconds-left"), 10) || 0;
    var start = performance.now();
    function tick() {
      var left = Math.max(0, left0 - Math.floor((performance.now() - start) / 1000));
      timer.textContent = clockText(left);
      if (left <= 60 && timer.parentNode) { timer.parentNode.classList.add("ending"); }
      if (left > 0) { return; }
      window.clearInterval(handle);
      expire();
    }
    var handle = window.setInterval(tick, 1000);
    tick();
  }

  function expire() {
    var methods = document.getElementById("methods");
    if (methods) { methods.remove(); }  // no pay button once the time is up
    var note = document.getElementById("expired-note");
    if (note) { note.hidden = false; }
    var timer = document.querySelector("[data-seconds-left]");
    if (timer) { timer.textContent = "expired"; }
  }

  function busyButtons() {
    document.addEventListener("submit", function (event) {
      var button = event.target.querySelector("button[type=submit]");
      if (!button) { return; }
      if (button.getAttribute("aria-busy") === "true") { event.preventDefault(); return; }
      button.setAttribute("aria-busy", "true");
      button.setAttribute("data-label", button.innerHTML);
      button.textContent = "Working…";
    });
    // Coming back with the browser's Back button shows the page from its cache: ready again.
    window.addEventListener("pageshow", function (event) {
      if (!event.persisted) { return; }
      document.querySelectorAll("button[aria-busy=true]").forEach(function (b) {
        b.removeAttribute("aria-busy");
        b.innerHTML = b.getAttribute("data-label");
      });
    });
  }

  function poll() {
    var box = document.querySelector("[data-poll-url]");
    if (!box) { return; }
    var url = box.getAttribute("data-poll-url");
    var next = box.getAttribute("data-poll-next");
    var intervalMs = (parseInt(box.getAttribute("data-poll-interval-s"), 10) || 2) * 1000;
    var triesMax = parseInt(box.getAttribute("data-poll-tries-max"), 10) || 150;
    var status = document.getElementById("poll-status");
    var tries = 0;
    function again() {
      tries += 1;
      if (tries > triesMax) {
        if (status) { status.textContent = "Still no confirmation. Refresh this page to check again."; }
        return;
      }
      fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store"})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (view) {
          if (view && view.status && view.status !== "pending") { window.location.replace(next); return; }
          window.setTimeout(again, intervalMs);
        }, function () { window.setTimeout(again, intervalMs); });
    }
    window.setTimeout(again, intervalMs);
  }

  countdown();
  busyButtons();
  poll();
}());
