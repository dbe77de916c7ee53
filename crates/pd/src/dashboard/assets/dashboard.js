// tiox PD dashboard: the only script. It refreshes the metrics charts
// (drawn by PD as SVG) every two seconds; every other page is plain HTML.
"use strict";
(function () {
  if (document.body.dataset.page !== "metrics") return;
  var charts = document.getElementById("charts");
  if (!charts || location.protocol === "file:") return;
  function refresh() {
    fetch("metrics?chart=1", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var t = document.createElement("template");
        t.innerHTML = html;
        var fresh = t.content.getElementById("charts");
        if (fresh) charts.replaceChildren.apply(charts, Array.from(fresh.childNodes));
      })
      .catch(function () { /* PD unreachable: keep the last charts */ });
  }
  setInterval(refresh, 2000);
})();
