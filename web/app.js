// The qkv-wgpu page: the worked example, Q/K/V from one fused dispatch, a model-shape run and
// the adapter, all through the wasm build of the library (./pkg/qkv_web.js, wasm-bindgen
// --target web). Plain ES module, no dependencies.

const MAX_DIM = 4;
const DEBOUNCE_MS = 120;
const MINUS = "\u2212";
const SUBSCRIPT = "₀₁₂₃₄₅₆₇₈₉";

// ---------------------------------------------------------------------------------------------
// Formatting

/** Digits as Unicode subscripts: 12 -> "₁₂". */
export function sub(n) {
  return String(n).replace(/\d/g, (d) => SUBSCRIPT[d]);
}

/**
 * A number as a person writes it: integers without decimals, others to at most 4 significant
 * digits, negatives with U+2212.
 */
export function fmt(v) {
  if (typeof v === "bigint") v = Number(v);
  if (typeof v !== "number") v = Number(v);
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : MINUS + "∞";
  const a = Math.abs(v);
  let s = Number.isInteger(a) ? String(a) : String(Number(a.toPrecision(4)));
  s = s.replace("e+", "e").replace("e-", "e" + MINUS);
  return v < 0 && s !== "0" ? MINUS + s : s;
}

/** A factor in a sum: negatives in parentheses, "3·(−1)". */
export function factor(v) {
  const s = fmt(v);
  return s.startsWith(MINUS) ? `(${s})` : s;
}

/** "y₁ = 2·10 + 3·(−1) = 17". */
export function sumText(name, j, x, col, result) {
  const terms = x.map((xi, i) => `${factor(xi)}·${factor(col[i])}`);
  return `${name}${sub(j)} = ${terms.join(" + ")} = ${result == null ? "…" : fmt(result)}`;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1 && n % 1024 === 0) {
    n /= 1024;
    u++;
  }
  return `${n} ${units[u]}`;
}

function errorMessage(e) {
  if (e == null) return "unknown error";
  if (typeof e === "string") return e;
  if (e.message) return String(e.message);
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}

/** serde-wasm-bindgen may hand maps over as JS Maps; make everything plain objects. */
function plain(v) {
  if (v instanceof Map) {
    const o = {};
    for (const [k, val] of v) o[String(k)] = plain(val);
    return o;
  }
  if (Array.isArray(v)) return v.map(plain);
  if (ArrayBuffer.isView(v)) return v;
  if (v && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    const o = {};
    for (const k of Object.keys(v)) o[k] = plain(v[k]);
    return o;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// DOM helpers

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c == null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text != null) e.textContent = text;
  return e;
}

function setStatus(node, state, text) {
  node.dataset.state = state;
  node.textContent = text;
}

// ---------------------------------------------------------------------------------------------
// State: values live in 4x4 stores, so shrinking and growing a dimension keeps what was typed.

function store(defaults, fill) {
  const m = [];
  for (let i = 0; i < MAX_DIM; i++) {
    m.push([]);
    for (let j = 0; j < MAX_DIM; j++) m[i].push(defaults[i]?.[j] ?? fill(i, j));
  }
  return m;
}

const state = {
  dIn: 2,
  dOut: 2,
  // x = (2, 3, 4, 5)
  x: [2, 3, 4, 5],
  w: store([[1, 10], [0, -1]], (i, j) => ((i + 2 * j) % 3) + 1),
  wq: store([[1, 10], [0, -1]], (i, j) => ((i + 2 * j) % 3) + 1),
  wk: store([[0, 1], [1, 0]], (i, j) => ((2 * i + j) % 3) + 1),
  wv: store([[1, 1], [-1, 2]], (i, j) => ((i + j) % 2) + 1),
  y: null, // {values, source: "gpu" | "cpu"} for the current inputs, or null while pending
  qkv: null, // {q, k, v, source}
  active: null, // {section: "example" | "qkv", which: "y"|"q"|"k"|"v", j}
};

const MATS = { q: "wq", k: "wk", v: "wv" };

function xVec() {
  return state.x.slice(0, state.dIn);
}

function column(m, j) {
  const col = [];
  for (let i = 0; i < state.dIn; i++) col.push(m[i][j]);
  return col;
}

/** Row-major [dIn * dOut] f32 of the top-left of a store. */
function flat(m) {
  const a = new Float32Array(state.dIn * state.dOut);
  for (let i = 0; i < state.dIn; i++)
    for (let j = 0; j < state.dOut; j++) a[i * state.dOut + j] = m[i][j];
  return a;
}

function cpuProject(m) {
  const x = xVec();
  const y = [];
  for (let j = 0; j < state.dOut; j++) {
    let s = 0;
    for (let i = 0; i < state.dIn; i++) s += x[i] * m[i][j];
    y.push(Math.fround(s));
  }
  return y;
}

