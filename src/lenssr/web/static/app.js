// lenssr web page: choose/drop files, submit a job, poll its progress, show previews.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { files: [], models: [], polling: null, job: null };

// The job id lives in the page URL (#job=<id>) so a reload or a reopened tab finds it again.
function jobFromUrl() {
  const m = /(?:^|[#&])job=([0-9a-f]{32})(?:&|$)/.exec(location.hash);
  return m ? m[1] : null;
}

function resumeFromUrl() {
  const id = jobFromUrl();
  if (!id || id === state.job) return;
  resetJob();
  state.job = id;
  $("status").textContent = "Finding your job…";
  poll(id);
}

function rememberJob(id) {
  state.job = id;
  const url = id ? `#job=${id}` : location.pathname + location.search;
  history.replaceState(null, "", url);
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function setFiles(list) {
  state.files = Array.from(list || []);
  const total = state.files.reduce((s, f) => s + f.size, 0);
  if (state.files.length === 0) {
    $("selection").textContent = "No files chosen";
  } else if (state.files.length === 1) {
    $("selection").textContent = `${state.files[0].name} (${fmtBytes(total)})`;
  } else {
    $("selection").textContent = `${state.files.length} files (${fmtBytes(total)})`;
  }
  $("start").disabled = state.files.length === 0;
}

function fillScales() {
  const model = state.models.find((m) => m.name === $("model").value);
  const select = $("scale");
  select.innerHTML = "";
  for (const s of model ? model.scales : [2]) {
    const opt = document.createElement("option");
    opt.value = s;
    opt.textContent = `x${s}`;
    if (model && s === model.scale) opt.selected = true;
    select.appendChild(opt);
  }
  // the instrument fields and 1-sigma maps only apply to models that take / give them
  const sigma = Boolean(model && model.sigma);
  $("uncertainty").disabled = !sigma;
  if (!sigma) $("uncertainty").checked = false;
  for (const key of ["psf_fwhm", "pixel_scale", "noise_sigma"]) {
    $(key).disabled = !(model && model.instrument);
  }
}

async function loadModels() {
  const res = await fetch("/api/models");
  const body = await res.json();
  state.models = body.models;
  const select = $("model");
  for (const m of body.models) {
    const opt = document.createElement("option");
    opt.value = m.name;
    opt.textContent = m.name;
    opt.title = m.description;
    if (m.name === body.default) opt.selected = true;
    select.appendChild(opt);
  }
  fillScales();
  const l = body.limits;
  $("limits").textContent =
    `Limits of this server: ${l.max_upload_mb} MB per upload, ${l.max_files} images per job, ` +
    `${l.max_pixels.toLocaleString()} pixels per image.`;
}

function showMessage(text) {
  const box = $("message");
  box.textContent = text || "";
  box.hidden = !text;
}

function resetJob() {
  clearTimeout(state.polling);
  $("job").hidden = false;
  $("job").className = "card";
  $("download").hidden = true;
  $("cancel").hidden = true;
  $("skipped-box").hidden = true;
  $("skipped").innerHTML = "";
  $("previews").innerHTML = "";
  $("previews-card").hidden = true;
  showMessage("");
  setProgress(0);
}

function setProgress(fraction) {
  const pct = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
  $("bar-fill").style.width = `${pct}%`;
  document.querySelector(".bar").setAttribute("aria-valuenow", String(pct));
}

function submit() {
  if (state.files.length === 0) return;
  resetJob();
  $("start").disabled = true;
  const form = new FormData();
  for (const f of state.files) form.append("files[]", f, f.name);
  form.append("model", $("model").value);
  form.append("scale", $("scale").value);
  form.append("tta", $("tta").checked ? "true" : "false");
  form.append("uncertainty", $("uncertainty").checked ? "true" : "false");
  for (const key of ["psf_fwhm", "pixel_scale", "noise_sigma"]) {
    if ($(key).value.trim() !== "") form.append(key, $(key).value.trim());
  }

  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/jobs");
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) {
      $("status").textContent = `Uploading… ${Math.round((100 * e.loaded) / e.total)}%`;
    }
  };
  xhr.onerror = () => fail("Upload failed: the server could not be reached.");
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status >= 200 && xhr.status < 300) {
      $("status").textContent = "Queued…";
      rememberJob(body.id);
      poll(body.id);
    } else {
      fail(`Upload refused: ${body.detail || xhr.statusText || xhr.status}`);
    }
  };
  $("status").textContent = "Uploading…";
  xhr.send(form);
}

async function cancelJob() {
  const id = state.job;
  if (!id) return;
  clearTimeout(state.polling);
  $("cancel").disabled = true;
  try {
    await fetch(`/api/jobs/${id}`, { method: "DELETE" });
  } catch (_) { /* the server is gone: nothing left to cancel */ }
  $("cancel").disabled = false;
  $("cancel").hidden = true;
  rememberJob(null);
  $("job").className = "card failed";
  $("status").textContent = "Cancelled";
  setProgress(0);
  showMessage("The job was cancelled and its files deleted on the server.");
  $("start").disabled = state.files.length === 0;
}

function fail(text) {
  $("cancel").hidden = true;
  $("job").className = "card failed";
  $("status").textContent = "Failed";
  setProgress(1);
  showMessage(text);
  $("start").disabled = state.files.length === 0;
}

