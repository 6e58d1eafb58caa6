// Reading and writing one image as lenssr.io.images does: .npy, FITS (first 2-D image HDU,
// header kept, WCS rescaled), PNG (8/16-bit grayscale) and TIFF (baseline, any sample type).
// readImage(name, bytes) -> {data: Float32Array (h*w, row-major), h, w, fmt, meta};
// encodeImage(like, data, h, w, scale, history) -> Uint8Array in the format of `like`.
// A problem with one file throws an Error whose message is the reason shown to the user.

import { gunzipSync, gzipSync, unzlibSync, zlibSync } from "../vendor/fflate.mjs";

export const EXTENSIONS = {
  ".npy": "npy", ".fits": "fits", ".fit": "fits", ".fts": "fits", ".fits.gz": "fits",
  ".fit.gz": "fits", ".fts.gz": "fits", ".fz": "fits", ".png": "png", ".tif": "tiff", ".tiff": "tiff",
};
export const MIN_SIDE = 2;

/** The format of a file name (longest matching extension), or null. */
export function imageFormat(name) {
  const low = name.toLowerCase();
  const exts = Object.keys(EXTENSIONS).sort((a, b) => b.length - a.length);
  for (const e of exts) if (low.endsWith(e)) return EXTENSIONS[e];
  return null;
}

function checkPixels(data, h, w) {
  if (h * w === 0) throw new Error(`image has no pixels (shape (${h}, ${w}))`);
  if (Math.min(h, w) < MIN_SIDE) {
    throw new Error(`image of ${h}x${w} pixels is too small: SR needs at least ${MIN_SIDE}x${MIN_SIDE}`);
  }
  let bad = 0;
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) bad++;
  if (bad) throw new Error(`${bad} pixels are NaN or infinite`);
}

/** Drop length-1 axes while more than two remain (as _squeeze_2d). */
function squeeze2d(shape) {
  const s = shape.slice();
  while (s.length > 2 && s.includes(1)) s.splice(s.indexOf(1), 1);
  if (s.length !== 2) throw new Error(`expected one 2-D image, got shape (${shape.join(", ")})`);
  return s;
}

/** Read one image (see the module comment). */
export function readImage(name, bytes) {
  if (bytes.length === 0) throw new Error("empty file");
  const fmt = imageFormat(name);
  if (fmt === null) throw new Error("not an image file (unsupported extension)");
  const reader = { npy: readNpy, fits: readFits, png: readPng, tiff: readTiff }[fmt];
  const img = reader(bytes, name);
  checkPixels(img.data, img.h, img.w);
  return { ...img, fmt, name };
}

/** The bytes of a result in the format of ``like`` (a readImage result); warnings (values
 * clipped to an integer range) are pushed onto ``notes``. */
export function encodeImage(like, data, h, w, scale, history, notes = []) {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new Error("result contains NaN or infinite values");
  }
  const writer = { npy: writeNpy, fits: writeFits, png: writePng, tiff: writeTiff }[like.fmt];
  return writer(like, data, h, w, scale, history, notes);
}

// ------------------------------------------------------------------------------------ typed samples

/** Samples of a numpy-like type code (kind f/i/u/b, size) at offset as float32 values. */
function decodeSamples(bytes, offset, count, kind, size, little) {
  if (offset + count * size > bytes.length) throw new Error("truncated data");
  const dv = new DataView(bytes.buffer, bytes.byteOffset + offset, count * size);
  const out = new Float32Array(count);
  const get = {
    "f4": (i) => dv.getFloat32(i * 4, little),
    "f8": (i) => dv.getFloat64(i * 8, little),
    "f2": (i) => half(dv.getUint16(i * 2, little)),
    "i1": (i) => dv.getInt8(i), "u1": (i) => dv.getUint8(i), "b1": (i) => (dv.getUint8(i) ? 1 : 0),
    "i2": (i) => dv.getInt16(i * 2, little), "u2": (i) => dv.getUint16(i * 2, little),
    "i4": (i) => dv.getInt32(i * 4, little), "u4": (i) => dv.getUint32(i * 4, little),
    "i8": (i) => Number(dv.getBigInt64(i * 8, little)), "u8": (i) => Number(dv.getBigUint64(i * 8, little)),
  }[`${kind}${size}`];
  if (!get) throw new Error(`unsupported pixel type ${kind}${size}`);
  for (let i = 0; i < count; i++) out[i] = get(i);
  return out;
}

