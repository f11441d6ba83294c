// Searches page: keep the table current while any search is queued or running.
"use strict";

(() => {
  const L = window.lrsearch;
  const root = document.getElementById("searches");
  const table = root.querySelector("table");
  const body = table.querySelector("tbody");
  const empty = root.querySelector(".empty");

  const anyActive = () =>
    [...body.querySelectorAll(".status")].some((b) => !L.SEARCH_FINAL.has(b.textContent.trim()));

  function progressCell(s) {
    const bar = L.el("div", { className: "status-bar" });
    L.renderStatusBar(bar, s);
    return L.el("td", { className: "progress-col" }, bar,
      L.el("span", { className: "num small" }, `${s.epochs_done}/${s.epochs_planned}`));
  }

  for (const bar of body.querySelectorAll(".status-bar[data-summary]")) {
    L.renderStatusBar(bar, JSON.parse(bar.dataset.summary));
  }

  const rangeTest = (s) => s.kind === "range_test";

  function row(s) {
    return L.el("tr", { dataset: { id: s.id } },
      L.el("td", { className: "num" }, s.id),
      L.el("td", {}, L.el("a", { href: s.url }, s.name || `${rangeTest(s) ? "range test" : "search"} ${s.id}`),
        rangeTest(s) ? L.el("span", { className: "small kind-tag" }, " LR range test") : "",
        s.parent_id ? L.el("span", { className: "small lineage" }, ` ↳ refines #${s.parent_id}`) : ""),
      L.el("td", {}, s.dataset),
      L.el("td", { className: "num" }, `${L.formatLr(s.lr_min)} – ${L.formatLr(s.lr_max)}`),
      progressCell(s),
      L.el("td", {}, L.statusBadge(s.status),
        s.status_detail ? L.el("span", { className: "small status-note-line" }, s.status_detail) : ""),
      L.el("td", { className: "num" }, s.best ? L.formatLr(s.best.lr) : L.DASH),
      L.el("td", { className: "num" }, s.best ? L.fixed(s.best.best_val_acc) : L.DASH),
      L.el("td", { className: "num" },
        L.el("time", { datetime: s.created_at }, L.localTime(s.created_at))),
    );
  }

  async function refresh() {
    const { searches } = await L.fetchJSON(root.dataset.listUrl);
    body.replaceChildren(...searches.map(row));
    table.hidden = searches.length === 0;
    empty.hidden = searches.length > 0;
    return searches.some((s) => !L.SEARCH_FINAL.has(s.status)) ? 2000 : null;
  }

  if (anyActive()) L.poll(refresh, { firstDelay: 1000 });
})();
