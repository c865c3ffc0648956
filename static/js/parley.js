/* Parley client glue: timers, connection status, small keyboard helpers.
   No inline script anywhere (CSP); everything lives here. */
(function () {
  "use strict";

  function formatElapsed(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    var mm = h > 0 && m < 10 ? "0" + m : String(m);
    var ss = s < 10 ? "0" + s : String(s);
    return h > 0 ? h + ":" + mm + ":" + ss : mm + ":" + ss;
  }

  function tickTimers() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-since"));
      if (!isNaN(since)) {
        el.textContent = formatElapsed((now - since) / 1000);
      }
    });
  }

  function setConnected(connected) {
    var el = document.getElementById("connection-status");
    if (el) {
      el.setAttribute("data-connected", connected ? "true" : "false");
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    tickTimers();
    window.setInterval(tickTimers, 1000);

    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () {
        select.form.submit();
      });
    });
  });

  document.addEventListener("htmx:afterSwap", tickTimers);
  document.addEventListener("htmx:oobAfterSwap", tickTimers);
  document.addEventListener("htmx:wsOpen", function () { setConnected(true); });
  document.addEventListener("htmx:wsClose", function () { setConnected(false); });
  document.addEventListener("htmx:wsAfterMessage", tickTimers);
})();
