"""Backend choice of `load_model`: the ONNX Runtime export cache, parity record, fallback to
PyTorch, the `backend=` override, conditioned / sigma / pyramid models through ONNX Runtime."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import lenssr.inference.onnx_export as onnx_export
from lenssr.errors import LenssrError
from lenssr.inference import backend
from lenssr.inference.api import SRModel, load_model
from lenssr.inference.backend import CACHE_ENV, PARITY_TOLERANCE, OrtSRModel, cache_key
from lenssr.models import create_model, save_checkpoint

TINY_EDSR = {"num_feat": 8, "num_block": 1}
TINY_PYRAMID = {"num_feat": 8, "num_res_blocks": 1, "embed_dim": 16, "depth": 1, "num_heads": 2}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test exports into its own cache folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


def _edsr_checkpoint(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    return save_checkpoint(path, create_model("edsr", **TINY_EDSR))


def _images(n: int = 2, h: int = 21, w: int = 30) -> np.ndarray:
    return (np.random.default_rng(1).random((n, h, w)) * 500 + 20).astype(np.float32)


def _count_exports(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = onnx_export.export_onnx

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(onnx_export, "export_onnx", counting)
    return calls


def test_cpu_default_is_onnxruntime_and_second_load_hits_the_cache(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = _edsr_checkpoint(tmp_path / "e")
    calls = _count_exports(monkeypatch)
    first = load_model(ckpt, device="cpu")
    assert isinstance(first, OrtSRModel) and first.backend == "onnxruntime"
    assert isinstance(first.module, torch.nn.Module)  # evaluation / training code use it
    assert len(calls) == 1
    assert len(list(cache.glob("*.onnx"))) == 1 and len(list(cache.glob("*.json"))) == 1
    second = load_model(ckpt, device="cpu")
    assert len(calls) == 1, "the second load exported again"
    assert second.onnx[2]["path"] == first.onnx[2]["path"]
    x = _images()
    np.testing.assert_array_equal(first.upscale(x), second.upscale(x))
    ref = load_model(ckpt, device="cpu", backend="torch").upscale(x)
    assert np.abs(second.upscale(x) - ref).max() <= PARITY_TOLERANCE * 500


def test_cache_key_changes_with_the_weights(tmp_path: Path, cache: Path) -> None:
    a = load_model(_edsr_checkpoint(tmp_path / "a", seed=0), device="cpu")
    b = load_model(_edsr_checkpoint(tmp_path / "b", seed=1), device="cpu")
    same = load_model(_edsr_checkpoint(tmp_path / "c", seed=0), device="cpu")
    assert cache_key(a, 2) != cache_key(b, 2)
    assert cache_key(a, 2) == cache_key(same, 2)
    assert cache_key(a, 2) != cache_key(a, 2, opset=18)
    assert len(list(cache.glob("*.onnx"))) == 2
    x = _images()
    assert not np.allclose(a.upscale(x), b.upscale(x))


def test_parity_is_recorded_beside_the_export(tmp_path: Path, cache: Path) -> None:
    model = load_model(_edsr_checkpoint(tmp_path / "e"), device="cpu")
    (record,) = cache.glob("*.json")
    meta = json.loads(record.read_text())
    assert meta["ok"] is True and meta["tolerance"] == PARITY_TOLERANCE
    assert 0.0 <= meta["max_abs_diff"] <= PARITY_TOLERANCE
    assert meta["opset"] == 17 and meta["scale"] == 2
    assert record.with_suffix(".onnx").is_file()
    assert model.onnx[2]["max_abs_diff"] == meta["max_abs_diff"]


def test_failed_export_falls_back_to_torch_with_one_line(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator Foo\nlong traceback-like detail")

    monkeypatch.setattr(onnx_export, "export_onnx", broken)
    ckpt = _edsr_checkpoint(tmp_path / "e")
    with caplog.at_level(logging.WARNING, logger="lenssr"):
        model = load_model(ckpt, device="cpu")
    assert type(model) is SRModel and model.backend == "torch"
    (record,) = [r for r in caplog.records if r.name == "lenssr"]
    text = record.getMessage()
    assert "\n" not in text and "unsupported operator Foo" in text and "PyTorch" in text
    meta = json.loads(next(cache.glob("*.json")).read_text())
    assert meta["ok"] is False and "unsupported operator Foo" in meta["reason"]
    assert not list(cache.glob("*.onnx"))
    x = _images()
    np.testing.assert_allclose(
        model.upscale(x), load_model(ckpt, device="cpu", backend="torch").upscale(x)
    )
    with pytest.raises(LenssrError, match="ONNX Runtime cannot run"):
        load_model(ckpt, device="cpu", backend="onnxruntime")  # explicit: no silent fallback


def test_failed_parity_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        onnx_export, "check_onnx", lambda *a, **k: {(1, 75, 75): 1e-6, (2, 40, 52): 3e-3}
    )
    with caplog.at_level(logging.WARNING, logger="lenssr"):
        model = load_model(_edsr_checkpoint(tmp_path / "e"), device="cpu")
    assert model.backend == "torch"
    assert "parity" in caplog.text and "3.00e-03" in caplog.text


def test_backend_torch_override(tmp_path: Path, cache: Path) -> None:
    model = load_model(_edsr_checkpoint(tmp_path / "e"), device="cpu", backend="torch")
    assert type(model) is SRModel and model.backend == "torch"
    assert not cache.exists() or not list(cache.iterdir())
    with pytest.raises(LenssrError, match="unknown backend"):
        load_model("bicubic", device="cpu", backend="tensorrt")


def test_conditioned_sigma_model_through_onnxruntime(tmp_path: Path, tiny_cond: dict) -> None:
    torch.manual_seed(0)
    module = create_model("hybrid", **tiny_cond)
    for head in module.condition.heads:  # make the instrument matter
        torch.nn.init.normal_(head.weight, std=0.1)
    ckpt = save_checkpoint(
        tmp_path / "cond",
        module,
        {
            "normalization": {"kind": "noise"},
            "conditioning": {
                "inputs": ["psf_fwhm_pix", "log10_noise"],
                "range": {"psf_fwhm_pix": [1.0, 3.5], "log10_noise": [-4.0, -0.5]},
            },
            "uncertainty": {"sigma_scale": 2.0},
        },
    )
    ort_model = load_model(ckpt, device="cpu")
    ref = load_model(ckpt, device="cpu", backend="torch")
    assert ort_model.backend == "onnxruntime" and ort_model.conditioned and ort_model.has_sigma
    rng = np.random.default_rng(3)
    lr = (5.0 + rng.normal(0, 1, (2, 24, 20))).astype(np.float32)
    lr[:, 8:14, 6:12] += 50.0
    span = float(lr.max() - lr.min())
    for kw in ({}, {"psf_fwhm": 0.3, "pixel_scale": 0.1, "noise_sigma": 1.0}):
        got, want = ort_model.upscale(lr, **kw), ref.upscale(lr, **kw)
        assert np.abs(got - want).max() <= 1e-4 * span
        assert ort_model.last_instrument == ref.last_instrument
    wide = ort_model.upscale(lr, psf_fwhm=0.3, pixel_scale=0.1)
    assert not np.allclose(wide, ort_model.upscale(lr))  # the cond input reaches the graph
    sr, sigma = ort_model.upscale(lr, return_sigma=True)  # the torch module runs this
    sr_ref, sigma_ref = ref.upscale(lr, return_sigma=True)
    np.testing.assert_allclose(sigma, sigma_ref, rtol=1e-5)
    assert np.abs(sr - sr_ref).max() <= 1e-4 * span


def test_pyramid_exports_each_requested_scale_once(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "p", create_model("hybrid", **TINY_PYRAMID))
    calls = _count_exports(monkeypatch)
    model = load_model(ckpt, device="cpu")
    assert model.scales == (2, 4) and set(model.onnx) == {2} and len(calls) == 1
    x = _images(1, 16, 12)
    ref = load_model(ckpt, device="cpu", backend="torch")
    for _ in range(2):
        got = model.upscale(x, scale=4)
        assert got.shape == (1, 64, 48)
        assert np.abs(got - ref.upscale(x, scale=4)).max() <= 1e-4 * 500
    assert set(model.onnx) == {2, 4} and len(calls) == 2
    assert len(list(cache.glob("*-x4-*.onnx"))) == 1


def test_unwritable_cache_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "onnx"))
    with caplog.at_level(logging.WARNING, logger="lenssr"):
        model = load_model(_edsr_checkpoint(tmp_path / "e"), device="cpu")
    assert model.backend == "torch" and len(caplog.records) == 1
    assert "\n" not in caplog.records[0].getMessage()


def test_half_precision_only_where_parity_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sr = load_model(_edsr_checkpoint(tmp_path / "e"), device="cpu", backend="torch")
    half = backend.HalfSRModel(sr.module, sr.descriptor, sr.name, sr.device)
    x = _images()
    diff = np.abs(half.upscale(x) - sr.upscale(x)).max() / float(x.max() - x.min())
    assert 0.0 < diff < 1e-2  # half precision: close, not identical
    assert backend.half_parity(sr, half) > 0.0
    monkeypatch.setattr(backend, "half_parity", lambda *a, **k: 1e-5)
    assert isinstance(backend._maybe_half(sr), backend.HalfSRModel)
    monkeypatch.setattr(backend, "half_parity", lambda *a, **k: 1e-3)
    assert backend._maybe_half(sr) is sr


def test_cli_upscale_runs_onnxruntime_by_default(tmp_path: Path, cache: Path) -> None:
    from lenssr.cli import main
    from lenssr.inference.upscale import open_upscaler

    ckpt = _edsr_checkpoint(tmp_path / "e")
    np.save(tmp_path / "a.npy", _images(1, 20, 16)[0])
    args = ["upscale", str(tmp_path / "a.npy"), "-m", str(ckpt), "--device", "cpu", "-q"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "-o", str(tmp_path / "ort.npy")])
    assert exc.value.code in (0, None)
    assert len(list(cache.glob("*.onnx"))) == 1  # the default backend exported the model
    with pytest.raises(SystemExit) as exc:
        main([*args, "-o", str(tmp_path / "torch.npy"), "--backend", "torch"])
    assert exc.value.code in (0, None)
    ort_out, torch_out = np.load(tmp_path / "ort.npy"), np.load(tmp_path / "torch.npy")
    assert ort_out.shape == (40, 32)
    assert np.abs(ort_out - torch_out).max() <= 1e-4 * 500
    assert open_upscaler(ckpt, device="cpu").backend == "onnxruntime"
    assert open_upscaler(ckpt, device="cpu", backend="torch").backend == "torch"


def test_stale_temporary_exports_are_removed(tmp_path: Path, cache: Path) -> None:
    import os

    cache.mkdir(parents=True)
    stale, fresh = cache / "x-x2-abc.123.456.tmp.onnx", cache / "y-x2-abc.124.457.tmp.onnx"
    for f in (stale, fresh):
        f.write_bytes(b"partial export of a killed process")
    os.utime(stale, (1e9, 1e9))  # 2001
    load_model(_edsr_checkpoint(tmp_path / "e"), device="cpu")
    assert not stale.exists() and fresh.exists()


def test_a_graph_that_fails_at_run_time_falls_back_per_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = _edsr_checkpoint(tmp_path / "e")
    model = load_model(ckpt, device="cpu")
    ref = load_model(ckpt, device="cpu", backend="torch")
    session = model._session(2)

    def broken(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : bad shape\ndetail")

    session._forward = broken
    x = _images()
    with caplog.at_level(logging.WARNING, logger="lenssr"):
        np.testing.assert_allclose(model.upscale(x), ref.upscale(x), rtol=1e-6)
        model.upscale(x)
    (record,) = caplog.records  # one line, once
    assert "INVALID_ARGUMENT" in record.getMessage() and "\n" not in record.getMessage()
    strict = load_model(ckpt, device="cpu", backend="onnxruntime")
    strict._session(2)._forward = broken
    with pytest.raises(LenssrError, match="ONNX Runtime failed"):
        strict.upscale(x)


def test_out_of_disk_export_is_not_recorded(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx_export, "export_onnx", full)
    ckpt = _edsr_checkpoint(tmp_path / "e")
    assert load_model(ckpt, device="cpu").backend == "torch"
    assert not list(cache.glob("*.json"))  # retried next time
    monkeypatch.undo()
    monkeypatch.setenv(CACHE_ENV, str(cache))
    assert load_model(ckpt, device="cpu").backend == "onnxruntime"
