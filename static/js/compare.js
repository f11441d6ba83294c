// Compare page: searches overlaid, one colour each: rates against best validation
// accuracy (log axis), each search's best curve, and a table of their answers.
"use strict";

(() => {
  const L = window.lrsearch;
  const root = document.getElementById("compare-page");
  const data = JSON.parse(root.dataset.compare);
  const color = (i) => L.scaleColor(data.searches.length > 1 ? i / (data.searches.length - 1) : 0.5);
  const label = (s) => `#${s.id} ${s.name || ""}`.trim();

  function ratesChart() {
    const traces = data.searches.map((c, i) => {
      const shown = c.points.filter((p) => p.best_val_acc !== null);
      return {
        type: "scatter", mode: "markers", name: label(c.search),
        x: shown.map((p) => p.lr), y: shown.map((p) => p.best_val_acc),
        marker: { color: color(i), size: 8, symbol: shown.map((p) => (p.status === "pruned" ? "triangle-down-open" : "circle")) },
        hovertemplate: `${label(c.search)}<br>lr %{x:.3g}<br>best val acc %{y:.4f}<extra></extra>`,
      };
    });
    const rates = data.searches.flatMap((c) => c.points.map((p) => p.lr));
    Plotly.newPlot("chart-rates", traces, L.baseLayout("Learning rate against best validation accuracy", {
      showlegend: true, xaxis: L.logAxis("learning rate", rates), yaxis: { title: { text: "best val acc" } },
    }), L.plotConfig);
  }

  function bestChart() {
    const traces = data.searches.filter((c) => c.best_curve).map((c) => ({
      type: "scatter", mode: "lines+markers", name: label(c.search),
      x: c.best_curve.epoch, y: c.best_curve.acc_val,
      line: { color: color(data.searches.indexOf(c)) }, marker: { size: 4 },
    }));
    const epochs = Math.max(1, ...data.searches.map((c) => c.search.epochs));
    Plotly.newPlot("chart-best", traces, L.baseLayout("Each search's best trial: validation accuracy", {
      showlegend: true, xaxis: L.epochAxis(epochs), yaxis: { title: { text: "val acc" } },
    }), L.plotConfig);
  }

  function table() {
    const body = document.querySelector("#compare-table tbody");
    body.replaceChildren(...data.searches.map((c) => {
      const s = c.search;
      const best = c.points.find((p) => p.trial_id === c.best_trial_id);
      const healthy = c.points.find((p) => p.trial_id === c.healthiest_trial_id);
      return L.el("tr", { dataset: { id: s.id } },
        L.el("td", { className: "num" }, L.el("a", { href: s.url }, s.id)),
        L.el("td", {}, s.name || L.DASH),
        L.el("td", {}, s.dataset),
        L.el("td", {}, s.scheduler),
        L.el("td", { className: "num" }, best ? L.fixed(best.best_val_acc) : L.DASH),
        L.el("td", { className: "num" }, best ? L.formatLr(best.lr) : L.DASH),
        L.el("td", { className: "num" }, healthy ? L.formatLr(healthy.lr) : L.DASH),
        L.el("td", { className: "num" }, c.epochs_spent),
        L.el("td", {}, L.statusBadge(s.status)));
    }));
  }

  table();
  ratesChart();
  bestChart();
})();
