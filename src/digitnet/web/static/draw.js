"use strict";
const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen").getContext("2d");
const bars = document.getElementById("bars");
const digitEl = document.getElementById("digit");
const confidenceEl = document.getElementById("confidence");
const notesEl = document.getElementById("notes");

for (let d = 0; d < 10; d++) {
  bars.insertAdjacentHTML("beforeend",
    `<span>${d}</span><div class="bar" id="bar${d}"><div></div></div><span id="p${d}">0%</span>`);
}

function resetPad() {
  ctx.fillStyle = "white";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "black";
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.lineWidth = penWidth();
}
function penWidth() { return Number(document.getElementById("pen").value); }
resetPad();

let drawing = false, last = null, mid = null, strokes = 0;
function point(event) {
  const box = pad.getBoundingClientRect();
  return { x: (event.clientX - box.left) * pad.width / box.width,
           y: (event.clientY - box.top) * pad.height / box.height };
}
pad.addEventListener("pointerdown", (event) => {
  drawing = true; strokes += 1;
  pad.setPointerCapture(event.pointerId);
  last = point(event); mid = last;
  ctx.beginPath(); ctx.arc(last.x, last.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
  ctx.fillStyle = "black"; ctx.fill();
  schedule();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events) {
    // A quadratic curve through midpoints turns the pointer samples into a smooth stroke.
    const p = point(e), next = { x: (last.x + p.x) / 2, y: (last.y + p.y) / 2 };
    ctx.beginPath(); ctx.moveTo(mid.x, mid.y);
    ctx.quadraticCurveTo(last.x, last.y, next.x, next.y); ctx.stroke();
    last = p; mid = next;
  }
  schedule();
});
for (const name of ["pointerup", "pointercancel", "pointerleave"]) {
  pad.addEventListener(name, () => { if (drawing) { drawing = false; sendNow(); } });
}
document.getElementById("pen").addEventListener("change", () => { ctx.lineWidth = penWidth(); });
document.getElementById("clear").addEventListener("click", () => {
  resetPad(); strokes = 0; sent += 1; shown = sent; show(null);
});

// While drawing, ask the server at most every 120 ms with one request in flight, and show
// those answers as provisional; when the pen lifts, ask at once and show that answer as the
// final one. Answers are numbered so that a late one never replaces a newer one.
let timer = null, busy = false, again = false, sent = 0, shown = 0;
function schedule() {
  if (timer) return;
  timer = setTimeout(() => { timer = null; send(); }, 120);
}
function sendNow() {
  clearTimeout(timer); timer = null; send();
}
function canvasPng() {
  // toDataURL encodes at once; toBlob waits for the browser's idle time (up to a second).
  const bytes = atob(pad.toDataURL("image/png").split(",")[1]);
  const array = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) array[i] = bytes.charCodeAt(i);
  return new Blob([array], { type: "image/png" });
}
async function send() {
  if (busy) { again = true; return; }
  if (strokes === 0) return;
  busy = true;
  const number = ++sent, final = !drawing;
  try {
    const form = new FormData();
    form.append("file", canvasPng(), "drawing.png");
    const response = await fetch("/api/predict", { method: "POST", body: form });
    const body = await response.json();
    if (number <= shown) return;  // cleared, or a newer answer is on screen
    shown = number;
    if (response.ok) show(body, final); else showError(body.detail || response.statusText);
  } catch (error) {
    showError("the server did not answer: " + error);
  } finally {
    busy = false;
    if (again) { again = false; if (drawing) schedule(); else send(); }
  }
}

function show(result, final = true) {
  const probs = result ? result.probabilities : new Array(10).fill(0);
  const refused = !!result && result.digit === null;  // not read as a digit
  digitEl.textContent = !result ? "?" : refused ? "\u2717" : String(result.digit);
  digitEl.classList.toggle("provisional", !final);
  digitEl.classList.toggle("refused", refused);
  bars.classList.toggle("provisional", !final);
  digitEl.dataset.final = String(!!result && final);
  if (result && final) digitEl.dataset.finalAt = String(performance.now());
  confidenceEl.textContent = !result ? "draw a digit" : !final ? "drawing…"
    : refused ? "that doesn't look like a digit"
    : `${(100 * probs[result.digit]).toFixed(1)}% sure`;
  notesEl.textContent = result ? result.notes.join("; ") : "";
  for (let d = 0; d < 10; d++) {
    const bar = document.getElementById("bar" + d);
    bar.firstElementChild.style.width = (100 * probs[d]).toFixed(1) + "%";
    bar.classList.toggle("top", !!result && !refused && d === result.digit);
    document.getElementById("p" + d).textContent = (100 * probs[d]).toFixed(0) + "%";
  }
  const image = seen.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = result ? result.image[Math.floor(i / 28)][i % 28] : 0;
    image.data.set([v, v, v, 255], 4 * i);
  }
  seen.putImageData(image, 0, 0);
}
function showError(message) {
  show(null);
  digitEl.textContent = "–";
  confidenceEl.textContent = "";
  notesEl.textContent = message;
}
show(null);
