// Search page charts: curves per trial coloured by lr, lr against results, the lr legend.
"use strict";

/**
 * Draws the search page's Plotly charts from the page's state (see search.js);
 * `shownIds()` gives the trials the top-K filter keeps.
 */
window.lrsearch.searchCharts = (state, shownIds) => {
  const L = window.lrsearch;
  const $ = (id) => document.getElementById(id);

  function lrColor(lr) {
    return L.scaleColor(L.lrPosition(lr, state.search.lr_min, state.search.lr_max));
  }

  function curveTraces(metric, trainMetric, label, format) {
    const shown = shownIds();
    const traces = [];
    const few = state.search.epochs <= 30 && shown.size <= 20; // markers cost an SVG node each
    for (const t of [...state.trials.values()].sort((a, b) => a.index - b.index)) {
      if (!shown.has(t.id)) continue; // hidden by top-K: no trace at all, not even an invisible one
      const curve = state.curves.get(t.id) || { epoch: [], [metric]: [], [trainMetric]: [] };
      const lr = L.formatLr(t.lr);
      const color = lrColor(t.lr);
      const common = {
        // SVG, not WebGL: Plotly's WebGL traces compile code at run time, which the CSP forbids.
        type: "scatter", x: curve.epoch, showlegend: false,
        name: `lr=${lr}`,
      };
      // A pruned trial's curve is dashed and ends at its rung with an x.
      const pruned = t.status === "pruned";
      traces.push({
        ...common, y: curve[metric], mode: few || pruned ? "lines+markers" : "lines",
        line: { color, width: t.id === state.bestId ? 3 : 1.8, dash: pruned ? "dash" : "solid" },
        marker: pruned
          ? { size: curve.epoch.map((_, i) => (i === curve.epoch.length - 1 ? 9 : 0)), color, symbol: "x" }
          : { size: 4, color },
        hovertemplate: `lr=${lr}${pruned ? " (pruned)" : ""}<br>epoch %{x}<br>val ${label} %{y:${format}}<extra></extra>`,
        meta: { role: "val", trial: t.id, pruned },
      });
      if (state.showTrain) {
        traces.push({
          ...common, y: curve[trainMetric], mode: "lines",
          line: { color, width: 1.4, dash: "dot" },
          hovertemplate: `lr=${lr}<br>epoch %{x}<br>train ${label} %{y:${format}}<extra></extra>`,
          meta: { role: "train", trial: t.id },
        });
      }
    }
    return traces;
  }

  function epochAxis() {
    return L.epochAxis(state.search.epochs);
  }

  /** Finite positive values of a metric in the drawn curves, for log-axis ticks. */
  function drawnValues(metrics) {
    const shown = shownIds();
    const values = [];
    for (const [id, curve] of state.curves) {
      if (!shown.has(id)) continue;
      for (const m of metrics) values.push(...curve[m].filter((v) => v > 0 && Number.isFinite(v)));
    }
    return values;
  }

  /** What an empty chart says instead: why there is nothing to draw yet, or ever. */
  function emptyText() {
    const s = state.search;
    if (!L.SEARCH_FINAL.has(s.status)) return "no epochs yet";
    return s.status === "failed" && !s.counts.diverged ? "every trial failed" : "no epoch was trained";
  }

  function renderCurves() {
    state.revision += 1;
    const acc = curveTraces("acc_val", "acc_train", "acc", ".4f");
    const loss = curveTraces("val_loss", "loss", "loss", ".4f");
    const any = acc.some((t) => t.x.length > 0);
    L.plotOrSay("chart-acc", any, emptyText(), () => {
      Plotly.react("chart-acc", acc, L.baseLayout("Validation accuracy", {
        datarevision: state.revision, xaxis: epochAxis(),
        yaxis: { title: { text: "accuracy" }, gridcolor: "#eef0f3" },
      }), L.plotConfig);
      openTrialOnClick("chart-acc");
    });
    L.plotOrSay("chart-loss", any, emptyText(), () => {
      Plotly.react("chart-loss", loss, L.baseLayout("Validation loss", {
        datarevision: state.revision, xaxis: epochAxis(),
        yaxis: L.logAxis("loss (log scale)",
          drawnValues(state.showTrain ? ["val_loss", "loss"] : ["val_loss"])),
      }), L.plotConfig);
      openTrialOnClick("chart-loss");
    });
  }

  const GROUPS = [
    { name: "completed", statuses: ["completed"], symbol: "circle" },
    { name: "running", statuses: ["running", "queued"], symbol: "circle-open" },
    { name: "diverged", statuses: ["diverged"], symbol: "x" },
    { name: "failed", statuses: ["failed"], symbol: "x" },
    { name: "pruned", statuses: ["pruned"], symbol: "triangle-down-open" },
    { name: "cancelled", statuses: ["cancelled"], symbol: "square-open" },
  ];

  // Thousands of markers draw slowly as SVG: past this many trials, WebGL where the
  // browser has it (a headless one without a GPU may not: SVG then, only slower).
  const WEBGL_FROM = 2000;
  const webgl = (() => {
    try {
      const canvas = document.createElement("canvas");
      return Boolean(canvas.getContext("webgl2") || canvas.getContext("webgl"));
    } catch (error) {
      return false;
    }
  })();

  function scatter(field, label) {
    const trials = [...state.trials.values()].sort((a, b) => a.lr - b.lr);
    const kind = webgl && trials.length >= WEBGL_FROM ? "scattergl" : "scatter";
    const traces = [];
    const edge = []; // trials with no finite value: marked on the top edge
    for (const group of GROUPS) {
      const members = trials.filter((t) => group.statuses.includes(t.status));
      const color = L.statusColor(group.statuses[0]);
      const valued = members.filter((t) => t[field] !== null);
      const missing = members.filter((t) => t[field] === null && t.epochs_done > 0);
      edge.push(...missing.map((t) => ({ t, color })));
      if (!valued.length && missing.length) {
        traces.push({ // a legend entry for the marks on the top edge
          type: "scatter", mode: "markers", name: group.name, x: [null], y: [null],
          marker: { symbol: group.symbol, size: 10, color }, hoverinfo: "skip",
          meta: { role: "legend", group: group.name },
        });
      }
      if (!valued.length) continue;
      traces.push({
        type: kind, mode: "markers", name: group.name, x: valued.map((t) => t.lr),
        y: valued.map((t) => t[field]), customdata: valued.map((t) => t.id),
        text: valued.map((t) => `lr=${L.formatLr(t.lr)}<br>${label} ${L.fixed(t[field])}` +
          `<br>${t.status}`),
        hovertemplate: "%{text}<extra></extra>",
        marker: { symbol: group.symbol, size: 10, color, line: { width: 2, color } },
        meta: { role: "scatter", group: group.name },
      });
    }
    const annotations = edge.map(({ t, color }) => ({
      x: Math.log10(t.lr), y: 1, xref: "x", yref: "paper", text: "✕", showarrow: false,
      font: { color, size: 14 }, yanchor: "top",
      hovertext: `lr=${L.formatLr(t.lr)}: ${t.status}, no finite ${label}`,
    }));
    return { traces, annotations };
  }

  function lrAxis() {
    const [low, high] = [Math.log10(state.search.lr_min), Math.log10(state.search.lr_max)];
    const pad = Math.max((high - low) * 0.06, 0.05);
    const ticks = L.logTicks(state.search.lr_min, state.search.lr_max);
    return {
      title: { text: "learning rate (log scale)" }, type: "log", range: [low - pad, high + pad],
      gridcolor: "#eef0f3", tickvals: ticks, ticktext: ticks.map(L.formatLr),
    };
  }

  function renderScatters() {
    const legend = { x: 1.02, xanchor: "left", y: 1, yanchor: "top", itemclick: "toggle" };
    const acc = scatter("best_val_acc", "best val acc");
    const any = [...state.trials.values()].some((t) => t.epochs_done > 0);
    L.plotOrSay("scatter-acc", any, emptyText(), () => {
      Plotly.react("scatter-acc", acc.traces, L.baseLayout("Best validation accuracy", {
        datarevision: state.revision, xaxis: lrAxis(), annotations: acc.annotations,
        yaxis: { title: { text: "best val acc" }, gridcolor: "#eef0f3" },
        showlegend: true, legend,
      }), L.plotConfig);
      openTrialOnClick("scatter-acc");
    });
    const loss = scatter("final_val_loss", "final val loss");
    L.plotOrSay("scatter-loss", any, emptyText(), () => {
      Plotly.react("scatter-loss", loss.traces, L.baseLayout("Final validation loss", {
        datarevision: state.revision, xaxis: lrAxis(), annotations: loss.annotations,
        yaxis: L.logAxis("final val loss (log scale)",
          [...state.trials.values()].map((t) => t.final_val_loss)),
        showlegend: true, legend,
      }), L.plotConfig);
      openTrialOnClick("scatter-loss");
    });
  }

  function renderLegend() {
    $("lr-bar").style.background = `linear-gradient(to right, ${L.scale.join(", ")})`;
    const wrap = $("lr-bar").parentElement;
    const { lr_min: low, lr_max: high } = state.search;
    const ticks = [{ lr: low, className: "first" }, { lr: high, className: "last" }];
    let previous = 0;
    for (let e = Math.ceil(Math.log10(low)); e <= Math.floor(Math.log10(high)); e += 1) {
      const position = L.lrPosition(10 ** e, low, high);
      if (position > 0.25 && position < 0.8 && position - previous > 0.2) {
        ticks.push({ lr: 10 ** e, className: "" });
        previous = position;
      }
    }
    wrap.querySelectorAll(".tick").forEach((node) => node.remove());
    for (const { lr, className } of ticks) {
      const tick = L.el("span", { className: `tick ${className}`.trim() }, L.formatLr(lr));
      tick.style.left = `${(L.lrPosition(lr, low, high) * 100).toFixed(2)}%`;
      wrap.append(tick);
    }
  }

  /** A click on a drawn chart's point or curve opens its trial (bound once per plot). */
  function openTrialOnClick(id) {
    const node = $(id);
    if (node.dataset.clickable || typeof node.on !== "function") return;
    node.dataset.clickable = "1";
    node.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      const trialId = point && (point.customdata ?? (point.data.meta && point.data.meta.trial));
      const trial = state.trials.get(trialId);
      if (trial) window.location.assign(trial.url);
    });
  }

  return { renderCurves, renderScatters, renderLegend, openTrialOnClick };
};
