"""End-to-end test of ``validate-science`` on a tiny configuration (bicubic + a tiny random
EDSR checkpoint)."""

from __future__ import annotations

import json

import pytest

from lenssr.cli import main
from lenssr.models import create_model, save_checkpoint


@pytest.fixture
def tiny_checkpoint(tmp_path):
    return save_checkpoint(tmp_path / "edsr-tiny", create_model("edsr", num_feat=8, num_block=1))


@pytest.mark.slow
def test_validate_science_tiny_run_writes_full_report(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "science"
    with pytest.raises(SystemExit) as done:
        main([
        "validate-science", "--models", f"bicubic,{tiny_checkpoint}", "--n-train", "30",
        "--n-test", "15", "--epochs", "1", "--workers", "1", "--n-boot", "200",
        "--set", "subhalos.slope=-0.9",
        "--device", "cpu", "--out", str(out),
    ])  # fmt: skip
    assert done.value.code == 0
    report = json.loads((out / "report.json").read_text())
    types = ["hr", "bicubic", "edsr-tiny"]
    assert report["input_types"] == types
    assert report["config"]["preset_overrides"] == ["subhalos.slope=-0.9"]
    assert len(list((out / "data").glob("train-default-*-n30-seed0.h5"))) == 1
    for proto in ("fixed_classifier", "realistic"):
        for kind in types:
            r = report[proto][kind]
            assert 0.0 <= r["macro_auc"] <= 1.0
            lo, hi = r["macro_ci95"]
            assert lo <= r["macro_auc"] <= hi
            assert set(r["per_class"]) == {"no_sub", "cdm", "axion"}
        assert "edsr-tiny" in report["gap_fraction"][proto]
    assert report["realistic"]["hr"] == report["fixed_classifier"]["hr"]
    for kind in types:
        f = report["fidelity"][kind]
        assert f["einstein_mae_arcsec"] is not None and f["einstein_mae_arcsec"] < 1.0
        assert f["flux_error"] is not None
    assert report["fidelity"]["hr"]["hallucination_number"] == 0.0
    assert report["fidelity"]["hr"]["einstein_mae_arcsec"] < 0.2
    # hallucination guard: false positives on no_sub at the HR operating point
    fp = report["false_positives"]
    assert fp["n_no_sub"] == 15 and fp["target_fpr"] == 0.1 and fp["reference"] == "hr"
    assert list(fp["per_input"]) == types
    assert fp["per_input"]["hr"]["verdict"] == "reference"
    assert fp["per_input"]["hr"]["fpr"] <= 0.1 and fp["per_input"]["hr"]["diff_vs_hr"] == 0.0
    for kind in types[1:]:
        r = fp["per_input"][kind]
        assert 0.0 <= r["fpr"] <= 1.0 and r["ci95"][0] <= r["ci95"][1]
        assert r["diff_ci95"][0] <= r["diff_vs_hr"] <= r["diff_ci95"][1]
        assert r["verdict"] in {"pass", "straddles", "fail"}
    # hallucination guard: background power ratio per band
    bg = report["background_power"]
    assert bg["n_test"] == 45 and 0 < bg["n_images"] <= 45
    assert list(bg["bands"]) == ["low", "mid", "high", "all"] and bg["bands"]["high"] == [0.25, 0.5]
    assert list(bg["per_input"]) == types
    for band in bg["bands"]:
        assert bg["per_input"]["hr"][band] == {"ratio": 1.0, "ci95": [1.0, 1.0]}
        for kind in types[1:]:
            r = bg["per_input"][kind][band]
            assert r["ratio"] > 0 and r["ci95"][0] <= r["ratio"] <= r["ci95"][1]
    for key in ("roc", "examples", "report_md"):
        assert (out / report["files"][key].split("/")[-1]).stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert "| edsr-tiny |" in md and "gap" in md
    assert "false positives on systems without substructure" in md
    assert "power of the sky background" in md
    assert "report_md" in capsys.readouterr().out


def test_validate_science_unknown_model_fails_before_simulating(tmp_path):
    with pytest.raises(SystemExit) as done:
        main(["validate-science", "--models", "no-such-model", "--out", str(tmp_path / "o")])
    assert done.value.code == 2
    assert not (tmp_path / "o" / "data").exists()


@pytest.mark.slow
def test_validate_science_rerun_reuses_cached_sr_images_and_classifiers(
    tmp_path, tiny_checkpoint, capsys
):
    out = tmp_path / "science"
    args = [
        "validate-science", "--models", str(tiny_checkpoint), "--n-train", "8", "--n-test", "6",
        "--epochs", "1", "--workers", "1", "--n-boot", "50", "--device", "cpu", "--out", str(out),
    ]  # fmt: skip
    reports, logs = [], []
    for _ in range(2):
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code == 0
        reports.append(json.loads((out / "report.json").read_text()))
        logs.append(capsys.readouterr().out)
    cached = sorted(p.name for p in (out / "cache").glob("*.npy"))
    assert len(list((out / "cache").glob("classifier-*.pt"))) == 3
    assert len(cached) == 2 and all("edsr-tiny" in n for n in cached)  # train + test splits
    assert logs[0].count("SR images from") == 0
    # test split from the cache; the training split is not even read (its classifier is cached)
    assert logs[1].count("SR images from") == 1
    # the HR classifier and the bicubic and edsr-tiny ones are reused, not retrained
    assert logs[0].count("trained weights from") == 0
    assert logs[1].count("trained weights from") == 3
    # the cached images give the same numbers as the computed ones
    assert reports[1]["fidelity"] == reports[0]["fidelity"]
    assert reports[1]["realistic"] == reports[0]["realistic"]


def test_validate_science_bad_preset_override_fails_before_simulating(tmp_path):
    with pytest.raises(SystemExit) as done:
        main([
            "validate-science", "--models", "bicubic", "--set", "subhalos.no_such_key=1",
            "--out", str(tmp_path / "o"),
        ])  # fmt: skip
    assert done.value.code == 2
    assert not (tmp_path / "o" / "data").exists()


def test_unknown_preset_fails_before_anything_is_simulated(tmp_path) -> None:
    from lenssr.errors import ConfigError
    from lenssr.science.validate import ScienceConfig, validate_science

    out = tmp_path / "science"
    with pytest.raises(ConfigError, match="unknown preset 'nosuch'"):
        validate_science(ScienceConfig(preset="nosuch", out=out))
    assert not out.exists() or not list(out.rglob("*.h5"))