function half(u) {
  const e = (u >> 10) & 0x1f, f = u & 0x3ff, s = u >> 15 ? -1 : 1;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

const ascii = (bytes, a, b) => String.fromCharCode(...bytes.subarray(a, b));

// ---------------------------------------------------------------------------------------------- npy

function readNpy(bytes) {
  if (bytes[0] !== 0x93 || ascii(bytes, 1, 6) !== "NUMPY") {
    if (bytes[0] === 0x80) throw new Error("pickled .npy files are refused");
    throw new Error("corrupt .npy file (no NumPy header)");
  }
  const major = bytes[6];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const hlen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = ascii(bytes, start, start + hlen);
  const descr = /'descr':\s*'([<>|=])([a-zA-Z])(\d+)'/.exec(header);
  if (/'descr':\s*'\|O'/.test(header) || /'descr':\s*\[/.test(header)) {
    throw new Error(/\|O/.test(header) ? "pickled .npy files are refused" : "structured array dtype is not an image");
  }
  if (!descr) throw new Error("corrupt .npy file (unreadable header)");
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!shapeText) throw new Error("corrupt .npy file (no shape)");
  const shape = shapeText[1].split(",").map((t) => t.trim()).filter((t) => t !== "").map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const kind = descr[2], size = Number(descr[3]);
  const little = descr[1] !== ">";
  const offset = start + hlen;
  if (bytes.length - offset < count * size) {
    throw new Error(`corrupt .npy file (truncated: the header declares ${shape.join("x")} = ${count * size} bytes, the file holds ${bytes.length - offset})`);
  }
  const [h, w] = squeeze2d(shape);
  let data = decodeSamples(bytes, offset, count, kind, size, little);
  if (fortran) {
    const t = new Float32Array(count);
    for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) t[i * w + j] = data[j * h + i];
    data = t;
  }
  return { data, h, w, meta: { shape } };
}

