// Your own handwriting: keep a drawing with its label (the answer was right, or it was another digit), draw
// each digit in turn, measure the answering model on the collection, and teach it (a fine-tuning run of the
// lab) and compare before and after. Every text from the server is set with textContent.
import { answerWith, clearPad, current } from "./page.js";
import { element } from "./answer.js";
import { base64, call } from "./request.js";

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
right.addEventListener("click", () => keep(series ? series[0] : current().answer.class));

document.addEventListener("answer", (event) => {
  const answer = event.detail;
  labelIt.hidden = !answer || !current().blob;
  if (answer) answeredBy = answer.model.run;
  if (answer) right.textContent = series ? `Save as ${series[0]}` : `Right: it is a ${answer.name}`;
});

async function keep(label) {
  const { blob } = current();
  if (!blob) return;
  try {
    const saved = await call("collect", { image: await base64(blob), label });
    showCollection(saved);
    say(`Kept drawing ${saved.number} as a ${label}${saved.held_out ? " (held out: measured on, never taught)" : ""}.`);
    document.body.dataset.saved = saved.count;
    if (series) {
      series.shift();
      nextInSeries();
    }
    clearPad();
  } catch (error) {
    say(String(error.message || error), false);
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
  prompt.hidden = false;
  prompt.textContent = `Draw a ${series[0]} (${done + 1} of ${SERIES_ROUNDS * 10}), then save it.`;
}

document.getElementById("series").addEventListener("click", () => {
  series = Array.from({ length: SERIES_ROUNDS * 10 }, (_, index) => index % 10);
  nextInSeries();
});

function showCollection(collection) {
  const problems = collection.problems.length ? ` Not read: ${collection.problems.join("; ")}` : "";
  document.getElementById("collection-about").textContent =
    `${collection.count} drawings in ${collection.folder}/ (${collection.held_out} held out), `
    + `by digit ${collection.by_label.join(" ")}.${problems}`;
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
