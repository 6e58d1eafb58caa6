// The site's pipeline, off the page's thread: unzip, read each image, run the model with
// ONNX Runtime Web, write each result in its input's format, zip the results in the same
// layout. Messages in: {type: "run", files: [{name, bytes}], model, opts}. Messages out:
// "start", "image" (per image: running / done / refused, with progress), "preview", "done",
// "error".

import * as ort from "./vendor/ort.webgpu.bundle.min.mjs";
import { unzipSync, zipSync } from "./vendor/fflate.mjs";
import { encodeImage, imageFormat, readImage } from "./lib/formats.js";
import { headerInstrument } from "./lib/instrument.js";
import { upscaleImage } from "./lib/pipeline.js";

const WASM = "vendor/ort-wasm-simd-threaded.asyncify.wasm";
// Opened from disk, boot.js hands over the runtime's and models' bytes (self.LENSSR_FILES);
// served, the bundle carries its JS glue and only the WASM binary is fetched from this site.
if (self.LENSSR_FILES) ort.env.wasm.wasmBinary = self.LENSSR_FILES[WASM];
else ort.env.wasm.wasmPaths = { wasm: new URL(`./${WASM}`, import.meta.url).href };
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(navigator.hardwareConcurrency || 1, 8) : 1;
ort.env.wasm.proxy = false;

const sessions = new Map();
const PREVIEWS = 12;
let manifest = null;

async function executionProviders(runtime) {
  if (runtime === "wasm") return ["wasm"];
  if (navigator.gpu) {
    try {
      if (await navigator.gpu.requestAdapter()) return ["webgpu", "wasm"];
    } catch (_) { /* no adapter: WASM */ }
  }
  if (runtime === "webgpu") throw new Error("WebGPU is not available in this browser");
  return ["wasm"];
}

async function session(entry, runtime) {
  const key = `${entry.file}|${runtime}`;
  if (!sessions.has(key)) {
    const providers = await executionProviders(runtime);
    const path = `models/${entry.file}`;
    const model = self.LENSSR_FILES ? self.LENSSR_FILES[path] : new URL(`./${path}`, import.meta.url).href;
    const s = await ort.InferenceSession.create(model, { executionProviders: providers, graphOptimizationLevel: "all" });
    sessions.set(key, { s, providers });
  }
  return sessions.get(key);
}

// ------------------------------------------------------------------------------------ inputs

/** OS clutter left out silently (lenssr.io.batch.is_ignored_name). */
function isIgnored(name) {
  const parts = name.replace(/\\/g, "/").split("/").filter((p) => p !== "" && p !== ".");
  return parts.length > 0 && (parts[0] === "__MACOSX" || parts.some((p) => p.startsWith(".") && p !== ".."));
}

/** A safe relative path for a member name (lenssr.io.batch.sanitize_member_name). */
function sanitize(name) {
  const norm = name.replace(/\\/g, "/");
  if (norm.startsWith("/") || (norm.length > 1 && norm[1] === ":")) throw new Error("absolute path refused");
  const parts = norm.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new Error("'..' in path refused (path traversal)");
  if (!parts.length) throw new Error("empty member name");
  return parts.join("/");
}

