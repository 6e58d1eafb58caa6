// lenssr static site: choose/drop files, run the pipeline in a Web Worker (worker.js),
// show per-image progress and before/after previews, offer the result zip for download.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { files: [], models: [], worker: null, url: null, running: false, names: [] };

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function setFiles(list) {
  state.files = Array.from(list || []);
  const total = state.files.reduce((s, f) => s + f.size, 0);
  if (state.files.length === 0) $("selection").textContent = "No files chosen";
  else if (state.files.length === 1) $("selection").textContent = `${state.files[0].name} (${fmtBytes(total)})`;
  else $("selection").textContent = `${state.files.length} files (${fmtBytes(total)})`;
  $("start").disabled = state.files.length === 0 || state.running;
}

function modelNames() {
  return [...new Set(state.models.map((m) => m.name))];
}

function fillScales() {
  const entries = state.models.filter((m) => m.name === $("model").value);
  const select = $("scale");
  select.innerHTML = "";
  for (const m of entries) {
    const opt = document.createElement("option");
    opt.value = m.scale;
    opt.textContent = `x${m.scale}`;
    select.appendChild(opt);
  }
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
    const opt = document.createElement("option");
    opt.value = name;
    opt.textContent = name;
    opt.title = m.description;
    if (name === body.default) opt.selected = true;
    select.appendChild(opt);
  }
  fillScales();
  const rt = body.runtime || {};
  $("limits").textContent =
    `Runs in this browser with ONNX Runtime Web ${rt["onnxruntime-web"] || ""}` +
    `${self.crossOriginIsolated ? " (multi-threaded)" : ""}; nothing is uploaded. lenssr ${body.lenssr_version}.`;
}

function showMessage(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

function setProgress(fraction) {
  const pct = Math.round(Math.max(0, Math.min(1, fraction)) * 1000) / 10;
  $("bar-fill").style.width = `${pct}%`;
  document.querySelector(".bar").setAttribute("aria-valuenow", String(Math.round(pct)));
}

function resetJob() {
  $("job").hidden = false;
  $("job").className = "card";
  $("download").hidden = true;
  $("skipped-box").hidden = true;
  $("skipped").innerHTML = "";
  $("images").innerHTML = "";
  $("images-box").hidden = true;
  $("previews").innerHTML = "";
  $("previews-card").hidden = true;
  if (state.url) URL.revokeObjectURL(state.url);
  state.url = null;
  showMessage("");
  setProgress(0);
}

function showSkipped(skipped) {
  $("skipped-box").hidden = skipped.length === 0;
  $("skipped-title").textContent = `${skipped.length} file${skipped.length === 1 ? "" : "s"} refused`;
  const ul = $("skipped");
  ul.innerHTML = "";
  for (const s of skipped) {
    const li = document.createElement("li");
    const code = document.createElement("code");
    code.textContent = s.name;
    const reason = document.createElement("span");
    reason.textContent = `: ${s.reason}`;
    li.append(code, reason);
    ul.appendChild(li);
  }
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
  setProgress((msg.index + within) / n);
  $("status").textContent = `Upscaling x${$("scale").value} with ${$("model").value}: ${done} / ${state.names.length}`;
}

function makeCompare(p) {
  const toUrl = (px) => {
    const c = document.createElement("canvas");
    c.width = p.sr_shape[1];
    c.height = p.sr_shape[0];
    c.getContext("2d").putImageData(new ImageData(px, c.width, c.height), 0, 0);
    return c.toDataURL("image/png");
  };
  const fig = document.createElement("figure");
  const box = document.createElement("div");
  box.className = "compare";
  box.style.setProperty("--ratio", `${p.sr_shape[1]} / ${p.sr_shape[0]}`);
  const sr = new Image();
  sr.className = "sr";
  sr.src = toUrl(p.sr);
  sr.alt = `SR ${p.name}`;
  const lr = new Image();
  lr.className = "lr";
  lr.src = toUrl(p.lr);
  lr.alt = `LR ${p.name}`;
  const divider = document.createElement("div");
  divider.className = "divider";
  const tagL = document.createElement("span");
  tagL.className = "tag l";
  tagL.textContent = `LR ${p.lr_shape[1]}×${p.lr_shape[0]}`;
  const tagR = document.createElement("span");
  tagR.className = "tag r";
  tagR.textContent = `SR ${p.sr_shape[1]}×${p.sr_shape[0]}`;
  const slider = document.createElement("input");
  slider.type = "range";
  slider.min = "0";
  slider.max = "100";
  slider.value = "50";
  slider.className = "slider";
  slider.setAttribute("aria-label", `compare LR and SR of ${p.name}`);
  slider.addEventListener("input", () => box.style.setProperty("--pos", `${slider.value}%`));
  box.append(sr, lr, divider, tagL, tagR, slider);
  const cap = document.createElement("figcaption");
  const name = document.createElement("b");
  name.textContent = p.name;
  name.title = p.name;
  const dims = document.createElement("span");
  dims.textContent = `${p.lr_shape[1]}×${p.lr_shape[0]} → ${p.sr_shape[1]}×${p.sr_shape[0]}`;
  cap.append(name, dims);
  fig.append(box, cap);
  return fig;
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
  $("job").className = "card failed";
  $("status").textContent = "Failed";
  setProgress(1);
  showMessage(text);
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
      $("previews").appendChild(makeCompare(msg));
      $("previews-card").hidden = false;
    } else if (msg.type === "done") {
      state.running = false;
      $("job").className = "card done";
      setProgress(1);
      const n = msg.processed.length;
      $("status").textContent =
        `Done: ${n} image${n === 1 ? "" : "s"} upscaled x${$("scale").value} in ${msg.elapsed.toFixed(1)} s` +
        (msg.skipped.length ? `, ${msg.skipped.length} refused` : "");
      $("status").dataset.elapsed = String(msg.elapsed);
      $("status").dataset.backend = msg.backend;
      showSkipped(msg.skipped);
      state.url = URL.createObjectURL(new Blob([msg.zip], { type: "application/zip" }));
      const a = $("download");
      a.href = state.url;
      a.setAttribute("download", msg.download);
      a.hidden = false;
      if (msg.notes.length) showMessage(msg.notes.map((x) => `${x.name}: ${x.note}`).join("\n"));
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

function setupDrop() {
  const drop = $("drop");
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => {
    if (e.dataTransfer && e.dataTransfer.files.length) setFiles(e.dataTransfer.files);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("files").click(); }
  });
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

$("files").addEventListener("change", (e) => setFiles(e.target.files));
$("model").addEventListener("change", fillScales);
$("start").addEventListener("click", start);
setupDrop();
loadModels().catch((e) => showMessage(`Could not load the model list (${e.message}).`));
