"""Ship a trained checkpoint into the package: weights, descriptor with test metrics, model card.

``lenssr ship runs/hybrid/best.safetensors --name hybrid --test data/default-test.h5`` evaluates
the checkpoint (and the bicubic baseline) on a held-out paired set with
:func:`lenssr.evaluation.evaluate`, then writes ``src/lenssr/models/weights/<name>.safetensors``,
``<name>.json`` (descriptor, test metrics included) and ``<name>.md`` (the model card: config,
data, budget, metrics, and the command that reproduces the weights). Evaluation figures go to
``docs/models/<name>/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lenssr.errors import LenssrError


def _fmt(stats: dict[str, Any] | None, digits: int = 2, style: str = "f") -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    return f"{stats['mean']:.{digits}{style}} ± {stats['std']:.{digits}{style}}"


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, int | float) else str(value)


def _stages(training: dict[str, Any]) -> list[dict[str, Any]]:
    """The earlier training stages this one started from (``init_training`` chain), oldest
    first."""
    stages = []
    stage = training.get("init_training")
    while stage:
        stages.append(stage)
        stage = stage.get("init_training")
    return stages[::-1]


def _stage_config(checkpoint_dir: str, configs: Path = Path("configs")) -> str:
    """The training config in ``configs/`` whose ``checkpoint.dir`` is ``checkpoint_dir``
    (how an earlier stage is reproduced), else a placeholder."""
    from lenssr.training.config import load_config

    for path in sorted(configs.glob("*.yaml")):
        try:
            cfg = load_config(path)
        except LenssrError:  # GAN, pretraining and tuning files are not supervised configs
            continue
        if Path(cfg["checkpoint"]["dir"]) == Path(checkpoint_dir):
            return str(path)
    return f"<the config that wrote {checkpoint_dir}>"


def _budget_line(training: dict[str, Any], batch: Any, loss: Any) -> str:
    minutes = training.get("wall_time_s", 0) / 60
    line = (
        f"- Budget: {training.get('step', 'n/a')} optimisation steps, batch {batch}, loss "
        f"`{loss}`, wall time {minutes:.1f} min on {training.get('device', 'cpu')}"
    )
    stages = _stages(training)
    if not stages:
        return line + "."
    steps = sum(int(s.get("step") or 0) for s in stages) + int(training.get("step") or 0)
    wall = sum(float(s.get("wall_time_s") or 0) for s in stages) / 60 + minutes
    earlier = "; ".join(
        f"{s.get('step', '?')} steps in {float(s.get('wall_time_s') or 0) / 60:.1f} min "
        f"(`{s.get('checkpoint_dir', '?')}`)"
        for s in stages
    )
    return (
        f"{line}, after the earlier stage(s) it starts from: {earlier}. In all {steps} steps, "
        f"{wall:.1f} min."
    )


def _training_lines(training: dict[str, Any]) -> list[str]:
    """Card lines on how the model was trained: the GAN set-up, or the best validation PSNR."""
    if training.get("kind") != "gan":
        return [
            f"- Best validation PSNR during training: {_num(training.get('best_val_psnr'))} dB."
        ]
    disc = training.get("discriminator", {})
    weights = (training.get("config", {}).get("gan", {}) or {}).get("weights", {})
    return [
        f"- GAN fine-tuning of `{training.get('init', 'n/a')}`: discriminator "
        f"`{disc.get('name', 'n/a')}` (batch norm {disc.get('batch_norm', 'n/a')}), adversarial "
        f"loss `{training.get('adversarial', 'n/a')}`, perceptual features "
        f"`{training.get('perceptual', 'n/a')}`, loss weights `{json.dumps(weights)}`; "
        f"{training.get('weights', 'ema')} generator weights at the last step.",
    ]


def _instrument_lines(desc: dict[str, Any]) -> list[str]:
    """Card lines of an instrument-aware model: its inputs, instrument range and sigma."""
    lines = []
    cond = desc.get("conditioning") or {}
    if cond.get("inputs"):
        rng = cond.get("range") or {}
        fwhm = rng.get("psf_fwhm_pix", ["?", "?"])
        noise = rng.get("log10_noise", ["?", "?"])
        lines.append(
            f"- Instrument-aware: takes `{', '.join(cond['inputs'])}`; trained on the "
            f"`{rng.get('mixture', '?')}` instrument mixture, PSF FWHM {fwhm[0]}-{fwhm[1]} LR "
            f"pixels, log10 relative noise {_num(noise[0])} to {_num(noise[1])} (1-99%); "
            "inputs outside warn."
        )
    unc = desc.get("uncertainty") or {}
    if unc:
        cal = unc.get("calibration") or {}
        after = cal.get("after") or {}
        if unc.get("coefficients"):
            how = "sigma head, HR target noise and fractional terms, weights smooth in the noise"
        else:
            how = f"sigma head x {unc.get('sigma_scale', 1.0):.3f}"
        lines.append(
            f"- Per-pixel 1-sigma: {how}, calibrated on "
            f"{cal.get('n', '?')} pairs of `{cal.get('data', '?')}` (coverage there: 1 sigma "
            f"{100 * after.get('cov1', float('nan')):.1f}%, 2 sigma "
            f"{100 * after.get('cov2', float('nan')):.1f}%)."
        )
    vnet = unc.get("variance_net") or {}
    if vnet:
        val = (vnet.get("validation") or {}).get("variance_net") or {}
        got = ", ".join(
            f"{part} {100 * val[part]['cov1']:.1f}% / {100 * val[part]['cov2']:.1f}%"
            for part in ("all", "arc")
            if part in val
        )
        lines.append(
            f"- Times a per-pixel factor of the post-hoc variance network "
            f"(`lenssr.inference.variance_net`, {vnet.get('members', '?')} members, recipe "
            f"`{vnet.get('recipe')}`, weights `{vnet.get('file')}`"
            + (f"; validation coverage at 1 / 2 sigma: {got}" if got else "")
            + ")."
        )
    metrics = desc.get("metrics") or {}
    if "cov1" in metrics:
        c1, c2 = metrics["cov1"].get("mean"), metrics["cov2"].get("mean")
        lines.append(
            f"- Coverage of the 1-sigma map on the test set: 1 sigma {100 * c1:.1f}%, "
            f"2 sigma {100 * c2:.1f}% of pixels (Gaussian: 68.3%, 95.4%)."
        )
    return lines


def _card(name: str, desc: dict[str, Any], summary: dict[str, Any], reproduce: str) -> str:
    training = desc.get("training", {}) or {}
    cfg = training.get("config", {}) or {}
    models = {m["name"]: m for m in summary["models"]}
    own = models[name]
    bicubic = models["bicubic"]
    rows = []
    for label, m in (("bicubic", bicubic), (name, own)):
        rows.append(
            f"| {label} | {_fmt(m['psnr'])} | {_fmt(m['ssim'], 4)} | {_fmt(m['mse'], 1, 'e')} "
            f"| {_fmt(m.get('flux_error'), 4)} | {m['hallucination']:.3f} "
            f"| {m['images_per_s']:.1f} |"
        )
    data = training.get("data", {})
    scales = ", x".join(map(str, desc["scales"]))
    batch = cfg.get("data", {}).get("batch_size", "n/a")
    loss = cfg.get("loss", {}).get("type", "n/a")
    lines = [
        f"# Model card: `{name}`",
        "",
        f"- Architecture: `{desc['arch']}`, x{desc['scale']} (serves x{scales}),"
        f" {desc.get('num_params', 'n/a')} parameters.",
        f"- Constructor config: `{json.dumps(desc.get('arch_config', {}), sort_keys=True)}`",
        f"- Normalisation: `{json.dumps(desc.get('normalization', {}))}` (per image, from the LR;"
        " outputs come back in the input's units).",
        f"- Training data: `{data.get('train', 'n/a')}` ({data.get('n_train', 'n/a')} pairs), "
        f"validation `{data.get('val', 'n/a')}` ({data.get('n_val', 'n/a')} pairs), "
        f"LR patches of {data.get('patch_size_lr', 'n/a')} px.",
        _budget_line(training, batch, loss),
        *_training_lines(training),
        *_instrument_lines(desc),
        "",
        f"## Held-out test metrics ({summary['n_images']} pairs of `{summary['data']}`)",
        "",
        "PSNR, SSIM and MSE per image after mapping SR and HR with the HR image's own min..max to"
        " [0, 1] (data_range 1); mean ± std over images. Flux error: relative total-flux error"
        " of the SR image re-observed by the preset's noiseless degrade, against the LR input."
        " Hallucination: mean |log10 P_SR(k)/P_HR(k)| over spatial frequencies.",
        "",
        "| model | PSNR (dB) | SSIM | MSE | flux error | hallucination | images/s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "## Reproduce",
        "",
        "```",
        reproduce,
        "```",
        "",
    ]
    return "\n".join(lines)


def ship_model(
    checkpoint: str | Path,
    name: str,
    test_data: str | Path,
    n: int | None = None,
    preset: str | None = None,
    config_path: str | Path | None = None,
    weights_dir: str | Path | None = None,
    figures_dir: str | Path | None = None,
    batch_size: int = 16,
    device: str = "auto",
) -> Path:
    """Evaluate ``checkpoint`` on ``test_data`` and install it as shipped model ``name``.

    ``preset`` (whose instrument made the LR images, for flux consistency) is read from the test
    data when ``None``; a name overrides it.

    Returns the path of the written ``<name>.safetensors``.
    """
    from lenssr.evaluation import evaluate
    from lenssr.inference import load_model
    from lenssr.models import load_checkpoint, save_checkpoint
    from lenssr.models.zoo import weights_dir as package_weights_dir

    checkpoint = Path(checkpoint)
    if not name.replace("-", "").replace("_", "").isalnum():
        raise LenssrError(f"model name {name!r} must be letters, digits, '-' or '_'")
    model, desc = load_checkpoint(checkpoint)
    folder = Path(weights_dir) if weights_dir is not None else package_weights_dir()
    figures = Path(figures_dir) if figures_dir is not None else Path("docs/models") / name
    sr = load_model(checkpoint, device=device)
    sr.name = name  # rows and figures show the shipped name, not the checkpoint's stem
    result = evaluate(
        [sr],
        test_data,
        n=n,
        preset=preset,
        out=figures,
        batch_size=batch_size,
        device=device,
        progress=True,
    )
    summary = result.to_dict()
    (figures / "metrics.json").write_text(json.dumps(summary, indent=2))
    own = next(m for m in summary["models"] if m["name"] == name)
    bicubic = next(m for m in summary["models"] if m["name"] == "bicubic")
    metrics = {
        "test_data": str(test_data),
        "n_test": summary["n_images"],
        "psnr": own["psnr"],
        "ssim": own["ssim"],
        "mse": own["mse"],
        "flux_error": own.get("flux_error"),
        "hallucination": own["hallucination"],
        "images_per_s": own["images_per_s"],
        "bicubic": {k: bicubic[k] for k in ("psnr", "ssim", "mse", "hallucination")},
        "conventions": summary["conventions"],
    }
    for key in ("cov1", "cov2"):  # coverage of the calibrated 1-sigma map, when there is one
        if key in own:
            metrics[key] = own[key]
    keep = ("normalization", "training", "conditioning", "uncertainty")
    extra = {k: v for k, v in desc.items() if k in keep}
    extra["metrics"] = metrics
    extra["name"] = name
    folder.mkdir(parents=True, exist_ok=True)
    shipped = []
    vnet = (extra.get("uncertainty") or {}).get("variance_net")
    if vnet:  # the post-hoc variance network travels with its model, renamed
        import shutil

        from lenssr.inference.variance_net import sigma_path

        shipped.append(sigma_path(folder / name))
        shutil.copyfile(checkpoint.parent / vnet["file"], shipped[-1])
        extra["uncertainty"] = {**extra["uncertainty"],
                                "variance_net": {**vnet, "file": shipped[-1].name}}  # fmt: skip
    weights = Path(save_checkpoint(folder / name, model, extra=extra))
    for path in (weights, *shipped, weights.with_suffix(".json")):
        path.chmod(0o644)  # package data: readable by every user of an installation
    write_card(name, folder, figures, config_path)
    return weights


def write_card(
    name: str,
    weights_dir: str | Path,
    figures_dir: str | Path,
    config_path: str | Path | None = None,
) -> Path:
    """(Re)write ``<name>.md`` from the shipped descriptor and ``figures_dir/metrics.json``."""
    folder, figures = Path(weights_dir), Path(figures_dir)
    desc = read_json(folder / f"{name}.json")
    summary = read_json(figures / "metrics.json")
    test_data = desc["metrics"]["test_data"]
    cfg = config_path or f"configs/{name}.yaml"
    test_cmd = (
        f"lenssr simulate --preset {summary['preset']} --n {summary['n_images']} --seed 2 "
        f"--out {test_data}\n"
    )
    if (desc.get("training") or {}).get("kind") == "gan":
        reproduce = (
            "make weights-gan   # all of the following\n"
            "lenssr pretrain --config configs/pretrain-hybrid.yaml\n"
            "lenssr train --config configs/hybrid-pretrained.yaml\n"
            f"lenssr gan --config {cfg}\n"
            + test_cmd
            + f"lenssr ship <checkpoint dir>/generator.safetensors --name {name} --test "
            f"{test_data} --config {cfg}"
        )
    else:
        calibrate = ""
        cal = (desc.get("uncertainty") or {}).get("calibration") or {}
        if cal.get("data"):
            seed = f" --seed {cal['seed']}" if cal.get("seed") is not None else ""
            calibrate = (
                f"lenssr calibrate <checkpoint dir>/best.safetensors --data {cal['data']} "
                f"--n {cal.get('n', 200)}{seed}\n"
            )
        configs = [
            _stage_config(stage["checkpoint_dir"]) for stage in _stages(desc.get("training") or {})
        ] + [cfg]
        trains = [f"lenssr train --config {c}" for c in configs]
        trains[0] += "   # simulates data/ on first use"
        reproduce = (
            "".join(f"{t}\n" for t in trains)
            + calibrate
            + test_cmd
            + f"lenssr ship <checkpoint dir>/best.safetensors --name {name} --test {test_data}"
        )
    card = folder / f"{name}.md"
    card.write_text(_card(name, desc, summary, reproduce))
    card.chmod(0o644)
    return card


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