function writeNpy(like, data, h, w) {
  const orig = like.meta.shape;
  const big = orig.map((n, i) => [n, i]).filter(([n]) => n !== 1).map(([, i]) => i);
  let shape = orig.slice();
  if (big.length === 2) { shape[big[0]] = h; shape[big[1]] = w; } else shape = [h, w];
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const total = 10 + header.length + 1;
  header += " ".repeat((64 - (total % 64)) % 64) + "\n";
  const out = new Uint8Array(10 + header.length + data.length * 4);
  out.set([0x93, 78, 85, 77, 80, 89, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  const body = new DataView(out.buffer, 10 + header.length);
  for (let i = 0; i < data.length; i++) body.setFloat32(i * 4, data[i], true);
  return out;
}

// --------------------------------------------------------------------------------------------- FITS

const BLOCK = 2880;

/** One header card: key, raw value text (null for commentary), comment, and the 80 chars. */
function parseCard(text) {
  const key = text.slice(0, 8).trimEnd();
  if (text.slice(8, 10) !== "= " || key === "HISTORY" || key === "COMMENT" || key === "") {
    return { key, value: null, raw: text };
  }
  const rest = text.slice(10);
  let value, comment = "";
  const t = rest.trimStart();
  if (t.startsWith("'")) {
    let i = 1, s = "";
    while (i < t.length) {
      if (t[i] === "'") { if (t[i + 1] === "'") { s += "'"; i += 2; continue; } break; }
      s += t[i++];
    }
    value = { type: "str", v: s.trimEnd() };
    const c = t.slice(i + 1).indexOf("/");
    if (c >= 0) comment = t.slice(i + 1 + c + 1).trim();
  } else {
    const c = t.indexOf("/");
    const v = (c >= 0 ? t.slice(0, c) : t).trim();
    if (c >= 0) comment = t.slice(c + 1).trim();
    if (v === "T" || v === "F") value = { type: "bool", v: v === "T" };
    else if (/^[+-]?\d+$/.test(v)) value = { type: "int", v: Number(v) };
    else if (v !== "" && !Number.isNaN(Number(v.replace(/D/gi, "E")))) value = { type: "float", v: Number(v.replace(/D/gi, "E")) };
    else value = { type: "other", v };
  }
  return { key, value, comment, raw: text };
}

function readHeader(bytes, offset) {
  const cards = [];
  for (let k = 0; k < 1000; k++) {
    const start = offset + k * BLOCK;
    if (start + BLOCK > bytes.length) throw new Error("corrupt FITS file (truncated header, no END card)");
    for (let i = 0; i < BLOCK; i += 80) {
      const text = ascii(bytes, start + i, start + i + 80);
      if (text.slice(0, 8).trimEnd() === "END") return { cards, dataStart: start + BLOCK };
      cards.push(parseCard(text));
    }
  }
  throw new Error("corrupt FITS file (no END card in 1000 blocks)");
}

function cardValue(cards, key, fallback) {
  const c = cards.find((x) => x.key === key && x.value);
  return c ? c.value.v : fallback;
}

function readFits(bytes, name) {
  const gz = bytes[0] === 0x1f && bytes[1] === 0x8b;
  if (name.toLowerCase().endsWith(".fz")) {
    throw new Error("tile-compressed FITS (.fz) is not decoded in the browser: use lenssr upscale or lenssr serve");
  }
  if (gz) {
    try { bytes = gunzipSync(bytes); } catch (e) { throw new Error(`corrupt gzip data (${e.message})`); }
  }
  if (ascii(bytes, 0, 9) !== "SIMPLE  =") throw new Error("corrupt FITS file (it does not start with SIMPLE =)");
  let offset = 0, index = 0, primary = null;
  while (offset < bytes.length) {
    const { cards, dataStart } = readHeader(bytes, offset);
    if (index === 0) primary = cards;
    const bitpix = Number(cardValue(cards, "BITPIX", NaN));
    const naxisN = Number(cardValue(cards, "NAXIS", NaN));
    if (!Number.isFinite(bitpix) || !Number.isFinite(naxisN)) throw new Error("corrupt FITS file (missing BITPIX or NAXIS)");
    const naxis = [];
    for (let i = 1; i <= naxisN; i++) naxis.push(Number(cardValue(cards, `NAXIS${i}`, NaN)));
    const count = naxis.length ? naxis.reduce((a, b) => a * b, 1) : 0;
    const gcount = Number(cardValue(cards, "GCOUNT", 1)), pcount = Number(cardValue(cards, "PCOUNT", 0));
    const size = naxis.length ? (Math.abs(bitpix) / 8) * gcount * (pcount + count) : 0;
    const xt = String(cardValue(cards, "XTENSION", "")).trim();
    if (xt === "BINTABLE" && cardValue(cards, "ZIMAGE", false) === true) {
      throw new Error("tile-compressed FITS is not decoded in the browser: use lenssr upscale or lenssr serve");
    }
    if ((index === 0 || xt === "IMAGE") && count > 0) {
      if (naxis.length !== 2) throw new Error(`expected one 2-D image, got shape (${naxis.slice().reverse().join(", ")})`);
      const [w, h] = naxis;
      if (dataStart + size > bytes.length) {
        throw new Error(`corrupt FITS file (truncated: the header declares ${size} data bytes, the file holds ${Math.max(bytes.length - dataStart, 0)})`);
      }
      const kind = bitpix < 0 ? "f" : bitpix === 8 ? "u" : "i";
      let data = decodeSamples(bytes, dataStart, h * w, kind, Math.abs(bitpix) / 8, false);
      const bscale = Number(cardValue(cards, "BSCALE", 1)), bzero = Number(cardValue(cards, "BZERO", 0));
      const blank = bitpix > 0 ? cardValue(cards, "BLANK", null) : null;
      if (bscale !== 1 || bzero !== 0 || blank !== null) {
        const raw = data;
        data = new Float32Array(raw.length);
        for (let i = 0; i < raw.length; i++) data[i] = blank !== null && raw[i] === blank ? NaN : raw[i] * bscale + bzero;
      }
      return { data, h, w, meta: { cards, primary: index > 0 ? primary : null, gzip: gz, hdu_index: index } };
    }
    offset = dataStart + Math.ceil(size / BLOCK) * BLOCK;
    index++;
  }
  throw new Error("FITS file has no image data");
}

const CD_RE = /^CD[12]_[12][A-Z]?$/, CDELT_RE = /^CDELT[12][A-Z]?$/, CRPIX_RE = /^CRPIX[12][A-Z]?$/;
const SIP_RE = /^(A|B|AP|BP)_(\d+)_(\d+)$/;
const STALE = new Set(["BSCALE", "BZERO", "BLANK", "DATAMIN", "DATAMAX", "CHECKSUM", "DATASUM",
  "ZIMAGE", "ZBITPIX", "ZNAXIS", "ZCMPTYPE", "ZQUANTIZ", "ZDITHER0"]);
const STRUCTURAL = /^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|END)$/;

/** A float as a FITS value, as astropy writes it: Python's repr (exponent below 1e-4 and from
 * 1e16, upper-case, two exponent digits), the mantissa cut to fit 20 characters. */
export function fitsFloat(v) {
  if (!Number.isFinite(v)) throw new Error(`cannot write ${v} in a FITS header`);
  const [mant, e] = v.toExponential().split("e");
  const exp = Number(e);
  let s;
  if (v !== 0 && (exp < -4 || exp >= 16)) {
    s = `${mant}E${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  } else {
    s = String(v);
    if (!s.includes(".")) s += ".0";
  }
  if (s.length > 20) {
    const idx = s.indexOf("E");
    s = idx < 0 ? s.slice(0, 20) : s.slice(0, 20 - (s.length - idx)) + s.slice(idx);
  }
  return s;
}

function formatCard(key, value, comment) {
  let v;
  if (value.type === "str") {
    const q = `'${value.v.replace(/'/g, "''").padEnd(8)}'`;
    v = q.padEnd(20);
  } else if (value.type === "bool") v = (value.v ? "T" : "F").padStart(20);
  else if (value.type === "int") v = String(value.v).padStart(20);
  else if (value.type === "float") v = fitsFloat(value.v).padStart(20);
  else v = String(value.v).padStart(20);
  let card = `${key.padEnd(8)}= ${v}`;
  if (comment) card += ` / ${comment}`;
  return card.slice(0, 80).padEnd(80);
}

