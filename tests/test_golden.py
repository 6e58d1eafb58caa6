"""Golden tests: every shipped weight file is loaded with `lenssr.load_model` and run on 16 pairs
simulated by seed; its mean PSNR must match the value stored in tests/golden/golden.json (keyed
by the weights file's sha256) to 0.05 dB, and the test PSNR recorded in its descriptor must be
consistent with it. After shipping new weights: `python tests/golden/regen.py`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from golden.regen import (
    REGEN,
    TABLE,
    N,
    card_psnr,
    data_sha256,
    file_sha256,
    make_golden_set,
    measure_psnr,
    read_pairs,
)
from lenssr.models import shipped_models

TOLERANCE_DB = 0.05
SHIPPED = shipped_models()


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(TABLE.read_text())


@pytest.fixture(scope="module")
def golden_pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """The 16 golden pairs, simulated once into a temporary folder."""
    return read_pairs(make_golden_set(tmp_path_factory.mktemp("golden") / "golden.h5"))


def test_golden_table_lists_exactly_the_shipped_models(golden: dict) -> None:
    assert golden["n"] == N
    assert sorted(golden["models"]) == sorted(SHIPPED), (
        f"tests/golden/golden.json lists {sorted(golden['models'])} but the shipped models are "
        f"{sorted(SHIPPED)}: run `{REGEN}` and commit tests/golden/golden.json"
    )


@pytest.mark.slow
def test_golden_set_is_the_one_the_values_were_measured_on(golden: dict, golden_pairs) -> None:
    lr, hr = golden_pairs
    assert lr.shape == (N, 75, 75) and hr.shape == (N, 150, 150)
    assert data_sha256(lr, hr) == golden["data_sha256"], (
        "the simulation now makes other golden pairs (preset or renderer changed): check the "
        f"change is intended, then run `{REGEN}` and commit tests/golden/golden.json"
    )


def _check_sha(name: str, golden: dict) -> None:
    """Fail with the regeneration command when the weights file is not the one measured."""
    weights = SHIPPED[name]
    entry = golden["models"].get(name)
    assert entry is not None, f"no golden value for {name!r}: run `{REGEN}`"
    sha = file_sha256(weights)
    assert sha == entry["sha256"], (
        f"{weights.name} changed (sha256 {sha[:12]}..., golden value is for "
        f"{entry['sha256'][:12]}...): run `{REGEN} --only {name}` and commit "
        "tests/golden/golden.json"
    )


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_weights_files_are_the_ones_the_golden_values_were_measured_on(
    name: str, golden: dict
) -> None:
    _check_sha(name, golden)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_weights_reproduce_their_golden_psnr(name: str, golden: dict, golden_pairs) -> None:
    _check_sha(name, golden)
    entry = golden["models"][name]
    got = measure_psnr(name, *golden_pairs)
    assert math.isfinite(got)
    assert abs(got - entry["psnr"]) <= TOLERANCE_DB, (
        f"{name}: PSNR {got:.4f} dB on the golden set, golden value {entry['psnr']:.4f} dB "
        "(same weights file: loading or inference changed)"
    )


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_card_test_metric_is_consistent_with_the_golden_value(name: str, golden: dict) -> None:
    """The descriptor's test PSNR (1000 pairs) is the one recorded with the golden value, and the
    16-pair golden mean lies within 3 standard errors of it (the golden set is a subset of the
    same test distribution)."""
    weights = SHIPPED[name]
    entry = golden["models"][name]
    metrics = json.loads(weights.with_suffix(".json").read_text())["metrics"]
    assert card_psnr(weights) == pytest.approx(entry["card_psnr"], abs=1e-3), (
        f"{name}.json's test PSNR changed since the golden values were made: run `{REGEN}`"
    )
    std, n_test = metrics["psnr"]["std"], metrics["n_test"]
    assert n_test >= N and std > 0
    assert abs(entry["psnr"] - metrics["psnr"]["mean"]) <= 3 * std / math.sqrt(N), (
        f"{name}: golden PSNR {entry['psnr']:.2f} dB is far from the card's "
        f"{metrics['psnr']['mean']:.2f} ± {std:.2f} dB"
    )
    assert metrics["psnr"]["mean"] > metrics["bicubic"]["psnr"]["mean"]
