// Your own handwriting: keep a drawing with its label (the answer was right, or it was another digit), draw
// each digit in turn, measure the answering model on the collection, and teach it (a fine-tuning run of the
// lab) and compare before and after. Every text from the server is set with textContent.
import { answerWith, clearPad, current, restore, snapshot } from "./page.js";
import { element, percent } from "./answer.js";
import { call } from "./request.js";
import { show, showData } from "./words.js";

const labelIt = document.getElementById("label-it"), right = document.getElementById("right");
const message = document.getElementById("handwriting-message");
const prompt = document.getElementById("series-prompt");
const SERIES_ROUNDS = 5;
let series = null;  // while drawing each digit in turn: the digits still to draw
let teaching = null;  // while a teaching run goes: the model it started from, and its run once known
let answeredBy = "";  // the run of the model that gave the last answer (the pad is cleared after each save)

function say(key, values = {}, ok = true) {
  show(message, key, values);
  message.className = ok ? "info" : "";
}

function fail(error) {  // the service's own message, or the browser's
  showData(message, String(error.message || error));
  message.className = "";
}

for (let digit = 0; digit <= 9; digit++) {
  const button = showData(element("button"), `${digit}`);
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
  if (series) show(right, "keep.save_as", { digit: series[0] });
  else if (answer) show(right, "keep.right_answer", { name: answer.name });
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
    say("hw.kept_drawing", { number: kept.number, label, held: kept.held_out ? { key: "hw.kept_held" } : "" });
    document.body.dataset.saved = collection.count;
  } catch (error) {
    fail(error);
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
    say("hw.all_drawn");
    return;
  }
  const done = SERIES_ROUNDS * 10 - series.length;
  show(right, "keep.save_as", { digit: series[0] });
  prompt.hidden = false;
  show(prompt, "hw.draw_next", { digit: series[0], number: done + 1, count: SERIES_ROUNDS * 10 });
}

document.getElementById("series").addEventListener("click", () => {
  series = Array.from({ length: SERIES_ROUNDS * 10 }, (_, index) => index % 10);
  nextInSeries();
});

// The collection in words, and each drawing as the network sees it (28x28), newest first, each removable.
function showCollection(collection) {
  const problems = collection.problems.length
    ? { key: "hw.not_read", values: { problems: collection.problems.join("; ") } } : "";
  const digits = collection.by_label.map((count, digit) => (count ? `${digit} (${count})` : "")).filter(Boolean);
  const about = document.getElementById("collection-about"), { count, folder } = collection;
  if (!count) show(about, "hw.no_collection", { folder, problems });
  else {
    const teach = count - collection.held_out, held = collection.held_out;
    show(about, count === 1 ? "hw.collection_one" : "hw.collection",
      { count, folder, teach, held, digits: digits.join(", "), problems });
  }
  document.getElementById("kept").replaceChildren(...collection.drawings.map(keptDrawing));
}

function keptDrawing(drawing) {
  const figure = element("figure", drawing.held_out ? "held-out" : "");
  const picture = element("img");
  Object.assign(picture, { src: `collect/digits/${encodeURIComponent(drawing.file)}`, width: 28, height: 28, loading: "lazy" });
  show(picture, "hw.drawing", { number: drawing.number, label: drawing.label }, "alt");
  const remove = showData(element("button"), "×");
  remove.type = "button";
  show(remove, "hw.remove", { number: drawing.number }, "title");
  show(remove, "hw.remove", { number: drawing.number }, "aria-label");
  remove.addEventListener("click", async () => {
    try {
      showCollection(await call(`collect/${drawing.number}`, {}, "DELETE"));
      say("hw.removed", { number: drawing.number });
    } catch (error) {
      fail(error);
    }
  });
  const caption = element("figcaption");
  if (drawing.held_out) show(caption, "hw.held_out", { label: drawing.label });
  else showData(caption, `${drawing.label}`);
  figure.append(picture, caption, remove);
  return figure;
}

// A share of the drawings answered right, as a cell: "-" where there are none.
function shareCell(share) {
  const cell = element("td");
  if (share.accuracy === null) return showData(cell, "-");
  return show(cell, "hw.share", { percent: percent(share.accuracy), count: share.count });
}

// A model measured on the drawings: a row of the scores table, named by `label` (a message: [key, values]) or
// by its run and file.
async function measure(model, label) {
  const scores = await call(`collect/measure${model ? `?model=${encodeURIComponent(model)}` : ""}`);
  const row = element("tr");
  row.dataset.model = model || "";
  const file = scores.model.checkpoint.split("/").pop();
  const name = label ? show(element("td"), ...label) : showData(element("td"), `${scores.model.run}, ${file}`);
  const mnist = showData(element("td"), percent(scores.mnist_test, 2) || "-");
  row.append(name, shareCell(scores.all), shareCell(scores.held_out), mnist);
  document.querySelector("#scores tbody").append(row);
  showConfusion(scores.confusion, label ? { key: label[0], values: label[1] } : name.textContent);
  return scores;
}

function showConfusion(confusion, name) {
  const table = document.getElementById("confusion");
  const caption = show(element("caption"), "hw.confusion_caption", { name });
  const head = element("tr");
  head.append(element("th"), ...confusion.map((_, index) => showData(element("th"), `${index}`)));
  const rows = confusion.map((counts, truth) => {
    const row = element("tr");
    row.append(showData(element("th"), `${truth}`));
    for (const [answer, count] of counts.entries()) {
      const cell = showData(element("td", count ? (answer === truth ? "hit" : "miss") : ""), count ? `${count}` : "");
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
    say("hw.measured");
  } catch (error) {
    fail(error);
  }
});

document.getElementById("teach").addEventListener("click", async () => {
  const run = (current().model || answeredBy).split("/")[0];  // (the served checkpoint: its run, if it is one)
  try {
    const epochs = Number(document.getElementById("teach-epochs").value);
    await call("lab/teach", { run, epochs });
    teaching = { from: run, run: null };
    say("hw.teaching", { run });
  } catch (error) {
    fail(error);
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
    say("hw.teaching_ended", { state: { key: `job.${job.state}` }, message: job.message }, false);
    return;
  }
  document.querySelector("#scores tbody").replaceChildren();
  try {
    const before = await measure(from, ["hw.before", { run: from }]);
    const after = await measure(run, ["hw.after", { run }]);
    document.body.dataset.taught = JSON.stringify({ before, after });
    say("hw.taught", { run, from });
    answerWith(run);
  } catch (error) {
    fail(error);
  }
});

call("collect").then(showCollection).catch(fail);