// ---------------------------------------------------------------------------------------------
// The GPU: opened once; calls go one at a time (a benchmark run and an edit never overlap).

let qkv = null; // the wasm module
let gpu = null; // qkv.Gpu
let adapterInfo = null;
let gpuError = null; // a message when there is no usable GPU
let resolveReady;
const gpuReady = new Promise((r) => (resolveReady = r));

let gpuChain = Promise.resolve();
let running = false; // a shape run is queued or in flight
function withGpu(fn) {
  const p = gpuChain.then(fn);
  gpuChain = p.catch(() => {});
  return p;
}

// ---------------------------------------------------------------------------------------------
// Section 1 and 2: the grids

function numberInput(id, label, value, onChange) {
  return el("input", {
    id,
    type: "number",
    step: "any",
    value: String(value),
    "aria-label": label,
    class: "cell",
    inputmode: "decimal",
    oninput: onChange,
  });
}

function parseCell(input) {
  const raw = input.value.trim();
  const v = raw === "" ? NaN : Number(raw);
  const ok = Number.isFinite(v);
  if (ok) input.removeAttribute("aria-invalid");
  else input.setAttribute("aria-invalid", "true");
  return ok ? v : null;
}

function buildXGrid(container) {
  container.replaceChildren();
  container.style.setProperty("--cols", state.dIn);
  for (let i = 0; i < state.dIn; i++) {
    container.append(
      numberInput(`x-${i}`, `x${sub(i)}`, state.x[i], (e) => {
        const v = parseCell(e.target);
        if (v != null) state.x[i] = v;
        inputsChanged(["example", "qkv"]);
      }),
    );
  }
}

function buildMatGrid(container, key, prefix, label, section) {
  container.replaceChildren();
  container.style.setProperty("--cols", state.dOut);
  const m = state[key];
  for (let i = 0; i < state.dIn; i++) {
    for (let j = 0; j < state.dOut; j++) {
      const input = numberInput(`${prefix}-${i}-${j}`, `${label} row ${i} column ${j}`, m[i][j], (e) => {
        const v = parseCell(e.target);
        if (v != null) m[i][j] = v;
        inputsChanged([section]);
      });
      input.dataset.row = i;
      input.dataset.col = j;
      container.append(input);
    }
  }
}

function buildOutGrid(container, prefix, section, which) {
  container.replaceChildren();
  container.style.setProperty("--cols", state.dOut);
  for (let j = 0; j < state.dOut; j++) {
    const cell = el("output", {
      id: `${prefix}-${j}`,
      class: "cell out",
      tabindex: "0",
      "data-col": j,
      "aria-label": `${which}${sub(j)}`,
      text: "…",
    });
    const on = () => activate({ section, which, j });
    const off = () => deactivate({ section, which, j });
    cell.addEventListener("mouseenter", on);
    cell.addEventListener("focus", on);
    cell.addEventListener("mouseleave", off);
    cell.addEventListener("blur", off);
    container.append(cell);
  }
}

function buildAll() {
  buildXGrid($("x-grid"));
  buildMatGrid($("w-grid"), "w", "w", "W", "example");
  buildOutGrid($("y-grid"), "y", "example", "y");
  buildMatGrid($("wq-grid"), "wq", "wq", "Wq", "qkv");
  buildMatGrid($("wk-grid"), "wk", "wk", "Wk", "qkv");
  buildMatGrid($("wv-grid"), "wv", "wv", "Wv", "qkv");
  for (const w of ["q", "k", "v"]) buildOutGrid($(`${w}-grid`), w, "qkv", w);
  renderFused();
}

// The read-only fused figure of section 2: x · [Wq | Wk | Wv] = [q | k | v].
function renderFused() {
  const fx = $("fx-grid");
  fx.replaceChildren();
  fx.style.setProperty("--cols", state.dIn);
  for (const xi of xVec()) fx.append(el("span", { class: "cell ro", text: fmt(xi) }));

  const fw = $("fw-grid");
  fw.replaceChildren();
  fw.style.setProperty("--cols", 3 * state.dOut);
  for (let i = 0; i < state.dIn; i++)
    for (const w of ["q", "k", "v"])
      for (let j = 0; j < state.dOut; j++)
        fw.append(
          el("span", {
            class: `cell ro tint-${w}${j === 0 && w !== "q" ? " block-start" : ""}`,
            text: fmt(state[MATS[w]][i][j]),
          }),
        );

  const fy = $("fy-grid");
  fy.replaceChildren();
  fy.style.setProperty("--cols", 3 * state.dOut);
  const r = state.qkv;
  for (const w of ["q", "k", "v"])
    for (let j = 0; j < state.dOut; j++)
      fy.append(
        el("span", {
          class: `cell ro tint-${w}${j === 0 && w !== "q" ? " block-start" : ""}`,
          text: r ? fmt(r[w][j]) : "…",
        }),
      );
}

