// The draw-a-digit page: the pad, and the requests that ask the service what the drawing is: of the model
// chosen to answer (the served checkpoint, a run, or the run training now), and of a second one to compare.
// The pad is the one source of truth: every change to it (a stroke, Clear, a save, an upload) makes a new
// version, each request carries the version it was asked for, and an answer for any other version than the
// pad's current one is dropped. What is kept is the pad at the click (`snapshot`), never an earlier request's.
import { percent, render } from "./answer.js";
import { call } from "./request.js";
import { show, showData } from "./words.js";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const message = document.getElementById("message");
const main = document.getElementById("main-answer"), mainLayers = document.getElementById("layers");
const compareBox = document.getElementById("compare"), compareView = document.getElementById("compare-answer");
const compareMain = document.getElementById("compare-main");
const target = document.getElementById("target");
let drawing = false, hasInk = false, inFlight = false, again = false, timer = null;
let version = 0;  // the pad's: one more with every change
let chosen = { model: null, compare: null, answer: null, answered: -1 };  // answered: the version it is for

function changed() {
  version++;
  document.dispatchEvent(new Event("pad"));  // for handwriting.js
}

function showAnswers(answer, compared, at = version) {
  render(answer, main, mainLayers);
  chosen.answer = answer;
  chosen.answered = answer ? at : -1;
  document.dispatchEvent(new CustomEvent("answer", { detail: answer }));  // for handwriting.js
  // On a narrow screen, the answer in a word beside the pad: the full answer is below it, out of sight.
  showData(document.getElementById("pad-answer"), answer
    ? `${answer.name}${answer.probabilities ? ` (${percent(answer.probabilities[answer.class], 0)})` : ""}` : "");
  for (const [view, shown] of [[compareMain, answer], [compareView, compared]]) {
    render(shown, view, view.querySelector(".layers"));
    showData(view.querySelector(".who"), shown ? `${shown.model.run}, ${shown.model.checkpoint.split("/").pop()}` : "");
  }
}

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  hasInk = false;
  changed();
  target.value = "";  // a new drawing is explained toward its own answer
  showMessage("draw.empty", {}, true);
  showAnswers(null, null);
}

// For the lab (lab.js): which model answers, which one is compared, and asking again (the model changed).
export function answerWith(model) { chosen.model = model || null; askAgain(); }
export function compareWith(model) {
  chosen.compare = model || null;
  compareBox.hidden = !model;
  askAgain();
}
// What handwriting.js keeps: the pad as it is now, with its version and the answer if it is this version's.
export function current() {
  return { version, hasInk, answer: chosen.answered === version ? chosen.answer : null, model: chosen.model };
}
// The pad as a PNG, base64: taken at the call. (Not `toBlob`: Chromium encodes its blob when the page is idle,
// up to a second after the last stroke where no frame is drawn.)
export function snapshot() { return pad.toDataURL("image/png").split(",", 2)[1]; }
// A drawing put back on the pad (a save that failed), unless something was drawn since `at`.
export async function restore(image, at) {
  const picture = new Image();
  picture.src = `data:image/png;base64,${image}`;
  await picture.decode();
  if (at !== version) return;
  ink.drawImage(picture, 0, 0);
  hasInk = true;
  changed();
  now();
}
export { clearPad };
export function askAgain() { now(); }
document.getElementById("compare-close").addEventListener("click", () => compareWith(null));
target.addEventListener("change", askAgain);

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  const [x, y] = point(event);
  ink.strokeStyle = "#000";
  ink.lineWidth = 18;
  ink.lineCap = ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(x, y);
  ink.lineTo(x + 0.1, y + 0.1);
  ink.stroke();
  hasInk = true;
  changed();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = point(event);
  ink.lineTo(x, y);
  ink.stroke();
  changed();
  soon();
});
for (const end of ["pointerup", "pointercancel"]) {
  pad.addEventListener(end, () => { if (drawing) { drawing = false; now(); } });
}

// While a stroke goes on, at most one request every 150 ms and one at a time; the last state is always sent.
function soon() { if (!timer) timer = setTimeout(() => { timer = null; now(); }, 150); }
function now() {
  if (timer) { clearTimeout(timer); timer = null; }
  if (!hasInk) return;
  if (inFlight) { again = true; return; }
  inFlight = true;
  busy("yes");
  ask(snapshot(), version);
}

// The page's state, for scripts and tests: busy while a request is out, and how many answers it has shown.
function busy(state) { document.body.dataset.busy = state; }
let answers = 0;

function predict(image, model, explainTarget) {
  const request = { image, explain: true, model };
  if (explainTarget !== "") request.target = Number(explainTarget);
  return call("predict", request);
}

async function ask(image, at) {
  try {
    const [answer, compared] = await Promise.all([
      predict(image, chosen.model, target.value),
      chosen.compare ? predict(image, chosen.compare, "") : null,
    ]);
    if (at !== version) return;  // the pad changed meanwhile: this answer is of a drawing that is gone
    showData(message, "");
    showAnswers(answer, compared, at);
    describe(answer);
    document.body.dataset.answers = ++answers;
  } catch (error) {
    if (at !== version) return;
    showFailure(error);
    showAnswers(null, null);
  } finally {
    inFlight = false;
    if (again || (at !== version && hasInk)) { again = false; now(); }
    if (!inFlight) busy("no");
  }
}

// Which model answered: its run, file and layers (the lab's table adds its accuracies); the classes to explain.
function describe(answer) {
  const about = answer.model;
  const file = about.checkpoint.split("/").pop();
  const inputs = answer.input.flat().length;  // (the page asks every answer to explain itself)
  const layers = [inputs, ...about.hidden_sizes, answer.probabilities ? answer.probabilities.length : 1].join("-");
  const scores = JSON.parse(document.querySelector(`#runs tr[data-run="${CSS.escape(about.run)}"]`)?.dataset.scores || "{}");
  const step = about.global_step === undefined || about.global_step === null ? "" : { key: "result.step", values: { step: about.global_step } };
  show(document.getElementById("model-about"), "result.about", { run: about.run, file, step, layers, ...scores });
  if (target.options.length !== answer.classes.length + 1) {
    const classes = answer.classes.map((name, index) => showData(new Option("", `${index}`), `${name}`));
    target.replaceChildren(show(new Option("", ""), "result.the_answer"), ...classes);
  }
}

function showMessage(key, values, info) {
  show(message, key, values);
  message.className = info ? "info" : "";
}

function showFailure(error) {  // the service's own message, or the browser's
  showData(message, String(error.message || error));
  message.className = "";
}

document.getElementById("clear").addEventListener("click", clearPad);
document.addEventListener("keydown", (event) => { if (event.key === "Escape") clearPad(); });
const file = document.getElementById("file");
document.getElementById("upload").addEventListener("click", () => file.click());
file.addEventListener("change", () => {
  const picked = file.files[0];
  file.value = "";
  if (!picked) return;
  const url = URL.createObjectURL(picked);
  const picture = new Image();
  picture.onload = () => {  // drawn on the pad, which is then what is answered and kept, as a drawing is
    clearPad();
    const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
    const w = picture.width * scale, h = picture.height * scale;
    ink.drawImage(picture, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    URL.revokeObjectURL(url);
    hasInk = true;
    changed();
    now();
  };
  picture.onerror = () => { URL.revokeObjectURL(url); showMessage("draw.not_a_picture", { file: picked.name }, false); };
  picture.src = url;
});

clearPad();
