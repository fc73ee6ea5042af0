// Brevet portal: progressive enhancement only (every page works without it).
// Live countdowns for elements with data-expires; when one reaches zero, reload so the page
// shows the grant's new state.
(function () {
  "use strict";
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      var left = Math.max(0, Math.floor((Date.parse(el.getAttribute("data-expires")) - now) / 1000));
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = left === 0 ? "expired" :
        (h > 0 ? h + "h " : "") + m + "m " + (s < 10 ? "0" : "") + s + "s left";
      if (left === 0 && !el.dataset.reloaded) {
        el.dataset.reloaded = "1";
        setTimeout(function () { location.reload(); }, 3000);
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { tick(); setInterval(tick, 1000); });
})();