// Hover / focus on an output: highlight what it uses and show its sum.
function highlight(spec, on) {
  const { section, which, j } = spec;
  const xCells = $("x-grid").querySelectorAll(".cell");
  const matGrid = section === "example" ? $("w-grid") : $(`w${which}-grid`);
  xCells.forEach((c) => c.classList.toggle("uses", on));
  $("x-grid").classList.toggle("uses-row", on);
  matGrid.querySelectorAll(".cell").forEach((c) => c.classList.toggle("uses", on && Number(c.dataset.col) === j));
  const out = $(`${which}-${j}`);
  if (out) out.classList.toggle("active", on);
}

function activate(spec) {
  if (state.active) highlight(state.active, false);
  state.active = spec;
  highlight(spec, true);
  explain(spec);
}

function deactivate(spec) {
  highlight(spec, false);
  // Keep the last explanation on screen; only drop the highlight.
}

function explain(spec) {
  const { section, which, j } = spec;
  if (j >= state.dOut) return;
  if (section === "example") {
    // While a new result is on its way, the sum shows the new inputs and "…" for the result.
    const y = sections.example.fresh ? state.y?.values : null;
    $("y-explain").textContent = sumText("y", j, xVec(), column(state.w, j), y ? y[j] : null);
  } else {
    const m = state[MATS[which]];
    const vals = sections.qkv.fresh ? state.qkv?.[which] : null;
    $("qkv-explain").textContent = sumText(which, j, xVec(), column(m, j), vals ? vals[j] : null);
  }
}

function refreshExplanations() {
  const a = state.active;
  if (a && a.j < state.dOut) explain(a);
  else if (a) state.active = null;
}

// ---------------------------------------------------------------------------------------------
// Section 1 and 2: computing

const sections = {
  example: { seq: 0, timer: 0, fresh: false },
  qkv: { seq: 0, timer: 0, fresh: false },
};

function inputsChanged(which) {
  for (const s of which) schedule(s);
  if (which.includes("qkv")) renderFused();
  refreshExplanations();
}

function schedule(name) {
  const s = sections[name];
  const seq = ++s.seq;
  s.fresh = false;
  // Pending at once, so a reader waiting for "done" never sees the previous inputs' result.
  setStatus(statusNode(name), "pending", "computing…");
  markStale(name, true);
  clearTimeout(s.timer);
  s.timer = setTimeout(() => {
    compute(name, seq).catch((e) => {
      if (seq === s.seq) setStatus(statusNode(name), "error", errorMessage(e));
    });
  }, DEBOUNCE_MS);
}

function statusNode(name) {
  return name === "example" ? $("example-status") : $("qkv-status");
}

function markStale(name, stale) {
  const grids = name === "example" ? ["y-grid"] : ["q-grid", "k-grid", "v-grid", "fy-grid"];
  for (const g of grids) $(g).classList.toggle("stale", stale);
}

function invalidCells(name) {
  const ids = name === "example" ? ["x-grid", "w-grid"] : ["x-grid", "wq-grid", "wk-grid", "wv-grid"];
  const bad = [];
  for (const id of ids) for (const c of $(id).querySelectorAll("input[aria-invalid]")) bad.push(c.getAttribute("aria-label"));
  return bad;
}

function writeOutputs(prefix, values, source) {
  for (let j = 0; j < state.dOut; j++) {
    const c = $(`${prefix}-${j}`);
    if (!c) continue;
    c.textContent = fmt(values[j]);
    c.classList.toggle("cpu", source === "cpu");
  }
}

function clearOutputs(prefix) {
  for (let j = 0; j < state.dOut; j++) {
    const c = $(`${prefix}-${j}`);
    if (c) c.textContent = "…";
  }
}

