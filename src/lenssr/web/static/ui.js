// The parts of the page shared by lenssr serve (app.js beside this file) and the static site
// (lenssr/site/static/app.js; lenssr export-site copies this module into the site): file
// selection and drop zone, model options, progress, messages, the refused-files list and the
// before/after previews with their 1-sigma maps.

export const $ = (id) => document.getElementById(id);

/** The instrument fields of the form (instrument-aware models). */
export const INSTRUMENT_FIELDS = ["psf_fwhm", "pixel_scale", "noise_sigma"];

export function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** Shows the chosen files (name or count, total size) under the drop zone. */
export function showSelection(files) {
  const total = files.reduce((s, f) => s + f.size, 0);
  if (files.length === 0) $("selection").textContent = "No files chosen";
  else if (files.length === 1) $("selection").textContent = `${files[0].name} (${fmtBytes(total)})`;
  else $("selection").textContent = `${files.length} files (${fmtBytes(total)})`;
}

/** Appends an <option> to `select`. */
export function addOption(select, value, text, { title = "", selected = false } = {}) {
  const opt = document.createElement("option");
  opt.value = value;
  opt.textContent = text;
  if (title) opt.title = title;
  if (selected) opt.selected = true;
  select.appendChild(opt);
}

export function showMessage(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

/** The job's notes (one line per image) in the message box. */
export function showNotes(notes) {
  if (notes && notes.length) showMessage(notes.map((x) => `${x.name}: ${x.note}`).join("\n"));
}

/** The progress bar at `fraction` (0..1), its width rounded to 1/`steps`. */
export function setProgress(fraction, steps = 100) {
  const pct = Math.round(Math.max(0, Math.min(1, fraction)) * steps) / (steps / 100);
  $("bar-fill").style.width = `${pct}%`;
  document.querySelector(".bar").setAttribute("aria-valuenow", String(Math.round(pct)));
}

/** Shows the job card empty: no result, no refused files, no previews, no message. */
export function resetJobCard() {
  $("job").hidden = false;
  $("job").className = "card";
  $("download").hidden = true;
  $("skipped-box").hidden = true;
  $("skipped").innerHTML = "";
  $("previews").innerHTML = "";
  $("previews-card").hidden = true;
  showMessage("");
  setProgress(0);
}

/** The job card as failed, with `text` as its message. */
export function showFailed(text) {
  $("job").className = "card failed";
  $("status").textContent = "Failed";
  setProgress(1);
  showMessage(text);
}

/** The status line of a finished job. */
export function doneText(processed, scale, elapsed, refused) {
  return `Done: ${processed} image${processed === 1 ? "" : "s"} upscaled x${scale} in ${elapsed.toFixed(1)} s` +
    (refused ? `, ${refused} refused` : "");
}

/** The refused files ({name, reason}) in their list; left as is when it shows them already. */
export function showSkipped(skipped) {
  $("skipped-box").hidden = skipped.length === 0;
  $("skipped-title").textContent = `${skipped.length} file${skipped.length === 1 ? "" : "s"} refused`;
  const ul = $("skipped");
  const shown = Array.from(ul.children, (li) => li.textContent);
  if (shown.join("\n") === skipped.map((s) => `${s.name}: ${s.reason}`).join("\n")) return;
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

function image(className, src, alt) {
  const img = new Image();
  img.className = className;
  img.src = src;
  img.alt = alt;
  return img;
}

function label(className, text) {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = text;
  return span;
}

/** One preview card: the before/after slider of image URLs `p.lr`, `p.sr` (shapes [h, w]) and,
 * when `p.sigma` (a URL) is given, the 1-sigma map beside it, on a linear scale 0..`p.sigma_max`. */
export function makeCompare(p) {
  const fig = document.createElement("figure");
  const box = document.createElement("div");
  box.className = "compare";
  box.style.setProperty("--ratio", `${p.sr_shape[1]} / ${p.sr_shape[0]}`);
  const sr = image("sr", p.sr, `SR ${p.name}`);
  const lr = image("lr", p.lr, `LR ${p.name}`);
  const divider = document.createElement("div");
  divider.className = "divider";
  const tagL = label("tag l", `LR ${p.lr_shape[1]}×${p.lr_shape[0]}`);
  const tagR = label("tag r", `SR ${p.sr_shape[1]}×${p.sr_shape[0]}`);
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
  const pair = document.createElement("div");
  pair.className = "pair";
  const sbox = document.createElement("div");
  sbox.className = "sigma-map";
  sbox.style.setProperty("--ratio", `${p.sr_shape[1]} / ${p.sr_shape[0]}`);
  const sig = image("sigma", p.sigma, `1-sigma ${p.name}`);
  const tagS = label("tag s", `1σ 0 – ${Number(p.sigma_max).toPrecision(3)}`);
  tagS.title = "calibrated 1-sigma of each SR pixel, in the image's units (black 0, white the value shown)";
  sbox.append(sig, tagS);
  pair.append(box, sbox);
  fig.classList.add("with-sigma");
  fig.append(pair, cap);
  return fig;
}

/** Adds the preview card of `p` (see makeCompare) and shows the previews. */
export function addPreview(p) {
  $("previews").appendChild(makeCompare(p));
  $("previews-card").hidden = false;
}

/** The drop zone (#drop, with the file input #files) calls `onFiles` with dropped files. */
export function setupDrop(onFiles) {
  const drop = $("drop");
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => {
    if (e.dataTransfer && e.dataTransfer.files.length) onFiles(e.dataTransfer.files);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("files").click(); }
  });
  $("files").addEventListener("change", (e) => onFiles(e.target.files));
  // Dropping outside the zone must not navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}
