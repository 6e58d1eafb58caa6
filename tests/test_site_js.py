"""The site's JavaScript pipeline (``lenssr/site/static/lib``) run by Node against the Python
one: normalisation statistics, padding, tiling and blending, the 8-fold TTA and the instrument
vector, with the same small deterministic network on both sides (no ONNX Runtime needed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lenssr.data.normalize import background_level, noise_sigma_mad
from lenssr.inference.base import Upscaler

LIB = Path(__file__).parents[1] / "src/lenssr/site/static/lib"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (make site)")

# The same network in JS: a neighbour mix (so flips, rotations and tile borders matter), the
# conditioning vector, and a 2x upsampling with a sub-pixel pattern.
DRIVER = """
import { upscaleImage } from "%(lib)s/pipeline.js";
import { backgroundLevel, noiseSigmaMad } from "%(lib)s/normalize.js";
let text = "";
for await (const chunk of process.stdin) text += chunk;
const cases = JSON.parse(text);
const net = async (x, h, w, cond) => {
  const c = cond ? 0.01 * cond[0] + 0.02 * cond[1] : 0;
  const y = new Float32Array(4 * h * w);
  for (let r = 0; r < h; r++) for (let q = 0; q < w; q++) {
    const z = x[r * w + q] + 0.5 * x[r * w + Math.min(q + 1, w - 1)]
      - 0.3 * x[Math.max(r - 1, 0) * w + q] + c;
    for (let a = 0; a < 2; a++) for (let b = 0; b < 2; b++) {
      y[(2 * r + a) * 2 * w + 2 * q + b] = z * (1 + 0.1 * a - 0.05 * b);
    }
  }
  return y;
};
const out = [];
for (const k of cases) {
  const img = Float32Array.from(k.image);
  const res = await upscaleImage(k.model, net, img, k.h, k.w, k.opts);
  const x = Float64Array.from(img);
  out.push({ data: Array.from(res.data), h: res.h, w: res.w,
             background: backgroundLevel(x), noise: noiseSigmaMad(x, k.h, k.w) });
}
process.stdout.write(JSON.stringify(out));
"""


class _MixNet(Upscaler):
    """The driver's network in numpy, behind the Python upscale pipeline."""

    def _forward(self, x, scale, cond=None, sigma=False):
        x = x[:, 0].astype(np.float64)
        c = 0.0 if cond is None else (0.01 * cond[:, 0] + 0.02 * cond[:, 1])[:, None, None]
        right = np.concatenate([x[:, :, 1:], x[:, :, -1:]], axis=2)
        up = np.concatenate([x[:, :1], x[:, :-1]], axis=1)
        z = x + 0.5 * right - 0.3 * up + c
        y = np.empty((x.shape[0], 2 * x.shape[1], 2 * x.shape[2]))
        for a in (0, 1):
            for b in (0, 1):
                y[:, a::2, b::2] = z * (1 + 0.1 * a - 0.05 * b)
        return y.astype(np.float32)[:, None]


def python_model(kind: str, conditioned: bool) -> _MixNet:
    desc = {"scale": 2, "scales": [2], "normalization": {"kind": kind}, "size_multiple": 1}
    if conditioned:
        desc["conditioning"] = {"inputs": ["psf_fwhm_pix", "log10_noise"], "range": {}}
    m = _MixNet("mix", desc)
    m.min_side = 4  # as the ONNX models (lenssr.inference.onnx_export.ONNX_MIN_SIDE)
    return m


def js_model(kind: str, conditioned: bool) -> dict:
    return {
        "name": "mix",
        "scale": 2,
        "normalization": kind,
        "size_multiple": 1,
        "min_side": 4,
        "conditioned": conditioned,
        "instrument_range": {},
    }


def image(seed: int, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape, dtype=np.float64)
    blob = 5.0 * np.exp(-((y - shape[0] / 3) ** 2 + (x - shape[1] / 2) ** 2) / 20.0)
    return (blob + 0.7 + rng.normal(0, 0.05, shape)).astype(np.float32)


CASES = [
    # (name, shape, normalisation, conditioned, upscale keyword arguments)
    ("whole", (37, 45), "noise", True, {}),
    ("tiled", (37, 45), "noise", True, {"tile": 16}),
    ("tta", (23, 30), "noise", True, {"tta": True}),
    ("tiled_tta_given", (29, 40), "noise", True, {"tile": 12, "tta": True, "noise_sigma": 0.07}),
    ("instrument", (30, 30), "noise", True, {"psf_fwhm": 0.3, "pixel_scale": 0.12}),
    ("tiny_edge_pad", (3, 5), "noise", True, {}),
    ("minmax_plain", (33, 21), "minmax", False, {"tile": 10}),
]


def test_js_pipeline_equals_python() -> None:
    cases, expected = [], []
    for i, (_, shape, kind, cond, kw) in enumerate(CASES):
        img = image(i, shape)
        ref = python_model(kind, cond).upscale(img, **kw)
        expected.append((img, ref))
        opts = {k: v for k, v in kw.items()}
        cases.append(
            {"image": img.ravel().tolist(), "h": shape[0], "w": shape[1], "opts": opts,
             "model": js_model(kind, cond)}
        )  # fmt: skip
    script = DRIVER % {"lib": LIB.as_posix()}
    res = subprocess.run(
        [NODE, "--no-warnings", "--input-type=module", "-e", script],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    for (name, *_), (img, ref), out in zip(CASES, expected, got, strict=True):
        y = np.asarray(out["data"], dtype=np.float32).reshape(out["h"], out["w"])
        assert y.shape == ref.shape, name
        span = float(ref.max() - ref.min())
        assert np.max(np.abs(y - ref)) <= 1e-6 * span, name
        assert out["background"] == pytest.approx(background_level(img), rel=1e-12, abs=1e-12)
        assert out["noise"] == pytest.approx(noise_sigma_mad(img), rel=1e-9, abs=1e-12), name


def test_a_wrong_pipeline_would_be_caught() -> None:
    """The comparison above sees a one-pixel shift of the network's neighbour mix."""
    img = image(0, (37, 45))
    a = python_model("noise", True).upscale(img, tile=16)
    b = python_model("noise", True).upscale(img[:, ::-1].copy(), tile=16)[:, ::-1]
    assert np.max(np.abs(a - b)) > 1e-3 * float(a.max() - a.min())