async function compute(name, seq) {
  const s = sections[name];
  const status = statusNode(name);
  const stale = () => seq !== s.seq;

  const bad = invalidCells(name);
  if (bad.length) {
    setStatus(status, "error", `Not a number: ${bad.join(", ")}. Enter a number in every cell.`);
    return;
  }

  await gpuReady;
  if (stale()) return;

  const dIn = state.dIn;
  const dOut = state.dOut;
  const x = new Float32Array(xVec());
  const mats = name === "example" ? [state.w, state.w, state.w] : [state.wq, state.wk, state.wv];
  const [wq, wk, wv] = mats.map(flat);

  if (!gpu) {
    // No GPU: show the figure and the numbers from JavaScript, clearly marked, and say why.
    showResult(name, mats.map(cpuProject), "cpu");
    setStatus(status, "error", `${gpuError} The numbers shown are computed in JavaScript on the CPU, not on the GPU.`);
    return;
  }

  setStatus(status, "pending", running ? "waiting for the model-shape run to finish…" : "computing on the GPU…");
  let r;
  try {
    r = plain(await withGpu(() => (stale() ? null : gpu.project(x, dIn, wq, wk, wv, dOut, dOut))));
  } catch (e) {
    if (stale()) return;
    clearOutputs(name === "example" ? "y" : "q");
    setStatus(status, "error", `The GPU run failed: ${errorMessage(e)}`);
    return;
  }
  if (stale() || r == null) return;
  if (!r.q || r.q.length < dOut || !r.k || r.k.length < dOut || !r.v || r.v.length < dOut) {
    setStatus(status, "error", "The GPU returned fewer values than expected.");
    return;
  }
  showResult(name, [Array.from(r.q), Array.from(r.k), Array.from(r.v)], "gpu");
  const where = adapterInfo?.name ? adapterInfo.name : "this GPU";
  setStatus(status, "done", `computed on ${where} by kernel ${r.kernel ?? "?"} in one fused dispatch`);
}

function showResult(name, [q, k, v], source) {
  sections[name].fresh = true;
  if (name === "example") {
    state.y = { values: q.slice(0, state.dOut), source };
    writeOutputs("y", q, source);
    markStale("example", false);
    drawExampleFigure();
  } else {
    state.qkv = { q: q.slice(0, state.dOut), k: k.slice(0, state.dOut), v: v.slice(0, state.dOut), source };
    writeOutputs("q", q, source);
    writeOutputs("k", k, source);
    writeOutputs("v", v, source);
    markStale("qkv", false);
    renderFused();
  }
  refreshExplanations();
}

function resize() {
  state.dIn = Number($("d-in").value);
  state.dOut = Number($("d-out").value);
  if (state.active) highlight(state.active, false);
  state.active = null;
  state.y = null;
  state.qkv = null;
  buildAll();
  $("y-explain").textContent = "";
  $("qkv-explain").textContent = "";
  drawExampleFigure();
  inputsChanged(["example", "qkv"]);
}

// ---------------------------------------------------------------------------------------------
// The arrow figure

function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/** Two components of a vector, the second 0 for a 1-vector. */
function plane(v) {
  const a = Number(v[0] ?? 0);
  const b = v.length > 1 ? Number(v[1]) : 0;
  return [Number.isFinite(a) ? a : 0, Number.isFinite(b) ? b : 0];
}

/**
 * Arrows from the origin, equal scale on both axes, fitted to every vector.
 * vecs: [{label, p: [a, b], cls}]
 */
