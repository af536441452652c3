// The drawing page: strokes on a canvas -> POST the PNG to /api/v1/recognize -> show what was read.
// Plain JS, no build step. Try: `digitrec serve`, then open http://127.0.0.1:8000/.
"use strict";

const API = "/api/v1/recognize?images=true&top_k=3";
const CONSTRAINTS = { digits: "c-digits", pattern: "c-pattern", checksum: "c-checksum", lexicon: "c-lexicon" };
const DEBOUNCE_MS = 200;   // while drawing: ask again once the pen rests this long
const PEN = 0.065;         // stroke width as a fraction of the canvas height (MNIST-like ratio)
const INK = "#1b1b1f", PAPER = "#ffffff", BOX = "#0b63ce", FLAG = "#b45309", ODD = "#b42318";
// The server's Recognition.reason values, and the mark a piece that is no digit reads as.
const NO_INK = "no ink", NOT_A_DIGIT = "not a digit", LOW_CONFIDENCE = "low confidence", MARK = "?";
const NO_VALID_READING = "no valid reading";

const $ = (id) => document.getElementById(id);
const ink = $("ink"), overlay = $("overlay"), stage = $("stage");
const ctx = ink.getContext("2d"), octx = overlay.getContext("2d");

const state = {
  strokes: [],        // each a list of {x, y} in canvas pixels; undo drops the last one
  drawing: null,      // the pointerId of the stroke being drawn
  photo: null,        // {file, bitmap, fit} when a photo is shown instead of strokes
  result: null,       // the last answer from the server
  selected: 0,        // which digit's probabilities the bars show
  seq: 0,             // bumped on every change: answers to older requests are dropped
  busy: false, again: false, timer: 0,
};

// ---- drawing --------------------------------------------------------------------------------

function toCanvas(e) {
  // The canvas is scaled by CSS: map page pixels to canvas pixels.
  const r = ink.getBoundingClientRect();
  return { x: (e.clientX - r.left) * ink.width / r.width, y: (e.clientY - r.top) * ink.height / r.height };
}

function drawStroke(points) {
  const w = ink.height * PEN;
  if (points.length === 1) {  // a tap: a dot
    ctx.beginPath();
    ctx.arc(points[0].x, points[0].y, w / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  // Quadratic curves through the midpoints: smooth lines from jagged pointer samples.
  ctx.lineWidth = w;
  ctx.beginPath();
  ctx.moveTo(points[0].x, points[0].y);
  for (let i = 1; i < points.length - 1; i++) {
    const p = points[i], q = points[i + 1];
    ctx.quadraticCurveTo(p.x, p.y, (p.x + q.x) / 2, (p.y + q.y) / 2);
  }
  const last = points[points.length - 1];
  ctx.lineTo(last.x, last.y);
  ctx.stroke();
}

function redraw() {
  ctx.fillStyle = PAPER;  // an opaque background: the PNG is what the person sees
  ctx.fillRect(0, 0, ink.width, ink.height);
  if (state.photo) {
    const { bitmap, fit } = state.photo;
    if (bitmap) ctx.drawImage(bitmap, fit.x, fit.y, bitmap.width * fit.scale, bitmap.height * fit.scale);
    return;
  }
  ctx.fillStyle = ctx.strokeStyle = INK;
  ctx.lineCap = ctx.lineJoin = "round";
  state.strokes.forEach(drawStroke);
}

ink.addEventListener("pointerdown", (e) => {
  if (e.pointerType === "mouse" && e.button !== 0) return;
  e.preventDefault();
  if (state.photo) clearAll();  // drawing after a photo starts a new drawing
  ink.setPointerCapture(e.pointerId);
  state.drawing = e.pointerId;
  state.strokes.push([toCanvas(e)]);
  changed(DEBOUNCE_MS);
});

ink.addEventListener("pointermove", (e) => {
  if (e.pointerId !== state.drawing) return;
  const stroke = state.strokes[state.strokes.length - 1];
  // Coalesced events: every sample the device gave, not only one per frame.
  for (const c of (e.getCoalescedEvents ? e.getCoalescedEvents() : [e])) stroke.push(toCanvas(c));
  changed(DEBOUNCE_MS);
});

function endStroke(e) {
  if (e.pointerId !== state.drawing) return;
  state.drawing = null;
  changed(0);  // the stroke is finished: ask now
}
ink.addEventListener("pointerup", endStroke);
ink.addEventListener("pointercancel", endStroke);

function changed(delay) {
  state.seq++;
  redraw();
  clearBoxes();
  clearTimeout(state.timer);
  state.timer = setTimeout(recognize, delay);
}

function undo() {
  if (state.photo) return clearAll();
  if (!state.strokes.length) return;
  state.strokes.pop();
  changed(0);
}

function clearAll() {
  state.strokes = [];
  state.photo = null;
  state.drawing = null;
  changed(0);
}

// ---- photos ---------------------------------------------------------------------------------

async function showPhoto(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) return setStatus(`${file.name} is not an image.`, "error");
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    bitmap = null;  // the browser cannot show it (e.g. HEIC); the server may still read it
  }
  const scale = bitmap ? Math.min(ink.width / bitmap.width, ink.height / bitmap.height) : 1;
  const fit = bitmap ? { scale, x: (ink.width - bitmap.width * scale) / 2, y: (ink.height - bitmap.height * scale) / 2 }
                     : { scale: 0, x: 0, y: 0 };
  state.strokes = [];
  state.photo = { file, bitmap, fit };
  changed(0);
}

