// lenssr web page: choose/drop files, submit a job, poll its progress, show previews.
import {
  $, INSTRUMENT_FIELDS, addOption, addPreview, doneText, resetJobCard, setProgress, setupDrop,
  showFailed, showMessage, showNotes, showSelection, showSkipped,
} from "./ui.js";

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

function setFiles(list) {
  state.files = Array.from(list || []);
  showSelection(state.files);
  $("start").disabled = state.files.length === 0;
}

function fillScales() {
  const model = state.models.find((m) => m.name === $("model").value);
  const select = $("scale");
  select.innerHTML = "";
  for (const s of model ? model.scales : [2]) {
    addOption(select, s, `x${s}`, { selected: Boolean(model) && s === model.scale });
  }
  // the instrument fields and 1-sigma maps only apply to models that take / give them
  const sigma = Boolean(model && model.sigma);
  $("uncertainty").disabled = !sigma;
  if (!sigma) $("uncertainty").checked = false;
  for (const key of INSTRUMENT_FIELDS) {
    $(key).disabled = !(model && model.instrument);
  }
}

async function loadModels() {
  const res = await fetch("/api/models");
  const body = await res.json();
  state.models = body.models;
  const select = $("model");
  for (const m of body.models) {
    addOption(select, m.name, m.name, { title: m.description, selected: m.name === body.default });
  }
  fillScales();
  const l = body.limits;
  $("limits").textContent =
    `Limits of this server: ${l.max_upload_mb} MB per upload, ${l.max_files} images per job, ` +
    `${l.max_pixels.toLocaleString()} pixels per image.`;
}

function resetJob() {
  clearTimeout(state.polling);
  resetJobCard();
  $("cancel").hidden = true;
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
  for (const key of INSTRUMENT_FIELDS) {
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
  showFailed(text);
  $("start").disabled = state.files.length === 0;
}

function showPreviews(previews) {
  if (previews.length === 0 || $("previews").children.length > 0) return;
  for (const p of previews) addPreview(p);
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
    $("status").textContent =
      doneText(job.processed.length, job.scale, job.elapsed_s, job.skipped.length);
    const a = $("download");
    a.href = job.result;
    a.setAttribute("download", job.result_name);
    a.hidden = false;
    a.title = job.expires_in_s === null ? "" :
      `kept on the server for ${Math.round(job.expires_in_s / 60)} more minutes`;
    showPreviews(job.previews);
    showNotes(job.notes);
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

document.addEventListener("DOMContentLoaded", () => {
  $("model").addEventListener("change", fillScales);
  $("start").addEventListener("click", submit);
  $("cancel").addEventListener("click", cancelJob);
  $("download").addEventListener("click", downloadResult);
  setupDrop(setFiles);
  loadModels().catch(() => showMessage("Could not load the model list from the server."));
  resumeFromUrl();
  window.addEventListener("hashchange", resumeFromUrl);
});
