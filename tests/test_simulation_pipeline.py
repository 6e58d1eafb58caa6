"""Dataset generation: determinism across workers, resume, layouts, CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from lenssr.cli import main
from lenssr.errors import LenssrError
from lenssr.simulation import writer as simulate_module
from lenssr.simulation.writer import simulate

# a small, fast preset: 40x40 HR, 20x20 LR
SMALL = ["hr.num_pix=40", "lr.num_pix=20"]


def _small():
    from lenssr.simulation import load_preset, parse_overrides

    return load_preset("default", parse_overrides(SMALL))


def _read(path) -> dict:
    with h5py.File(path, "r") as f:
        out = {k: f[k][()] for k in ("lr", "hr", "label")}
        out.update({f"p_{k}": f["params"][k][()] for k in f["params"]})
        out["sub_x"] = [a.copy() for a in f["subhalos/x"][()]]
        out["attrs"] = dict(f.attrs)
    return out


def _same(a: dict, b: dict) -> None:
    for k in a:
        if k == "attrs":
            continue
        if k == "sub_x":
            assert all(np.array_equal(x, y) for x, y in zip(a[k], b[k], strict=True))
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_hdf5_schema_and_worker_determinism(tmp_path) -> None:
    p = _small()
    one = simulate(p, 20, tmp_path / "w1.h5", seed=3, workers=1, progress=False, chunk_size=8)
    two = simulate(p, 20, tmp_path / "w2.h5", seed=3, workers=2, progress=False, chunk_size=8)
    a, b = _read(one), _read(two)
    _same(a, b)
    assert a["lr"].shape == (20, 20, 20) and a["hr"].shape == (20, 40, 40)
    assert a["lr"].dtype == np.float32 and a["label"].dtype == np.int8
    assert list(a["label"][:6]) == [0, 1, 2, 0, 1, 2]
    attrs = a["attrs"]
    assert json.loads(attrs["classes"]) == ["no_sub", "cdm", "axion"]
    assert attrs["units"] == "e-/s/arcsec^2" and attrs["scale"] == 2 and attrs["seed"] == 3
    assert attrs["lr_pixel_scale"] == pytest.approx(0.1)
    assert json.loads(attrs["preset"])["hr"]["num_pix"] == 40
    for key in ("theta_e", "lens_q", "gamma", "source_amp", "source_r_sersic", "lr_peak_snr"):
        assert np.isfinite(a[f"p_{key}"]).all(), key
    assert (a["p_n_subhalos"][a["label"] == 1] == 25).all()
    assert np.isfinite(a["p_axion_mass"][a["label"] == 2]).all()
    assert not (tmp_path / "w1.h5.partial").exists()
    # different seed, different data
    c = _read(simulate(p, 3, tmp_path / "s4.h5", seed=4, progress=False))
    assert not np.array_equal(c["lr"], a["lr"][:3])


def test_resume_after_interruption(tmp_path, monkeypatch) -> None:
    p = _small()
    ref = _read(simulate(p, 20, tmp_path / "ref.h5", seed=1, progress=False, chunk_size=8))
    out = tmp_path / "run.h5"
    real = simulate_module._write_chunk
    calls = {"n": 0}

    def crash_after_first(f, blocks):
        if calls["n"] == 1:
            raise KeyboardInterrupt("simulated crash")
        calls["n"] += 1
        real(f, blocks)

    monkeypatch.setattr(simulate_module, "_write_chunk", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        simulate(p, 20, out, seed=1, progress=False, chunk_size=8)
    assert not out.exists() and out.with_name("run.h5.partial").exists()
    with h5py.File(out.with_name("run.h5.partial"), "r") as f:
        assert int(f.attrs["n_done"]) == 8
    monkeypatch.setattr(simulate_module, "_write_chunk", real)
    rendered = []
    orig = simulate_module._render_block
    monkeypatch.setattr(
        simulate_module, "_render_block", lambda t: rendered.extend(t[2]) or orig(t)
    )
    simulate(p, 20, out, seed=1, progress=False, chunk_size=8)
    assert rendered == list(range(8, 20))  # only the missing samples were rendered
    _same(_read(out), ref)
    # a different command on the same partial/out is refused
    with pytest.raises(LenssrError):
        simulate(p, 20, out, seed=2, progress=False)


def test_deeplense_layout(tmp_path) -> None:
    p = _small()
    out = simulate(p, 5, tmp_path / "dl", seed=0, layout="deeplense", progress=False)
    ref = _read(simulate(p, 5, tmp_path / "ref.h5", seed=0, progress=False))
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["labels"] == ["no_sub", "cdm", "axion", "no_sub", "cdm"]
    assert meta["preset"]["lr"]["num_pix"] == 20 and meta["scale"] == 2
    for i in range(5):
        lr = np.load(out / "LR" / f"sample{i}.npy")
        hr = np.load(out / "HR" / f"sample{i}.npy")
        assert lr.dtype == np.float32 and lr.shape == (20, 20) and hr.shape == (40, 40)
        np.testing.assert_array_equal(lr, ref["lr"][i])
        np.testing.assert_array_equal(hr, ref["hr"][i])


def test_cli_simulate_overrides_and_errors(tmp_path, capsys) -> None:
    cfg = tmp_path / "over.yaml"
    cfg.write_text("subhalos:\n  n: 7\n")
    out = tmp_path / "cli.h5"
    args = ["simulate", "--n", "4", "--out", str(out), "--seed", "2", "--no-progress"]
    sets = [x for s in SMALL for x in ("--set", s)]
    with pytest.raises(SystemExit) as ok:
        main([*args, *sets, "--config", str(cfg), "--classes", "cdm", "--set", "lr.psf_fwhm=0.2"])
    assert ok.value.code == 0
    d = _read(out)
    assert (d["label"] == 1).all() and (d["p_n_subhalos"] == 7).all()
    assert json.loads(d["attrs"]["preset"])["lr"]["psf_fwhm"] == 0.2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([*args[:-3], "--out", str(tmp_path / "x.h5"), "--set", "subhalos.bogus=1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "subhalos.bogus" in err and "Traceback" not in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main([*args[:-3], "--out", str(tmp_path / "y.h5"), "--classes", "wdm"])
    assert "wdm" in capsys.readouterr().err


def test_cli_degrade_folder(tmp_path, capsys) -> None:
    from lenssr.simulation.degrade import degrade_array

    src = tmp_path / "hr"
    src.mkdir()
    rng = np.random.default_rng(0)
    images = {f"img{i}.npy": rng.gamma(2.0, 3.0, (40, 40)).astype(np.float32) for i in range(3)}
    for name, img in images.items():
        np.save(src / name, img)
    (src / "broken.npy").write_bytes(b"not a numpy file")
    out = tmp_path / "lr"
    with pytest.raises(SystemExit) as ok:
        main(["degrade", str(src), "-o", str(out), "--no-noise", "--no-progress"])
    assert ok.value.code == 0
    for name, img in images.items():
        lr = np.load(out / name)
        assert lr.shape == (20, 20)
        np.testing.assert_allclose(lr, degrade_array(img, noise=False), rtol=1e-6)
        assert lr.sum() * 0.1**2 == pytest.approx(img.sum() * 0.05**2, rel=1e-3)
    assert "broken.npy" in capsys.readouterr().out
    # with noise: reproducible for the same seed
    for k, d in enumerate(("n1", "n2")):
        with pytest.raises(SystemExit):
            main(
                [
                    "degrade",
                    str(src / "img0.npy"),
                    "-o",
                    str(tmp_path / d / "a.npy"),
                    "--seed",
                    "5",
                    "--no-progress",
                ]
            )
        assert (tmp_path / d / "a.npy").exists(), k
    np.testing.assert_array_equal(np.load(tmp_path / "n1/a.npy"), np.load(tmp_path / "n2/a.npy"))