$("pick").addEventListener("click", () => $("photo").click());
$("photo").addEventListener("change", (e) => { showPhoto(e.target.files[0]); e.target.value = ""; });
stage.addEventListener("dragover", (e) => {
  e.preventDefault();
  stage.classList.add("dragging");
  $("drop-hint").hidden = false;
});
stage.addEventListener("dragleave", () => { stage.classList.remove("dragging"); $("drop-hint").hidden = true; });
stage.addEventListener("drop", (e) => {
  e.preventDefault();
  stage.classList.remove("dragging");
  $("drop-hint").hidden = true;
  showPhoto(e.dataTransfer.files[0]);
});

// ---- asking the server ----------------------------------------------------------------------

// The query: the page's options and what the number must be (the fields left empty ask nothing).
function apiUrl() {
  const q = new URLSearchParams();
  for (const [name, id] of Object.entries(CONSTRAINTS)) {
    const value = $(id).value.trim();
    if (value) q.set(name, value);
  }
  const more = q.toString();
  return more ? `${API}&${more}` : API;
}

function canvasPng() {
  return new Promise((resolve) => ink.toBlob(resolve, "image/png"));
}

async function recognize() {
  if (state.busy) { state.again = true; return; }  // one request at a time; the latest drawing wins
  if (!state.strokes.length && !state.photo) return show(null, "Draw a digit in the pad.");
  const seq = state.seq;
  state.busy = true;
  $("status").closest("section").setAttribute("aria-busy", "true");
  try {
    let response;
    if (state.photo) {
      const form = new FormData();
      form.append("file", state.photo.file, state.photo.file.name);
      response = await fetch(apiUrl(), { method: "POST", body: form });
    } else {
      response = await fetch(apiUrl(), { method: "POST", headers: { "Content-Type": "image/png" }, body: await canvasPng() });
    }
    const body = await response.json().catch(() => ({}));
    if (seq !== state.seq) return;  // the drawing changed meanwhile
    if (!response.ok) show(null, body.detail || `The server answered ${response.status}.`, "error");
    else show(body);
  } catch {
    if (seq === state.seq) show(null, "Cannot reach the server — is `digitrec serve` still running? Then draw again.", "error");
  } finally {
    state.busy = false;
    $("status").closest("section").removeAttribute("aria-busy");
    if (state.again) { state.again = false; recognize(); }
  }
}

// ---- showing the answer ---------------------------------------------------------------------

function setStatus(message, kind = "") {
  const s = $("status");
  s.textContent = message;
  s.className = "status " + kind;
}

function show(result, message, kind) {
  state.result = result;
  state.selected = 0;
  const digits = result ? result.digits : [];
  // An older server sends no reason: no digits meant no ink, any other rejection low confidence.
  const reason = result && result.rejected ? (result.reason || (digits.length ? LOW_CONFIDENCE : NO_INK)) : null;
  if (message) setStatus(message, kind);
  else if (reason === NO_INK || !digits.length) {
    setStatus(state.photo ? "No digit found in the photo." : "No digit found — draw a digit.", "unsure");
  } else if (reason === NOT_A_DIGIT) setStatus("That doesn't look like a digit.", "odd");
  else if (reason === NO_VALID_READING) {
    const read = result.constrained && result.constrained.unconstrained;
    setStatus(`No reading fits what the number must be${read ? ` — it reads ${read} without that` : ""}.`, "unsure");
  }
  else if (reason) setStatus(`Not sure this is a digit — best guess ${guess(digits)}.`, "unsure");
  else if (digits.some(isOdd)) setStatus(`Read ${result.text} — ${MARK} marks ink that doesn't look like a digit.`, "unsure");
  else if (digits.some((d) => d.flagged)) setStatus(`Read ${result.text} (unsure about the marked digits).`, "unsure");
  else setStatus(`Read ${result.text}.`);
  showValid(result);
  showText(digits, reason);
  drawBoxes(digits);
  showSeen(digits);
  showBars();
}

// The readings that fit the constraints, best first, when some were asked for.
function showValid(result) {
  const c = result && result.constrained;
  $("c-valid").textContent = !c ? "" : c.readings.length
    ? "Readings that fit: " + c.readings.map((r) => `${r.text} (${(100 * r.probability).toPrecision(2)}%)`).join(", ")
    : "No reading fits.";
}

const isOdd = (d) => d.digit === MARK;
// The best guess of a rejected reading: only the pieces read as digits.
const guess = (digits) => digits.filter((d) => !isOdd(d)).map((d) => d.digit).join("") || MARK;

