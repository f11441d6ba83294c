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
})();
