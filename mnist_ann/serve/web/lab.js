// The lab: the settings of a run, Start and Stop, the run learning live (server-sent events from the service),
// and the runs under lightning_logs/: answer with one, compare two, test one, resume one. Every text that comes
// from the server is set with textContent, never parsed as HTML.
import { answerWith, askAgain, compareWith } from "./page.js";
import { element, percent } from "./answer.js";
import { Chart } from "./chart.js";
import { call } from "./request.js";
import { show, showData } from "./words.js";

const form = document.getElementById("settings");
const widths = document.getElementById("widths");
const startButton = document.getElementById("start"), stopButton = document.getElementById("stop");
const labMessage = document.getElementById("lab-message");
const answerWithSelect = document.getElementById("answer-with");
const tiles = document.getElementById("tiles"), tilesCaption = document.getElementById("tiles-caption");
const lossChart = new Chart(document.getElementById("loss-chart"));
const accChart = new Chart(document.getElementById("acc-chart"), { yMax: 1, percent: true });
let limits = { layers: 4, width: 2048 }, watching = null, runs = [];
let follow = false;  // the next run to train was started from this page: it answers the drawing as it learns
const counts = { weights: 0, loss: 0 };  // for scripts and tests: how often the live view has changed

// The lab's message: a message of the table (key, values), or `also` one more line under the one shown.
function say(key, values = {}, ok = true, also = false) {
  const line = show(element("span"), key, values);
  if (also) labMessage.append("\n", line);
  else labMessage.replaceChildren(line);
  labMessage.className = ok ? "info" : "";
}

function fail(error) {  // the service's own message, or the browser's
  labMessage.replaceChildren(showData(element("span"), String(error.message || error)));
  labMessage.className = "";
}

function addWidth(value) {
  if (widths.children.length >= limits.layers) return;
  const row = element("div", "width");
  const input = element("input");
  Object.assign(input, { type: "number", min: 1, max: limits.width, step: 1, required: true, value });
  show(input, "lab.units", {}, "aria-label");
  const remove = show(element("button"), "lab.remove");
  remove.type = "button";
  remove.addEventListener("click", () => { row.remove(); numberLayers(); });
  row.append(element("span"), input, remove);
  widths.append(row);
  numberLayers();
}

function numberLayers() {
  [...widths.children].forEach((row, index) => { show(row.firstChild, "layer.hidden", { number: index + 1 }); });
  document.getElementById("add-layer").disabled = widths.children.length >= limits.layers;
}

function settings() {
  const data = new FormData(form);
  return {
    hidden_sizes: [...widths.querySelectorAll("input")].map((input) => Number(input.value)),
    optimizer: data.get("optimizer"),
    lr: Number(data.get("lr")),
    nesterov: data.get("nesterov") === "on",
    schedule: data.get("schedule"),
    batch_size: Number(data.get("batch_size")),
    epochs: Number(data.get("epochs")),
    input_dropout: Number(data.get("input_dropout")),
    dropout: Number(data.get("dropout")),
    label_smoothing: Number(data.get("label_smoothing")),
    augmentation: data.get("augmentation"),
    batch_norm: data.get("batch_norm") === "on",
    adversarial: data.get("adversarial"),
    adversarial_epsilon: Number(data.get("adversarial_epsilon")),
    weight_averaging: data.get("weight_averaging") === "on",
    averaging_decay: Number(data.get("averaging_decay")),
    dataset: data.get("dataset"),
    val_size: Number(data.get("val_size")),
  };
}

// The settings shown: the service's defaults, or a preset's (a shipped recipe's, on the dataset chosen).
function fill(values) {
  for (const [name, value] of Object.entries(values)) {
    if (name === "hidden_sizes") {
      widths.replaceChildren();
      value.forEach(addWidth);
    } else if (typeof value === "boolean") form.elements[name].checked = value;
    else form.elements[name].value = value;
  }
}

async function setUp() {
  const lab = await call("lab");
  limits = lab.limits;
  for (const [name, options] of Object.entries(lab.choices)) {
    form.elements[name].replaceChildren(...options.map((option) => showData(new Option("", option), option)));
  }
  fill(lab.defaults);
  document.getElementById("presets").replaceChildren(...Object.entries(lab.presets).map(([name, values]) => {
    const button = show(element("button"), `lab.preset.${name}`);
    button.type = "button";
    button.addEventListener("click", () => fill({ ...values, dataset: form.elements.dataset.value }));
    return button;
  }));
  if (!lab.allowed) {
    const off = document.getElementById("lab-off");
    off.hidden = false;
    show(off, "lab.off");
    form.querySelectorAll("button, input, select").forEach((control) => { control.disabled = true; });
  }
  await showRuns();
  choose(remembered());  // the served checkpoint unless the learner chose a run that is still there
  listen();
}

document.getElementById("add-layer").addEventListener("click", () => addWidth(64));

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const job = await call("lab/fit", settings());
    follow = true;
    say("lab.started", { command: job.command });
  } catch (error) {
    fail(error);
  }
});

stopButton.addEventListener("click", async () => {
  try {
    await call("lab/stop", {});
    say("lab.stopping");
  } catch (error) {
    fail(error);
  }
});

function listen() {
  const events = new EventSource("lab/events");  // reconnects by itself; the run goes on either way
  events.addEventListener("job", (event) => showJob(JSON.parse(event.data)));
  events.addEventListener("live", (event) => showLive(JSON.parse(event.data)));
}

