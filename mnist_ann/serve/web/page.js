// The draw-a-digit page: the pad, and the requests that ask the service what the drawing is.
import { render } from "./answer.js";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const message = document.getElementById("message");
let drawing = false, hasInk = false, inFlight = false, again = false, timer = null;

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  hasInk = false;
  showMessage("Draw a digit in the box.", true);
  render(null);
}

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
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = point(event);
  ink.lineTo(x, y);
  ink.stroke();
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
  inFlight = true;  // from here: toBlob answers later
  busy("yes");
  pad.toBlob((blob) => ask(blob), "image/png");
}

// The page's state, for scripts and tests: busy while a request is out, and how many answers it has shown.
function busy(state) { document.body.dataset.busy = state; }
let answers = 0;

async function ask(blob) {
  inFlight = true;
  busy("yes");
  try {
    const image = await base64(blob);
    const response = await fetch("predict", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({image, explain: true}),
    });
    const answer = await response.json().catch(() => ({error: `the server answered ${response.status}`}));
    if (!response.ok) throw new Error(answer.error || `the server answered ${response.status}`);
    showMessage("", true);
    render(answer);
    document.body.dataset.answers = ++answers;
  } catch (error) {
    showMessage(String(error.message || error), false);
    render(null);
  } finally {
    inFlight = false;
    if (again) { again = false; now(); } else busy("no");
  }
}

function base64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function showMessage(text, info) {
  message.textContent = text;
  message.className = info ? "info" : "";
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
  picture.onload = () => {  // shown on the pad, so that one can draw on; the file itself is what is sent
    ink.fillStyle = "#fff";
    ink.fillRect(0, 0, pad.width, pad.height);
    const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
    const w = picture.width * scale, h = picture.height * scale;
    ink.drawImage(picture, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    URL.revokeObjectURL(url);
  };
  picture.onerror = () => URL.revokeObjectURL(url);
  picture.src = url;
  hasInk = true;
  ask(picked);
});

clearPad();
