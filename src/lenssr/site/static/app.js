// lenssr static site: choose/drop files, run the pipeline in a Web Worker (worker.js),
// show per-image progress and before/after previews, offer the result zip for download.
// ui.js is lenssr serve's module of the parts both pages share (copied by lenssr export-site).
import {
  $, addOption, addPreview, doneText, resetJobCard, setProgress, setupDrop, showFailed,
  showMessage, showNotes, showSelection, showSkipped,
} from "./ui.js";

const state = { files: [], models: [], worker: null, url: null, running: false, names: [] };

function setFiles(list) {
  state.files = Array.from(list || []);
  showSelection(state.files);
  $("start").disabled = state.files.length === 0 || state.running;
}

function modelNames() {
  return [...new Set(state.models.map((m) => m.name))];
}

function fillScales() {
  const entries = state.models.filter((m) => m.name === $("model").value);
  const select = $("scale");
  select.innerHTML = "";
  for (const m of entries) addOption(select, m.scale, `x${m.scale}`);
  const instrument = entries.some((m) => m.conditioned || m.normalization === "noise");
  for (const key of ["psf_fwhm", "pixel_scale"]) $(key).disabled = !entries.some((m) => m.conditioned);
  $("noise_sigma").disabled = !instrument;
}

async function loadModels() {
  const body = self.LENSSR_OFFLINE ? self.LENSSR_OFFLINE.manifest : await (await fetch("models/models.json")).json();
  state.models = body.models;
  const select = $("model");
  for (const name of modelNames()) {
    const m = body.models.find((x) => x.name === name);
    addOption(select, name, name, { title: m.description, selected: name === body.default });
  }
  fillScales();
  const rt = body.runtime || {};
  $("limits").textContent =
    `Runs in this browser with ONNX Runtime Web ${rt["onnxruntime-web"] || ""}` +
    `${self.crossOriginIsolated ? " (multi-threaded)" : ""}; nothing is uploaded. lenssr ${body.lenssr_version}.`;
}

// Progress moves within an image (tiles): the bar in steps of 0.1%.
const progress = (fraction) => setProgress(fraction, 1000);

function resetJob() {
  resetJobCard();
  $("images").innerHTML = "";
  $("images-box").hidden = true;
  if (state.url) URL.revokeObjectURL(state.url);
  state.url = null;
}

function listImages(names) {
  state.names = names;
  const ol = $("images");
  ol.innerHTML = "";
  for (const name of names) {
    const li = document.createElement("li");
    const code = document.createElement("code");
    code.textContent = name;
    code.title = name;
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = 0;
    const st = document.createElement("span");
    st.className = "state";
    st.textContent = "waiting";
    li.append(code, bar, st);
    ol.appendChild(li);
  }
  $("images-box").hidden = names.length === 0;
  $("images-box").open = names.length <= 40;
  $("images-title").textContent = `${names.length} image${names.length === 1 ? "" : "s"}`;
}

function updateImage(msg, done) {
  const li = $("images").children[msg.index];
  if (li) {
    li.className = msg.status;
    li.querySelector("progress").value = msg.fraction ?? 1;
    li.querySelector(".state").textContent =
      msg.status === "done" ? `done in ${msg.seconds.toFixed(2)} s` :
      msg.status === "refused" ? "refused" : `${Math.round(100 * (msg.fraction || 0))}%`;
    if (msg.reason) li.title = msg.reason;
  }
  const n = state.names.length || 1;
  const within = msg.status === "running" ? msg.fraction || 0 : 1;
  progress((msg.index + within) / n);
  $("status").textContent = `Upscaling x${$("scale").value} with ${$("model").value}: ${done} / ${state.names.length}`;
}

