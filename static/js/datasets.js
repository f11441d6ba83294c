// Datasets page: the table of data sets, kept current while one is fetched or imported,
// Fetch and Remove buttons, and a grid of sample images for image-shaped data.
"use strict";

(() => {
  const L = window.lrsearch;
  const root = document.getElementById("datasets");
  const body = root.querySelector("tbody");
  const BUSY = new Set(["fetching", "importing"]);
  const SVG = "http://www.w3.org/2000/svg";

  function sizeText(bytes) {
    if (bytes === null || bytes === undefined) return L.DASH;
    if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} kB`;
    return `${(bytes / 1e6).toFixed(1)} MB`;
  }

  /** The class balance as one bar of segments, widths by count (attributes, not styles). */
  function balance(counts, labels) {
    if (!counts || !counts.length) return L.DASH;
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 100 10");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "balance");
    let x = 0;
    counts.forEach((n, i) => {
      const rect = document.createElementNS(SVG, "rect");
      const width = (100 * n) / total;
      for (const [k, v] of Object.entries({ x, y: 0, width, height: 10 })) rect.setAttribute(k, v);
      rect.setAttribute("class", `segment segment-${i % 2}`);
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${labels ? labels[i] : i}: ${n}`;
      rect.append(title);
      svg.append(rect);
      x += width;
    });
    return svg;
  }

  /** The classes as the file wrote their labels, in class-index order. */
  function labelsText(labels) {
    const shown = labels.slice(0, 10).join(", ");
    return labels.length > 10 ? `${shown}, … (${labels.length})` : shown;
  }

  function button(label, url, confirmText) {
    const form = L.el("form", { method: "post", action: url, className: "inline" },
      L.el("input", { type: "hidden", name: "csrf_token", value: root.dataset.csrf }),
      L.el("button", { type: "submit", className: "button small" }, label));
    if (confirmText) form.addEventListener("submit", (e) => { if (!confirm(confirmText)) e.preventDefault(); });
    return form;
  }

  function statusCell(d) {
    const badge = L.el("span", { className: `status status-${d.status.replace(" ", "-")}` }, d.status);
    const cell = L.el("td", {}, badge);
    if (BUSY.has(d.status)) {
      cell.append(L.el("progress", { max: 1, value: d.progress }),
        L.el("span", { className: "small" }, d.progress_note));
    }
    if (d.error) cell.append(L.el("p", { className: "field-error" }, d.error));
    return cell;
  }

  function actions(d) {
    const cell = L.el("td", {});
    const url = (key) => root.dataset[key].replace("NAME", encodeURIComponent(d.name));
    if (d.status === "not downloaded" || (d.status === "failed" && ["mnist", "fashion-mnist"].includes(d.kind))) {
      cell.append(button("Fetch", url("fetchUrl")));
    }
    if (!d.built_in && d.status !== "not downloaded" && !BUSY.has(d.status)) {
      cell.append(button("Remove", url("removeUrl"), `Remove the data set ${d.name} and its files?`));
    }
    if (d.status === "ready" && d.image_shape) {
      const show = L.el("button", { type: "button", className: "button small" }, "Samples");
      show.addEventListener("click", () => showSamples(d));
      cell.append(show);
    }
    return cell;
  }

  function row(d) {
    const searches = d.searches.length
      ? d.searches.slice(0, 5).flatMap((s, i) => [i ? ", " : "", L.el("a", { href: s.url }, `#${s.id}`)])
      : [L.DASH];
    return L.el("tr", { dataset: { name: d.name } },
      L.el("td", {}, L.el("strong", {}, d.name)),
      statusCell(d),
      L.el("td", { className: "num" }, d.samples ?? L.DASH),
      L.el("td", { className: "num" }, d.features ?? L.DASH),
      L.el("td", { className: "num" }, d.classes ?? L.DASH),
      L.el("td", {}, balance(d.class_counts, d.labels),
        d.labels ? L.el("span", { className: "small" }, labelsText(d.labels)) : ""),
      L.el("td", { className: "small" }, d.source, L.el("br"), d.split),
      L.el("td", { className: "num" }, sizeText(d.disk_bytes)),
      L.el("td", { className: "small" }, ...searches),
      actions(d),
    );
  }

  function render(datasets) {
    body.replaceChildren(...datasets.map(row));
    return datasets.some((d) => BUSY.has(d.status)) ? 1000 : null;
  }

  async function showSamples(d) {
    const data = await L.fetchJSON(`${d.url}/samples?per_class=8`);
    const [h, w] = data.shape;
    const grid = document.getElementById("sample-grid");
    grid.replaceChildren(...data.classes.map((c) => {
      const canvas = L.el("canvas", { width: w * c.images.length, height: h, className: "samples" });
      const context = canvas.getContext("2d");
      const image = context.createImageData(w * c.images.length, h);
      c.images.forEach((pixels, k) => {
        pixels.forEach((v, p) => {
          const at = 4 * ((Math.floor(p / w)) * w * c.images.length + k * w + (p % w));
          image.data.set([v, v, v, 255], at);
        });
      });
      context.putImageData(image, 0, 0);
      return L.el("div", { className: "sample-row" }, L.el("span", { className: "small" }, c.label), canvas);
    }));
    document.getElementById("samples-title").textContent = `Samples of ${d.name}`;
    document.getElementById("samples").hidden = false;
  }

  const first = render(JSON.parse(root.dataset.datasets));
  if (first !== null) {
    L.poll(async () => render((await L.fetchJSON(root.dataset.listUrl)).datasets), { firstDelay: first });
  }
})();