/** Header cards moved to a grid ``scale`` times finer (rescale_fits_header). */
export function rescaleCards(cards, scale) {
  const s = Number(scale);
  if (s === 1) return cards.slice();
  return cards.map((c) => {
    if (!c.value || (c.value.type !== "int" && c.value.type !== "float")) return c;
    const v = c.value.v;
    let nv = null;
    if (CRPIX_RE.test(c.key)) nv = (v - 0.5) * s + 0.5;
    else if (CD_RE.test(c.key) || CDELT_RE.test(c.key)) nv = v / s;
    else if (SIP_RE.test(c.key)) {
      const m = SIP_RE.exec(c.key);
      nv = v * s ** (1 - Number(m[2]) - Number(m[3]));
    } else if (c.key === "A_DMAX" || c.key === "B_DMAX") nv = v * s;
    if (nv === null) return c;
    const value = { type: "float", v: nv };
    return { ...c, value, raw: formatCard(c.key, value, c.comment) };
  });
}

function commentary(key, text) {
  const out = [];
  for (let i = 0; i < Math.max(text.length, 1); i += 72) out.push(`${key.padEnd(8)}${text.slice(i, i + 72)}`.padEnd(80));
  return out;
}

function headerBytes(lines) {
  const all = [...lines, "END".padEnd(80)];
  const n = Math.ceil((all.length * 80) / BLOCK) * BLOCK;
  const out = new Uint8Array(n).fill(0x20);
  all.forEach((l, i) => { for (let j = 0; j < 80; j++) out[i * 80 + j] = l.charCodeAt(j) & 0x7f; });
  return out;
}

