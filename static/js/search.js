// Search page: live curves, scatter plots, ranking, progress and cancel, by polling.
"use strict";

(() => {
  const L = window.lrsearch;
  const root = document.getElementById("search-page");
  const $ = (id) => document.getElementById(id);
  const METRICS = ["epoch", "loss", "acc_train", "val_loss", "acc_val"];
  // Rows of the ranking drawn until asked for all: thousands of rows took Chromium seconds
  // to lay out on every redraw.
  const TABLE_ROWS = 100;

  const state = {
    search: JSON.parse(root.dataset.search),
    trials: new Map(), // id -> trial row, as the API gives it
    curves: new Map(), // id -> {attempt, epoch: [], loss: [], ...} of the current attempt
    lastId: 0,
    since: null,
    bestId: null,
    healthyId: null,
    healthyWithin: null, // the server's window for the healthiest curve, as a fraction
    eta: null,
    sort: { key: "best_val_acc", descending: true },
    showTrain: false,
    wholeTable: false,
    topK: Number(root.dataset.topK),
    revision: 0,
    // The trials whose curves are here whole, from their first epoch to `lastId`: the page
    // fetches the curves it draws and, until it draws all, skips the others' new epochs.
    loaded: new Set(),
    allLoaded: false,
    loading: Promise.resolve(),
    // Trials whose curve lacks an epoch that the id cursor passed over: one committed after
    // a later one (two PostgreSQL transactions may end in either order). Polls skip them
    // (and those being fetched again) until their curve is fetched whole again.
    gaps: new Set(),
    refetching: new Set(),
  };

  // ---- data -------------------------------------------------------------------------

  function curveOf(trialId, attempt) {
    let curve = state.curves.get(trialId);
    if (!curve || attempt > curve.attempt) {
      curve = { attempt };
      for (const m of METRICS) curve[m] = [];
      state.curves.set(trialId, curve);
    }
    return curve;
  }

  function updateTrial(row) {
    state.trials.set(row.id, row);
    curveOf(row.id, row.attempt); // a new attempt restarted from scratch: drop its old points
  }

  /** Whether the page has the trial's whole curve (up to state.lastId). */
  function whole(id) {
    return (state.allLoaded || state.loaded.has(id)) && !state.gaps.has(id);
  }

  /**
   * Append columnar epochs ({id: [], trial_id: [], ...}) to the curves of the trials loaded
   * whole, and of those in `taking` (a Set of ids, or true for every trial).
   */
  function addEpochs(columns, taking = null) {
    const n = columns.id.length;
    let grew = false;
    for (let i = 0; i < n; i += 1) {
      const id = columns.trial_id[i];
      if (!(taking === true || taking?.has(id)) && (!whole(id) || state.refetching.has(id))) {
        continue; // not drawn, or to be fetched again: fetched whole when drawn
      }
      const curve = curveOf(id, columns.attempt[i]);
      if (columns.attempt[i] < curve.attempt) continue;
      const epoch = columns.epoch[i];
      const last = curve.epoch.length ? curve.epoch[curve.epoch.length - 1] : 0;
      if (epoch <= last) continue; // already have it
      if (epoch > last + 1) { // the one before it is not here
        state.gaps.add(id);
        continue;
      }
      for (const m of METRICS) curve[m].push(columns[m][i]);
      grew = true;
    }
    return grew;
  }

  function applyRanking(data) {
    state.bestId = data.best_trial_id;
    state.healthyId = data.healthiest_trial_id;
    state.healthyWithin = data.healthy_within;
    state.eta = data.eta_seconds;
    state.search = data.search;
    state.errors = data.errors || [];
    state.moreErrors = data.more_errors || 0;
    state.since = data.server_time;
  }

  function epochsUrl(after, ids) {
    const only = ids === true ? "" : `&trials=${[...ids].join(",")}`;
    return `${root.dataset.epochsUrl}?after=${after}${only}`;
  }

  /**
   * Fetch the whole curves of trials `ids` (a Set, or true for all) and mark them loaded;
   * resolves to the epoch id they are loaded up to. Polls meanwhile skip these trials, so
   * the fetch goes on until it has caught up with them (state.lastId).
   */
  async function fetchCurves(ids, url = epochsUrl(0, ids)) {
    const again = [...state.gaps].filter((id) => ids === true || ids.has(id));
    for (const id of again) {
      state.gaps.delete(id);
      state.refetching.add(id);
      state.curves.delete(id);
    }
    try {
      for (;;) {
        const data = await L.fetchJSON(url);
        addEpochs(data.epochs, ids);
        // (last_id <= after: no newer epoch at all, as when a search was deleted under us)
        if (data.complete && (data.last_id >= state.lastId || data.last_id <= data.after)) {
          if (ids === true) state.allLoaded = true;
          else ids.forEach((id) => state.loaded.add(id));
          return data.last_id;
        }
        url = epochsUrl(data.last_id, ids);
      }
    } catch (error) {
      again.forEach((id) => state.gaps.add(id)); // fetched again next time
      throw error;
    } finally {
      again.forEach((id) => state.refetching.delete(id));
    }
  }

  /** Fetch the curves that the top-K filter draws and the page does not have yet. */
  function loadShownCurves() {
    state.loading = state.loading.catch(() => {}).then(async () => {
      if (!state.topK && !state.allLoaded) return fetchCurves(true).then(() => true);
      const missing = [...shownIds()].filter((id) => !whole(id));
      return missing.length > 0 && fetchCurves(new Set(missing)).then(() => true);
    });
    return state.loading;
  }

  async function load() {
    const detail = await L.fetchJSON(root.dataset.detailUrl);
    applyRanking(detail);
    detail.trials.forEach(updateTrial);
    // The epochs the server chose to send first (it preloads them): the curves drawn first.
    const first = JSON.parse(root.dataset.firstTrials);
    const ids = first === null ? true : new Set(first);
    state.lastId = await fetchCurves(ids, root.dataset.firstEpochsUrl);
    await loadShownCurves(); // the page's own choice, should the ranking have moved since
    renderAll();
    return L.SEARCH_FINAL.has(state.search.status) ? null : 1000;
  }

  async function pollOnce() {
    const since = state.since ? `&since=${encodeURIComponent(state.since)}` : "";
    const data = await L.fetchJSON(`${root.dataset.pollUrl}?after=${state.lastId}${since}`);
    if (data.unchanged) { // no trial changed, no epoch: only the search's own row may have
      state.since = data.server_time;
      state.lastId = data.last_id;
      Object.assign(state.search, data.search_row);
      renderSummary();
      return L.SEARCH_FINAL.has(state.search.status) ? null : 1000;
    }
    applyRanking(data);
    data.trials.forEach(updateTrial);
    const grew = addEpochs(data.epochs);
    state.lastId = data.last_id;
    renderSummary();
    if (grew || data.trials.length) {
      await loadShownCurves(); // the best K may have changed
      redrawSoon();
    }
    if (!data.complete) return 0;
    return L.SEARCH_FINAL.has(state.search.status) ? null : 1000;
  }

  // ---- ordering -----------------------------------------------------------------------

  const SORTS = {
    lr: { value: (t) => t.lr, descending: false },
    best_val_acc: { value: (t) => t.best_val_acc, descending: true },
    final_val_acc: { value: (t) => t.final_val_acc, descending: true },
    min_val_loss: { value: (t) => t.min_val_loss, descending: false },
    gap: { value: (t) => (t.gap === null ? null : Math.abs(t.gap)), descending: false },
  };

  /** The server's ranking order: each trial carries its key (ranking.rank_key). */
  function byRank(a, b) {
    for (let i = 0; i < a.rank_key.length; i++) {
      if (a.rank_key[i] !== b.rank_key[i]) return a.rank_key[i] < b.rank_key[i] ? -1 : 1;
    }
    return a.index - b.index;
  }

  // Any column: the trials the ranking puts last (failed, diverged, cut short) stay last,
  // and ties keep the ranking's order.
  function sortedTrials() {
    const { value } = SORTS[state.sort.key];
    const sign = state.sort.descending ? -1 : 1;
    return [...state.trials.values()].sort((a, b) => {
      if (a.rank_key[0] !== b.rank_key[0]) return a.rank_key[0] - b.rank_key[0];
      const [x, y] = [value(a), value(b)];
      if (x === null || x === undefined) return y === null || y === undefined ? byRank(a, b) : 1;
      if (y === null || y === undefined) return -1;
      return x === y ? byRank(a, b) : sign * (x - y);
    });
  }

  /** Ids of the trials drawn: all, or the first K of the ranking with an epoch done. */
  function shownIds() {
    const trials = [...state.trials.values()];
    if (!state.topK || state.topK >= trials.length) return new Set(trials.map((t) => t.id));
    const ranked = trials.filter((t) => t.best_val_acc !== null).sort(byRank);
    return new Set(ranked.slice(0, state.topK).map((t) => t.id));
  }

  // ---- summary ------------------------------------------------------------------------

  function renderSummary() {
    const s = state.search;
    const final = L.SEARCH_FINAL.has(s.status);
    L.setStatus($("search-status"), s.status);
    const progress = $("progress");
    progress.max = Math.max(s.epochs_planned, 1);
    progress.value = s.status === "completed" ? s.epochs_planned : s.epochs_done;
    progress.classList.toggle("done", s.status === "completed");
    const share = s.status === "completed" ? 1 : s.progress;
    $("progress-percent").textContent = `${Math.floor(share * 100)}%`;
    $("progress-note").textContent = `${s.epochs_done} / ${s.epochs_planned} epochs`;
    $("eta").textContent = etaText(s, final);
    $("counts").textContent = Object.entries(s.counts)
      .map(([status, n]) => `${n} ${status}`)
      .join(" · ");
    $("status-note").textContent = s.status_note === s.status ? "" : s.status_note;
    L.renderStatusBar($("status-bar"), s);
    renderErrors();
    $("cancel-form").hidden = final;
    $("delete-form").hidden = !final;
    const button = $("cancel-button");
    button.disabled = s.cancel_requested;
    button.textContent = s.cancel_requested ? "Cancelling…" : "Cancel search";
    renderAnswers();
  }

  /** The failed trials' distinct errors, each with how many trials it hit. */
  function renderErrors() {
    const errors = state.errors || [];
    $("error-summary").hidden = errors.length === 0;
    $("error-list").replaceChildren(...errors.map((e) => L.el("li", {},
      L.el("span", { className: "num error-count" }, `${e.trials} trial${e.trials === 1 ? "" : "s"}`),
      " ", L.el("code", {}, e.message))));
    $("error-more").hidden = !state.moreErrors;
    $("error-more").textContent = `and ${state.moreErrors} other errors: each trial's is on its page`;
  }

  function etaText(s, final) {
    if (final && s.started_at && s.finished_at) {
      const took = (new Date(s.finished_at) - new Date(s.started_at)) / 1000;
      return `${s.status} in ${L.duration(took)}`;
    }
    if (s.status === "queued") return "waiting for a free worker";
    return state.eta === null ? "estimating time left…" : `about ${L.duration(state.eta)} left`;
  }

  function trialLink(trial, text) {
    return L.el("a", { href: trial.url }, text);
  }

  function renderAnswers() {
    const best = state.trials.get(state.bestId);
    const healthy = state.trials.get(state.healthyId);
    const soFar = L.SEARCH_FINAL.has(state.search.status) ? "" : " so far";
    $("answer-best").replaceChildren(
      best ? trialLink(best, `lr = ${L.formatLr(best.lr)}`) : L.DASH);
    $("answer-best-note").textContent = best
      ? `val acc ${L.fixed(best.best_val_acc)} at epoch ${best.best_epoch}${soFar}`
      : "no epoch finished yet";
    $("answer-healthy").replaceChildren(
      healthy ? trialLink(healthy, `lr = ${L.formatLr(healthy.lr)}`) : L.DASH);
    $("answer-healthy-note").textContent = healthy
      ? `final train ${L.fixed(healthy.final_acc_train)}, val ${L.fixed(healthy.final_val_acc)}, ` +
        `gap ${L.signed(healthy.gap)}${soFar}`
      : `known once trials complete (within ${L.points(state.healthyWithin)} of the top)`;
  }

  // ---- ranking table -------------------------------------------------------------------

  function numCell(text) {
    return L.el("td", { className: "num" }, text);
  }

  function rankingRow(t) {
    const tags = [];
    if (t.id === state.bestId) tags.push(L.el("span", { className: "tag best" }, "best"));
    if (t.id === state.healthyId) tags.push(L.el("span", { className: "tag healthy" }, "healthiest"));
    const classes = [t.id === state.bestId && "best", t.id === state.healthyId && "healthy"];
    if (t.status === "queued" || (t.status === "running" && !t.cancel_requested)) {
      tags.push(L.el("button", { type: "button", className: "link-button cancel-trial",
        title: "cancel this trial", dataset: { cancel: t.id } }, "cancel"));
    } else if (t.status === "running") {
      tags.push(L.el("span", { className: "small muted" }, "cancelling…"));
    }
    const status = L.el("td", { className: "status-cell" }, L.statusBadge(t.status), ...tags);
    if (t.error) status.title = t.error;
    const where = t.worker ? `trial ${t.index}, run by ${t.worker}` : `trial ${t.index}`;
    return L.el("tr", { className: classes.filter(Boolean).join(" "), dataset: { id: t.id }, title: where },
      numCell(t.index),
      L.el("td", { className: "num" }, trialLink(t, L.formatLr(t.lr))),
      status,
      numCell(`${t.epochs_done}/${state.search.epochs}`),
      L.el("td", { className: "num" }, L.fixed(t.best_val_acc),
        L.el("span", { className: "at-epoch" }, t.best_epoch ? `@${t.best_epoch}` : "")),
      numCell(L.fixed(t.final_val_acc)),
      numCell(L.fixed(t.final_acc_train)),
      numCell(L.signed(t.gap)),
      numCell(L.fixed(t.min_val_loss)),
      numCell(L.fixed(t.final_val_loss)),
      numCell(t.seconds ? `${t.seconds.toFixed(1)} s` : L.DASH),
    );
  }

  function renderTable() {
    const sorted = sortedTrials();
    const rows = state.wholeTable ? sorted : sorted.slice(0, TABLE_ROWS);
    $("ranking").tBodies[0].replaceChildren(...rows.map(rankingRow));
    $("ranking-more").hidden = rows.length === sorted.length;
    $("ranking-shown").textContent = `the first ${rows.length} of ${sorted.length} trials`;
    $("ranking-all").textContent = `Show all ${sorted.length}`;
    for (const th of document.querySelectorAll("#ranking th.sortable")) {
      if (th.dataset.sort === state.sort.key) {
        th.setAttribute("aria-sort", state.sort.descending ? "descending" : "ascending");
      } else {
        th.removeAttribute("aria-sort");
      }
    }
  }

  function onSortClick(event) {
    const th = event.target.closest("th.sortable");
    if (!th) return;
    const key = th.dataset.sort;
    state.sort = key === state.sort.key
      ? { key, descending: !state.sort.descending }
      : { key, descending: SORTS[key].descending };
    renderTable();
  }

  // ---- charts ---------------------------------------------------------------------------

  const charts = L.searchCharts(state, shownIds);
  const { renderCurves, renderScatters, renderLegend } = charts;

  function renderCharts() {
    renderCurves();
    renderScatters();
  }

  // A poll's redraw waits until redrawing has taken at most a fifth of the time: with
  // thousands of trials one redraw of the scatters holds the page for a second or more.
  const redraw = { timer: null, at: 0, cost: 0 };

  function redrawSoon() {
    if (redraw.timer !== null) return; // one is due, and draws the state of then
    const wait = Math.max(0, redraw.at + 4 * redraw.cost - performance.now());
    redraw.timer = setTimeout(() => {
      redraw.timer = null;
      const started = performance.now();
      renderCharts();
      renderTable();
      // Timed after the next frame, so that Chromium's layout and painting count too.
      requestAnimationFrame(() => setTimeout(() => {
        redraw.at = performance.now();
        redraw.cost = redraw.at - started;
      }, 0));
    }, wait);
  }

  function renderAll() {
    renderSummary();
    renderCharts();
    renderTable();
  }

  // ---- controls ----------------------------------------------------------------------

  function setTopK(k) {
    state.topK = k;
    $("top-k").value = String(k);
  }

  async function cancel(event) {
    event.preventDefault();
    if (!window.confirm("Cancel this search? Running trials stop at their next epoch.")) return;
    $("cancel-button").disabled = true;
    try {
      state.search = await L.fetchJSON(root.dataset.cancelUrl, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
      });
      renderSummary();
    } catch (error) {
      $("cancel-button").disabled = false;
      $("conn-status").hidden = false;
    }
    poller.now();
  }

  $("ranking").tHead.addEventListener("click", onSortClick);
  $("ranking-all").addEventListener("click", () => {
    state.wholeTable = true;
    renderTable();
  });
  $("show-train").addEventListener("change", (event) => {
    state.showTrain = event.target.checked;
    renderCurves();
  });
  /** Draw the curves the top-K filter asks for: those here at once, the rest once fetched. */
  async function drawShownCurves() {
    renderCurves();
    for (let wait = 1000; ; wait = Math.min(2 * wait, 15000)) {
      try {
        if (await loadShownCurves()) renderCurves();
        $("conn-status").hidden = true;
        return;
      } catch (error) {
        $("conn-status").hidden = false; // "connection lost, retrying…"
        await new Promise((resolve) => { setTimeout(resolve, wait); });
      }
    }
  }

  $("top-k").addEventListener("change", (event) => {
    state.topK = Number(event.target.value);
    drawShownCurves();
  });
  $("cancel-form").addEventListener("submit", cancel);
  $("delete-form").addEventListener("submit", (event) => {
    const name = state.search.name || `search ${state.search.id}`;
    if (!window.confirm(`Delete ${name}, its trials, epochs and logs? This cannot be undone.`)) {
      event.preventDefault();
    }
  });
  // A trial's cancel button in the ranking: that trial alone.
  $("ranking").tBodies[0].addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-cancel]");
    if (!button) return;
    button.disabled = true;
    try {
      updateTrial(await L.fetchJSON(`/api/trials/${button.dataset.cancel}/cancel`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
      }));
      renderTable();
    } catch (error) {
      button.disabled = false;
      button.title = `not cancelled: ${error.message}`;
    }
    poller.now();
  });
  setTopK(state.topK);
  renderLegend();
  renderCharts();

  let loaded = false;
  const poller = L.poll(async () => {
    if (!loaded) {
      const next = await load();
      loaded = true;
      return next;
    }
    return pollOnce();
  }, { notice: $("conn-status") });
})();