function showText(digits, reason) {
  // The number read, with each piece that is no digit set apart; a rejected answer is no number.
  const out = $("text");
  out.className = reason === NOT_A_DIGIT ? "odd" : "";
  if (!digits.length) return out.replaceChildren("–");
  if (reason) return out.replaceChildren(reason === NOT_A_DIGIT ? "✗" : "?");
  out.replaceChildren(...digits.map((d) => {
    if (!isOdd(d)) return d.digit;
    const span = document.createElement("span");
    span.className = "odd";
    span.title = "not a digit";
    span.textContent = MARK;
    return span;
  }));
}
const pct = (p) => `${Math.round(p * 100)}%`;

function showBars() {
  const digits = state.result ? state.result.digits : [];
  const d = digits[state.selected];
  const probs = d ? d.probabilities : new Array(10).fill(0);
  const best = d ? probs.indexOf(Math.max(...probs)) : -1;
  const which = digits.length > 1 ? `digit ${state.selected + 1} of ${digits.length}` : "";
  const odd = d && isOdd(d) ? `not a digit, ${pct(d.not_digit)} sure; its closest digits` : "";
  $("bars-which").textContent = which || odd ? `(${[which, odd].filter(Boolean).join(": ")})` : "";
  $("bars").querySelectorAll("li").forEach((li, i) => {
    li.classList.toggle("best", i === best);
    li.querySelector(".fill").style.transform = `scaleX(${probs[i]})`;
    li.querySelector(".pct").textContent = pct(probs[i]);
  });
}

function showSeen(digits) {
  const seen = $("seen");
  seen.replaceChildren(...digits.map((d, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.setAttribute("aria-pressed", String(i === state.selected));
    b.title = isOdd(d) ? `Piece ${i + 1}: not a digit, ${pct(d.not_digit)} sure`
                       : `Digit ${i + 1}: ${d.digit}, ${pct(d.confidence)} sure${d.flagged ? " (unsure)" : ""}`;
    const img = document.createElement("img");
    img.src = d.image;
    img.alt = `28 by 28 image of digit ${i + 1}`;
    const caption = document.createElement("span");
    caption.textContent = isOdd(d) ? `${MARK} · not a digit` : `${d.digit} · ${pct(d.confidence)}`;
    if (d.flagged) caption.className = isOdd(d) ? "odd" : "flagged";
    b.append(img, caption);
    b.addEventListener("click", () => {
      state.selected = i;
      seen.querySelectorAll("button").forEach((x, j) => x.setAttribute("aria-pressed", String(j === i)));
      showBars();
    });
    return b;
  }));
}

function clearBoxes() { octx.clearRect(0, 0, overlay.width, overlay.height); }

function drawBoxes(digits) {
  clearBoxes();
  // Boxes are in the uploaded image's pixels: the canvas itself, or the photo as fitted on it.
  const fit = state.photo ? state.photo.fit : { scale: 1, x: 0, y: 0 };
  if (!fit.scale) return;
  octx.lineWidth = 2;
  octx.font = "bold 16px system-ui, sans-serif";
  for (const d of digits) {
    const [x0, y0, x1, y1] = d.box.map((v, i) => v * fit.scale + (i % 2 ? fit.y : fit.x));
    const colour = isOdd(d) ? ODD : d.flagged ? FLAG : BOX;
    octx.strokeStyle = octx.fillStyle = colour;
    octx.setLineDash(isOdd(d) ? [2, 4] : d.flagged ? [6, 4] : []);
    octx.strokeRect(x0 - 3, y0 - 3, x1 - x0 + 6, y1 - y0 + 6);
    const tag = isOdd(d) ? MARK : d.flagged ? `${d.digit}?` : d.digit;
    const ty = Math.max(y0 - 5, 18);
    octx.fillRect(x0 - 4, ty - 16, octx.measureText(tag).width + 8, 20);
    octx.fillStyle = PAPER;
    octx.fillText(tag, x0, ty);
  }
}

// ---- start ----------------------------------------------------------------------------------

function buildBars() {
  $("bars").replaceChildren(...Array.from({ length: 10 }, (_, i) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="digit">${i}</span><span class="track"><span class="fill"></span></span><span class="pct">0%</span>`;
    return li;
  }));
}

async function showModel() {
  try {
    const m = await (await fetch("/api/v1/model")).json();
    const acc = m.test_accuracy == null ? "" : `, ${(m.test_accuracy * 100).toFixed(2)}% on the MNIST test set`;
    $("model").textContent = `Model: ${m.architecture} (${m.backend}, ${m.precision}${acc}), digitrec ${m.digitrec_version}`;
    for (const [id, names] of [["c-checksum", m.checksums || []], ["c-lexicon", m.lexicons || []]]) {
      $(id).append(...names.map((name) => new Option(name, name)));
    }
  } catch {
    $("model").textContent = "Model: the server cannot be reached.";
  }
}

document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); }
  else if (e.key === "Escape" || e.key === "Delete") { e.preventDefault(); clearAll(); }
});
for (const id of Object.values(CONSTRAINTS)) $(id).addEventListener("change", () => changed(0));
$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clearAll);

buildBars();
redraw();
showModel();