function drawArrows(root, vecs) {
  const S = 320;
  // Plot area: a square, with room on the left and below for tick labels and axis names.
  const L = 40;
  const T = 14;
  const P = 266;
  const keep = root.querySelector("title");
  root.replaceChildren();
  if (keep) root.append(keep);

  const xs = [0, ...vecs.map((v) => v.p[0])];
  const ys = [0, ...vecs.map((v) => v.p[1])];
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  let span = Math.max(x1 - x0, y1 - y0);
  if (!(span > 0)) span = 2;
  span *= 1.3;
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  x0 = cx - span / 2;
  x1 = cx + span / 2;
  y0 = cy - span / 2;
  y1 = cy + span / 2;
  const k = P / span;
  const sx = (v) => L + (v - x0) * k;
  const sy = (v) => T + P - (v - y0) * k;

  const defs = svg("defs");
  for (const v of vecs) {
    const m = svg("marker", {
      id: `${root.id}-head-${v.cls}`,
      viewBox: "0 0 10 10",
      refX: 8.5,
      refY: 5,
      markerWidth: 5.5,
      markerHeight: 5.5,
      markerUnits: "strokeWidth",
      orient: "auto-start-reverse",
    });
    m.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: `head ${v.cls}` }));
    defs.append(m);
  }
  root.append(defs);

  // Grid and ticks.
  const step = niceStep(span / 6);
  const grid = svg("g", { class: "grid" });
  const ticks = svg("g", { class: "ticks" });
  for (let t = Math.ceil(x0 / step) * step; t <= x1 + 1e-9; t += step) {
    const X = sx(t);
    grid.append(svg("line", { x1: X, y1: T, x2: X, y2: T + P }));
    ticks.append(svg("text", { x: X, y: T + P + 13, "text-anchor": "middle" }, fmt(+t.toPrecision(6))));
  }
  for (let t = Math.ceil(y0 / step) * step; t <= y1 + 1e-9; t += step) {
    const Y = sy(t);
    grid.append(svg("line", { x1: L, y1: Y, x2: L + P, y2: Y }));
    ticks.append(svg("text", { x: L - 4, y: Y + 3.5, "text-anchor": "end" }, fmt(+t.toPrecision(6))));
  }
  root.append(grid);

  const axes = svg("g", { class: "axes" });
  axes.append(svg("rect", { x: L, y: T, width: P, height: P, class: "frame" }));
  axes.append(svg("line", { x1: L, y1: sy(0), x2: L + P, y2: sy(0) }));
  axes.append(svg("line", { x1: sx(0), y1: T, x2: sx(0), y2: T + P }));
  axes.append(svg("text", { x: L + P / 2, y: S - 5, class: "axis-name", "text-anchor": "middle" }, "component 0 →"));
  axes.append(
    svg("text", { x: 11, y: T + P / 2, class: "axis-name", "text-anchor": "middle", transform: `rotate(-90 11 ${T + P / 2})` }, "component 1 →"),
  );
  root.append(axes, ticks);

  // Arrows, then labels on top.
  const arrows = svg("g", { class: "arrows" });
  const labels = svg("g", { class: "labels" });
  const placed = [];
  for (const v of vecs) {
    const [a, b] = v.p;
    const X = sx(a);
    const Y = sy(b);
    const len = Math.hypot(X - sx(0), Y - sy(0));
    if (len < 1) {
      arrows.append(svg("circle", { cx: X, cy: Y, r: 3.5, class: `dot ${v.cls}` }));
    } else {
      arrows.append(
        svg("line", {
          x1: sx(0),
          y1: sy(0),
          x2: X,
          y2: Y,
          class: `arrow ${v.cls}`,
          "marker-end": `url(#${root.id}-head-${v.cls})`,
        }),
      );
    }
    // Label just past the tip, pushed off earlier labels when they would overlap.
    const ux = len < 1 ? 0.7 : (X - sx(0)) / len;
    const uy = len < 1 ? -0.7 : (Y - sy(0)) / len;
    let lx = X + ux * 13;
    let ly = Y + uy * 13 + 4;
    // A nearly horizontal arrow lies along the axis: put its label above it instead.
    if (Math.abs(uy) < 0.3) {
      lx = X + ux * 8;
      ly = Y - 9;
    }
    for (const p of placed) if (Math.hypot(p[0] - lx, p[1] - ly) < 16) ly += 16;
    lx = Math.min(Math.max(lx, L + 8), L + P - 8);
    ly = Math.min(Math.max(ly, T + 12), T + P - 4);
    placed.push([lx, ly]);
    labels.append(svg("text", { x: lx, y: ly, class: `label ${v.cls}`, "text-anchor": "middle" }, v.label));
    // The coordinates beside the label, on the side the arrow does not come from.
    const cxy = `(${fmt(a)}, ${fmt(b)})`;
    const wText = cxy.length * 6.4 + 10;
    let right = ux >= -0.05;
    if (right && lx + wText > L + P) right = false;
    else if (!right && lx - wText < L) right = true;
    labels.append(
      svg("text", { x: lx + (right ? 9 : -9), y: ly, class: `coord ${v.cls}`, "text-anchor": right ? "start" : "end" }, cxy),
    );
  }
  root.append(arrows, labels);
}

function drawExampleFigure() {
  const y = state.y?.values ?? cpuProject(state.w);
  drawArrows($("arrows"), [
    { label: "x", p: plane(xVec()), cls: "x" },
    { label: "y", p: plane(y), cls: "y" },
  ]);
}

// ---------------------------------------------------------------------------------------------
// Section 3: run a model shape

let shapes = [];

function fillShapes() {
  const sel = $("shape");
  sel.replaceChildren();
  for (const s of shapes) sel.append(el("option", { value: s.name, text: s.model || s.name }));
  if (!shapes.length) sel.append(el("option", { value: "", text: "(no shapes)" }));
  shapeChanged();
}

function currentShape() {
  return shapes.find((s) => s.name === $("shape").value);
}

function shapeChanged() {
  const s = currentShape();
  const hint = $("tokens-hint");
  hint.replaceChildren();
  hint.hidden = true;
  if (!s) {
    $("shape-info").textContent = "";
    return;
  }
  const isVit = /vit/i.test(s.name) || /vit/i.test(s.model || "");
  const unit = Number(s.tokens_unit) || 0;
  const suggest = isVit ? 197 : unit > 1 ? unit : 0;
  if (suggest) {
    const why = isVit
      ? "ViT-B/16 sees a 224×224 image as 196 patches of 16×16 plus a [CLS] token: 197 tokens per image."
      : `This model's sequences come in units of ${suggest} tokens.`;
    hint.append(
      why + " ",
      el("button", { type: "button", class: "link", text: `Use ${suggest}`, onclick: () => { $("tokens").value = String(suggest); updateShapeInfo(); } }),
    );
    hint.hidden = false;
  }
  updateShapeInfo();
}

