// The drawing page: strokes on a canvas -> POST the PNG to /api/v1/recognize -> show what was read.
// "Why this digit?", while open, POSTs the same image to /api/v1/explain after each reading and
// draws which pixels made the network read the digit so, and its first convolution's feature maps.
// "Wrong? It was:" and "Teach me your hand" POST the drawing to /api/v1/corrections: the first one
// makes a personal profile, whose identifier is kept in localStorage and sent with every later
// request. Plain JS, no build step. Try: `digitrec serve`, then open http://127.0.0.1:8000/.
"use strict";

const API = "/api/v1/recognize?images=true&top_k=3";
const CORRECTIONS = "/api/v1/corrections", PROFILES = "/api/v1/profiles", EXPLAIN = "/api/v1/explain";
const PROFILE_KEY = "digitrec.profile";  // localStorage: the identifier of this browser's profile
const CONSTRAINTS = { digits: "c-digits", pattern: "c-pattern", checksum: "c-checksum", lexicon: "c-lexicon" };
const DEBOUNCE_MS = 200;   // while drawing: ask again once the pen rests this long
const PEN = 0.065;         // stroke width as a fraction of the canvas height (MNIST-like ratio)
const INK = "#1b1b1f", PAPER = "#ffffff", BOX = "#0b63ce", FLAG = "#b45309", ODD = "#b42318";
// The server's Recognition.reason values, and the mark a piece that is no digit reads as.
const NO_INK = "no ink", NOT_A_DIGIT = "not a digit", LOW_CONFIDENCE = "low confidence", MARK = "?";
const NO_VALID_READING = "no valid reading";
// The attribution's colours (RGB): where the ink raised the digit's score, and where it lowered it.
const RAISED = [200, 30, 30], LOWERED = [30, 90, 220];
// What each attribution method of /api/v1/explain measures, for the legend.
const METHODS = {
  "occlusion": "how much blanking a patch over each pixel lowers the score",
  "integrated-gradients": "each pixel's share of the score, from a blank image to this one",
  "grad-cam": "where the last convolution found the features of that digit",
};

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

// "Why this digit?": the last explanation, for the reading of `seq` (error: why there is none).
// One request at a time; `again`: a newer reading came meanwhile.
const why = { result: null, error: null, seq: -1, busy: false, again: false };

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
function query(profile) {
  const q = new URLSearchParams();
  for (const [name, id] of Object.entries(CONSTRAINTS)) {
    const value = $(id).value.trim();
    if (value) q.set(name, value);
  }
  if (profile) q.set("profile", profile);
  return q.toString();
}

function apiUrl(profile) {
  const more = query(profile);
  return more ? `${API}&${more}` : API;
}

// The same options for /api/v1/explain (its method: the server's default); the view shows the
// first convolution only, so only that one is asked for.
function explainUrl(profile) {
  const more = query(profile);
  return more ? `${EXPLAIN}?stages=1&${more}` : `${EXPLAIN}?stages=1`;
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
  followWhy();
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
      if (whyOpen()) showWhy();
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

// ---- why this digit: /api/v1/explain ----------------------------------------------------------

const whyOpen = () => $("why").open;
const readDigits = () => (state.result ? state.result.digits : []);
// Whether the reading on show is the one for what the pad shows now.
const readingIsCurrent = () => state.shown === state.seq && readDigits().length > 0 && hasDrawing();

// A new reading, or the view just opened: explain the reading unless that is done (or on its way).
function followWhy() {
  if (!whyOpen()) return;  // closed: no request, the drawing stays as fast as without it
  if (readingIsCurrent() && why.seq !== state.shown) explainReading();
  showWhy();
}

// The server's complaint, as one line.
function problem(body, response) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d) && d.length && d[0].msg) return d.map((e) => e.msg).join("; ");
  return `The server answered ${response.status}.`;
}

