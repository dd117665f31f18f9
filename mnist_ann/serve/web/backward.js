// The backward pass of the drawing on the pad (POST /backward): the loss toward a target, the output layer's
// gradient as signed bars, each hidden layer's gradient right to left on its activations' grid, the first
// layer's weight gradient as pictures, and optimizer steps taken on a copy of the network by the service. Each
// request starts from the model as saved and asks for one more step than the last: Reset asks for none.
import { current, snapshot } from "./page.js";
import { arrow, diverging, element, layer, percent } from "./answer.js";
import { call } from "./request.js";
import { show, showData } from "./words.js";

const targetSelect = document.getElementById("learn-target"), rate = document.getElementById("learn-rate");
const stepButton = document.getElementById("step");
const lossLine = document.getElementById("loss-line"), afterLine = document.getElementById("after-line");
const outputBars = document.getElementById("output-gradient");
const hidden = document.getElementById("hidden-gradients"), weights = document.getElementById("weight-gradients");
let steps = 0, asked = 0;

const fixed = (value, digits = 3) => value.toFixed(digits);
const share = (value) => percent(value, 2) || "-";

async function ask() {
  const pad = current();
  if (!pad.hasInk || !pad.answer) return;
  const request = { image: snapshot(), steps, ...(pad.model ? { model: pad.model } : {}) };
  if (targetSelect.value !== "") request.target = Number(targetSelect.value);
  if (rate.value !== "") request.lr = Number(rate.value);
  const number = ++asked;
  try {
    const learned = await call("backward", request);
    if (number === asked) showLearning(learned);
  } catch (error) {
    if (number === asked) showData(afterLine, String(error.message || error));
  }
}

function signedBar(name, value, top) {
  const row = element("div", "bar signed");
  const track = element("span", "track"), fill = element("span", value >= 0 ? "fill up" : "fill down");
  fill.style.width = `${(50 * Math.min(1, Math.abs(value) / top)).toFixed(1)}%`;
  track.append(fill);
  row.append(showData(element("span", "name"), name), track, showData(element("span", "value"), fixed(value)));
  return row;
}

function showLearning(learned) {
  const { before, after } = learned;
  const classes = learned.model.class_names;
  if (targetSelect.options.length !== classes.length + 1) {
    const options = classes.map((name, index) => showData(new Option("", `${index}`), name));
    targetSelect.replaceChildren(targetSelect.options[0], ...options);
  }
  if (rate.value === "") rate.placeholder = `${learned.lr}`;
  const name = classes[learned.target];
  if (before.probabilities && before.probabilities.length > 1) {
    const p = before.probabilities[learned.target];
    const shown = p < 0.001 ? p.toExponential(2) : fixed(p);  // -log 0.000 would say nothing
    show(lossLine, "backward.loss", { loss: fixed(before.loss), name, p: shown });
  } else {
    show(lossLine, "backward.loss_other", { loss: fixed(before.loss), name });
  }
  const outputs = before.output_gradient;
  const top = Math.max(...outputs.map(Math.abs), 1e-9);
  const names = outputs.length === classes.length ? classes : ["z"];
  outputBars.replaceChildren(...outputs.map((value, index) => signedBar(names[index], value, top)));

  const grids = [];  // right to left: the layer nearest the output first
  before.hidden.forEach((units, index) => {
    const columns = Math.ceil(Math.sqrt(units.gradient.length));
    const canvas = diverging(document.createElement("canvas"), units.gradient, columns,
      Math.max(3, Math.floor(140 / columns)), units.off);
    grids.unshift(layer(["backward.hidden", { number: index + 1 }], ["layer.relu", { count: units.gradient.length }], canvas));
  });
  hidden.replaceChildren(...grids.flatMap((grid, index) => (index ? [arrow("←"), grid] : [grid])));
  weights.replaceChildren(...before.first_weights.map((unit) => layer(["backward.unit", { unit: unit.unit }],
    ["backward.gradient", {}], diverging(document.createElement("canvas"), unit.gradient.flat(), unit.gradient.length, 3))));

  show(stepButton, learned.steps ? "backward.step_again" : "backward.step");
  document.body.dataset.learned = after ? after.class : learned.answer;  // for scripts and tests: the copy's answer
  document.body.dataset.steps = learned.steps;
  if (!after) { afterLine.replaceChildren(); return; }
  const line = show(element("span"), "backward.after", {
    steps: learned.steps, optimizer: learned.optimizer, lr: learned.lr, loss: fixed(after.loss),
    before: fixed(before.loss), name: classes[after.class],
  });
  const probability = (seen) => (seen.probabilities && seen.probabilities.length > 1
    ? share(seen.probabilities[learned.target]) : null);
  const target = probability(after) === null ? ""
    : show(element("span"), "backward.target_p", { name, after: probability(after), before: probability(before) });
  const moved = show(element("span"), "backward.moved", { moved: after.moved.map(share).join(", ") });
  const cost = show(element("span"), "backward.validation", { before: share(before.val_acc), after: share(after.val_acc) });
  afterLine.replaceChildren(line, " ", target, " ", moved, " ", cost);
}

function restart() { steps = 0; ask(); }

function showNothing() {
  delete document.body.dataset.learned;
  delete document.body.dataset.steps;
  show(lossLine, "backward.none");
  show(stepButton, "backward.step");
  for (const shown of [outputBars, hidden, weights, afterLine]) shown.replaceChildren();
}

document.addEventListener("answer", (event) => {
  if (!event.detail) showNothing();
  else if (steps === 0) ask();
});
document.addEventListener("pad", () => { steps = 0; });  // a new drawing starts from the model as saved
targetSelect.addEventListener("change", restart);
rate.addEventListener("change", restart);
document.getElementById("reset").addEventListener("click", restart);
stepButton.addEventListener("click", () => { steps++; ask(); });
showNothing();