/** Inputs of one job: [{name, bytes}] to process, [{name, reason}] refused, download name. */
function collect(files) {
  const items = [], skipped = [];
  const zips = files.filter((f) => f.name.toLowerCase().endsWith(".zip"));
  if (zips.length && files.length > 1) {
    throw new Error("drop one .zip on its own, or image files without a zip");
  }
  if (zips.length) {
    const z = zips[0];
    let members;
    try {
      members = unzipSync(z.bytes, { filter: (f) => !f.name.endsWith("/") && !isIgnored(f.name) && imageFormat(f.name) !== null });
    } catch (e) {
      throw new Error(`${z.name}: corrupt or not a zip archive (${e.message})`);
    }
    // names fflate did not unpack: listed with the reason the CLI gives
    const all = listZipNames(z.bytes);
    for (const raw of all) {
      if (raw.endsWith("/") || isIgnored(raw)) continue;
      let name;
      try { name = sanitize(raw); } catch (e) { skipped.push({ name: raw, reason: e.message }); continue; }
      if (imageFormat(name) === null) skipped.push({ name, reason: "not an image file (unsupported extension)" });
      else if (raw in members) items.push({ name, bytes: members[raw] });
    }
    if (!all.length) throw new Error(`${z.name}: empty zip archive (no files)`);
    const stem = z.name.replace(/^.*[\\/]/, "").slice(0, -4) || "upload";
    return { items, skipped, download: `${stem}_sr.zip` };
  }
  const seen = new Set();
  for (const f of files) {
    const name = f.name.replace(/^.*[\\/]/, "");
    if (imageFormat(name) === null) skipped.push({ name, reason: "not an image file (unsupported extension)" });
    else if (seen.has(name)) skipped.push({ name, reason: "duplicate file name (skipped)" });
    else { seen.add(name); items.push({ name, bytes: f.bytes }); }
  }
  return { items, skipped, download: "lenssr_sr.zip" };
}

/** File names of a zip's central directory, in archive order. */
function listZipNames(bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  let e = bytes.length - 22;
  while (e >= 0 && dv.getUint32(e, true) !== 0x06054b50) e--;
  if (e < 0) throw new Error("corrupt or not a zip archive (no central directory)");
  const n = dv.getUint16(e + 10, true);
  let o = dv.getUint32(e + 16, true);
  const names = [];
  const dec = new TextDecoder();
  for (let i = 0; i < n; i++) {
    if (dv.getUint32(o, true) !== 0x02014b50) throw new Error("corrupt or not a zip archive (bad central directory)");
    const len = dv.getUint16(o + 28, true), extra = dv.getUint16(o + 30, true), comment = dv.getUint16(o + 32, true);
    names.push(dec.decode(bytes.subarray(o + 46, o + 46 + len)));
    o += 46 + len + extra + comment;
  }
  return names;
}

// ---------------------------------------------------------------------------------- previews

