// Per-image normalisation and the instrument vector, as lenssr.data.normalize and
// lenssr.data.conditioning compute them (float64 arithmetic, numpy's median and quantile).
// Images are row-major Float64Array of h*w pixels.

/** numpy.median of a Float64Array (the array is sorted in place). */
export function medianInPlace(v) {
  const n = v.length;
  if (n === 0) return NaN;
  v.sort();
  const m = n >> 1;
  return n % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** numpy.quantile(v, q) with the default linear method (v is sorted in place). */
export function quantileInPlace(v, q) {
  v.sort();
  const pos = q * (v.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, v.length - 1);
  const t = pos - lo;
  const a = v[lo], b = v[hi];
  const d = b - a;
  return t >= 0.5 ? b - d * (1 - t) : a + d * t;
}

/** Sigma-clipped median (lenssr.data.normalize.background_level). */
export function backgroundLevel(image, nSigma = 3.0, iterations = 5) {
  let data = Float64Array.from(image.filter(Number.isFinite));
  if (data.length === 0) return 0.0;
  let med = medianInPlace(data.slice());
  for (let it = 0; it < iterations; it++) {
    const dev = new Float64Array(data.length);
    for (let i = 0; i < data.length; i++) dev[i] = Math.abs(data[i] - med);
    const mad = 1.4826 * medianInPlace(dev);
    if (mad <= 0) break;
    const keep = [];
    for (let i = 0; i < data.length; i++) if (Math.abs(data[i] - med) < nSigma * mad) keep.push(data[i]);
    if (keep.length === data.length || keep.length < 8) break;
    data = Float64Array.from(keep);
    med = medianInPlace(data.slice());
  }
  return med;
}

/** scipy.ndimage "reflect" index (d c b a | a b c d | d c b a). */
function reflect(i, n) {
  const p = 2 * n;
  let k = ((i % p) + p) % p;
  return k >= n ? p - 1 - k : k;
}

/** scipy.ndimage.uniform_filter(image, size, mode="reflect"): rows, then columns. */
export function uniformFilter(image, h, w, size = 5) {
  const r = size >> 1;
  const tmp = new Float64Array(h * w);
  const out = new Float64Array(h * w);
  // scipy filters axis 0 first, then axis 1
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) {
      let s = 0;
      for (let k = -r; k <= r; k++) s += image[reflect(y + k, h) * w + x];
      tmp[y * w + x] = s / size;
    }
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let k = -r; k <= r; k++) s += tmp[y * w + reflect(x + k, w)];
      out[y * w + x] = s / size;
    }
  }
  return out;
}

/** Robust background noise sigma (lenssr.data.normalize.noise_sigma_mad). */
export function noiseSigmaMad(image, h, w, faintFraction = 0.5) {
  const smooth = uniformFilter(image, h, w, 5);
  const cut = quantileInPlace(smooth.slice(), faintFraction);
  const faint = new Uint8Array(h * w);
  for (let i = 0; i < h * w; i++) faint[i] = smooth[i] <= cut ? 1 : 0;
  const d = [];
  if (w > 1) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w - 1; x++) {
        const i = y * w + x;
        if (faint[i] && faint[i + 1]) d.push(image[i + 1] - image[i]);
      }
    }
  }
  if (h > 1) {
    for (let y = 0; y < h - 1; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        if (faint[i] && faint[i + w]) d.push(image[i + w] - image[i]);
      }
    }
  }
  let diffs = d;
  if (diffs.length < 8) {
    diffs = [];
    for (let y = 0; y < h; y++) for (let x = 0; x < w - 1; x++) diffs.push(image[y * w + x + 1] - image[y * w + x]);
    for (let y = 0; y < h - 1; y++) for (let x = 0; x < w; x++) diffs.push(image[(y + 1) * w + x] - image[y * w + x]);
  }
  if (diffs.length === 0) return 0.0;
  const v = Float64Array.from(diffs);
  const med = medianInPlace(v.slice());
  for (let i = 0; i < v.length; i++) v[i] = Math.abs(v[i] - med);
  return (1.4826 * medianInPlace(v)) / Math.sqrt(2.0);
}

/** ``hi - lo`` is at least this many noise sigmas (kind "noise"). */
export const NOISE_FLOOR_SIGMAS = 5.0;
const EPS = 1e-12;

/** ``{lo, hi}`` of Normalization(kind).stats for one image (sigma: the noise, kind "noise"). */
export function stats(kind, image, sigma) {
  let max = -Infinity, min = Infinity;
  for (const v of image) { if (v > max) max = v; if (v < min) min = v; }
  if (kind === "noise") {
    const lo = backgroundLevel(image);
    let span = Math.max(max - lo, NOISE_FLOOR_SIGMAS * sigma);
    if (!(span > EPS)) span = 1.0;
    return { lo, hi: lo + span };
  }
  return { lo: min, hi: max - min > EPS ? max : min + 1.0 };
}

/** The instrument assumed when nothing is known: the default preset's LR camera. */
export const DEFAULT_INSTRUMENT = { psf_fwhm: 0.18, pixel_scale: 0.10 };

/** LR PSF FWHM in LR pixels (lenssr.data.conditioning.psf_fwhm_pixels). */
export function psfFwhmPixels(psfFwhm, pixelScale) {
  const fwhm = psfFwhm == null ? DEFAULT_INSTRUMENT.psf_fwhm : Number(psfFwhm);
  const pix = pixelScale == null ? DEFAULT_INSTRUMENT.pixel_scale : Number(pixelScale);
  if (!(fwhm > 0 && pix > 0)) throw new Error(`psf_fwhm and pixel_scale must be > 0 (got ${fwhm}, ${pix})`);
  return fwhm / pix;
}

/** The conditioning vector [psf_fwhm_pix, log10(sigma / (hi - lo))] as float32. */
export function conditionVector(fwhmPix, sigma, lo, hi) {
  const span = hi - lo;
  const rel = Math.log10(Math.min(Math.max(sigma / (span > 0 ? span : 1.0), 1e-6), 10.0));
  return Float32Array.from([fwhmPix, rel]);
}
