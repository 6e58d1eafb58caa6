"""End-to-end evaluation on a tiny synthetic paired set (bicubic + models via the SRModel API)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from lenssr.evaluation.evaluator import evaluate, plot_examples
from lenssr.evaluation.metrics import psnr

PNG = b"\x89PNG\r\n\x1a\n"
N, HR_SIZE = 6, 24


def block_mean(hr: np.ndarray) -> np.ndarray:
    """Flux-conserving x2 instrument (surface brightness): mean over 2x2 blocks."""
    h, w = hr.shape[-2:]
    return hr.reshape(*hr.shape[:-2], h // 2, 2, w // 2, 2).mean(axis=(-3, -1))


def _sky(rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[:HR_SIZE, :HR_SIZE] + 0.5
    cx, cy = HR_SIZE / 2 + rng.uniform(-1, 1, 2)
    r = np.hypot(x - cx, y - cy)
    ring = rng.uniform(10, 40) * np.exp(-0.5 * ((r - rng.uniform(5, 8)) / 1.2) ** 2)
    return (ring + 60 * np.exp(-r / 1.5) + 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def pairs_h5(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """An HDF5 file in the contract's schema: "lr" (N,h,w), "hr" (N,H,W), "label", attrs."""
    rng = np.random.default_rng(0)
    hr = np.stack([_sky(rng) for _ in range(N)])
    lr = (block_mean(hr) + rng.normal(0, 0.2, (N, HR_SIZE // 2, HR_SIZE // 2))).astype(np.float32)
    path = tmp_path_factory.mktemp("eval") / "pairs.h5"
    with h5py.File(path, "w") as f:
        f["lr"], f["hr"] = lr, hr
        f["label"] = np.zeros(N, dtype=np.int8)
        f.attrs.update(
            classes=json.dumps(["no_sub"]), preset="{}", scale=2, units="e-/s/arcsec^2", seed=0
        )
        f.attrs.update(lr_pixel_scale=0.1, hr_pixel_scale=0.05)
    return path, lr, hr


class Oracle:
    """Returns the true HR image: PSNR inf, flux residual = LR noise floor, spectrum exact."""

    name = "oracle"
    scales = (2,)

    def __init__(self, lr: np.ndarray, hr: np.ndarray) -> None:
        self.lookup = {a.tobytes(): b for a, b in zip(lr, hr, strict=True)}

    def upscale(self, lr, scale=None, tta=False, batch_size=16):
        return np.stack([self.lookup[a.tobytes()] for a in np.asarray(lr)])


def test_evaluate_writes_metrics_and_figures(pairs_h5, tmp_path) -> None:
    from lenssr.inference.api import SRModel
    from lenssr.models import create_model

    path, lr, hr = pairs_h5
    tiny = SRModel(
        create_model("srcnn", scale=2, num_feat=4, num_feat2=4), name="tiny", device="cpu"
    )
    out = tmp_path / "out"
    result = evaluate(
        [tiny, Oracle(lr, hr), "bicubic"],
        path,
        n=5,
        out=out,
        batch_size=2,
        device="cpu",
        degrade=block_mean,
        examples=3,
    )
    assert [m.name for m in result.models] == ["bicubic", "tiny", "oracle"]
    assert result.n_images == 5 and result.scale == 2
    assert result.example_indices == [0, 2, 4]
    for m in result.models:
        assert all(v.shape == (5,) for v in m.per_image.values())
        assert m.images_per_s > 0
    oracle, bicubic = result["oracle"], result["bicubic"]
    assert np.all(np.isinf(oracle.per_image["psnr"]))
    assert oracle.hallucination == 0.0
    np.testing.assert_allclose(oracle.per_image["ssim"], 1.0)
    np.testing.assert_allclose(oracle.per_image["flux_residual"], result.reference["flux_residual"])
    assert 20 < bicubic.summary()["psnr"]["mean"] < 60
    assert bicubic.hallucination > 0.0
    # per-image numbers are in data order and match a direct computation
    direct = psnr(tiny.upscale(lr[:5]), hr[:5])
    np.testing.assert_allclose(result["tiny"].per_image["psnr"], direct, rtol=1e-6)

    doc = json.loads((out / "metrics.json").read_text())  # strict JSON: no NaN/Infinity
    assert [m["name"] for m in doc["models"]] == ["bicubic", "tiny", "oracle"]
    assert "HR image's own min..max" in doc["conventions"]["normalisation"]
    assert doc["models"][2]["psnr"]["mean"] is None and doc["models"][2]["psnr"]["n_inf"] == 5
    assert doc["models"][0]["psnr"]["mean"] == pytest.approx(bicubic.summary()["psnr"]["mean"])
    assert doc["reference"]["flux_error"]["n"] == 5
    for name in ("examples.png", "power_spectrum.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000
    rows = (out / "per_image.csv").read_text().splitlines()
    assert rows[0].startswith("model,index,name,mse,psnr,ssim") and len(rows) == 1 + 3 * 5

    table = result.table()
    assert table.row_count == 4  # three models + HR reference


def test_evaluate_errors(pairs_h5, tmp_path) -> None:
    from lenssr.errors import LenssrError

    with pytest.raises(LenssrError, match="data not found"):
        evaluate([], tmp_path / "missing.h5", device="cpu", degrade=block_mean)
    with pytest.raises(LenssrError, match="shape"):
        evaluate([], pairs_h5[0], device="cpu", degrade=lambda hr: hr[..., :-1, :-1])


def test_cli_evaluate_with_the_default_preset(tmp_path, capsys) -> None:
    from lenssr.cli import main
    from lenssr.simulation import degrade_array

    rng = np.random.default_rng(2)
    hr = np.stack([_sky(rng) for _ in range(4)])
    lr = degrade_array(hr, "default", rng=rng)
    data = tmp_path / "sim.h5"
    with h5py.File(data, "w") as f:
        f["lr"], f["hr"] = lr, hr
        f.attrs["scale"] = 2
    out = tmp_path / "eval"
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "-m", "bicubic", "--data", str(data), "--out", str(out), "--n", "3"])
    assert exc.value.code == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert [m["name"] for m in doc["models"]] == ["bicubic"] and doc["n_images"] == 3
    assert doc["preset"] == "default"
    # the HR truth re-observed reproduces the LR flux up to the noise
    assert doc["reference"]["flux_error"]["mean"] < 0.05
    assert (out / "examples.png").stat().st_size > 5000
    assert "bicubic" in capsys.readouterr().out


def test_cli_bad_data_path_is_one_line(tmp_path, capsys) -> None:
    from lenssr.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", "bicubic", "--data", str(tmp_path / "nope")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: data not found") and "\n" not in err


def test_plot_examples_single_model(tmp_path) -> None:
    rng = np.random.default_rng(1)
    hr = [_sky(rng) for _ in range(2)]
    path = plot_examples(
        [block_mean(h) for h in hr], hr, {"same": hr}, tmp_path / "ex.png", row_labels=["a", "b"]
    )
    assert path.read_bytes()[:8] == PNG
