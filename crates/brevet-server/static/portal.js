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

// The analyzer's escalation graph (server-rendered SVG): pointing at or focusing a principal
// lights up its way to admin — the edges it can follow, to the end — and dims the rest; the
// buttons zoom. Without script the graph is the same picture, each principal still a link.
(function () {
  "use strict";
  function ways(svg, from) {
    var lit = [], seen = {}, todo = [from];
    while (todo.length) {
      var at = todo.pop();
      if (seen[at]) continue;
      seen[at] = true;
      svg.querySelectorAll("g.edge").forEach(function (e) {
        if (e.getAttribute("data-from") === at) { lit.push(e); todo.push(e.getAttribute("data-to")); }
      });
    }
    return { edges: lit, nodes: seen };
  }
  function light(svg, node) {
    svg.querySelectorAll(".hl").forEach(function (el) { el.classList.remove("hl"); });
    if (!node) { svg.classList.remove("dimmed"); return; }
    var w = ways(svg, node.getAttribute("data-principal"));
    w.edges.forEach(function (e) { e.classList.add("hl"); });
    svg.querySelectorAll("g.node").forEach(function (n) {
      if (w.nodes[n.getAttribute("data-principal")]) n.classList.add("hl");
    });
    svg.classList.add("dimmed");
  }
  function zoomable(box) {
    var svg = box.querySelector("svg.graph");
    if (!svg || !svg.getAttribute("viewBox")) return;
    var w0 = +svg.getAttribute("width"), h0 = +svg.getAttribute("height"), k = 1;
    var bar = document.createElement("p");
    bar.className = "graph-zoom";
    [["−", 1 / 1.25, "zoom-out"], ["+", 1.25, "zoom-in"], ["1:1", 0, "zoom-reset"]].forEach(function (z) {
      var b = document.createElement("button");
      b.type = "button"; b.className = "secondary"; b.textContent = z[0]; b.setAttribute("data-zoom", z[2]);
      b.addEventListener("click", function () {
        k = z[1] === 0 ? 1 : Math.min(4, Math.max(0.25, k * z[1]));
        svg.setAttribute("width", Math.round(w0 * k));
        svg.setAttribute("height", Math.round(h0 * k));
      });
      bar.appendChild(b);
    });
    box.parentNode.insertBefore(bar, box);
    svg.addEventListener("mouseover", function (ev) { light(svg, ev.target.closest("g.node")); });
    svg.addEventListener("focusin", function (ev) {
      var a = ev.target.closest("a");
      light(svg, a ? a.querySelector("g.node") : null);
    });
    svg.addEventListener("mouseleave", function () { light(svg, null); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".graph-box").forEach(zoomable);
  });
})();
