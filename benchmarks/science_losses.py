"""Which training loss helps substructure science? Five arms at equal budget.

Every arm starts from the shipped ``hybrid`` and trains on for the same steps, rate, data
(survey-mix HR images observed by instruments drawn per item) and seed; only the loss differs
(``configs/science/*.yaml``):

- ``control``: the shipped loss (Charbonnier + the sigma head's likelihood);
- ``chi2``: + the data-consistency term (excess reduced chi-squared of the re-observed SR);
- ``task``: + the feature distance in a frozen substructure classifier trained on HR images
  (the task-driven perceptual loss);
- ``perceptual``: + the same distance in the frozen encoder of the starting hybrid (generic);
- ``adversarial``: a WGAN-GP critic at 4x the shipped hybrid-gan's adversarial weight.

Steps:

1. The classifier of the ``task`` arm: the validation's recipe
   (:mod:`lenssr.science.classifier`) on the HR images of ``--n-clf`` systems per class of the
   science population (``default`` preset, lens light off, subhalo slope -0.9, as the science
   report) simulated with seed ``--clf-seed`` (the validation uses seeds 0 and 1, so the loss
   never sees its images). Written to ``runs/science-losses/classifier.safetensors``.
2. The arms (``lenssr train`` / ``lenssr gan``; a finished arm is reused, an interrupted one
   resumes).
3. ``validate-science`` of bicubic and the five arms on the science population
   (``--n-train`` / ``--n-test`` systems per class): fraction of the LR->HR macro-AUC gap
   closed (HR-trained and realistic protocols), the false-positive guard, the background
   power ratio.

Usage::

    python benchmarks/science_losses.py [--n-train 1000] [--n-test 400] [--out docs/science/losses]

Prints one comparable figure: each arm's HR-trained gap fraction minus the control's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "science-losses"
ARMS = ("control", "chi2", "task", "perceptual", "adversarial")
SCIENCE_SET = ["lens_light.amp=0", "subhalos.slope=-0.9"]


def train_classifier_for_loss(n_per_class: int, seed: int, out: Path) -> Path:
    """Step 1 of the module docstring; returns the classifier path."""
    from lenssr.science.classifier import Recipe, prepare_images, save_classifier, train_classifier
    from lenssr.science.validate import CLASS_NAMES, _read_split
    from lenssr.simulation import load_preset, simulate
    from lenssr.simulation.presets import parse_overrides

    path = out / "classifier.safetensors"
    if path.exists():
        return path
    data = out / f"classifier-data-n{n_per_class}-seed{seed}.h5"
    if not data.exists():
        preset = load_preset("default", parse_overrides(SCIENCE_SET))
        simulate(preset, 3 * n_per_class, data, seed=seed, workers=2, classes=CLASS_NAMES,
                 progress=False)  # fmt: skip
    split, _ = _read_split(data)
    t0 = time.time()
    recipe = Recipe(seed=seed)
    model, log = train_classifier(prepare_images(split.hr), split.labels, recipe)
    info = {
        "trained_on": f"HR images of {3 * n_per_class} systems (default preset, "
        f"{', '.join(SCIENCE_SET)}, seed {seed})",
        "recipe": recipe.to_dict(),
        "final_loss": log.losses[-1],
        "wall_s": round(time.time() - t0, 1),
    }
    return save_classifier(model, path, info)


def run_arm(arm: str) -> Path:
    """Step 2: train one arm (or reuse / resume it); returns its result checkpoint."""
    cfg = ROOT / "configs" / "science" / f"{arm}.yaml"
    gan = arm == "adversarial"
    result = RUNS / arm / ("generator.safetensors" if gan else "best.safetensors")
    if result.exists():
        return result
    cmd = [sys.executable, "-m", "lenssr.cli", "gan" if gan else "train", "--config", str(cfg)]
    if (RUNS / arm / "last.state.pt").exists():
        cmd.append("--resume")
    t0 = time.time()
    subprocess.run(cmd + ["-q"], check=True, cwd=ROOT)
    (RUNS / arm / "wall_s.txt").write_text(f"{time.time() - t0:.0f}\n")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-clf", type=int, default=1000, help="classifier systems per class")
    ap.add_argument("--clf-seed", type=int, default=50)
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=400)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "science" / "losses")
    args = ap.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    RUNS.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    clf = train_classifier_for_loss(args.n_clf, args.clf_seed, RUNS)
    print(f"classifier: {clf}", flush=True)
    models = RUNS / "models"
    models.mkdir(exist_ok=True)
    for arm in arms:
        ckpt = run_arm(arm)
        for suffix in (".safetensors", ".json"):  # one distinct name per arm for the report
            shutil.copy(ckpt.with_suffix(suffix), models / f"{arm}{suffix}")
        print(f"arm {arm}: {ckpt}", flush=True)

    from lenssr.science.validate import ScienceConfig, validate_science

    cfg = ScienceConfig(
        models=["bicubic", *[str(models / f"{a}.safetensors") for a in arms]],
        preset="default",
        overrides=SCIENCE_SET,
        n_train=args.n_train,
        n_test=args.n_test,
        out=RUNS / "validate",
        device="cpu",
    )
    report = validate_science(cfg, log=lambda m: print(m, flush=True))
    rows = {}
    for arm in arms:
        desc = json.loads((models / f"{arm}.json").read_text())
        fp = report["false_positives"]["per_input"][arm]
        bg = report["background_power"]["per_input"][arm]
        wall = RUNS / arm / "wall_s.txt"
        rows[arm] = {
            "gap_hr_trained": report["gap_fraction"]["fixed_classifier"][arm],
            "gap_realistic": report["gap_fraction"]["realistic"][arm],
            "fpr": fp["fpr"],
            "fpr_ci95": fp["ci95"],
            "fpr_verdict": fp["verdict"],
            "background_power": {b: bg[b]["ratio"] for b in ("low", "mid", "high")},
            "flux_error": report["fidelity"].get(arm, {}).get("flux_error"),
            "hallucination": report["fidelity"].get(arm, {}).get("hallucination_number"),
            "val_psnr": (desc.get("metrics") or {}).get("val_psnr"),
            "train_wall_s": float(wall.read_text()) if wall.exists() else None,
        }
    args.out.mkdir(parents=True, exist_ok=True)
    out = {
        "arms": rows,
        "classifier": json.loads(clf.with_suffix(".json").read_text()),
        "validate_config": report["config"],
        "hr_fpr_reference": report["false_positives"]["per_input"]["hr"]["fpr"],
        "wall_s": round(time.time() - t0, 1),
    }
    (args.out / "losses.json").write_text(json.dumps(out, indent=1) + "\n")
    (args.out / "losses.md").write_text(markdown(rows, args))
    for name in ("report.md", "roc.png"):
        if (RUNS / "validate" / name).exists():
            shutil.copy(RUNS / "validate" / name, args.out / name)
    base = rows.get("control", {}).get("gap_hr_trained", {}).get("gap_fraction")
    for arm, r in rows.items():
        g = r["gap_hr_trained"]["gap_fraction"]
        diff = f"{g - base:+.3f}" if base is not None else "n/a"
        print(f"{arm}: HR-trained gap fraction {g:.3f} ({diff} vs control)")


def markdown(rows: dict, args: argparse.Namespace) -> str:
    def ci(d: dict) -> str:
        lo, hi = d["ci95"]
        return f"{100 * d['gap_fraction']:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"

    lines = [
        f"Science population (default preset, {', '.join(SCIENCE_SET)}), {args.n_train} "
        f"training and {args.n_test} test systems per class; every arm 500 steps from the "
        "shipped hybrid (configs/science/). Gap closed: fraction of the bicubic -> HR macro-AUC "
        "gap; FPR: false-positive rate of the HR-trained classifier on no_sub images at its "
        "10% HR operating point (verdict of the difference to HR); background power: median "
        "SR/HR ratio per band; val PSNR: the result's, on 100 survey-mix validation pairs.",
        "",
        "| arm | gap closed, HR-trained | gap closed, realistic | FPR on no_sub (HR: 10%) "
        "| background power low / mid / high | val PSNR (dB) | training (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm, r in rows.items():
        bp = r["background_power"]
        lo, hi = r["fpr_ci95"]
        lines.append(
            f"| {arm} | {ci(r['gap_hr_trained'])} | {ci(r['gap_realistic'])} | "
            f"{100 * r['fpr']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] {r['fpr_verdict']} | "
            f"{bp['low']:.2f} / {bp['mid']:.3f} / {bp['high']:.3f} | "
            f"{r['val_psnr'] or float('nan'):.2f} | {r['train_wall_s'] or float('nan'):.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
