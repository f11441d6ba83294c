// Trial page: the current attempt's four curves, log.txt and plot, live while it runs.
"use strict";

(() => {
  const L = window.lrsearch;
  const root = document.getElementById("trial-page");
  const $ = (id) => document.getElementById(id);
  const planned = Number(root.dataset.epochsPlanned);
  let shownEpochs = -1;
  let plotShown = !$("plot").hidden;

  function line(epochs, field, name, color, dash) {
    return {
      type: "scatter", mode: epochs.length <= 30 ? "lines+markers" : "lines", name,
      x: epochs.map((e) => e.epoch), y: epochs.map((e) => e[field]),
      line: { color, width: 2, dash }, marker: { size: 5, color },
      hovertemplate: `${name}<br>epoch %{x}<br>%{y:.4f}<extra></extra>`,
    };
  }

  function renderCharts(trial, epochs) {
    const [train, val] = ["#1f77b4", "#ff7f0e"]; // as in the matplotlib plot beside
    const xaxis = L.epochAxis(planned);
    // Below the axis: at the top right, Plotly's toolbar covered it.
    const legend = { orientation: "h", x: 0, xanchor: "left", y: -0.28, yanchor: "top" };
    const margin = { l: 60, r: 16, t: 40, b: 78 };
    const empty = L.TRIAL_FINAL.has(trial.status) ? "this trial ended with no epoch" : "no epochs yet";
    if (!epochs.length) {
      L.plotOrSay("chart-loss", false, empty);
      L.plotOrSay("chart-acc", false, empty);
      return;
    }
    L.plotOrSay("chart-loss", true, empty, () => {});
    L.plotOrSay("chart-acc", true, empty, () => {});
    const title = (text) => `${text}, lr=${L.formatLr(trial.lr)}`;
    Plotly.react("chart-loss", [
      line(epochs, "loss", "train loss", train, "solid"),
      line(epochs, "val_loss", "val loss", val, "solid"),
    ], L.baseLayout(title("Loss"), {
      xaxis, showlegend: true, legend, margin,
      yaxis: L.logAxis("loss (log scale)", epochs.flatMap((e) => [e.loss, e.val_loss])),
      datarevision: epochs.length,
    }), L.plotConfig);
    Plotly.react("chart-acc", [
      line(epochs, "acc_train", "train acc", train, "solid"),
      line(epochs, "acc_val", "val acc", val, "solid"),
    ], L.baseLayout(title("Accuracy"), {
      xaxis, showlegend: true, legend, margin,
      yaxis: { title: { text: "accuracy" }, gridcolor: "#eef0f3" },
      datarevision: epochs.length,
    }), L.plotConfig);
  }

  function renderFacts(trial) {
    L.setStatus($("trial-status"), trial.status);
    $("fact-epochs").textContent = `${trial.epochs_done} / ${planned}`;
    $("fact-best").textContent = trial.best_epoch
      ? `${L.fixed(trial.best_val_acc)} (epoch ${trial.best_epoch})`
      : L.fixed(trial.best_val_acc);
    $("fact-final").textContent = L.fixed(trial.final_val_acc);
    $("fact-gap").textContent = L.signed(trial.gap);
    $("fact-loss").textContent = L.fixed(trial.min_val_loss);
    $("fact-attempt").textContent = trial.attempt;
    $("fact-time").textContent = `${(trial.seconds || 0).toFixed(1)} s`;
    const cancelForm = $("cancel-trial-form");
    if (cancelForm) {
      cancelForm.hidden = L.TRIAL_FINAL.has(trial.status);
      $("cancel-trial-button").disabled = trial.cancel_requested;
    }
    $("trial-error").hidden = !trial.error;
    $("trial-error").classList.toggle("note", trial.status !== "failed");
    $("trial-error").textContent = trial.error || "";
  }

  async function refreshFiles(trial, epochs) {
    if (trial.has_log && epochs.length !== shownEpochs) {
      const response = await fetch(trial.log_url, { credentials: "same-origin" });
      if (response.ok) {
        const log = $("log");
        const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 24;
        log.textContent = (await response.text()) || "no epoch yet";
        if (atEnd && !L.TRIAL_FINAL.has(trial.status)) log.scrollTop = log.scrollHeight;
        shownEpochs = epochs.length;
      }
    }
    if (trial.has_plot && !plotShown && L.TRIAL_FINAL.has(trial.status)) {
      $("plot").src = `${trial.plot_url}?attempt=${trial.attempt}`;
      $("plot").hidden = false;
      $("plot-missing").hidden = true;
      plotShown = true;
    }
  }

  async function refresh() {
    const trial = await L.fetchJSON(root.dataset.trialUrl);
    const epochs = trial.epochs.filter((e) => e.attempt === trial.attempt);
    renderFacts(trial);
    renderCharts(trial, epochs);
    await refreshFiles(trial, epochs);
    return L.TRIAL_FINAL.has(trial.status) ? null : 1000;
  }

  const initial = JSON.parse(root.dataset.trial);
  renderCharts(initial, []);
  if (!L.TRIAL_FINAL.has(initial.status)) $("log").scrollTop = $("log").scrollHeight;
  L.poll(refresh, { notice: $("conn-status") });
})();
