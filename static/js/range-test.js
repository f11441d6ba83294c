// A range test's page: loss against rate (log axis), the suggested range shaded, and the
// "Search this range" link; polls until the test has ended.
"use strict";

(() => {
  const L = window.lrsearch;
  const root = document.getElementById("range-test-page");
  const byId = (id) => document.getElementById(id);

  function draw(test) {
    const p = test.points;
    const s = test.suggestion;
    const traces = [
      {
        type: "scatter", mode: "markers", name: "batch loss", x: p.lr, y: p.loss,
        marker: { size: 4, color: "rgba(90, 110, 140, 0.45)" },
        hovertemplate: "lr %{x:.3g}<br>loss %{y:.4f}<extra>batch</extra>",
      },
      {
        type: "scatter", mode: "lines", name: "smoothed (β 0.98)", x: p.lr, y: p.smoothed,
        line: { color: L.scaleColor(0.15), width: 2 },
        hovertemplate: "lr %{x:.3g}<br>smoothed %{y:.4f}<extra></extra>",
      },
      {
        type: "scatter", mode: "lines", name: "centred median (suggestion)", x: p.lr, y: p.median,
        line: { color: "rgba(46, 160, 67, 0.9)", width: 1.5, dash: "dot" },
        hovertemplate: "lr %{x:.3g}<br>median %{y:.4f}<extra></extra>",
      },
    ];
    const finite = p.loss.filter((v) => v !== null);
    // The test ends in an exploding loss: keep the valley in view, not the explosion.
    const top = p.smoothed.length ? Math.max(p.smoothed[0] * 1.6, 1e-3) : 1;
    const layout = L.baseLayout("", {
      showlegend: true,
      xaxis: L.logAxis("learning rate", p.lr),
      yaxis: { title: { text: "loss" }, range: [0, finite.length ? top : 1], gridcolor: "#eef0f3" },
      shapes: s ? [{
        type: "rect", xref: "x", yref: "paper", x0: s.lr_min, x1: s.lr_max, y0: 0, y1: 1,
        fillcolor: "rgba(46, 160, 67, 0.16)", line: { width: 0 }, layer: "below",
        name: "suggested range",
      }] : [],
    });
    Plotly.react("range-chart", traces, layout, L.plotConfig);
  }

  function show(detail) {
    const search = detail.search;
    L.setStatus(byId("search-status"), search.status);
    const test = detail.range_test;
    const finished = L.SEARCH_FINAL.has(search.status);
    byId("cancel-form").hidden = finished;
    if (!test) return finished;
    const s = test.suggestion;
    if (test.points.lr.length) draw(test);
    byId("batches-note").textContent = test.points.lr.length
      ? `${test.points.lr.length} batches recorded` : "no batch recorded yet";
    if (s) {
      byId("suggested-range").textContent = `${L.formatLr(s.lr_min)} – ${L.formatLr(s.lr_max)}`;
      byId("steepest").textContent = L.formatLr(s.steepest);
      byId("min-loss-lr").textContent = L.formatLr(s.min_loss_lr);
      byId("suggestion-note").textContent = "search these rates";
      const link = byId("search-range");
      link.href = test.new_search_url;
      link.hidden = false;
    } else if (finished) {
      byId("suggestion-note").textContent = search.status === "completed"
        ? "none: the loss never clearly fell; try a larger lr_max or more iterations"
        : "none: the test did not finish";
    }
    return finished;
  }

  const url = root.dataset.detailUrl;
  L.poll(async () => (show(await L.fetchJSON(url)) ? null : 1000), { notice: byId("conn-status") });
})();
