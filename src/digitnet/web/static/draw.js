"use strict";
const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen").getContext("2d");
const bars = document.getElementById("bars");
const digitEl = document.getElementById("digit");
const confidenceEl = document.getElementById("confidence");
const notesEl = document.getElementById("notes");
const boxes = document.getElementById("boxes").getContext("2d");
const digitsEl = document.getElementById("digits");
const hintEl = document.getElementById("hint");
// One digit on a square pad (/api/predict), or a number on a wide one (/api/number).
const MODES = {
  digit: { width: 320, height: 320, api: "/api/predict",
           hint: "Draw one digit, 0 to 9, with the mouse, a finger or a pen." },
  number: { width: 960, height: 320, api: "/api/number",
            hint: "Write a number, its digits side by side, with a little space between them." },
};
let mode = MODES.digit;

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
function clearAll() {
  resetPad(); strokes = 0; sent += 1; shown = sent; render(null);
}
document.getElementById("clear").addEventListener("click", clearAll);
for (const input of document.querySelectorAll("input[name=mode]")) {
  input.addEventListener("change", () => {
    mode = MODES[input.value];
    document.body.classList.toggle("number", mode === MODES.number);
    for (const canvas of [pad, boxes.canvas]) {
      canvas.width = mode.width; canvas.height = mode.height;
    }
    hintEl.textContent = mode.hint;
    clearAll();
  });
}

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
  const number = ++sent, drawn = strokes, penUp = !drawing;
  try {
    const form = new FormData();
    form.append("file", canvasPng(), "drawing.png");
    const response = await fetch(mode.api, { method: "POST", body: form });
    const body = await response.json();
    if (number <= shown) return;  // cleared, or a newer answer is on screen
    shown = number;
    // final only if it answers the whole drawing: sent with the pen up, and no stroke begun
    // since (an answer to the drawing before the last stroke is shown as provisional)
    const final = penUp && strokes === drawn;
    if (response.ok) render(body, final); else showError(body.detail || response.statusText);
  } catch (error) {
    showError("the server did not answer: " + error);
  } finally {
    busy = false;
    if (again) { again = false; if (drawing) schedule(); else send(); }
  }
}

function render(result, final = true) {
  digitEl.classList.toggle("provisional", !!result && !final);
  digitEl.dataset.final = String(!!result && final);
  if (result && final) digitEl.dataset.finalAt = String(performance.now());
  if (mode === MODES.number) showNumber(result, final); else show(result, final);
}

// A number: the digits read, and over the writing each digit's box and confidence.
function showNumber(result, final) {
  const refused = !!result && result.number === null;
  digitEl.textContent = !result ? "?" : refused ? "\u2717" : result.number;
  digitEl.classList.toggle("refused", refused);
  confidenceEl.textContent = !result ? "write a number" : !final ? "writing…"
    : refused ? "not read as a number"
    : `${result.digits.length} digit${result.digits.length > 1 ? "s" : ""}, the least sure `
      + `${(100 * Math.min(...result.digits.map((d) => d.confidence))).toFixed(1)}%`;
  notesEl.textContent = result ? [result.refused, ...result.notes].filter(Boolean).join("; ") : "";
  digitsEl.replaceChildren();
  boxes.clearRect(0, 0, boxes.canvas.width, boxes.canvas.height);
  if (!result) return;
  boxes.lineWidth = 3;
  boxes.font = "bold 18px system-ui, sans-serif";
  let labelsEnd = -Infinity;  // where the last label above the boxes ends
  for (const d of result.digits) {
    const item = document.createElement("li");
    const read = d.digit !== null;
    if (read) item.dataset.digit = String(d.digit);
    item.classList.toggle("refused", !read);
    const label = read ? `${d.digit} ${(100 * d.confidence).toFixed(0)}%` : "?";
    item.textContent = read ? String(d.digit) : "?";
    const small = document.createElement("small");
    small.textContent = read ? `${(100 * d.confidence).toFixed(0)}%` : "not read";
    item.append(small);
    digitsEl.append(item);
    const [x, y, w, h] = d.box;
    const colour = !final ? "#b0bec5" : read ? "#2e7d32" : "#c62828";
    boxes.strokeStyle = colour; boxes.fillStyle = colour;
    boxes.strokeRect(x - 4, y - 4, w + 8, h + 8);
    // above the box, or below it where that would overlap the label before
    const above = y > 26 && x - 4 > labelsEnd + 6;
    boxes.fillText(label, x - 4, above ? y - 10 : y + h + 24);
    if (above) labelsEnd = x - 4 + boxes.measureText(label).width;
  }
}

function show(result, final = true) {
  const probs = result ? result.probabilities : new Array(10).fill(0);
  const refused = !!result && result.digit === null;  // not read as a digit
  digitEl.textContent = !result ? "?" : refused ? "\u2717" : String(result.digit);
  digitEl.classList.toggle("refused", refused);
  bars.classList.toggle("provisional", !final);
  confidenceEl.textContent = !result ? "draw a digit" : !final ? "drawing…"
    : refused ? "not read as a digit"
    : `${(100 * probs[result.digit]).toFixed(1)}% sure`;
  notesEl.textContent = result ? [result.refused, ...result.notes].filter(Boolean).join("; ")
    : "";
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
  render(null);
  digitEl.textContent = "–";
  confidenceEl.textContent = "";
  notesEl.textContent = message;
}
render(null);
