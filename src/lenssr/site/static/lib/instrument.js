// What a FITS header says about the LR instrument (lenssr.inference.instrument.header_instrument):
// pixel scale [arcsec] from the celestial WCS (CDi_j, else CDELTi x PCi_j; mean of the two
// axes' pixel sides), else a pixel-scale keyword; PSF FWHM [arcsec] from a keyword, else a
// FWHM-in-pixels keyword times the pixel scale.

export const PSF_FWHM_KEYS = ["PSF_FWHM", "PSFFWHM", "FWHM_PSF", "SEEING", "SEEFWHM", "FWHM"];
export const PSF_FWHM_PIXEL_KEYS = ["FWHMPIX", "PSF_FWHMPIX", "FWHM_PIX"];
export const PIXEL_SCALE_KEYS = ["PIXSCALE", "PIXSCAL1", "PIXSCAL", "SECPIX", "PIXELSCL"];
const CELESTIAL = /^(RA--|DEC-|GLON|GLAT|ELON|ELAT|SLON|SLAT|HPLN|HPLT|[A-Z]{2}LN|[A-Z]{2}LT)/;

function lookup(cards) {
  const map = new Map();
  for (const c of cards) if (c.value && !map.has(c.key)) map.set(c.key, c.value.v);
  return map;
}

function positive(map, key) {
  if (!map.has(key)) return null;
  const v = typeof map.get(key) === "string" ? Number(map.get(key).trim()) : Number(map.get(key));
  return v > 0 && Number.isFinite(v) ? v : null;
}

function wcsPixelScale(map) {
  const c1 = String(map.get("CTYPE1") ?? ""), c2 = String(map.get("CTYPE2") ?? "");
  if (!CELESTIAL.test(c1) || !CELESTIAL.test(c2)) return null;
  const num = (k, d) => (typeof map.get(k) === "number" ? map.get(k) : d);
  let m;
  if (["CD1_1", "CD1_2", "CD2_1", "CD2_2"].some((k) => map.has(k))) {
    m = [[num("CD1_1", 0), num("CD1_2", 0)], [num("CD2_1", 0), num("CD2_2", 0)]];
  } else {
    const d = [num("CDELT1", 1), num("CDELT2", 1)];
    const pc = [[num("PC1_1", 1), num("PC1_2", 0)], [num("PC2_1", 0), num("PC2_2", 1)]];
    m = pc.map((row, i) => row.map((v) => v * d[i]));
  }
  const scales = [0, 1].map((j) => Math.hypot(m[0][j], m[1][j]) * 3600);
  return scales.every((s) => s > 0) ? (scales[0] + scales[1]) / 2 : null;
}

/** ``{psf_fwhm, pixel_scale}`` [arcsec] as far as the header cards tell (keys absent if unknown). */
export function headerInstrument(cards) {
  const out = {};
  if (!cards) return out;
  const map = lookup(cards);
  const pix = wcsPixelScale(map);
  if (pix !== null) out.pixel_scale = pix;
  else {
    for (const k of PIXEL_SCALE_KEYS) {
      const v = positive(map, k);
      if (v !== null) { out.pixel_scale = v; break; }
    }
  }
  for (const k of PSF_FWHM_KEYS) {
    const v = positive(map, k);
    if (v !== null) { out.psf_fwhm = v; return out; }
  }
  for (const k of PSF_FWHM_PIXEL_KEYS) {
    const v = positive(map, k);
    if (v !== null) { out.psf_fwhm = v * (out.pixel_scale ?? 0.10); return out; }
  }
  return out;
}