// The preview of the worker's "preview" message: its RGBA pixels (SR shape) as PNG data URLs.
function preview(p) {
  const toUrl = (px) => {
    const c = document.createElement("canvas");
    c.width = p.sr_shape[1];
    c.height = p.sr_shape[0];
    c.getContext("2d").putImageData(new ImageData(px, c.width, c.height), 0, 0);
    return c.toDataURL("image/png");
  };
  return { name: p.name, lr_shape: p.lr_shape, sr_shape: p.sr_shape, lr: toUrl(p.lr), sr: toUrl(p.sr) };
}

function number(id) {
  const v = $(id).value.trim();
  if (v === "" || $(id).disabled) return null;
  const x = Number(v);
  if (!(x > 0) && !(id === "noise_sigma" && x === 0)) throw new Error(`${id} must be a positive number`);
  return x;
}

// Tile side in LR pixels, as `lenssr upscale --tile`: `?tile=256` in the page's address
// (default: automatic, 256-pixel tiles above 512x512 LR pixels).
function tileFromUrl() {
  const t = new URLSearchParams(location.search).get("tile");
  if (t === null || t === "") return null;
  const n = Number(t);
  if (!Number.isInteger(n) || n < 0) throw new Error(`tile must be a whole number of LR pixels, got ${t}`);
  return n;
}

function fail(text) {
  state.running = false;
  showFailed(text);
  $("start").disabled = state.files.length === 0;
}

function worker() {
  if (state.worker) return state.worker;
  const w = self.LENSSR_OFFLINE
    ? self.LENSSR_OFFLINE.createWorker()
    : new Worker(new URL("worker.js", import.meta.url), { type: "module" });
  let done = 0, skipped = [];
  w.onmessage = (e) => {
    const msg = e.data;
    if (msg.type === "start") {
      done = 0;
      skipped = msg.skipped.slice();
      listImages(msg.names);
      showSkipped(skipped);
      $("status").textContent = `Loading the model… (${msg.names.length} images)`;
    } else if (msg.type === "image") {
      if (msg.status !== "running") done++;
      if (msg.status === "refused") { skipped.push({ name: msg.name, reason: msg.reason }); showSkipped(skipped); }
      updateImage(msg, done);
    } else if (msg.type === "preview") {
      addPreview(preview(msg));
    } else if (msg.type === "done") {
      state.running = false;
      $("job").className = "card done";
      progress(1);
      $("status").textContent =
        doneText(msg.processed.length, $("scale").value, msg.elapsed, msg.skipped.length);
      $("status").dataset.elapsed = String(msg.elapsed);
      $("status").dataset.backend = msg.backend;
      showSkipped(msg.skipped);
      state.url = URL.createObjectURL(new Blob([msg.zip], { type: "application/zip" }));
      const a = $("download");
      a.href = state.url;
      a.setAttribute("download", msg.download);
      a.hidden = false;
      showNotes(msg.notes);
      $("start").disabled = state.files.length === 0;
    } else if (msg.type === "error") {
      fail(msg.message);
    }
  };
  w.onerror = (e) => { e.preventDefault(); fail(`The page's worker failed: ${e.message || "unknown error"}`); };
  state.worker = w;
  return w;
}

async function start() {
  if (state.files.length === 0 || state.running) return;
  resetJob();
  let opts;
  try {
    opts = {
      scale: Number($("scale").value),
      tta: $("tta").checked,
      runtime: $("runtime").value,
      psf_fwhm: number("psf_fwhm"),
      pixel_scale: number("pixel_scale"),
      noise_sigma: number("noise_sigma"),
      tile: tileFromUrl(),
    };
  } catch (e) {
    return fail(e.message);
  }
  state.running = true;
  $("start").disabled = true;
  $("status").textContent = "Reading files…";
  const files = [];
  for (const f of state.files) files.push({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) });
  worker().postMessage({ type: "run", files, model: $("model").value, opts }, files.map((f) => f.bytes.buffer));
}

$("model").addEventListener("change", fillScales);
$("start").addEventListener("click", start);
setupDrop(setFiles);
loadModels().catch((e) => showMessage(`Could not load the model list (${e.message}).`));
