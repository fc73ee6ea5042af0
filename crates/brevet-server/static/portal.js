// Brevet portal: progressive enhancement only (every page works without it).
// Live countdowns for elements with data-expires; when one reaches zero, go to data-then (a
// page fetched with GET, never a reload: the one-time credential page is a form's answer) so
// the grant's new state shows.
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
        var then = el.getAttribute("data-then");
        if (then && then.charAt(0) === "/" && then.charAt(1) !== "/") {
          setTimeout(function () { location.assign(then); }, 3000);
        }
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { tick(); setInterval(tick, 1000); });
})();

// Copy buttons: a button with data-copy="ID" copies the text of element #ID.
(function () {
  "use strict";
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest("button[data-copy]") : null;
    if (!b) return;
    var el = document.getElementById(b.getAttribute("data-copy"));
    if (!el || !navigator.clipboard) return;
    navigator.clipboard.writeText(el.textContent).then(function () {
      b.textContent = "Copied";
      b.setAttribute("data-copied", "1");
    });
  });
})();
