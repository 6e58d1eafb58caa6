"""Data carry their preset: evaluate, ship and the flux metric read it from the data file (HDF5
attribute, DeepLense metadata.json, a zip of that folder); --preset only overrides it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from lenssr.cli import main
from lenssr.errors import LenssrError
from lenssr.evaluation import evaluate
from lenssr.evaluation.data_preset import preset_for_data, recorded_preset
from lenssr.models import create_model, save_checkpoint
from lenssr.simulation import load_preset, simulate
from lenssr.training.ship import ship_model

# An instrument no shipped preset has: a 0.5 arcsec LR PSF (default: 0.18 arcsec).
WIDE_PSF = {"lr.psf_fwhm": 0.5, "name": "wide-psf"}


@pytest.fixture(scope="module")
def wide_psf_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 3 pairs of the wide-PSF preset as HDF5, a DeepLense folder and a zip of it."""
    root = tmp_path_factory.mktemp("data-preset")
    preset = load_preset("default", WIDE_PSF)
    h5 = simulate(preset, n=3, out=root / "pairs.h5", seed=0, progress=False)
    folder = simulate(preset, n=3, out=root / "deeplense", seed=0, layout="deeplense")
    nested = root / "nested"
    shutil.copytree(folder, nested / "set")
    archive = Path(shutil.make_archive(str(root / "pairs"), "zip", nested))
    return {"h5": h5, "deeplense": folder, "nested": nested, "zip": archive}


@pytest.mark.parametrize("kind", ["h5", "deeplense", "nested", "zip"])
def test_every_layout_gives_back_the_preset_it_was_simulated_with(
    wide_psf_data: dict[str, Path], kind: str
) -> None:
    resolved = preset_for_data(wide_psf_data[kind])
    assert resolved.source == "data" and resolved.name == "wide-psf"
    assert resolved.preset.lr.psf_fwhm == pytest.approx(0.5)
    override = preset_for_data(wide_psf_data[kind], "default")
    assert override.source == "option" and override.preset.lr.psf_fwhm == pytest.approx(0.18)


def test_data_without_a_preset_fall_back_to_the_default(tmp_path: Path) -> None:
    path = tmp_path / "bare.h5"
    with h5py.File(path, "w") as f:
        f["lr"], f["hr"] = np.ones((1, 4, 4), np.float32), np.ones((1, 8, 8), np.float32)
        f.attrs["preset"] = "{}"
    assert recorded_preset(path) is None
    resolved = preset_for_data(path)
    assert resolved.source == "default" and resolved.name == "default"
    folder = tmp_path / "folder"  # a DeepLense folder without metadata.json
    for part, side in (("LR", 4), ("HR", 8)):
        (folder / part).mkdir(parents=True)
        np.save(folder / part / "a.npy", np.ones((side, side), np.float32))
    assert recorded_preset(folder) is None
    assert preset_for_data(folder).source == "default"
    with h5py.File(path, "a") as f:
        f.attrs["preset"] = "{not json"
    with pytest.raises(LenssrError, match="not valid JSON"):
        preset_for_data(path)


def test_evaluate_re_observes_with_the_recorded_instrument(wide_psf_data: dict[str, Path]):
    """With the recorded wide PSF, the HR truth re-observed matches the LR to the noise floor;
    the default preset's narrow PSF (a wrong --preset) leaves a far larger residual."""
    from_data = evaluate([], wide_psf_data["h5"], device="cpu")
    assert from_data.preset == "wide-psf" and from_data.preset_source == "data"
    wrong = evaluate([], wide_psf_data["h5"], preset="default", device="cpu")
    assert wrong.preset == "default" and wrong.preset_source == "option"
    floor = from_data.reference["flux_residual"]
    assert np.all(floor < 0.1)
    assert np.all(wrong.reference["flux_residual"] > 3 * floor)
    assert from_data.to_dict()["preset_source"] == "data"


def test_cli_evaluate_says_where_the_preset_came_from(
    wide_psf_data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "eval"
    args = ["evaluate", "--model", "bicubic", "--data", str(wide_psf_data["zip"])]
    with pytest.raises(SystemExit) as done:
        main([*args, "--out", str(out), "--device", "cpu", "--examples", "0"])
    assert done.value.code == 0
    assert "preset wide-psf (recorded in the data)" in capsys.readouterr().out
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["preset"] == "wide-psf" and doc["preset_source"] == "data"


def test_ship_reads_the_test_data_preset(wide_psf_data: dict[str, Path], tmp_path: Path):
    run = save_checkpoint(tmp_path / "run" / "best", create_model("srcnn", num_feat=8, num_feat2=4))
    figures = tmp_path / "fig"
    ship_model(
        run,
        "tiny",
        wide_psf_data["h5"],
        weights_dir=tmp_path / "weights",
        figures_dir=figures,
        device="cpu",
    )
    summary = json.loads((figures / "metrics.json").read_text())
    assert summary["preset"] == "wide-psf" and summary["preset_source"] == "data"
    card = (tmp_path / "weights" / "tiny.md").read_text()
    assert "lenssr simulate --preset wide-psf" in card