/** numpy.percentile (linear) of a sorted Float64Array. */
function percentile(sorted, q) {
  const pos = (q / 100) * (sorted.length - 1), lo = Math.floor(pos), hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** LR (nearest-upsampled) and SR as RGBA with one asinh stretch (lenssr.web.render). */
function renderPair(lr, h, w, sr, H, W) {
  const sorted = Float64Array.from(lr).sort();
  let lo = percentile(sorted, 0.5), hi = percentile(sorted, 99.9);
  if (!(hi > lo)) { lo = sorted[0]; hi = sorted[sorted.length - 1]; }
  if (!(hi > lo)) hi = lo + 1;
  const a = 0.05, norm = Math.asinh(1 / a);
  const paint = (get) => {
    const px = new Uint8ClampedArray(H * W * 4);
    for (let i = 0; i < H * W; i++) {
      const x = Math.min(1, Math.max(0, (get(i) - lo) / (hi - lo) || 0));
      const v = Math.round((Math.asinh(x / a) / norm) * 255);
      px[4 * i] = px[4 * i + 1] = px[4 * i + 2] = v;
      px[4 * i + 3] = 255;
    }
    return px;
  };
  const lrPx = paint((i) => {
    const r = Math.min(Math.floor((Math.floor(i / W) * h) / H), h - 1), c = Math.min(Math.floor(((i % W) * w) / W), w - 1);
    return lr[r * w + c];
  });
  return { lr: lrPx, sr: paint((i) => sr[i]) };
}

// --------------------------------------------------------------------------------------- job

async function run({ files, model: name, opts }) {
  const t0 = performance.now();
  if (!manifest) {
    manifest = self.LENSSR_MANIFEST || (await (await fetch(new URL("./models/models.json", import.meta.url))).json());
  }
  const entry = manifest.models.find((m) => m.name === name && (opts.scale == null || m.scale === Number(opts.scale)));
  if (!entry) throw new Error(`model ${name} x${opts.scale} is not part of this site`);
  const { items, skipped, download } = collect(files);
  postMessage({ type: "start", names: items.map((i) => i.name), skipped, download });
  const { s, providers } = await session(entry, opts.runtime || "auto");
  const backend = providers[0] === "webgpu" ? "onnxruntime-web/webgpu" : "onnxruntime-web/wasm";
  const net = async (x, h, w, cond) => {
    const feeds = { [s.inputNames[0]]: new ort.Tensor("float32", x, [1, 1, h, w]) };
    if (entry.conditioned) feeds.cond = new ort.Tensor("float32", cond, [1, 2]);
    const out = await s.run(feeds);
    return out[s.outputNames[0]].data;
  };
  const history = `lenssr ${manifest.lenssr_version} site: model=${entry.name} scale=x${entry.scale} backend=${backend}${opts.tta ? " tta=8" : ""}${opts.tile ? ` tile=${opts.tile}` : ""}`;
  const outputs = {}, processed = [], notes = [];
  let previews = 0;
  for (let k = 0; k < items.length; k++) {
    const item = items[k];
    const t1 = performance.now();
    postMessage({ type: "image", index: k, name: item.name, status: "running", fraction: 0 });
    try {
      const img = readImage(item.name, item.bytes);
      const known = img.fmt === "fits" ? headerInstrument(img.meta.cards) : {};
      const res = await upscaleImage(entry, net, img.data, img.h, img.w, {
        psf_fwhm: opts.psf_fwhm ?? known.psf_fwhm,
        pixel_scale: opts.pixel_scale ?? known.pixel_scale,
        noise_sigma: opts.noise_sigma,
        tile: opts.tile,
        tta: Boolean(opts.tta),
        onTile: (i, n) => postMessage({ type: "image", index: k, name: item.name, status: "running", fraction: i / n }),
      });
      const fileNotes = [];
      outputs[item.name] = encodeImage(img, res.data, res.h, res.w, entry.scale, history, fileNotes);
      if (res.info.warning) fileNotes.push(res.info.warning);
      for (const note of fileNotes) notes.push({ name: item.name, note });
      processed.push(item.name);
      postMessage({ type: "image", index: k, name: item.name, status: "done", fraction: 1, seconds: (performance.now() - t1) / 1000, info: res.info });
      if (previews < PREVIEWS) {
        previews++;
        const p = renderPair(img.data, img.h, img.w, res.data, res.h, res.w);
        postMessage({ type: "preview", name: item.name, lr_shape: [img.h, img.w], sr_shape: [res.h, res.w], lr: p.lr, sr: p.sr }, [p.lr.buffer, p.sr.buffer]);
      }
    } catch (e) {
      const reason = String(e && e.message ? e.message : e);
      skipped.push({ name: item.name, reason });
      postMessage({ type: "image", index: k, name: item.name, status: "refused", reason });
    }
    item.bytes = null;
  }
  const report = {
    model: entry.name, scale: entry.scale, tta: Boolean(opts.tta), backend, processed,
    skipped: skipped.map((x) => ({ name: x.name, reason: x.reason })), notes,
  };
  outputs["report.json"] = new TextEncoder().encode(`${JSON.stringify(report, null, 1)}\n`);
  const zip = zipSync(outputs, { level: 6 });
  const elapsed = (performance.now() - t0) / 1000;
  postMessage({ type: "done", zip, download, processed, skipped, notes, elapsed, backend }, [zip.buffer]);
}

self.onmessage = (e) => {
  if (e.data.type === "run") {
    run(e.data).catch((err) => postMessage({ type: "error", message: String(err && err.message ? err.message : err) }));
  }
};
