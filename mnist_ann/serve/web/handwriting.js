// Your own handwriting: keep a drawing with its label (the answer was right, or it was another digit), draw
// each digit in turn, measure the answering model on the collection, and teach it (a fine-tuning run of the
// lab) and compare before and after. Every text from the server is set with textContent.
import { answerWith, clearPad, current, restore, snapshot } from "./page.js";
import { element } from "./answer.js";
import { call } from "./request.js";

const labelIt = document.getElementById("label-it"), right = document.getElementById("right");
const message = document.getElementById("handwriting-message");
const prompt = document.getElementById("series-prompt");
const SERIES_ROUNDS = 5;
let series = null;  // while drawing each digit in turn: the digits still to draw
let teaching = null;  // while a teaching run goes: the model it started from, and its run once known
let answeredBy = "";  // the run of the model that gave the last answer (the pad is cleared after each save)

function say(text, ok = true) {
  message.textContent = text;
  message.className = ok ? "info" : "";
}

for (let digit = 0; digit <= 9; digit++) {
  const button = element("button", "", `${digit}`);
  button.type = "button";
  button.addEventListener("click", () => keep(digit));
  document.getElementById("true-digit").append(button);
}
right.addEventListener("click", () => {
  const { answer } = current();  // (the button is off unless the answer shown is the pad's as it is)
  if (series || answer) keep(series ? series[0] : answer.class);
});

document.addEventListener("answer", (event) => {
  const answer = event.detail;
  if (answer) answeredBy = answer.model.run;
  if (answer || series) right.textContent = series ? `Save as ${series[0]}` : `Right: it is a ${answer.name}`;
  right.disabled = !series && !answer;
});
// As the pad changes, the answer shown is of the drawing before: "Right" waits for the pad's own answer.
document.addEventListener("pad", () => {
  labelIt.hidden = !current().hasInk;
  right.disabled = !series;
});

// The pad as it is at the click is kept, with the digit given, even while an answer is on its way; the pad is
// cleared at once for the next drawing (and the drawing put back if it could not be kept). Saves go one after
// another, in the order of the clicks, so that the drawings are numbered (and held out) in the order drawn.
let lastSave = Promise.resolve();

async function keep(label) {
  if (!current().hasInk) return;
  const taken = snapshot();
  clearPad();
  const cleared = current().version, inSeries = Boolean(series);
  if (inSeries) {
    series.shift();
    nextInSeries();
  }
  const saved = lastSave.then(() => call("collect", { image: taken, label }));
  lastSave = saved.catch(() => null);
  try {
    const { kept, collection } = await saved;
    showCollection(collection);
    say(`Kept drawing ${kept.number} as a ${label}${kept.held_out ? " (held out: measured on, never taught)" : ""}.`);
    document.body.dataset.saved = collection.count;
  } catch (error) {
    say(String(error.message || error), false);
    restore(taken, cleared);
    if (inSeries) {  // that digit is asked for again
      series = [label, ...(series || [])];
      nextInSeries();
    }
  }
}

function nextInSeries() {
  if (!series.length) {
    series = null;
    prompt.hidden = true;
    say("Every digit drawn: measure a model on them, or teach it.");
    return;
  }
  const done = SERIES_ROUNDS * 10 - series.length;
  right.textContent = `Save as ${series[0]}`;
  prompt.hidden = false;
  prompt.textContent = `Draw a ${series[0]} (${done + 1} of ${SERIES_ROUNDS * 10}), then save it.`;
}

document.getElementById("series").addEventListener("click", () => {
  series = Array.from({ length: SERIES_ROUNDS * 10 }, (_, index) => index % 10);
  nextInSeries();
});

// The collection in words, and each drawing as the network sees it (28x28), newest first, each removable.
function showCollection(collection) {
  const problems = collection.problems.length ? ` Not read: ${collection.problems.join("; ")}` : "";
  const digits = collection.by_label.map((count, digit) => (count ? `${digit} (${count})` : "")).filter(Boolean);
  document.getElementById("collection-about").textContent = collection.count
    ? `${collection.count} drawing${collection.count === 1 ? "" : "s"} kept in ${collection.folder}/: `
      + `${collection.count - collection.held_out} to teach with, ${collection.held_out} held out to measure on `
      + `(every third). By digit: ${digits.join(", ")}.${problems}`
    : `No drawings kept yet: draw a digit, then keep it with its label. They go to ${collection.folder}/.${problems}`;
  document.getElementById("kept").replaceChildren(...collection.drawings.map(keptDrawing));
}

