"""Self-describing checkpoints (safetensors + JSON descriptor) and the shipped-weights zoo."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lenssr.errors import LenssrError
from lenssr.models import (
    create_model,
    load_checkpoint,
    model_card,
    read_descriptor,
    save_checkpoint,
    shipped_models,
    weights_dir,
)

TinyModel = Callable[..., torch.nn.Module]  # the `tiny_model` fixture: (name, **kw) -> model

# Non-default options on top of the tiny configurations: a round trip must keep them.
NON_DEFAULT: dict[str, dict] = {
    "bicubic": {"scale": 3},
    "srcnn": {"kernel_sizes": (5, 3, 3)},
    "edsr": {"res_scale": 0.1},
    "lapsrn": {"upsample": "pixelshuffle"},
    "esrgan": {"scale": 4},
    "hybrid": {"patch_size": 3},
}


def _randomize(model: torch.nn.Module) -> None:
    """Random weights, different from any fresh initialisation."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)


def test_round_trip_identical_outputs(
    tiny_arch: str, tmp_path: Path, tiny_model: TinyModel
) -> None:
    name = tiny_arch
    model = tiny_model(name, **NON_DEFAULT[name]).eval()
    _randomize(model)
    weights = save_checkpoint(tmp_path / name, model, extra={"metrics": {"psnr": 31.5}})
    assert weights == tmp_path / f"{name}.safetensors" and weights.is_file()
    assert (tmp_path / f"{name}.json").is_file()

    torch.manual_seed(1)  # a different fresh init: equality must come from the loaded weights
    loaded, desc = load_checkpoint(weights)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.config == tiny_model(name, **NON_DEFAULT[name]).config
    assert desc["arch"] == name and desc["metrics"] == {"psnr": 31.5}
    assert desc["scale"] == model.scale and desc["scales"] == list(model.scales)
    assert desc["in_channels"] == 1 and desc["size_multiple"] == 1
    assert desc["normalization"] == {"kind": "minmax"}
    x = torch.rand(2, 1, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
        if hasattr(model, "forward_pyramid"):
            torch.testing.assert_close(loaded(x, scale=4), model(x, scale=4), rtol=0, atol=0)


def test_descriptor_contents_and_extra(tmp_path: Path, tiny_model: TinyModel) -> None:
    model = tiny_model("edsr", **NON_DEFAULT["edsr"])
    save_checkpoint(
        tmp_path / "m.json",  # any of stem / .json / .safetensors names the pair
        model,
        extra={"training": {"epochs": 3, "dataset": Path("/d/x.h5")}, "arch": "ignored"},
    )
    desc = json.loads((tmp_path / "m.json").read_text())
    assert desc["arch"] == "edsr"
    assert desc["arch_config"] == {"scale": 2, "num_feat": 8, "num_block": 2, "res_scale": 0.1}
    assert desc["training"] == {"epochs": 3, "dataset": "/d/x.h5"}
    assert desc["num_params"] == sum(p.numel() for p in model.parameters())
    assert desc["format_version"] == 1
    assert read_descriptor(tmp_path / "m.safetensors") == desc


@pytest.mark.parametrize("suffix", ["", ".json", ".safetensors"])
def test_load_accepts_stem_or_either_file(
    suffix: str, tmp_path: Path, tiny_model: TinyModel
) -> None:
    save_checkpoint(tmp_path / "m", tiny_model("srcnn", **NON_DEFAULT["srcnn"]))
    model, desc = load_checkpoint(str(tmp_path / f"m{suffix}"))
    assert desc["arch"] == "srcnn" and model.config["kernel_sizes"] == [5, 3, 3]


def test_lone_safetensors_loads_from_metadata(tmp_path: Path, tiny_model: TinyModel) -> None:
    model = tiny_model("lapsrn", **NON_DEFAULT["lapsrn"]).eval()
    weights = save_checkpoint(tmp_path / "m", model)
    (tmp_path / "m.json").unlink()
    loaded, desc = load_checkpoint(weights)
    assert desc["arch"] == "lapsrn"
    x = torch.rand(1, 1, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def _edit_config(tmp_path: Path, **changes: object) -> None:
    desc_path = tmp_path / "m.json"
    desc = json.loads(desc_path.read_text())
    desc["arch_config"].update(changes)
    desc_path.write_text(json.dumps(desc))


def test_missing_keys_are_listed(tmp_path: Path, tiny_model: TinyModel) -> None:
    save_checkpoint(tmp_path / "m", tiny_model("edsr", **NON_DEFAULT["edsr"]))
    _edit_config(tmp_path, num_block=3)
    with pytest.raises(
        LenssrError, match=r"missing keys: body\.2\.conv1\.bias.*unexpected keys: none"
    ):
        load_checkpoint(tmp_path / "m")


def test_unexpected_keys_are_listed(tmp_path: Path, tiny_model: TinyModel) -> None:
    save_checkpoint(tmp_path / "m", tiny_model("edsr", **NON_DEFAULT["edsr"]))
    _edit_config(tmp_path, num_block=1)
    with pytest.raises(LenssrError, match=r"missing keys: none; unexpected keys: body\.1\.conv1"):
        load_checkpoint(tmp_path / "m")


def test_shape_mismatch_is_listed(tmp_path: Path, tiny_model: TinyModel) -> None:
    save_checkpoint(tmp_path / "m", tiny_model("hybrid", **NON_DEFAULT["hybrid"]))
    _edit_config(tmp_path, embed_dim=32)
    with pytest.raises(LenssrError, match=r"shape mismatches: .*\(16,.*vs \(32,"):
        load_checkpoint(tmp_path / "m")


def test_wrapped_model_is_saved_unwrapped(tmp_path: Path, tiny_model: TinyModel) -> None:
    class Wrapper(torch.nn.Module):  # stands in for DistributedDataParallel
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module

    model = tiny_model("edsr", **NON_DEFAULT["edsr"])
    save_checkpoint(tmp_path / "m", Wrapper(model))
    loaded, desc = load_checkpoint(tmp_path / "m")
    assert desc["arch"] == "edsr"
    assert loaded.state_dict().keys() == model.state_dict().keys()


def test_missing_checkpoint_and_unregistered_module(tmp_path: Path) -> None:
    with pytest.raises(LenssrError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent")
    with pytest.raises(LenssrError, match="not a registered lenssr architecture"):
        save_checkpoint(tmp_path / "x", torch.nn.Conv2d(1, 1, 3))


def test_shipped_models_pairs_only(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "good", create_model("bicubic"))
    (tmp_path / "good.md").write_text("# good\nA card.\n")
    save_checkpoint(tmp_path / "orphan", create_model("bicubic"))
    (tmp_path / "orphan.json").unlink()
    assert shipped_models(tmp_path) == {"good": tmp_path / "good.safetensors"}
    assert model_card("good", tmp_path).startswith("# good")
    assert model_card("orphan", tmp_path) is None
    assert shipped_models(tmp_path / "nowhere") == {}


def test_weights_dir_is_in_the_package() -> None:
    folder = weights_dir()
    assert folder.name == "weights" and folder.parent.name == "models"
    for name, path in shipped_models().items():
        assert path.parent == folder and path.stem == name


def test_shipped_models_carry_test_metrics_above_bicubic() -> None:
    """Every shipped model was evaluated on the held-out test set by `lenssr ship`; each is at
    least 4 dB above bicubic, and hybrid-gan's power spectrum is closer to HR than hybrid's."""
    import json

    shipped = shipped_models()
    assert {"hybrid", "hybrid-gan", "edsr", "srcnn"} <= set(shipped)
    metrics = {}
    for name, path in shipped.items():
        m = json.loads(path.with_suffix(".json").read_text())["metrics"]
        assert m["n_test"] == 1000
        assert m["psnr"]["mean"] >= m["bicubic"]["psnr"]["mean"] + 4.0, name
        metrics[name] = m
    # the GAN was fine-tuned from the single-instrument tuned hybrid (shipped as hybrid-default)
    assert metrics["hybrid-gan"]["hallucination"] < metrics["hybrid-default"]["hallucination"]