function updateShapeInfo() {
  const s = currentShape();
  if (!s) return;
  const t = Math.max(1, Math.floor(Number($("tokens").value)) || 1);
  const n = s.q_width + 2 * s.kv_width;
  const gflop = (2 * t * s.d_model * n + (s.bias ? t * n : 0)) / 1e9;
  $("shape-info").textContent =
    `X [${t}, ${s.d_model}] · W [${s.d_model}, ${s.q_width}+${s.kv_width}+${s.kv_width}]` +
    `${s.bias ? " + bias" : ""} → Q [${t}, ${s.q_width}], K [${t}, ${s.kv_width}], V [${t}, ${s.kv_width}]` +
    ` · ${gflop < 0.01 ? gflop.toPrecision(2) : gflop.toFixed(2)} GFLOP`;
}

function logLine(msg) {
  const log = $("run-log");
  log.append(document.createTextNode((log.textContent ? "\n" : "") + msg));
  log.scrollTop = log.scrollHeight;
}

async function runShape() {
  const verdict = $("run-verdict");
  const result = $("run-result");
  const btn = $("run");
  const s = currentShape();
  const tokens = Number($("tokens").value);
  if (!gpu) return;
  if (!s) {
    setStatus(verdict, "error", "ERROR");
    result.textContent = "Pick a model shape first.";
    return;
  }
  // The library takes a u32; wasm-bindgen would wrap a larger number silently.
  if (!Number.isInteger(tokens) || tokens < 1 || tokens > 0xffffffff) {
    setStatus(verdict, "error", "ERROR");
    result.textContent = `Tokens must be a whole number from 1 to 4294967295 (got "${$("tokens").value}").`;
    return;
  }

  // "auto" (or nothing) is the explicit choice of as many as the device holds: passed as
  // null. A number goes to the library as it is, which refuses 0 as everywhere else.
  const chunkText = $("chunk-tokens").value.trim();
  const chunk = chunkText === "" || chunkText.toLowerCase() === "auto" ? null : Number(chunkText);
  if (chunk !== null && (!Number.isInteger(chunk) || chunk < 0 || chunk > 0xffffffff)) {
    setStatus(verdict, "error", "ERROR");
    result.textContent = `Tokens per chunk must be "auto" or a whole number from 1 to 4294967295, not "${chunkText}".`;
    return;
  }

  btn.disabled = true;
  running = true;
  setStatus(verdict, "running", "running…");
  result.textContent = "";
  $("run-log").textContent = "";
  $("run-log-box").open = true;
  const t0 = performance.now();
  const stamp = () => `[${((performance.now() - t0) / 1000).toFixed(1)} s]`;
  logLine(`${stamp()} ${s.name}, ${tokens} tokens${chunk === null ? "" : `, chunks of ${chunk}`}`);
  try {
    const r = plain(
      await withGpu(() =>
        gpu.run_shape(s.name, tokens, chunk, (msg) => {
          try {
            logLine(`${stamp()} ${typeof msg === "string" ? msg : errorMessage(msg)}`);
          } catch {
            /* a progress message must never break the run */
          }
        }),
      ),
    );
    // The library's report, laid out as `qkv run` lays it out (one formatter, in Rust).
    result.textContent = Array.isArray(r?.lines) ? r.lines.join("\n") : JSON.stringify(r, null, 2);
    setStatus(verdict, "done", r.pass ? "PASS" : "FAIL");
    logLine(`${stamp()} finished: ${r.pass ? "PASS" : "FAIL"}`);
  } catch (e) {
    const msg = errorMessage(e);
    result.textContent = `error: ${msg}`;
    setStatus(verdict, "error", "ERROR");
    logLine(`${stamp()} failed: ${msg}`);
  } finally {
    running = false;
    btn.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Section 4: your own kernel

async function tryKernel() {
  const verdict = $("kernel-verdict");
  const result = $("kernel-result");
  const map = $("kernel-map");
  const btn = $("kernel-run");
  if (!gpu) return;
  const tokens = Number($("kernel-tokens").value);
  if (!Number.isInteger(tokens) || tokens < 1 || tokens > 0xffffffff) {
    setStatus(verdict, "error", "ERROR");
    result.textContent = `Tokens must be a whole number from 1 to 4294967295 (got "${$("kernel-tokens").value}").`;
    return;
  }
  btn.disabled = true;
  setStatus(verdict, "running", "running…");
  result.textContent = "";
  map.replaceChildren();
  try {
    const r = plain(await withGpu(() => gpu.try_kernel($("kernel-source").value, tokens)));
    // The library's report, as `qkv try` prints it (one formatter, in Rust).
    result.textContent = Array.isArray(r?.lines) ? r.lines.join("\n") : JSON.stringify(r, null, 2);
    setStatus(verdict, "done", r.pass ? "PASS" : "FAIL");
    if (r.map_svg) {
      // The library's own SVG (its titles are the checks' fixed names).
      map.innerHTML = r.map_svg;
    }
  } catch (e) {
    result.textContent = `error: ${errorMessage(e)}`;
    setStatus(verdict, "error", "ERROR");
  } finally {
    btn.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Section 5: the adapter

function renderAdapter(a) {
  const box = $("adapter");
  box.replaceChildren();
  const dl = el("dl", { class: "facts" });
  const row = (k, v) => dl.append(el("dt", { text: k }), el("dd", { text: v == null || v === "" ? "—" : String(v) }));
  row("name", a.name);
  row("vendor", a.vendor);
  row("architecture", a.architecture);
  row("description", a.description);
  row("backend", a.backend);
  row("driver", a.driver);
  row("device type", a.device_type + (a.is_cpu ? " (software: runs on the CPU)" : ""));
  const offersTimestamps = Array.isArray(a.features) && a.features.includes("timestamp-query");
  row("kernel times", a.timestamps ? "GPU timestamps" : offersTimestamps ? "host-timed (asked for by ?timer=host; the browser offers timestamp-query)" : "host-timed (the browser offers no timestamp-query)");
  box.append(dl);

  const feats = Array.isArray(a.features) ? a.features : [];
  box.append(el("h3", { text: `Features (${feats.length})` }));
  if (feats.length) {
    const ul = el("ul", { class: "features" });
    for (const f of feats) ul.append(el("li", { text: String(f) }));
    box.append(ul);
  } else box.append(el("p", { class: "small", text: "none beyond the core set" }));
  const used = Array.isArray(a.features_used) ? a.features_used : [];
  box.append(el("p", { class: "small", text: `The device qkv-wgpu created asked for: ${used.length ? used.join(", ") : "nothing beyond the core set"}.` }));

  const limits = a.limits && typeof a.limits === "object" ? Object.entries(a.limits) : [];
  box.append(el("h3", { text: `Limits (${limits.length})` }));
  if (limits.length) {
    const tbody = el("tbody");
    for (const [k, v] of limits) {
      const n = Number(v);
      const human = /size|bytes/i.test(k) && n >= 1024 ? ` (${bytes(n)})` : "";
      tbody.append(el("tr", {}, el("th", { scope: "row", text: k }), el("td", { text: String(v) + human })));
    }
    box.append(
      el("div", { class: "table-wrap" },
        el("table", { class: "limits" }, el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "limit" }), el("th", { scope: "col", text: "value" }))), tbody),
      ),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Section 5: when WebGPU is missing

function banner(state, title, ...body) {
  const b = $("webgpu-status");
  b.dataset.state = state;
  b.replaceChildren(el("p", { class: "banner-title", text: title }), ...body.filter((n) => n != null));
  b.hidden = false;
}

function getWebGpuHelp() {
  return el(
    "ul",
    {},
    el("li", { text: "Chrome or Edge 113 or later on Windows, macOS and ChromeOS, and recent Chrome on Android (121 and later), have it on by default." }),
    el("li", {}, "On Linux, recent Chrome needs ", el("code", { text: "chrome://flags/#enable-unsafe-webgpu" }), " turned on, and a working Vulkan driver."),
    el("li", { text: "Recent Safari (26 and later) has it on macOS, iOS and iPadOS." }),
    el("li", { text: "Recent Firefox (141 and later) has it on Windows; elsewhere, try Firefox Nightly." }),
  );
}

/** Why did Gpu.open fail? */
async function diagnose(e) {
  const message = errorMessage(e);
  if (!window.isSecureContext) {
    return {
      short: "WebGPU needs a secure context (https or localhost).",
      node: () =>
        banner(
          "error",
          "WebGPU needs a secure context",
          el("p", {}, `This page was loaded from ${location.origin}, which the browser does not treat as secure, so it hides WebGPU. Open it over https, or from `, el("code", { text: "http://localhost" }), " / ", el("code", { text: "http://127.0.0.1" }), "."),
          el("p", { class: "small", text: `(${message})` }),
        ),
    };
  }
  if (!("gpu" in navigator) || !navigator.gpu) {
    return {
      short: "This browser has no WebGPU.",
      node: () =>
        banner("error", "This browser has no WebGPU", el("p", { text: "navigator.gpu is absent, so nothing here can run on the GPU. WebGPU is in recent versions of:" }), getWebGpuHelp(), el("p", { class: "small", text: `(${message})` })),
    };
  }
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch {
    adapter = undefined;
  }
  if (adapter === null) {
    return {
      short: "WebGPU is present but gave no adapter.",
      node: () =>
        banner(
          "error",
          "WebGPU is present but gave no adapter",
          el("p", {}, "The browser has WebGPU, but requestAdapter() returned null: the GPU may be blocklisted, or WebGPU or hardware acceleration disabled. ", el("code", { text: "chrome://gpu" }), " tells why; starting Chrome with ", el("code", { text: "--enable-unsafe-webgpu" }), " (or the flag ", el("code", { text: "chrome://flags/#enable-unsafe-webgpu" }), ") overrides the blocklist."),
          el("p", { class: "small", text: `(${message})` }),
        ),
    };
  }
  return {
    short: `WebGPU could not be opened: ${message}`,
    node: () => banner("error", "WebGPU could not be opened", el("p", { text: message }), el("p", {}, "If this persists, ", el("code", { text: "chrome://gpu" }), " (or about:support in Firefox) shows the state of the GPU.")),
  };
}

// ---------------------------------------------------------------------------------------------
// Start

function noGpu(message) {
  gpuError = message;
  $("run").disabled = true;
  $("run").title = message;
  $("kernel-run").disabled = true;
  $("kernel-run").title = message;
  setStatus($("run-verdict"), "idle", "not available");
  $("run-result").textContent = message;
  const box = $("adapter");
  box.replaceChildren(el("p", { class: "small", text: `No adapter: ${message}` }));
}

async function start() {
  buildAll();
  drawExampleFigure();
  $("d-in").addEventListener("change", resize);
  $("d-out").addEventListener("change", resize);
  $("shape").addEventListener("change", shapeChanged);
  $("tokens").addEventListener("input", updateShapeInfo);
  $("run").addEventListener("click", () => {
    runShape().catch((e) => {
      setStatus($("run-verdict"), "error", "ERROR");
      $("run-result").textContent = `error: ${errorMessage(e)}`;
      $("run").disabled = false;
    });
  });
  $("kernel-run").addEventListener("click", () => {
    tryKernel().catch((e) => {
      setStatus($("kernel-verdict"), "error", "ERROR");
      $("kernel-result").textContent = `error: ${errorMessage(e)}`;
      $("kernel-run").disabled = false;
    });
  });
  $("kernel-reset").addEventListener("click", () => {
    if (qkv) $("kernel-source").value = qkv.kernel_example();
  });
  inputsChanged(["example", "qkv"]);

  // 1. The wasm module.
  try {
    qkv = await import("./pkg/qkv_web.js");
    await qkv.default();
  } catch (e) {
    const msg = `The WebAssembly module could not be loaded (pkg/qkv_web.js): ${errorMessage(e)}`;
    banner(
      "error",
      "The page's WebAssembly did not load",
      el("p", { text: msg }),
      el("p", {}, "Build it with ", el("code", { text: "scripts/web.sh" }), " and serve this folder over HTTP (a file:// page cannot load it); the server must send .wasm files as application/wasm."),
      !window.isSecureContext
        ? el("p", { text: "Note also that this page is not in a secure context (https or localhost), so WebGPU would be hidden anyway." })
        : !navigator.gpu
          ? el("p", { text: "Note also that this browser has no WebGPU (navigator.gpu is absent)." })
          : null,
    );
    $("shape").replaceChildren(el("option", { value: "", text: "(wasm not loaded)" }));
    noGpu(msg);
    resolveReady();
    return;
  }

  try {
    shapes = plain(qkv.shapes()) || [];
  } catch (e) {
    shapes = [];
    console.warn("shapes() failed", e);
  }
  fillShapes();
  if (!$("kernel-source").value) $("kernel-source").value = qkv.kernel_example();

  // 2. The GPU.
  try {
    // ?timer=host: time kernels with the page's clock even where GPU timestamps exist.
    const hostTimer = new URLSearchParams(location.search).get("timer") === "host";
    gpu = await qkv.Gpu.open(hostTimer);
    adapterInfo = plain(gpu.adapter());
  } catch (e) {
    gpu = null;
    const d = await diagnose(e);
    d.node();
    noGpu(d.short);
    resolveReady();
    return;
  }

  const a = adapterInfo || {};
  banner("ok", `WebGPU ready: ${a.name || "unnamed adapter"} (${a.backend || "?"}, ${a.device_type || "?"})`);
  renderAdapter(a);
  if (a.is_cpu) {
    const w = $("cpu-warning");
    w.textContent =
      "This adapter is a software renderer running on the CPU: big shapes or many tokens take a long time (Llama-3-8B at a few hundred tokens can take minutes). Start small.";
    w.hidden = false;
  }
  $("run").disabled = false;
  $("kernel-run").disabled = false;
  resolveReady();
}

start().catch((e) => {
  // Nothing should get here; if it does, say so on the page rather than only in the console.
  const msg = errorMessage(e);
  banner("error", "The page failed to start", el("p", { text: msg }));
  for (const id of ["example-status", "qkv-status"]) setStatus($(id), "error", msg);
  resolveReady();
});