function writeFits(like, data, h, w, scale, history) {
  const m = like.meta;
  const cards = rescaleCards(m.cards, scale).filter((c) => !STALE.has(c.key) && !STRUCTURAL.test(c.key));
  const set = (key, type, v, comment) => {
    const i = cards.findIndex((c) => c.key === key && c.value);
    const card = { key, value: { type, v }, comment, raw: formatCard(key, { type, v }, comment) };
    if (i >= 0) { cards[i] = card; return; }
    // astropy appends a new keyword after the last non-commentary card
    let at = cards.length;
    while (at > 0 && cards[at - 1].value === null) at--;
    cards.splice(at, 0, card);
  };
  set("FLUXCONV", "str", "surface brightness", "pixel values are surface brightness");
  set("SRSCALE", "float", Number(scale), "pixel grid refined by this factor");
  const lines = cards.map((c) => c.raw);
  if (history) lines.push(...commentary("HISTORY", history));
  lines.push(...commentary("HISTORY", `lenssr: resampled x${scale}; surface brightness: pixel values keep the input's units per unit area`));
  const image = [
    formatCard("BITPIX", { type: "int", v: -32 }, "array data type"),
    formatCard("NAXIS", { type: "int", v: 2 }, "number of array dimensions"),
    formatCard("NAXIS1", { type: "int", v: w }, ""),
    formatCard("NAXIS2", { type: "int", v: h }, ""),
  ];
  const parts = [];
  if (m.hdu_index > 0) {
    const prim = (m.primary || []).filter((c) => !STRUCTURAL.test(c.key) && !STALE.has(c.key)).map((c) => c.raw);
    parts.push(headerBytes([
      formatCard("SIMPLE", { type: "bool", v: true }, "conforms to FITS standard"),
      formatCard("BITPIX", { type: "int", v: 8 }, "array data type"),
      formatCard("NAXIS", { type: "int", v: 0 }, "number of array dimensions"),
      formatCard("EXTEND", { type: "bool", v: true }, ""), ...prim]));
    parts.push(headerBytes([formatCard("XTENSION", { type: "str", v: "IMAGE" }, "Image extension"), ...image,
      formatCard("PCOUNT", { type: "int", v: 0 }, "number of parameters"),
      formatCard("GCOUNT", { type: "int", v: 1 }, "number of groups"), ...lines]));
  } else {
    const extend = m.cards.some((c) => c.key === "EXTEND");
    parts.push(headerBytes([formatCard("SIMPLE", { type: "bool", v: true }, "conforms to FITS standard"),
      ...image, ...(extend ? [formatCard("EXTEND", { type: "bool", v: true }, "")] : []), ...lines]));
  }
  const body = new Uint8Array(Math.ceil((data.length * 4) / BLOCK) * BLOCK);
  const dv = new DataView(body.buffer);
  for (let i = 0; i < data.length; i++) dv.setFloat32(i * 4, data[i], false);
  parts.push(body);
  const out = concat(parts);
  return m.gzip ? gzipSync(out, { level: 6, mtime: 0 }) : out;
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

// ------------------------------------------------------------------------------ integer outputs

/** numpy.rint (round half to even). */
function rint(x) {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 ? 2 * Math.round(x / 2) : r;
}

const INT_RANGE = { uint8: [0, 255], uint16: [0, 65535], int8: [-128, 127], int16: [-32768, 32767],
  uint32: [0, 4294967295], int32: [-2147483648, 2147483647] };

/** Values rounded and clipped to an integer dtype (_to_stored_dtype); notes clipping. */
function toStored(data, dtype, fmt, notes) {
  const [lo, hi] = INT_RANGE[dtype];
  const out = new Float64Array(data.length);
  let clipped = 0, mn = Infinity, mx = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const r = rint(data[i]);
    if (r < lo || r > hi) clipped++;
    mn = Math.min(mn, data[i]); mx = Math.max(mx, data[i]);
    out[i] = Math.min(hi, Math.max(lo, r));
  }
  if (clipped && notes) {
    notes.push(`${clipped} values outside ${lo}..${hi} clipped to the ${dtype.replace(/\D/g, "")}-bit ${fmt} range (result spans ${mn.toPrecision(6)}..${mx.toPrecision(6)}); convert the input to FITS or a float32 TIFF to keep the full range`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------- PNG

let CRC_TABLE = null;
function crc32(bytes) {
  if (!CRC_TABLE) {
    CRC_TABLE = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

function readPng(bytes) {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (!sig.every((b, i) => bytes[i] === b)) throw new Error("corrupt PNG file (not a readable PNG image)");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  let o = 8, ihdr = null, palette = null;
  const idat = [];
  while (o + 8 <= bytes.length) {
    const len = dv.getUint32(o), type = ascii(bytes, o + 4, o + 8);
    const body = bytes.subarray(o + 8, o + 8 + len);
    if (body.length < len) throw new Error("corrupt PNG file (truncated chunk)");
    if (type === "IHDR") ihdr = { w: dv.getUint32(o + 8), h: dv.getUint32(o + 12), depth: body[8], color: body[9], interlace: body[12] };
    else if (type === "PLTE") palette = body;
    else if (type === "IDAT") idat.push(body);
    else if (type === "acTL") throw new Error("animated PNG: expected one image");
    else if (type === "IEND") break;
    o += 12 + len;
  }
  if (!ihdr || !idat.length) throw new Error("corrupt PNG file (not a readable PNG image)");
  const { w, h, depth, color } = ihdr;
  if (!(color in CHANNELS)) throw new Error(`corrupt PNG file (colour type ${color})`);
  if (ihdr.interlace) throw new Error("interlaced PNG is not decoded in the browser: save it without interlacing");
  let raw;
  try { raw = unzlibSync(concat(idat)); } catch (e) { throw new Error(`corrupt PNG file (${e.message})`); }
  const ch = CHANNELS[color];
  const bpp = Math.max(1, (ch * depth) >> 3);
  const stride = Math.ceil((w * ch * depth) / 8);
  if (raw.length < h * (stride + 1)) throw new Error("corrupt PNG file (truncated image data)");
  const px = new Uint8Array(h * stride);
  for (let y = 0; y < h; y++) {
    const f = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const cur = px.subarray(y * stride, (y + 1) * stride);
    const prev = y ? px.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? cur[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
      let p;
      if (f === 0) p = 0; else if (f === 1) p = a; else if (f === 2) p = b;
      else if (f === 3) p = (a + b) >> 1;
      else if (f === 4) {
        const q = a + b - c, pa = Math.abs(q - a), pb = Math.abs(q - b), pc = Math.abs(q - c);
        p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else throw new Error(`corrupt PNG file (filter type ${f})`);
      cur[i] = (src[i] + p) & 0xff;
    }
  }
  // sample k of row y (depth bits)
  const sample = (y, k) => {
    const row = y * stride;
    if (depth === 16) return (px[row + 2 * k] << 8) | px[row + 2 * k + 1];
    if (depth === 8) return px[row + k];
    const bit = k * depth, byte = px[row + (bit >> 3)];
    return (byte >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
  };
  const data = new Float32Array(w * h);
  let dtype = "uint8";
  const colorDiffers = () => { throw new Error("colour image (channels differ): save a single-channel (grayscale) image"); };
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v;
      if (color === 0) {
        const s = sample(y, x);
        // Pillow: 16-bit grey stays 16-bit; 1/2/4-bit grey is scaled to 0..255
        v = depth === 16 ? s : depth === 8 ? s : depth === 1 ? s * 255 : (s * 255) / ((1 << depth) - 1);
      } else if (color === 3) {
        const i = sample(y, x);
        if (!palette || 3 * i + 2 >= palette.length) throw new Error("corrupt PNG file (palette index)");
        const [r, g, b] = [palette[3 * i], palette[3 * i + 1], palette[3 * i + 2]];
        if (r !== g || r !== b) colorDiffers();
        v = r;
      } else {
        // RGB / RGBA / LA: Pillow keeps 8 bits of 16-bit colour samples (the high byte)
        const get = (k) => (depth === 16 ? sample(y, ch * x + k) >> 8 : sample(y, ch * x + k));
        v = get(0);
        if (color !== 4 && (get(1) !== v || get(2) !== v)) colorDiffers();
      }
      data[y * w + x] = v;
    }
  }
  if (color === 0 && depth === 16) dtype = "uint16";
  return { data, h, w, meta: { dtype, bits: dtype === "uint8" ? 8 : 16 } };
}

function pngChunk(type, body) {
  const out = new Uint8Array(12 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, body.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(body, 8);
  dv.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

function writePng(like, data, h, w, scale, history, notes) {
  const dtype = like.meta.dtype === "uint8" ? "uint8" : "uint16";
  const v = toStored(data, dtype, "PNG", notes);
  const bytesPer = dtype === "uint8" ? 1 : 2;
  const stride = w * bytesPer;
  const raw = new Uint8Array(h * (stride + 1));
  for (let y = 0; y < h; y++) {
    const row = y * (stride + 1) + 1;
    for (let x = 0; x < w; x++) {
      const s = v[y * w + x];
      if (bytesPer === 1) raw[row + x] = s;
      else { raw[row + 2 * x] = s >> 8; raw[row + 2 * x + 1] = s & 0xff; }
    }
  }
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, w); dv.setUint32(4, h);
  ihdr[8] = bytesPer * 8; ihdr[9] = 0;
  return concat([Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr), pngChunk("IDAT", zlibSync(raw, { level: 6 })), pngChunk("IEND", new Uint8Array(0))]);
}

// --------------------------------------------------------------------------------------------- TIFF

const TIFF_TYPES = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8 };

function readTiff(bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const order = ascii(bytes, 0, 2);
  if (order !== "II" && order !== "MM") throw new Error("corrupt TIFF file (not a TIFF file)");
  const le = order === "II";
  const magic = dv.getUint16(2, le);
  if (magic === 43) throw new Error("BigTIFF is not decoded in the browser: use lenssr upscale or lenssr serve");
  if (magic !== 42) throw new Error("corrupt TIFF file (not a TIFF file)");
  const ifd = dv.getUint32(4, le);
  if (ifd + 2 > bytes.length) throw new Error("corrupt TIFF file (IFD beyond the end of the file)");
  const n = dv.getUint16(ifd, le);
  const tags = {};
  for (let i = 0; i < n; i++) {
    const e = ifd + 2 + 12 * i;
    const tag = dv.getUint16(e, le), type = dv.getUint16(e + 2, le), count = dv.getUint32(e + 4, le);
    const size = (TIFF_TYPES[type] || 1) * count;
    const at = size <= 4 ? e + 8 : dv.getUint32(e + 8, le);
    const vals = [];
    for (let k = 0; k < Math.min(count, 1 << 20); k++) {
      const p = at + k * (TIFF_TYPES[type] || 1);
      if (p + (TIFF_TYPES[type] || 1) > bytes.length) throw new Error("corrupt TIFF file (tag beyond the end of the file)");
      vals.push(type === 3 ? dv.getUint16(p, le) : type === 4 ? dv.getUint32(p, le) : type === 1 ? dv.getUint8(p) : type === 16 ? Number(dv.getBigUint64(p, le)) : 0);
    }
    tags[tag] = vals;
  }
  const next = dv.getUint32(ifd + 2 + 12 * n, le);
  if (next !== 0) throw new Error("TIFF file holds several images: expected one");
  const w = tags[256]?.[0], h = tags[257]?.[0];
  if (!w || !h) throw new Error("corrupt TIFF file (no image size)");
  const bits = tags[258]?.[0] ?? 1, spp = tags[277]?.[0] ?? 1, fmtCode = tags[339]?.[0] ?? 1;
  const compression = tags[259]?.[0] ?? 1, predictor = tags[317]?.[0] ?? 1, planar = tags[284]?.[0] ?? 1;
  if (tags[322]) throw new Error("tiled TIFF is not decoded in the browser: save it with strips");
  if (compression !== 1 && compression !== 8 && compression !== 32946) {
    throw new Error(`TIFF compression ${compression} is not decoded in the browser (uncompressed and deflate are)`);
  }
  if (predictor !== 1) throw new Error(`TIFF predictor ${predictor} is not decoded in the browser`);
  if (bits % 8) throw new Error(`unsupported TIFF sample type (${bits} bits)`);
  const offsets = tags[273], counts = tags[279];
  if (!offsets || !counts) throw new Error("corrupt TIFF file (no strips)");
  const strips = [];
  for (let i = 0; i < offsets.length; i++) {
    let s = bytes.subarray(offsets[i], offsets[i] + counts[i]);
    if (compression !== 1) {
      try { s = unzlibSync(s); } catch (e) { throw new Error(`corrupt TIFF file (bad deflate strip: ${e.message})`); }
    }
    strips.push(s);
  }
  const buf = concat(strips);
  const kind = fmtCode === 3 ? "f" : fmtCode === 2 ? "i" : "u";
  const size = bits / 8;
  const all = decodeSamples(buf, 0, w * h * spp, kind, size, le);
  let data = all;
  if (spp > 1) {
    data = new Float32Array(w * h);
    const colour = Math.min(spp, 3) >= 3 ? 3 : 1;
    for (let i = 0; i < w * h; i++) {
      const at = (c) => (planar === 2 ? all[c * w * h + i] : all[i * spp + c]);
      const v = at(0);
      for (let c = 1; c < colour; c++) if (at(c) !== v) throw new Error("colour image (channels differ): save a single-channel (grayscale) image");
      data[i] = v;
    }
  }
  const dtype = kind === "f" ? "float32" : `${kind === "i" ? "int" : "uint"}${bits}`;
  return { data, h, w, meta: { dtype, bits } };
}

function writeTiff(like, data, h, w, scale, history, notes) {
  const dtype = like.meta.dtype || "float32";
  const isFloat = dtype === "float32";
  if (!isFloat && !(dtype in INT_RANGE)) throw new Error(`cannot write TIFF samples of type ${dtype}`);
  const bits = isFloat ? 32 : Number(dtype.replace(/\D/g, ""));
  const vals = isFloat ? data : toStored(data, dtype, "TIFF", notes);
  const size = bits / 8;
  const entries = [
    [254, 4, 0], [256, 4, w], [257, 4, h], [258, 3, bits], [259, 3, 1], [262, 3, 1],
    [273, 4, 0], [277, 3, 1], [278, 4, h], [279, 4, w * h * size], [284, 3, 1],
    [339, 3, isFloat ? 3 : dtype.startsWith("int") ? 2 : 1],
  ];
  const ifdSize = 2 + 12 * entries.length + 4;
  const dataStart = 8 + ifdSize;
  entries[6][2] = dataStart;
  const out = new Uint8Array(dataStart + w * h * size);
  const dv = new DataView(out.buffer);
  out.set([0x49, 0x49]); dv.setUint16(2, 42, true); dv.setUint32(4, 8, true);
  dv.setUint16(8, entries.length, true);
  entries.forEach(([tag, type, v], i) => {
    const e = 10 + 12 * i;
    dv.setUint16(e, tag, true); dv.setUint16(e + 2, type, true); dv.setUint32(e + 4, 1, true);
    if (type === 3) dv.setUint16(e + 8, v, true); else dv.setUint32(e + 8, v, true);
  });
  const set = {
    float32: (o, v) => dv.setFloat32(o, v, true), uint8: (o, v) => dv.setUint8(o, v), int8: (o, v) => dv.setInt8(o, v),
    uint16: (o, v) => dv.setUint16(o, v, true), int16: (o, v) => dv.setInt16(o, v, true),
    uint32: (o, v) => dv.setUint32(o, v, true), int32: (o, v) => dv.setInt32(o, v, true),
  }[dtype];
  for (let i = 0; i < w * h; i++) set(dataStart + i * size, vals[i]);
  return out;
}
