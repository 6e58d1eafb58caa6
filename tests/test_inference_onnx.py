"""ONNX export of every zoo architecture (tiny configs) and the ONNX Runtime wrapper."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from lenssr.cli import main
from lenssr.errors import LenssrError
from lenssr.inference.api import SRModel
from lenssr.inference.onnx_export import OnnxSRModel, check_onnx, export_onnx
from lenssr.models.checkpoint import save_checkpoint
from lenssr.models.registry import create_model

TINY = {
    "hybrid": dict(
        num_feat=8,
        shallow_kernel=3,
        num_res_blocks=1,
        ca_reduction=4,
        embed_dim=16,
        depth=1,
        num_heads=2,
        pos_grid=4,
    ),
    "edsr": dict(num_feat=8, num_block=1),
    "srcnn": dict(num_feat=8, num_feat2=4),
    "lapsrn": dict(num_feat=8, num_conv=1),
    "esrgan": dict(num_feat=8, num_block=1, num_grow_ch=4),
}


def _tiny(arch: str) -> SRModel:
    torch.manual_seed(0)
    if arch == "hybrid-lr-tail":  # the efficient form of the shipped default
        tiny = create_model("hybrid", tail="lr", num_levels=1, **TINY["hybrid"])
        return SRModel(tiny, device="cpu")
    return SRModel(create_model(arch, **TINY[arch]), device="cpu")


@pytest.mark.parametrize(
    ("arch", "scale"),
    [
        ("hybrid", 2),
        ("hybrid", 4),
        ("hybrid-lr-tail", 2),
        ("edsr", 2),
        ("srcnn", 2),
        ("lapsrn", 4),
        ("esrgan", 2),
    ],
)
def test_export_matches_pytorch(tmp_path, arch: str, scale: int) -> None:
    model = _tiny(arch)
    path = export_onnx(model, tmp_path / f"{arch}.onnx", scale=scale)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 1, "height", "width"]
    ort_model = OnnxSRModel(path, device="cpu")
    assert ort_model.scale == scale and ort_model.name == arch.removesuffix("-lr-tail")
    diffs = check_onnx(model, ort_model)  # 75x75, 64x64, 40x52; batch 1 and 3
    assert len(diffs) == 6
    assert max(diffs.values()) < 1e-4, diffs


def test_onnx_model_upscale_api(tmp_path) -> None:
    model = _tiny("hybrid")
    ort_model = OnnxSRModel(export_onnx(model, tmp_path / "h.onnx"), device="cpu")
    x = (np.random.default_rng(0).random((2, 21, 30)) * 500 + 20).astype(np.float32)
    for kwargs in ({}, {"tta": True}, {"tile": 16}):
        got, ref = ort_model.upscale(x, **kwargs), model.upscale(x, **kwargs)
        assert got.shape == (2, 42, 60)
        assert np.abs(got - ref).max() < 1e-4 * 500
    # sides of 1-3 pixels work too (padded to the graph's minimum); 4+ match PyTorch exactly
    assert ort_model.upscale(x[:, :1, :1]).shape == (2, 2, 2)
    assert np.isfinite(ort_model.upscale(x[0, :2, :3])).all()
    assert np.abs(ort_model.upscale(x[:, :4, :5]) - model.upscale(x[:, :4, :5])).max() < 1e-4 * 500
    with pytest.raises(LenssrError, match="serves"):
        ort_model.upscale(x, scale=4)  # the graph was exported at x2 only


def test_batches_run_data_parallel_on_cpu_with_the_same_result(tmp_path) -> None:
    model = _tiny("hybrid")
    path = export_onnx(model, tmp_path / "h.onnx")
    one = OnnxSRModel(path, device="cpu", threads=1)
    three = OnnxSRModel(path, device="cpu", threads=3)
    assert (one.data_parallel, three.data_parallel) == (1, 3)
    assert OnnxSRModel(path, "cpu", threads=3, data_parallel=False).data_parallel == 1
    x = (np.random.default_rng(1).random((7, 20, 24)) * 300 + 5).astype(np.float32)
    ref = one.upscale(x, batch_size=7)
    got = three.upscale(x, batch_size=7)  # slices of 3, 2, 2 images on three sessions
    assert len(three._workers) == 3
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * 300)
    assert np.abs(three.upscale(x[:1]) - ref[:1]).max() < 1e-5 * 300  # one image: one session


def test_onnx_errors(tmp_path) -> None:
    with pytest.raises(LenssrError, match="not found"):
        OnnxSRModel(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(LenssrError, match="cannot load"):
        OnnxSRModel(tmp_path / "junk.onnx")


def test_cli_export(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny_edsr", create_model("edsr", **TINY["edsr"]))
    out = tmp_path / "tiny.onnx"
    with pytest.raises(SystemExit) as exc:
        main(["export", "--model", str(ckpt), "--format", "onnx", "-o", str(out)])
    assert exc.value.code in (0, None)
    text = capsys.readouterr().out
    assert out.is_file() and "batch 3 40x52" in text
    worst = float(text.split("max abs diff ")[-1].split()[0])
    assert worst < 1e-4
    with pytest.raises(SystemExit) as exc:
        main(["export", "--model", str(ckpt), "--format", "tflite", "-o", str(out)])
    assert exc.value.code == 2
