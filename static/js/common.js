// Helpers shared by the pages: formatting, DOM building, polling, colours, Plotly defaults.
"use strict";

window.lrsearch = (() => {
  const DASH = "–";
  const SEARCH_FINAL = new Set(["completed", "cancelled", "failed"]);
  const TRIAL_FINAL = new Set(["completed", "failed", "diverged", "cancelled", "pruned"]);

  /** A number like Python's "%.{digits}g": 0.000512, 5.12e-05, 0.01. */
  function formatG(value, digits = 3) {
    if (value === null || value === undefined || !Number.isFinite(value)) return DASH;
    if (value === 0) return "0";
    const [mantissa, exponentText] = value.toExponential(digits - 1).split("e");
    const exponent = Number(exponentText);
    if (exponent < -4 || exponent >= digits) {
      const trimmed = mantissa.includes(".") ? mantissa.replace(/\.?0+$/, "") : mantissa;
      const sign = exponent < 0 ? "-" : "+";
      return `${trimmed}e${sign}${String(Math.abs(exponent)).padStart(2, "0")}`;
    }
    return String(Number(value.toPrecision(digits)));
  }

  const formatLr = (lr) => formatG(lr, 3);

  function fixed(value, decimals = 4) {
    return value === null || value === undefined || !Number.isFinite(value)
      ? DASH
      : value.toFixed(decimals);
  }

  function signed(value, decimals = 4) {
    if (value === null || value === undefined || !Number.isFinite(value)) return DASH;
    return (value >= 0 ? "+" : "−") + Math.abs(value).toFixed(decimals);
  }

  /** An accuracy difference (a fraction) in percentage points: 0.05 -> "5 points". */
  function points(fraction) {
    if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return DASH;
    return `${formatG(fraction * 100, 3)} points`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return DASH;
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  }

  // A search's trials by how they stand, in the status bar's order and colours.
  const BAR_PARTS = ["completed", "pruned", "diverged", "failed", "cancelled", "running"];

  /**
   * Fill `node` with a search's status bar: a part per status, as wide as its share of the
   * trials (a running trial counts by its epochs done), queued ones left empty.
   */
  function renderStatusBar(node, s) {
    const total = Math.max(s.trials, 1);
    const runningEpochs = (s.epochs_by_status || {}).running || 0;
    const parts = BAR_PARTS.map((status) => {
      const share = status === "running"
        ? runningEpochs / Math.max(s.epochs, 1) / total
        : (s.counts[status] || 0) / total;
      if (share <= 0) return null;
      const part = el("span", { className: `part part-${status}`, title: `${s.counts[status]} ${status}` });
      part.style.width = `${(100 * share).toFixed(2)}%`; // CSSOM: allowed by the strict CSP
      return part;
    }).filter(Boolean);
    node.replaceChildren(...parts);
    node.title = s.status_note;
  }

  function localTime(iso) {
    if (!iso) return DASH;
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  /** el("td", {className: "num"}, "text", child): a DOM element; text is never parsed. */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function statusBadge(status, extraClass = "") {
    return el("span", { className: `status status-${status} ${extraClass}`.trim() }, status);
  }

  function setStatus(node, status) {
    const big = node.classList.contains("big");
    node.className = `status status-${status}${big ? " big" : ""}`;
    node.textContent = status;
  }

  async function fetchJSON(url, options = {}) {
    const response = await fetch(url, {
      headers: { Accept: "application/json", ...(options.headers || {}) },
      credentials: "same-origin",
      ...options,
    });
    if (!response.ok) {
      let reason = response.statusText;
      try {
        reason = (await response.json()).reason || reason;
      } catch (_) {
        // not JSON: keep the status text
      }
      throw new Error(`${response.status} ${reason}`);
    }
    return response.json();
  }

  /**
   * Call `step` again and again: it resolves to the delay before the next call, or null
   * to stop. A failure shows the connection notice and retries, slower each time.
   */
  function poll(step, { notice = null, firstDelay = 0 } = {}) {
    let timer = null;
    let failures = 0;
    let running = false;
    let stopped = false;
    async function tick() {
      timer = null;
      if (running || stopped) return;
      running = true;
      let delay = null;
      try {
        delay = await step();
        failures = 0;
        if (notice) notice.hidden = true;
      } catch (error) {
        failures += 1;
        if (notice) {
          notice.hidden = false;
          notice.textContent = String(error.message).includes("database unavailable")
            ? "database unavailable, retrying…" : "connection lost, retrying…";
        }
        delay = Math.min(1000 * 2 ** failures, 15000);
      } finally {
        running = false;
      }
      if (delay === null || delay === undefined) stopped = true;
      else if (!stopped) timer = setTimeout(tick, delay);
    }
    timer = setTimeout(tick, firstDelay);
    return {
      now() {
        if (stopped) return;
        if (timer) clearTimeout(timer);
        timer = setTimeout(tick, 0);
      },
      stop() {
        stopped = true;
        if (timer) clearTimeout(timer);
      },
    };
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  const statusColor = (status) => cssVar(`--status-${status}`) || cssVar("--status-queued");

  /** The learning-rate colour scale (from the stylesheet) and a colour at t in [0, 1]. */
  const scale = cssVar("--lr-scale").split(",").map((c) => c.trim()).filter(Boolean);
  const rgb = scale.map((hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));

  function scaleColor(t) {
    if (!rgb.length) return "#3b528b";
    const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0.5)) * (rgb.length - 1);
    const i = Math.min(Math.floor(x), rgb.length - 2);
    const f = x - i;
    const [a, b] = [rgb[i], rgb[Math.min(i + 1, rgb.length - 1)]];
    const mix = a.map((v, k) => Math.round(v + (b[k] - v) * f));
    return `rgb(${mix.join(",")})`;
  }

  /** Where a rate sits between lrMin and lrMax on a log scale, 0 to 1. */
  function lrPosition(lr, lrMin, lrMax) {
    const span = Math.log10(lrMax) - Math.log10(lrMin);
    return span > 0 ? (Math.log10(lr) - Math.log10(lrMin)) / span : 0.5;
  }

  const plotFont = {
    family: 'system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif',
    size: 12,
    color: "#1f2430",
  };

  function baseLayout(title, extra = {}) {
    return {
      title: { text: title, x: 0, xanchor: "left", font: { size: 14 } },
      font: plotFont,
      margin: { l: 60, r: 16, t: 40, b: 46 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "#ffffff",
      hovermode: "closest",
      hoverlabel: { font: { family: plotFont.family } },
      showlegend: false,
      uirevision: "keep",
      ...extra,
    };
  }

  /**
   * Draw a chart with draw() where there is something to draw, else a plain line of text
   * in its place ("no epochs yet"): Plotly's empty axes (-1 to 4, 0.1 to 10k) say nothing.
   */
  function plotOrSay(id, hasData, text, draw) {
    const node = document.getElementById(id);
    if (hasData) {
      if (node.dataset.empty) {
        node.replaceChildren();
        delete node.dataset.empty;
      }
      draw();
      return;
    }
    if (node.dataset.empty === text) return;
    if (window.Plotly && node.classList.contains("js-plotly-plot")) Plotly.purge(node);
    node.replaceChildren(el("p", { className: "chart-empty" }, text));
    node.dataset.empty = text;
    delete node.dataset.clickable; // its plot's event handlers went with it
  }

  /** Tick values for a log axis from lo to hi: 1-2-5 steps, or only decades, or 1..9. */
  function logTicks(lo, hi) {
    const ticks = (mults) => {
      const out = [];
      for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e += 1) {
        for (const m of mults) {
          const v = Number((m * 10 ** e).toPrecision(6));
          if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
        }
      }
      return out;
    };
    const steps = ticks([1, 2, 5]);
    if (steps.length > 9) return ticks([1]);
    for (const mults of [[1, 2, 5], [1, 2, 3, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
      const found = ticks(mults);
      if (found.length >= 3) return found;
    }
    return linearTicks(lo, hi);
  }

  /** Round steps (1, 2 or 5 times a power of ten) from lo to hi, about five of them. */
  function linearTicks(lo, hi) {
    const rough = (hi - lo) / 4;
    const power = 10 ** Math.floor(Math.log10(rough));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) || rough;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
      out.push(Number(v.toPrecision(6)));
    }
    return out;
  }

  /** A log y-axis labelled with plain numbers, fitted to the values (nulls skipped). */
  function logAxis(title, values) {
    const finite = values.filter((v) => v > 0 && Number.isFinite(v));
    const axis = { title: { text: title }, type: "log", gridcolor: "#eef0f3" };
    if (!finite.length) return axis;
    const ticks = logTicks(Math.min(...finite) / 1.15, Math.max(...finite) * 1.15);
    return { ...axis, tickvals: ticks, ticktext: ticks.map((v) => formatG(v, 3)) };
  }

  /** An epoch x-axis from 1 to the planned epochs, with room for the end markers. */
  function epochAxis(epochs) {
    const pad = Math.max(0.15, epochs * 0.015);
    return {
      title: { text: "epoch" }, range: [1 - pad, Math.max(epochs, 1) + pad],
      dtick: epochs <= 12 ? 1 : undefined, zeroline: false, gridcolor: "#eef0f3",
    };
  }

  const plotConfig = {
    responsive: true,
    displaylogo: false,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "toImage"],
  };

  return {
    DASH, SEARCH_FINAL, TRIAL_FINAL, formatG, formatLr, fixed, signed, points, duration, localTime,
    el, statusBadge, setStatus, fetchJSON, poll, renderStatusBar, statusColor, scale, scaleColor, lrPosition,
    baseLayout, plotConfig, logTicks, logAxis, epochAxis, plotOrSay,
  };
})();

// Stored times are UTC; show them in the reader's time zone.
document.addEventListener("DOMContentLoaded", () => {
  for (const node of document.querySelectorAll("time[datetime]")) {
    node.textContent = window.lrsearch.localTime(node.getAttribute("datetime"));
  }
});
