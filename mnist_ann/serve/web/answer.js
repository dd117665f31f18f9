// Drawing an answer of POST /predict: the input the network got, the pixels behind its answer, each class's
// probability and every layer's activations. Every text that comes from the server (class names come from
// the checkpoint) is set with textContent, never parsed as HTML.

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function gray(canvas, values, columns, scale) {
  const rows = Math.ceil(values.length / columns);
  canvas.width = columns; canvas.height = rows;
  canvas.style.width = `${columns * scale}px`; canvas.style.height = `${rows * scale}px`;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(columns, rows);
  const top = Math.max(...values, 1e-9);
  values.forEach((value, index) => {
    const level = Math.round(255 * Math.max(0, value) / top);
    pixels.data.set([level, level, level, 255], index * 4);
  });
  for (let index = values.length; index < columns * rows; index++) pixels.data.set([246, 247, 249, 255], index * 4);
  context.putImageData(pixels, 0, 0);
  return canvas;
}

// Red for positive, white for zero, blue for negative, on one symmetric scale: the 95th percentile of the
// magnitudes, so that a few strong pixels do not wash out the rest.
function diverging(canvas, values) {
  const context = canvas.getContext("2d");
  const side = Math.round(Math.sqrt(values.length));
  const pixels = context.createImageData(side, side);
  const magnitudes = values.map(Math.abs).filter((value) => value > 0).sort((a, b) => a - b);
  const top = magnitudes.length ? magnitudes[Math.floor(0.95 * (magnitudes.length - 1))] : 1e-9;
  values.forEach((value, index) => {
    const strength = Math.min(1, Math.abs(value) / top);
    const fade = Math.round(255 * (1 - strength));
    pixels.data.set(value >= 0 ? [255, fade, fade, 255] : [fade, fade, 255, 255], index * 4);
  });
  context.putImageData(pixels, 0, 0);
}

function layer(title, size, content) {
  const box = element("div", "layer");
  box.append(content, element("div", "title", title), element("div", "size", size));
  return box;
}

const arrow = () => element("span", "arrow", "→");
const percent = (p) => `${(100 * p).toFixed(1)}%`;

function bar(name, p, logit, winner) {
  const row = element("div", winner ? "bar winner" : "bar");
  const track = element("span", "track");
  const fill = element("span", "fill");
  fill.style.width = percent(p);
  track.append(fill);
  row.append(element("span", "name", name), track, element("span", "value", percent(p)),
    element("span", "logit", logit === undefined ? "" : logit.toFixed(2)));
  return row;
}

function outputUnits(answer) {
  const outputs = element("div", "outputs");
  const shades = answer.probabilities || [1];
  shades.forEach((p, index) => {
    const unit = element("span", "unit");
    const level = Math.round(255 * p / Math.max(...shades));
    unit.style.background = `rgb(${level},${level},${level})`;
    const label = answer.probabilities ? answer.classes[index] : `value ${answer.value.toFixed(2)}`;
    const row = element("div");
    row.append(unit, element("span", "", label));
    outputs.append(row);
  });
  return outputs;
}

// One answer view, from an answer: `root` holds .answer and .bars (and, for the main view, .seen, .why and
// .why-caption); `layers` gets the forward pass. `null` empties it, so that nothing of an earlier answer stays.
export function render(answer, root, layers) {
  const seen = root.querySelector(".seen");
  const why = root.querySelector(".why");
  const answerBox = root.querySelector(".answer");
  const bars = root.querySelector(".bars");
  bars.replaceChildren();
  layers.replaceChildren();
  if (!answer) {
    if (seen) gray(seen, new Array(seen.width * seen.height).fill(0), seen.width, 5);
    if (why) {
      diverging(why, new Array(why.width * why.height).fill(0));
      root.querySelector(".why-caption").textContent = "pixels that pushed toward the answer (red) and away from it (blue)";
    }
    answerBox.replaceChildren("?");
    return;
  }
  const flat = answer.input.flat();
  const side = answer.input.length;  // the network's input picture: side x side pixels
  if (seen) gray(seen, flat, side, 5);
  if (why) {
    diverging(why, answer.attribution.flat());
    root.querySelector(".why-caption").textContent =
      `pixels that pushed toward ${answer.classes[answer.target]} (red) and away from it (blue)`;
  }
  const detail = answer.probabilities
    ? `${percent(answer.probabilities[answer.class])} sure`
    : `predicted value ${answer.value.toFixed(2)}`;
  answerBox.replaceChildren(answer.name, element("small", "", detail));
  const logits = answer.layers[answer.layers.length - 1];
  if (answer.probabilities) {
    const head = element("div", "bar head");
    head.append(element("span", "name", "class"), element("span", "", ""), element("span", "value", "softmax"),
      element("span", "logit", "logit"));
    bars.append(head);
  }
  (answer.probabilities || []).forEach((p, index) => {
    const logit = logits.length === answer.probabilities.length ? logits[index] : undefined;
    bars.append(bar(answer.classes[index], p, logit, index === answer.class));
  });
  layers.append(layer("input", `${flat.length} pixels`, gray(document.createElement("canvas"), flat, side, 4)));
  answer.layers.slice(0, -1).forEach((units, index) => {
    const columns = Math.ceil(Math.sqrt(units.length));
    const canvas = gray(document.createElement("canvas"), units, columns, Math.max(3, Math.floor(140 / columns)));
    layers.append(arrow(), layer(`hidden ${index + 1}`, `${units.length} units, ReLU`, canvas));
  });
  const count = answer.probabilities ? answer.probabilities.length : 1;
  const size = !answer.probabilities ? "1 unit, linear" : count === 2 ? "1 unit, sigmoid" : `${count} units, softmax`;
  layers.append(arrow(), layer("output", size, outputUnits(answer)));
}
