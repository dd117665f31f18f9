// Drawing an answer of POST /predict: the input the network got, the pixels behind its answer, each class's
// probability and every layer's activations. Every text that comes from the server (class names come from
// the checkpoint) is set with textContent, never parsed as HTML.
import { show, showData } from "./words.js";

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
// magnitudes, so that a few strong values do not wash out the rest. `columns` wide (a square by default), each
// value `scale` pixels on screen (unset: as the canvas is); `off[i]`: a unit that passes nothing, grey.
export function diverging(canvas, values, columns = Math.round(Math.sqrt(values.length)), scale = 0, off = []) {
  const rows = Math.ceil(values.length / columns);
  canvas.width = columns; canvas.height = rows;
  if (scale) { canvas.style.width = `${columns * scale}px`; canvas.style.height = `${rows * scale}px`; }
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(columns, rows);
  const magnitudes = values.map(Math.abs).filter((value) => value > 0).sort((a, b) => a - b);
  const top = magnitudes.length ? magnitudes[Math.floor(0.95 * (magnitudes.length - 1))] : 1e-9;
  values.forEach((value, index) => {
    const strength = Math.min(1, Math.abs(value) / top);
    const fade = Math.round(255 * (1 - strength));
    const colour = off[index] ? [200, 203, 210] : value >= 0 ? [255, fade, fade] : [fade, fade, 255];
    pixels.data.set([...colour, 255], index * 4);
  });
  for (let index = values.length; index < columns * rows; index++) pixels.data.set([246, 247, 249, 255], index * 4);
  context.putImageData(pixels, 0, 0);
  return canvas;
}

// A layer's picture with its name and size, each a message: [key, values].
export function layer(title, size, content) {
  const box = element("div", "layer");
  box.append(content, show(element("div", "title"), ...title), show(element("div", "size"), ...size));
  return box;
}

export const arrow = (direction = "→") => showData(element("span", "arrow"), direction);
// A share as a percentage, `digits` after the point; nothing for no share.
export const percent = (share, digits = 1) =>
  (share === null || share === undefined ? "" : `${(100 * share).toFixed(digits)}%`);

function bar(name, p, logit, winner) {
  const row = element("div", winner ? "bar winner" : "bar");
  const track = element("span", "track");
  const fill = element("span", "fill");
  fill.style.width = percent(p);
  track.append(fill);
  row.append(showData(element("span", "name"), name), track, showData(element("span", "value"), percent(p)),
    showData(element("span", "logit"), logit === undefined ? "" : logit.toFixed(2)));
  return row;
}

function outputUnits(answer) {
  const outputs = element("div", "outputs");
  const shades = answer.probabilities || [1];
  shades.forEach((p, index) => {
    const unit = element("span", "unit");
    const level = Math.round(255 * p / Math.max(...shades));
    unit.style.background = `rgb(${level},${level},${level})`;
    const label = element("span");
    if (answer.probabilities) showData(label, answer.classes[index]);
    else show(label, "layer.value", { value: answer.value.toFixed(2) });
    const row = element("div");
    row.append(unit, label);
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
      show(root.querySelector(".why-caption"), "result.why_caption");
    }
    answerBox.replaceChildren(showData(element("span"), "?"));
    return;
  }
  const flat = answer.input.flat();
  const side = answer.input.length;  // the network's input picture: side x side pixels
  if (seen) gray(seen, flat, side, 5);
  if (why) {
    diverging(why, answer.attribution.flat());
    show(root.querySelector(".why-caption"), "result.why_class", { name: answer.classes[answer.target] });
  }
  const detail = answer.probabilities
    ? show(element("small"), "answer.sure", { percent: percent(answer.probabilities[answer.class]) })
    : show(element("small"), "answer.value", { value: answer.value.toFixed(2) });
  answerBox.replaceChildren(showData(element("span"), answer.name), detail);
  const logits = answer.layers[answer.layers.length - 1];
  if (answer.probabilities) {
    const head = element("div", "bar head");
    head.append(show(element("span", "name"), "answer.class"), element("span"),
      show(element("span", "value"), "answer.softmax"), show(element("span", "logit"), "answer.logit"));
    bars.append(head);
  }
  (answer.probabilities || []).forEach((p, index) => {
    const logit = logits.length === answer.probabilities.length ? logits[index] : undefined;
    bars.append(bar(answer.classes[index], p, logit, index === answer.class));
  });
  const input = gray(document.createElement("canvas"), flat, side, 4);
  layers.append(layer(["layer.input"], ["layer.pixels", { count: flat.length }], input));
  const hidden = answer.model.batch_norm ? "layer.norm_relu" : "layer.relu";  // as the network computes it
  answer.layers.slice(0, -1).forEach((units, index) => {
    const columns = Math.ceil(Math.sqrt(units.length));
    const canvas = gray(document.createElement("canvas"), units, columns, Math.max(3, Math.floor(140 / columns)));
    const title = ["layer.hidden", { number: index + 1 }];
    layers.append(arrow(), layer(title, [hidden, { count: units.length }], canvas));
  });
  const count = answer.probabilities ? answer.probabilities.length : 1;
  const size = !answer.probabilities ? "layer.linear" : count === 2 ? "layer.sigmoid" : "layer.softmax";
  layers.append(arrow(), layer(["layer.output"], [size, { count }], outputUnits(answer)));
}
