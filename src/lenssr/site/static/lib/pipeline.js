// The upscale pipeline of lenssr.inference.base.Upscaler.upscale for one image: instrument,
// normalisation, padding to the network's size rules, whole-image or tiled inference
// (lenssr.inference.tiling: raised-cosine blending), optional 8-fold TTA, back to the input's
// units. The network is a function run(x Float32Array, h, w, cond) -> Promise<Float32Array>
// of (scale*h) x (scale*w) normalised pixels.

import {
  conditionVector, noiseSigmaMad, psfFwhmPixels, stats,
} from "./normalize.js";

/** Images with more LR pixels than this are tiled automatically; tile side used then. */
export const AUTO_TILE_PIXELS = 512 * 512;
export const AUTO_TILE = 256;
/** Size of the test-time self-ensemble (4 rotations x optional flip). */
export const N_DIHEDRAL = 8;

/** Pad bottom/right to multiples of ``multiple`` at least ``minSide`` (numpy reflect, or edge
 * replication when the image is too small to reflect), as pad_to_multiple_np. */
export function padToMultiple(x, h, w, multiple, minSide) {
  const up = (n) => n + ((multiple - (n % multiple)) % multiple);
  const H = Math.max(up(h), up(minSide));
  const W = Math.max(up(w), up(minSide));
  if (H === h && W === w) return { data: x, h, w };
  const reflectMode = H - h < h && W - w < w;
  const map = (i, n) => (i < n ? i : reflectMode ? 2 * (n - 1) - i : n - 1);
  const out = new Float32Array(H * W);
  for (let y = 0; y < H; y++) {
    const sy = map(y, h);
    for (let xx = 0; xx < W; xx++) out[y * W + xx] = x[sy * w + map(xx, w)];
  }
  return { data: out, h: H, w: W };
}

/** Tile offsets covering [0, length) (lenssr.inference.tiling.tile_starts). */
export function tileStarts(length, tile, overlap) {
  if (length <= tile) return [0];
  const step = tile - overlap;
  const starts = [];
  for (let s = 0; s < length - tile; s += step) starts.push(s);
  starts.push(length - tile);
  return starts;
}

function ramp(nZero, nRise) {
  const out = new Float64Array(nZero + nRise);
  const m = Math.max(nRise, 1);
  for (let j = 0; j < nRise; j++) out[nZero + j] = 0.5 - 0.5 * Math.cos((Math.PI * (j + 0.5)) / m);
  return out;
}

/** Blend weight along one axis in HR pixels (lenssr.inference.tiling.blend_weights_1d). */
export function blendWeights1d(start, size, length, overlap, scale) {
  const w = new Float64Array(scale * size).fill(1);
  const margin = Math.floor(overlap / 2);
  const r = ramp(scale * margin, scale * (overlap - margin));
  const n = Math.min(r.length, w.length);
  if (start > 0) for (let i = 0; i < n; i++) w[i] = Math.min(w[i], r[i]);
  if (start + size < length) {
    for (let i = 0; i < n; i++) w[w.length - n + i] = Math.min(w[w.length - n + i], r[n - 1 - i]);
  }
  return w;
}

/** np.rot90 (counter-clockwise) applied k times to an (h, w) image -> {data, h, w}. */
function rot90(x, h, w, k) {
  let d = x, hh = h, ww = w;
  for (let r = 0; r < ((k % 4) + 4) % 4; r++) {
    const out = new Float32Array(hh * ww);
    // out[i, j] = d[j, ww - 1 - i], out is (ww, hh)
    for (let i = 0; i < ww; i++) for (let j = 0; j < hh; j++) out[i * hh + j] = d[j * ww + (ww - 1 - i)];
    d = out; [hh, ww] = [ww, hh];
  }
  return { data: d, h: hh, w: ww };
}

function flipColumns(x, h, w) {
  const out = new Float32Array(h * w);
  for (let y = 0; y < h; y++) for (let j = 0; j < w; j++) out[y * w + j] = x[y * w + (w - 1 - j)];
  return out;
}

/** lenssr.data.dihedral(x, k) / inverse_dihedral(x, k) of an (h, w) image. */
export function dihedral(x, h, w, k) {
  const r = rot90(x, h, w, k % 4);
  return k >= 4 ? { ...r, data: flipColumns(r.data, r.h, r.w) } : r;
}
export function inverseDihedral(x, h, w, k) {
  const d = k >= 4 ? flipColumns(x, h, w) : x;
  return rot90(d, h, w, 4 - (k % 4));
}

/** Network on the normalised (h, w) image x: pad, run, crop -> (s*h, s*w) Float32Array. */
async function runPadded(model, run, x, h, w, s, cond) {
  const p = padToMultiple(x, h, w, model.size_multiple, model.min_side);
  const y = await run(p.data, p.h, p.w, cond);
  if (p.h === h && p.w === w) return y;
  const out = new Float32Array(s * h * s * w);
  const W = s * p.w;
  for (let yy = 0; yy < s * h; yy++) out.set(y.subarray(yy * W, yy * W + s * w), yy * s * w);
  return out;
}

