// The drawing page: strokes on a canvas -> POST the PNG to /api/v1/recognize -> show what was read.
// "Wrong? It was:" and "Teach me your hand" POST the drawing to /api/v1/corrections: the first one
// makes a personal profile, whose identifier is kept in localStorage and sent with every later
// request. Plain JS, no build step. Try: `digitrec serve`, then open http://127.0.0.1:8000/.
"use strict";

const API = "/api/v1/recognize?images=true&top_k=3";
const CORRECTIONS = "/api/v1/corrections", PROFILES = "/api/v1/profiles";
const PROFILE_KEY = "digitrec.profile";  // localStorage: the identifier of this browser's profile
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
  shown: -1,          // the seq of the drawing that answer is for
  selected: 0,        // which digit's probabilities the bars show
  seq: 0,             // bumped on every change: answers to older requests are dropped
  busy: false, again: false, timer: 0,
  profile: null,      // the identifier of the person's profile, when they have one
  samples: null,      // how many samples it holds, when known
  note: null,         // {text, position} said before the next reading (e.g. what was just learnt)
  correcting: false,  // a correction is on its way: the digit buttons wait for it
};

// Teach mode: a list of {digit, round, rounds} prompts, and which one is being drawn.
// `run` counts the sessions: an answer for a stopped one moves no later one on.
const teach = { active: false, plan: [], index: 0, sending: false, run: 0 };

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
  state.note = null;  // a note belongs to the drawing it was made for
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

// The query: the page's options, what the number must be (the fields left empty ask nothing),
// and the profile `profile` to read with.
function apiUrl(profile) {
  const q = new URLSearchParams();
  for (const [name, id] of Object.entries(CONSTRAINTS)) {
    const value = $(id).value.trim();
    if (value) q.set(name, value);
  }
  if (profile) q.set("profile", profile);
  const more = q.toString();
  return more ? `${API}&${more}` : API;
}

function canvasPng() {
  return new Promise((resolve) => ink.toBlob(resolve, "image/png"));
}

const hasDrawing = () => state.strokes.length > 0 || state.photo !== null;

// The fetch options that upload what the pad shows: the photo as a form, or the drawing as a PNG.
async function upload() {
  if (state.photo) {
    const form = new FormData();
    form.append("file", state.photo.file, state.photo.file.name);
    return { method: "POST", body: form };
  }
  return { method: "POST", headers: { "Content-Type": "image/png" }, body: await canvasPng() };
}

