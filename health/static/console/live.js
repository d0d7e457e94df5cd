/* Payment Ops console: refreshes [data-live-url] regions in place.
 * Static file only (the Content-Security-Policy allows no inline script). Each region is
 * fetched every data-live-interval seconds as an HTML fragment rendered by the server; a
 * fragment that carries data-final stops the polling (a finished drill). */
(function () {
  "use strict";

  function statusLabel(text) {
    var label = document.querySelector("[data-live-status]");
    if (label) { label.textContent = text; }
  }

  function start(region) {
    var url = region.getAttribute("data-live-url");
    var seconds = parseFloat(region.getAttribute("data-live-interval") || "30");
    if (!url || !(seconds > 0) || region.hasAttribute("data-live-final")) { return; }
    var busy = false;
    var timer = null;

    function tick() {
      if (busy) { return; }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" }, cache: "no-store" })
        .then(function (response) {
          // A redirect means the session ended: the login page is not a fragment.
          if (!response.ok || response.redirected) { throw new Error("HTTP " + response.status); }
          return response.text();
        })
        .then(function (html) {
          region.innerHTML = html;
          region.setAttribute("data-live-refreshed", new Date().toISOString());
          statusLabel("updated " + new Date().toISOString().slice(11, 19) + " UTC");
          if (region.querySelector("[data-final]")) {
            window.clearInterval(timer);
            region.setAttribute("data-live-final", "");
          }
        })
        .catch(function (error) {
          statusLabel("refresh failed (" + error.message + "); retrying");
        })
        .then(function () { busy = false; });
    }

    timer = window.setInterval(tick, seconds * 1000);
  }

  function init() {
    var regions = document.querySelectorAll("[data-live-url]");
    for (var i = 0; i < regions.length; i++) { start(regions[i]); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