function showSkipped(skipped) {
  $("skipped-box").hidden = skipped.length === 0;
  $("skipped-title").textContent =
    `${skipped.length} file${skipped.length === 1 ? "" : "s"} refused`;
  const ul = $("skipped");
  if (ul.children.length === skipped.length) return;
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

function makeCompare(p) {
  const fig = document.createElement("figure");
  const box = document.createElement("div");
  box.className = "compare";
  box.style.setProperty("--ratio", `${p.sr_shape[1]} / ${p.sr_shape[0]}`);
  const sr = new Image();
  sr.className = "sr";
  sr.src = p.sr;
  sr.alt = `SR ${p.name}`;
  const lr = new Image();
  lr.className = "lr";
  lr.src = p.lr;
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
  if (!p.sigma) {
    fig.append(box, cap);
    return fig;
  }
  // the calibrated 1-sigma map beside the slider, on a linear scale 0 .. sigma_max
  const pair = document.createElement("div");
  pair.className = "pair";
  const sbox = document.createElement("div");
  sbox.className = "sigma-map";
  sbox.style.setProperty("--ratio", `${p.sr_shape[1]} / ${p.sr_shape[0]}`);
  const sig = new Image();
  sig.className = "sigma";
  sig.src = p.sigma;
  sig.alt = `1-sigma ${p.name}`;
  const tagS = document.createElement("span");
  tagS.className = "tag s";
  tagS.textContent = `1σ 0 – ${Number(p.sigma_max).toPrecision(3)}`;
  tagS.title = "calibrated 1-sigma of each SR pixel, in the image's units (black 0, white the value shown)";
  sbox.append(sig, tagS);
  pair.append(box, sbox);
  fig.classList.add("with-sigma");
  fig.append(pair, cap);
  return fig;
}

function showPreviews(previews) {
  if (previews.length === 0 || $("previews").children.length > 0) return;
  for (const p of previews) $("previews").appendChild(makeCompare(p));
  $("previews-card").hidden = false;
}

async function poll(id) {
  let job;
  try {
    const res = await fetch(`/api/jobs/${id}`, { cache: "no-store" });
    job = await res.json();
    if (!res.ok) {
      rememberJob(null);
      return fail(job.detail || `error ${res.status}`);
    }
  } catch (e) {
    state.polling = setTimeout(() => poll(id), 1000);
    return;
  }
  if (id !== state.job) return;  // cancelled or replaced meanwhile
  setProgress(job.progress);
  showSkipped(job.skipped);
  $("cancel").hidden = job.status !== "queued" && job.status !== "running";
  if (job.status === "queued") {
    $("status").textContent = job.queue_position > 1
      ? `Queued: ${job.queue_position - 1} job(s) ahead`
      : "Queued…";
  } else if (job.status === "running") {
    $("status").textContent = `Upscaling x${job.scale} with ${job.model}: ${job.done} / ${job.total}`;
  } else if (job.status === "done") {
    $("job").className = "card done";
    const n = job.processed.length;
    $("status").textContent =
      `Done: ${n} image${n === 1 ? "" : "s"} upscaled x${job.scale} in ${job.elapsed_s.toFixed(1)} s` +
      (job.skipped.length ? `, ${job.skipped.length} refused` : "");
    const a = $("download");
    a.href = job.result;
    a.setAttribute("download", job.result_name);
    a.hidden = false;
    a.title = job.expires_in_s === null ? "" :
      `kept on the server for ${Math.round(job.expires_in_s / 60)} more minutes`;
    showPreviews(job.previews);
    if (job.notes && job.notes.length) {
      showMessage(job.notes.map((n) => `${n.name}: ${n.note}`).join("\n"));
    }
    $("start").disabled = state.files.length === 0;
    return;
  } else if (job.status === "cancelled") {
    rememberJob(null);
    return fail("The job was cancelled.");
  } else {
    return fail(job.error || "the job failed");
  }
  state.polling = setTimeout(() => poll(id), 300);
}

// A result can expire while the page stays open: check before following the link, so the
// user gets a message instead of a silently failing download.
async function downloadResult(e) {
  const a = $("download");
  if (a.dataset.checked === a.href) return;  // checked just now: let the browser download
  e.preventDefault();
  let res, body = {};
  try {
    res = await fetch(`/api/jobs/${state.job}`, { cache: "no-store" });
    body = await res.json();
  } catch (_) {
    return showMessage("The server could not be reached.");
  }
  if (!res.ok || !body.result) {
    a.hidden = true;
    rememberJob(null);
    return fail(body.detail || "This result has expired: upload the images again.");
  }
  a.dataset.checked = a.href;
  a.click();
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
  // Dropping outside the zone must not navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

document.addEventListener("DOMContentLoaded", () => {
  $("files").addEventListener("change", (e) => setFiles(e.target.files));
  $("model").addEventListener("change", fillScales);
  $("start").addEventListener("click", submit);
  $("cancel").addEventListener("click", cancelJob);
  $("download").addEventListener("click", downloadResult);
  setupDrop();
  loadModels().catch(() => showMessage("Could not load the model list from the server."));
  resumeFromUrl();
  window.addEventListener("hashchange", resumeFromUrl);
});