function showJob(job) {
  document.dispatchEvent(new CustomEvent("job", { detail: job }));  // for handwriting.js
  const active = job.state === "running" || job.state === "stopping";
  document.body.dataset.lab = job.state;
  startButton.disabled = active || document.getElementById("lab-off").hidden === false;
  stopButton.disabled = job.state !== "running";
  if (active && job.run && job.run !== watching && job.kind === "fit") {  // a run that trains can answer as it learns
    watching = job.run;
    addModelOption(`${job.run}/live`, "lab.live_model", { run: job.run });
    if (follow || remembered() === `${job.run}/live`) choose(`${job.run}/live`);  // started here, or chosen before
    follow = false;
  } else if (!active && watching) {  // its training ended: its best checkpoint answers from now on
    const ended = watching;
    watching = null;
    answerWithSelect.querySelector(`option[value="${CSS.escape(`${ended}/live`)}"]`)?.remove();
    if (remembered() === `${ended}/live`) {
      showRuns().then(() => {
        choose(runs.some((run) => run.run === ended && run.models.includes("best")) ? ended : "");
        const now = { key: answerWithSelect.value ? "lab.best_answers" : "lab.served_answers" };
        say("lab.no_longer_trains", { run: ended, now }, labMessage.className === "info", true);
      });
    }
  }
  const said = {
    kind: { key: `job.${job.kind}` }, state: { key: `job.${job.state}` },
    run: job.run ? { key: "lab.job_run", values: { run: job.run } } : "", command: job.command, message: job.message,
  };
  if (active) say("lab.job_active", said);
  else if (job.state !== "idle") {
    say("lab.job_ended", said, job.state !== "failed");
    showRuns();
  }
}

function showLive(event) {
  if (event.event === "start") {
    lossChart.reset(event.max_steps);
    accChart.reset(event.max_epochs);
    counts.weights = counts.loss = 0;
  } else if (event.event === "train") {
    lossChart.add(event.step, event.loss);
    document.body.dataset.lossPoints = ++counts.loss;
  } else if (event.event === "val") {
    accChart.add(event.epoch + 1, event.acc);
  } else if (event.event === "weights") {
    tiles.src = event.image;
    show(tiles, "tiles.alt", {}, "alt");
    show(tilesCaption, "tiles.caption_step", { step: event.step });
    document.body.dataset.weightUpdates = ++counts.weights;
    if (answerWithSelect.value.endsWith("/live")) askAgain();  // the drawing, answered by the model as it is now
  }
}

function addModelOption(value, key, values) {
  if (![...answerWithSelect.options].some((option) => option.value === value)) {
    answerWithSelect.append(show(new Option("", value), key, values));
  }
}

// The learner's choice of the answering model is kept across reloads (this browser, this service's address).
function remembered() { return localStorage.getItem("answer-with") || ""; }
function choose(model) {
  if (![...answerWithSelect.options].some((option) => option.value === model)) model = "";
  answerWithSelect.value = model;
  localStorage.setItem("answer-with", model);
  answerWith(model);
}
answerWithSelect.addEventListener("change", () => choose(answerWithSelect.value));


async function showRuns() {
  try {
    runs = await call("lab/runs");
  } catch (error) {
    fail(error);
    return;
  }
  showRunRows();
  for (const run of runs) if (run.models.includes("best")) addModelOption(run.run, "lab.best_model", { run: run.run });
}

function showRunRows() { document.querySelector("#runs tbody").replaceChildren(...runs.map(runRow)); }
document.addEventListener("language", showRunRows);  // each figure's label on a phone is its column's heading

function runRow(run) {
  const row = element("tr");
  const s = run.settings;
  row.dataset.run = run.run;
  const score = (key, value) => (value === null ? "" : { key, values: { percent: percent(value, 2) } });
  row.dataset.scores = JSON.stringify({
    validation: score("runs.validation", run.val_acc), test: score("runs.test", run.test_acc),
  });
  const layers = s.hidden_sizes ? [s.inputs, ...s.hidden_sizes, s.outputs].join("-") : "";
  const headings = [...document.querySelectorAll("#runs thead th")].map((th) => th.textContent);
  [run.run, layers, s.optimizer ?? "", s.lr ?? "", s.epochs ?? "", percent(run.val_acc, 2), percent(run.test_acc, 2),
    percent(run.drawings_acc, 2)].forEach((text, index) => {
    const cell = showData(element("td"), String(text));
    if (index === 0 && s.taught_from) show(cell, "runs.taught_from", { run: run.run, from: s.taught_from });
    cell.dataset.label = headings[index];  // shown before the figure on a phone, where the table is cards
    row.append(cell);
  });
  const actions = element("td", "actions");
  const action = (key, handler, enabled = true) => {
    const button = show(element("button"), key);
    button.type = "button";
    button.disabled = !enabled;
    button.addEventListener("click", handler);
    actions.append(button);
  };
  const best = run.models.includes("best");
  action("runs.answer_with", () => choose(run.run), best);
  action("runs.compare", () => compareWith(run.run), best);
  action("runs.test_it", async () => {
    try { await call("lab/test", { run: run.run }); } catch (error) { fail(error); }
  }, best);
  action("runs.resume", async () => {
    try {
      await call("lab/resume", { run: run.run });
      follow = true;
    } catch (error) { fail(error); }
  }, run.models.includes("last"));
  row.append(actions);
  return row;
}

setUp().catch(fail);