async function recognize() {
  if (teach.active) return;  // teaching: the drawings are samples, not questions
  if (state.busy) { state.again = true; return; }  // one request at a time; the latest drawing wins
  if (!hasDrawing()) return show(null, "Draw a digit in the pad.");
  const seq = state.seq;
  const sent = state.profile;
  state.busy = true;
  $("status").closest("section").setAttribute("aria-busy", "true");
  try {
    const response = await fetch(apiUrl(sent), await upload());
    const body = await response.json().catch(() => ({}));
    if (response.status === 404 && sent) {  // the profile is gone (deleted elsewhere): read without it
      if (state.profile === sent) forgetProfile();
      state.again = true;
      return;
    }
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

// What the status line says of a result: [message, kind].
function describe(result, digits, reason) {
  if (reason === NO_INK || !digits.length) {
    return [state.photo ? "No digit found in the photo." : "No digit found — draw a digit.", "unsure"];
  }
  if (reason === NOT_A_DIGIT) return ["That doesn't look like a digit.", "odd"];
  if (reason === NO_VALID_READING) {
    const read = result.constrained && result.constrained.unconstrained;
    return [`No reading fits what the number must be${read ? ` — it reads ${read} without that` : ""}.`, "unsure"];
  }
  if (reason) return [`Not sure this is a digit — best guess ${guess(digits)}.`, "unsure"];
  if (digits.some(isOdd)) return [`Read ${result.text} — ${MARK} marks ink that doesn't look like a digit.`, "unsure"];
  if (digits.some((d) => d.flagged)) return [`Read ${result.text} (unsure about the marked digits).`, "unsure"];
  return [`Read ${result.text}.`, ""];
}

function show(result, message, kind) {
  const note = state.note;
  state.note = null;
  state.result = result;
  state.shown = state.seq;
  const digits = result ? result.digits : [];
  // After a correction of one digit of a number, that digit stays selected.
  const keep = note && note.position != null && note.position < digits.length;
  state.selected = keep ? note.position : 0;
  // An older server sends no reason: no digits meant no ink, any other rejection low confidence.
  const reason = result && result.rejected ? (result.reason || (digits.length ? LOW_CONFIDENCE : NO_INK)) : null;
  const [said, how] = message ? [message, kind] : describe(result, digits, reason);
  setStatus(note ? `${note.text} ${said}` : said, how);
  showValid(result);
  showText(digits, reason);
  drawBoxes(digits);
  showSeen(digits);
  showBars();
  showCorrect();
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
      showCorrect();
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

// ---- the person's profile: corrections and teaching ------------------------------------------

function storedProfile() {
  try { return localStorage.getItem(PROFILE_KEY); } catch { return null; }  // storage may be off
}

function keepProfile(info) {
  state.profile = info.profile;
  try { localStorage.setItem(PROFILE_KEY, info.profile); } catch { /* kept for this page only */ }
  showProfile(info.samples);
}

function forgetProfile() {
  state.profile = null;
  try { localStorage.removeItem(PROFILE_KEY); } catch { /* nothing kept */ }
  showProfile(null);
}

const samples = (n) => `${n} sample${n === 1 ? "" : "s"}`;

function showProfile(count) {
  state.samples = count;
  $("profile").hidden = !state.profile;
  $("profile-info").textContent = count == null ? "Reading with your profile" : `Reading with your profile: ${samples(count)}`;
}

// The stored profile, if the server still has it (one it does not know is forgotten silently).
async function checkProfile() {
  const id = storedProfile();
  if (!id) return;
  state.profile = id;
  showProfile(null);
  try {
    const response = await fetch(`${PROFILES}/${encodeURIComponent(id)}`);
    if (state.profile !== id) return;
    if (response.status === 404) forgetProfile();
    else if (response.ok) showProfile((await response.json()).samples);
  } catch { /* the server is away: recognition will say so */ }
}

// Teach the profile (a new one when there is none) that what the pad shows, or its digit at
// `position`, is `digit`: {response, body}; the profile is kept when the server took it.
async function sendCorrection(digit, position) {
  const ask = (profile) => {
    const q = new URLSearchParams({ digit: String(digit) });
    if (position != null) q.set("position", String(position));
    if (profile) q.set("profile", profile);
    return q;
  };
  const sent = state.profile;
  let response = await fetch(`${CORRECTIONS}?${ask(sent)}`, await upload());
  if (response.status === 404 && sent) {  // the profile is gone: start a new one
    if (state.profile === sent) forgetProfile();
    response = await fetch(`${CORRECTIONS}?${ask(null)}`, await upload());
  }
  const body = await response.json().catch(() => ({}));
  if (response.ok) keepProfile(body);
  return { response, body };
}

// Read the pad again (with the profile as it is now), saying `text` first.
function reread(text, position = null) {
  state.seq++;
  clearTimeout(state.timer);
  state.note = { text, position };
  recognize();
}

function buildCorrect() {
  $("correct-digits").replaceChildren(...Array.from({ length: 10 }, (_, digit) => {
    const b = document.createElement("button");
    b.type = "button";
    b.id = `correct-${digit}`;
    b.textContent = String(digit);
    b.addEventListener("click", () => correct(digit));
    return b;
  }));
}

// The "Wrong? It was:" row: for the one digit read, or the one chosen in "What the network saw".
function showCorrect() {
  const digits = state.result ? state.result.digits : [];
  $("correct").hidden = teach.active || !digits.length;
  $("correct-label").textContent = digits.length > 1
    ? `Wrong? Digit ${state.selected + 1} of ${digits.length} was:` : "Wrong? It was:";
  $("correct").querySelectorAll("button").forEach((b) => {
    b.setAttribute("aria-disabled", String(state.correcting));
    b.setAttribute("aria-label", digits.length > 1 ? `Digit ${state.selected + 1} was ${b.textContent}` : `It was ${b.textContent}`);
  });
}

async function correct(digit) {
  const digits = state.result ? state.result.digits : [];
  // The drawing changed since this reading: its digits may be others; the new reading is coming.
  if (state.correcting || !digits.length || !hasDrawing() || state.shown !== state.seq) return;
  const position = digits.length > 1 ? state.selected : null;  // one digit: the image is read as one
  state.correcting = true;
  showCorrect();
  try {
    const { response, body } = await sendCorrection(digit, position);
    if (!response.ok) return setStatus(body.detail || `The server answered ${response.status}.`, "error");
    const what = position == null ? "this is" : `digit ${position + 1} is`;
    reread(`Learnt: ${what} a ${digit}. Your profile has ${samples(body.samples)}.`, position);
  } catch {
    setStatus("Cannot reach the server — is `digitrec serve` still running?", "error");
  } finally {
    state.correcting = false;
    showCorrect();
  }
}

async function deleteProfile() {
  const id = state.profile;
  if (!id) return;
  try {
    const response = await fetch(`${PROFILES}/${encodeURIComponent(id)}`, { method: "DELETE" });
    if (!response.ok && response.status !== 404) {
      const body = await response.json().catch(() => ({}));
      return setStatus(body.detail || `The server answered ${response.status}.`, "error");
    }
  } catch {
    return setStatus("Cannot reach the server — is `digitrec serve` still running?", "error");
  }
  if (state.profile === id) forgetProfile();
  $("teach").focus();  // the button pressed is gone
  if (!teach.active) reread("Your profile is deleted.");
}

// The prompts: each digit of data-digits (or ?teach_digits=) data-rounds times (or ?teach_rounds=).
function teachPlan() {
  const button = $("teach"), query = new URLSearchParams(location.search);
  const chosen = (query.get("teach_digits") || button.dataset.digits || "").replace(/[^0-9]/g, "");
  const digits = [...new Set(chosen || "0123456789")].map(Number);
  const asked = parseInt(query.get("teach_rounds") || button.dataset.rounds, 10);
  const rounds = Number.isFinite(asked) ? Math.min(Math.max(asked, 1), 20) : 3;
  return digits.flatMap((digit) => Array.from({ length: rounds }, (_, r) => ({ digit, round: r + 1, rounds })));
}

function askFor(before = "") {
  const { digit, round, rounds } = teach.plan[teach.index];
  $("teach-prompt").textContent = `${before}Draw a ${digit} (${round} of ${rounds})`;
  $("teach-progress").max = teach.plan.length;
  $("teach-progress").value = teach.index;
}

function startTeach() {
  teach.active = true;
  teach.run++;
  teach.plan = teachPlan();
  teach.index = 0;
  state.strokes = [];
  state.photo = null;
  changed(0);
  show(null, "Teaching: draw what is asked, then press Next.");
  $("teach").hidden = true;
  $("teach-panel").hidden = false;
  askFor();
  $("teach-next").focus();
}

async function teachNext() {
  if (!teach.active || teach.sending) return;
  if (!hasDrawing()) return askFor("The pad is empty. ");
  const { digit } = teach.plan[teach.index];
  const run = teach.run;
  const sentStrokes = new Set(state.strokes), sentPhoto = state.photo;
  teach.sending = true;
  $("teach-next").setAttribute("aria-disabled", "true");
  try {
    const { response, body } = await sendCorrection(digit, null);
    if (!teach.active || teach.run !== run) return;  // stopped meanwhile; the sample still counts
    if (!response.ok) return askFor(`${body.detail || `The server answered ${response.status}.`} `);
    teach.index++;
    // Clear what was sent; strokes drawn while it was on its way stay.
    state.strokes = state.strokes.filter((s) => !sentStrokes.has(s));
    if (state.photo === sentPhoto) state.photo = null;
    changed(0);
    if (teach.index >= teach.plan.length) stopTeach(true);
    else askFor();
  } catch {
    if (teach.active && teach.run === run) askFor("Cannot reach the server. ");
  } finally {
    teach.sending = false;
    $("teach-next").setAttribute("aria-disabled", "false");
  }
}

function stopTeach(done) {
  teach.active = false;
  $("teach-panel").hidden = true;
  $("teach").hidden = false;
  $("teach").focus();
  const has = state.profile ? `Your profile has ${samples(state.samples || 0)}.` : "Nothing was learnt.";
  reread(done ? `Your profile is ready: ${samples(state.samples || 0)}. Draw digits to see them read with it.`
              : `Stopped teaching. ${has}`);
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
  else if (e.key === "Enter" && teach.active && !(e.target instanceof HTMLButtonElement)) {
    e.preventDefault();  // a focused button takes Enter itself
    teachNext();
  }
});
for (const id of Object.values(CONSTRAINTS)) $(id).addEventListener("change", () => changed(0));
$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clearAll);
$("teach").addEventListener("click", startTeach);
$("teach-next").addEventListener("click", teachNext);
$("teach-stop").addEventListener("click", () => stopTeach(false));
$("profile-delete").addEventListener("click", deleteProfile);

buildBars();
buildCorrect();
redraw();
showModel();
checkProfile();