async function explainReading() {
  if (why.busy) { why.again = true; return; }
  if (!readingIsCurrent()) return;
  const seq = state.seq;
  let profile = state.profile;
  why.busy = true;
  showWhy();
  try {
    let response = await fetch(explainUrl(profile), await upload());
    if (response.status === 404 && profile && seq === state.seq) {
      profile = null;  // the profile is gone (the next reading forgets it): explain without it
      response = await fetch(explainUrl(null), await upload());
    }
    const body = await response.json().catch(() => ({}));
    if (seq !== state.seq) return;  // the drawing changed meanwhile: its reading asks again
    why.seq = seq;
    why.result = response.ok ? body : null;
    why.error = response.ok ? null
      : response.status === 404 ? "This server cannot explain readings (it has no /api/v1/explain)."
      : `Cannot explain this reading: ${problem(body, response)}`;
  } catch {
    if (seq === state.seq) {
      why.seq = seq;
      why.result = null;
      why.error = "Cannot reach the server to explain this reading — is `digitrec serve` still running?";
    }
  } finally {
    why.busy = false;
    why.again = false;
    followWhy();  // explains a reading that came meanwhile, if the view is still open
  }
}

function setWhyStatus(message, kind = "") {
  const s = $("why-status");
  if (s.textContent !== message) s.textContent = message;
  s.className = "why-status " + kind;
}

// Where in a 28x28 map its strongest value of `sign` lies, in words ("the top left"); null: none.
function whereStrongest(values, sign, scale) {
  let best = 0, at = null;
  values.forEach((row, r) => row.forEach((v, c) => { if (sign * v > best) { best = sign * v; at = [r, c]; } }));
  if (!at || best < 0.1 * scale) return null;  // nothing worth naming
  const n = values.length, m = values[0].length;
  const row = ["top", "middle", "bottom"][Math.min(2, Math.floor(3 * at[0] / n))];
  const col = ["left", "centre", "right"][Math.min(2, Math.floor(3 * at[1] / m))];
  return row === "middle" && col === "centre" ? "the centre" : `the ${row}${col === "centre" ? "" : " " + col}`;
}

// The input in grey (ink darker), the attribution over it: red where it raised the score, blue
// where it lowered it, the strongest of either at full colour.
function paintAttribution(canvas, image, attribution) {
  const n = image.length, m = image[0].length;
  canvas.width = m;
  canvas.height = n;
  const c = canvas.getContext("2d");
  const px = c.createImageData(m, n);
  const scale = Math.max(...attribution.map((row) => Math.max(...row.map(Math.abs)))) || 1;
  for (let r = 0; r < n; r++) {
    for (let k = 0; k < m; k++) {
      const a = Math.max(-1, Math.min(1, attribution[r][k] / scale)), w = Math.abs(a);
      const grey = 255 * (0.95 - 0.55 * image[r][k]);
      const hue = a > 0 ? RAISED : LOWERED;
      const i = 4 * (r * m + k);
      for (let ch = 0; ch < 3; ch++) px.data[i + ch] = Math.round(grey * (1 - w) + hue[ch] * w);
      px.data[i + 3] = 255;
    }
  }
  c.putImageData(px, 0, 0);
  return scale;
}

// A feature map in grey, its own range stretched from black (lowest) to white (highest).
function paintMap(canvas, map) {
  const n = map.length, m = map[0].length;
  canvas.width = m;
  canvas.height = n;
  const c = canvas.getContext("2d");
  const px = c.createImageData(m, n);
  const flat = map.flat(), lo = Math.min(...flat), hi = Math.max(...flat);
  flat.forEach((v, i) => {
    const g = hi > lo ? Math.round(255 * (v - lo) / (hi - lo)) : 0;
    px.data.set([g, g, g, 255], 4 * i);
  });
  c.putImageData(px, 0, 0);
}