function keptDrawing(drawing) {
  const figure = element("figure", drawing.held_out ? "held-out" : "");
  const picture = element("img");
  Object.assign(picture, { src: `collect/digits/${encodeURIComponent(drawing.file)}`, width: 28, height: 28, loading: "lazy" });
  picture.alt = `drawing ${drawing.number}, a ${drawing.label}`;
  const remove = element("button", "", "×");
  remove.type = "button";
  remove.title = `remove drawing ${drawing.number}`;
  remove.setAttribute("aria-label", remove.title);
  remove.addEventListener("click", async () => {
    try {
      showCollection(await call(`collect/${drawing.number}`, {}, "DELETE"));
      say(`Removed drawing ${drawing.number}.`);
    } catch (error) {
      say(String(error.message || error), false);
    }
  });
  const caption = element("figcaption", "", `${drawing.label}${drawing.held_out ? " held out" : ""}`);
  figure.append(picture, caption, remove);
  return figure;
}

const percent = (share) => (share.accuracy === null ? "-" : `${(100 * share.accuracy).toFixed(1)}% of ${share.count}`);

async function measure(model, label) {
  const scores = await call(`collect/measure${model ? `?model=${encodeURIComponent(model)}` : ""}`);
  const row = element("tr");
  row.dataset.model = model || "";
  for (const text of [label || `${scores.model.run}, ${scores.model.checkpoint.split("/").pop()}`, percent(scores.all),
    percent(scores.held_out), scores.mnist_test === null ? "-" : `${(100 * scores.mnist_test).toFixed(2)}%`]) {
    row.append(element("td", "", text));
  }
  document.querySelector("#scores tbody").append(row);
  showConfusion(scores.confusion, row.firstChild.textContent);
  return scores;
}

function showConfusion(confusion, name) {
  const table = document.getElementById("confusion");
  const caption = element("caption", "", `${name}: the digit you drew (rows), its answer (columns)`);
  const head = element("tr");
  head.append(element("th"), ...confusion.map((_, index) => element("th", "", `${index}`)));
  const rows = confusion.map((counts, truth) => {
    const row = element("tr");
    row.append(element("th", "", `${truth}`));
    for (const [answer, count] of counts.entries()) {
      const cell = element("td", count ? (answer === truth ? "hit" : "miss") : "", count ? `${count}` : "");
      row.append(cell);
    }
    return row;
  });
  table.replaceChildren(caption, head, ...rows);
}

document.getElementById("measure").addEventListener("click", async () => {
  try {
    document.querySelector("#scores tbody").replaceChildren();
    await measure(current().model);
    say("Measured: rows are the digit you drew, columns the model's answer.");
  } catch (error) {
    say(String(error.message || error), false);
  }
});

document.getElementById("teach").addEventListener("click", async () => {
  const run = (current().model || answeredBy).split("/")[0];  // (the served checkpoint: its run, if it is one)
  try {
    const epochs = Number(document.getElementById("teach-epochs").value);
    await call("lab/teach", { run, epochs });
    teaching = { from: run, run: null };
    say(`Teaching ${run} your handwriting: a fine-tuning run on MNIST and your drawings (see the lab).`);
  } catch (error) {
    say(String(error.message || error), false);
  }
});

document.addEventListener("job", async (event) => {
  const job = event.detail;
  if (!teaching) return;
  if (job.run) teaching.run = job.run;
  if (job.state === "running" || job.state === "stopping" || !teaching.run) return;
  const { from, run } = teaching;
  teaching = null;
  if (job.state !== "finished") {
    say(`The teaching run ${job.state}. ${job.message}`, false);
    return;
  }
  document.querySelector("#scores tbody").replaceChildren();
  try {
    const before = await measure(from, `before: ${from}`);
    const after = await measure(run, `after: ${run}`);
    document.body.dataset.taught = JSON.stringify({ before, after });
    say(`Taught: ${run} starts from ${from}'s weights. It now answers your drawings.`);
    answerWith(run);
  } catch (error) {
    say(String(error.message || error), false);
  }
});

call("collect").then(showCollection).catch((error) => say(String(error.message || error), false));