/** Whole-image or tiled network pass on the normalised image -> Float32Array (s*h, s*w). */
async function runImage(model, run, x, h, w, s, tile, cond, onTile) {
  if (tile == null || (h <= tile && w <= tile)) {
    const y = await runPadded(model, run, x, h, w, s, cond);
    if (onTile) onTile(1, 1);
    return y;
  }
  const overlap = Math.min(Math.max(4, Math.floor(tile / 8)), tile - 1);
  const ys = tileStarts(h, tile, overlap), xs = tileStarts(w, tile, overlap);
  const th = Math.min(tile, h), tw = Math.min(tile, w);
  const wy = new Map(ys.map((y0) => [y0, blendWeights1d(y0, th, h, overlap, s)]));
  const wx = new Map(xs.map((x0) => [x0, blendWeights1d(x0, tw, w, overlap, s)]));
  const H = s * h, W = s * w;
  const acc = new Float64Array(H * W), wsum = new Float64Array(H * W);
  const tileData = new Float32Array(th * tw);
  let done = 0;
  for (const y0 of ys) {
    for (const x0 of xs) {
      for (let r = 0; r < th; r++) tileData.set(x.subarray((y0 + r) * w + x0, (y0 + r) * w + x0 + tw), r * tw);
      const t = await runPadded(model, run, tileData, th, tw, s, cond);
      const a = wy.get(y0), b = wx.get(x0);
      for (let r = 0; r < s * th; r++) {
        const row = (s * y0 + r) * W + s * x0;
        for (let c = 0; c < s * tw; c++) {
          const wgt = a[r] * b[c];
          acc[row + c] += t[r * s * tw + c] * wgt;
          wsum[row + c] += wgt;
        }
      }
      if (onTile) onTile(++done, ys.length * xs.length);
    }
  }
  const out = new Float32Array(H * W);
  for (let i = 0; i < H * W; i++) out[i] = acc[i] / wsum[i];
  return out;
}

/**
 * Super-resolve one (h, w) image in its own units, as SRModel.upscale does.
 *
 * @param {object} model manifest entry (normalization, conditioned, size_multiple, min_side, scale)
 * @param {Function} run network (see above)
 * @param {Float32Array} image row-major pixels
 * @param {object} opts psf_fwhm, pixel_scale [arcsec], noise_sigma (input units), tile (LR px;
 *   null: automatic above 512x512, 0: never), tta, onTile(done, total)
 * @returns {Promise<{data: Float32Array, h: number, w: number, info: object}>}
 */
export async function upscaleImage(model, run, image, h, w, opts = {}) {
  const s = model.scale;
  const x = Float64Array.from(image);
  let tile = opts.tile;
  if (tile == null && h * w > AUTO_TILE_PIXELS) tile = AUTO_TILE;
  else if (tile != null && tile <= 0) tile = null;
  if (tile != null) {
    const minTile = 2 * Math.max(model.size_multiple, 4);
    if (tile < minTile) throw new Error(`tile must be at least ${minTile} LR pixels`);
    tile = Math.ceil(tile / model.size_multiple) * model.size_multiple;
  }
  const info = {};
  let sigma = null, fwhmPix = null;
  if (model.normalization === "noise" || model.conditioned) {
    if (opts.noise_sigma == null) {
      sigma = noiseSigmaMad(x, h, w);
      info.noise_sigma = "estimated";
    } else {
      sigma = Number(opts.noise_sigma);
      if (!(Number.isFinite(sigma) && sigma >= 0)) throw new Error(`noise_sigma must be finite and >= 0, got ${opts.noise_sigma}`);
      info.noise_sigma = "given";
    }
    if (model.conditioned) {
      fwhmPix = psfFwhmPixels(opts.psf_fwhm, opts.pixel_scale);
      info.psf_fwhm_pix = Math.round(fwhmPix * 1e4) / 1e4;
      const assumed = {};
      if (opts.psf_fwhm == null) assumed.psf_fwhm = 0.18;
      if (opts.pixel_scale == null) assumed.pixel_scale = 0.10;
      if (Object.keys(assumed).length) info.assumed = assumed;
      const [lo, hi] = (model.instrument_range || {}).psf_fwhm_pix || [null, null];
      if (lo != null && !(lo - 1e-6 <= fwhmPix && fwhmPix <= hi + 1e-6)) {
        info.warning = `PSF FWHM ${fwhmPix.toFixed(2)} LR pixels is outside the range the model was trained on (${lo}-${hi} pixels); results may be unreliable`;
      }
    }
  }
  const { lo, hi } = stats(model.normalization, x, sigma);
  const d = hi - lo;
  const xn = new Float32Array(h * w);
  for (let i = 0; i < h * w; i++) xn[i] = (x[i] - lo) / d;
  const cond = model.conditioned ? conditionVector(fwhmPix, sigma, lo, hi) : null;

  let yn;
  if (opts.tta) {
    const acc = new Float64Array(s * h * s * w);
    for (let k = 0; k < N_DIHEDRAL; k++) {
      const t = dihedral(xn, h, w, k);
      const out = await runImage(model, run, t.data, t.h, t.w, s, tile, cond,
        opts.onTile && ((i, n) => opts.onTile(k * n + i, N_DIHEDRAL * n)));
      const back = inverseDihedral(out, s * t.h, s * t.w, k).data;
      for (let i = 0; i < acc.length; i++) acc[i] += back[i];
    }
    yn = acc.map((v) => v / N_DIHEDRAL);
  } else {
    yn = await runImage(model, run, xn, h, w, s, tile, cond, opts.onTile);
  }
  const y = new Float32Array(yn.length);
  for (let i = 0; i < yn.length; i++) y[i] = yn[i] * d + lo;
  return { data: y, h: s * h, w: s * w, info };
}