// The view for the digit chosen in "What the network saw" (the first one by default).
function showWhy() {
  const body = $("why-body");
  body.setAttribute("aria-busy", String(why.busy));
  const current = why.seq === state.shown && readingIsCurrent();
  if (!readingIsCurrent()) {
    $("why-shown").hidden = true;
    return setWhyStatus(
      teach.active ? "While teaching nothing is read, so nothing is explained."
      : !hasDrawing() ? "Draw a digit: here you will see which of its pixels made the network read it so."
      : state.shown !== state.seq ? "Waiting for the reading…"
      : "Nothing was read, so there is nothing to explain.");
  }
  if (!current) return setWhyStatus("Working out why…");  // the last picture stays, dimmed, until then
  if (why.error) {
    $("why-shown").hidden = true;
    return setWhyStatus(why.error, "error");
  }
  const pieces = why.result.digits || [];
  const i = state.selected < pieces.length ? state.selected : 0;
  const d = pieces[i];
  if (!d) {
    $("why-shown").hidden = true;
    return setWhyStatus("The server found nothing to explain.", "error");
  }
  const method = why.result.method;
  const which = pieces.length > 1 ? `Digit ${i + 1} of ${pieces.length}` : "It";
  const target = d.top_k && d.top_k.length ? d.top_k[0].digit : d.digit;  // the digit whose score is explained
  const odd = isOdd(d);
  const others = (d.top_k || []).slice(1).map((t) => `${t.digit} (${pct(t.probability)})`).join(", ");
  const best = d.top_k && d.top_k.length ? ` (${pct(d.top_k[0].probability)})` : "";
  $("why-caption").textContent = odd
    ? `${which.replace("Digit", "Piece")} doesn't look like a digit; closest: ${target}${best}${others ? `, then ${others}` : ""}`
    : `${which} reads ${d.digit}${best}${others ? `; then ${others}` : ""}`;

  const scale = paintAttribution($("why-overlay"), d.image, d.attribution);
  const raised = whereStrongest(d.attribution, 1, scale), lowered = whereStrongest(d.attribution, -1, scale);
  const subject = pieces.length > 1 ? `digit ${i + 1}` : "the digit";
  $("why-overlay").setAttribute("aria-label",
    `The 28 by 28 input of ${subject}, coloured by ${method}: ` +
    (raised ? `the ink that raised the score of ${target} most is at ${raised}` : `no pixel raised the score of ${target} much`) +
    (lowered ? `; what lowered it most is at ${lowered}.` : "; hardly anything lowered it."));

  const legend = $("why-legend");
  const swatch = (kind) => {
    const s = document.createElement("span");
    s.className = `swatch ${kind}`;
    s.setAttribute("aria-hidden", "true");
    return s;
  };
  legend.replaceChildren(`${method}: `, swatch("raised"), ` red raised the score of ${target}, `,
                         swatch("lowered"), " blue lowered it");
  const measures = METHODS[method] || method;
  legend.title = `${measures[0].toUpperCase()}${measures.slice(1)}; the strongest pixel at full colour.`;

  const stage = (d.stages || [])[0];
  $("why-maps").replaceChildren(...(stage ? stage.maps.map((map, k) => {
    const li = document.createElement("li");
    const canvas = document.createElement("canvas");
    canvas.className = "why-map";
    canvas.setAttribute("role", "img");
    const channel = stage.channels[k];
    canvas.setAttribute("aria-label",
                        `Feature map of ${stage.name} channel ${channel}: bright where the channel responds most`);
    paintMap(canvas, map);
    const caption = document.createElement("span");
    caption.textContent = `ch ${channel}`;
    caption.setAttribute("aria-hidden", "true");  // the canvas's label says it
    li.append(canvas, caption);
    return li;
  }) : []));
  $("why-maps-title").textContent = stage
    ? `Its first convolution (${stage.name}): the ${stage.maps.length} most active feature maps`
    : "No feature maps came with this explanation.";
  $("why-shown").hidden = false;
  // Said to screen readers; the caption shows it already.
  setWhyStatus(`${which} reads ${odd ? `no digit (closest ${target})` : d.digit}: explained by ${method}.`, "done");
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
$("why").addEventListener("toggle", followWhy);

buildBars();
buildCorrect();
redraw();
showModel();
checkProfile();
