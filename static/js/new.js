// New-search form: the network the settings make, shown as the data set or sizes change.
"use strict";

(() => {
  const line = document.getElementById("network");
  if (!line) return;
  const shapes = JSON.parse(line.dataset.shapes); // data set -> [features, classes]
  const field = (name) => document.querySelector(`[name=${name}]`);
  const sizes = (text) => text.split(",").map((p) => p.trim()).filter((p) => p !== "");

  function shapeOf(dataset) {
    if (shapes[dataset]) return shapes[dataset];
    const synthetic = /^synthetic:(\d+)x(\d+)x(\d+)$/.exec(dataset);
    return synthetic ? [Number(synthetic[2]), Number(synthetic[3])] : null;
  }

  function show() {
    const dataset = field("dataset").value.trim();
    const layers = sizes(field("layers").value);
    const shape = shapeOf(dataset);
    if (layers.length) {
      line.textContent = `network: ${layers.join(" → ")}`;
    } else if (shape) {
      line.textContent = `network: ${[shape[0], ...sizes(field("hidden").value), shape[1]].join(" → ")}`;
    } else {
      line.textContent = `${dataset || "this data set"} is not ready: see the Datasets page`;
    }
  }

  for (const name of ["dataset", "hidden", "layers"]) field(name).addEventListener("input", show);
  show();

  // The kind: a range test takes other lr bounds by default, and needs neither trials nor
  // epochs nor early stopping (the server fixes them); a search needs no iterations.
  const form = document.getElementById("search-form");
  // Not form.dataset: a form's named controls shadow its properties (its "dataset" field).
  const kinds = JSON.parse(form.getAttribute("data-kinds"));
  const kindField = field("kind");
  let shownKind = kindField.value;

  function showKind() {
    const kind = kindField.value;
    const rangeTest = kind === "range_test";
    for (const [name, value] of Object.entries(kinds.lr_defaults[kind] || {})) {
      // Only a bound the person left at the other kind's default follows the kind.
      const previous = (kinds.lr_defaults[shownKind] || {})[name];
      if (field(name).value.trim() === previous) field(name).value = value;
    }
    shownKind = kind;
    const hide = (name, hidden) => { field(name).closest(".field").hidden = hidden; };
    for (const name of kinds.search_only) hide(name, rangeTest);
    for (const name of kinds.range_only) hide(name, !rangeTest);
    for (const set of form.querySelectorAll("fieldset")) {
      set.hidden = [...set.querySelectorAll(".field")].every((f) => f.hidden);
    }
    document.getElementById("start-button").textContent =
      rangeTest ? "Start range test" : "Start search";
  }

  kindField.addEventListener("change", showKind);
  showKind();
})();
