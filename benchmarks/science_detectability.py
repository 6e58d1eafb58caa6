"""Can the fixed substructure classifier see substructure at all? HR macro AUC per preset variant.

The science validation (``lenssr validate-science``) measures how much of the LR->HR gap in
substructure-classification AUC each SR model closes. That needs a gap: the classifier must
detect substructure in HR images. This script trains the fixed recipe
(:class:`lenssr.science.classifier.Recipe`, ``--epochs``) on the HR images of a small balanced
``no_sub / cdm / axion`` set for each preset variant and prints its one-vs-rest AUCs on a
held-out set; 0.5 = chance. It is how the validation's preset was chosen (docs/science.md).

Usage::

    python benchmarks/science_detectability.py [--n-train 1200] [--n-test 300] [--epochs 8]
        [--out runs/science-detectability]
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {  # name -> (preset, overrides)
    "default": ("default", []),
    "slope-0.9": ("default", ["subhalos.slope=-0.9"]),
    "no-lens-light": ("default", ["lens_light.amp=0"]),
    "no-lens-light+slope-0.9": ("default", ["lens_light.amp=0", "subhalos.slope=-0.9"]),
    "deeplense-model-i": ("deeplense-model-i", []),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=1200, help="training systems per class")
    ap.add_argument("--n-test", type=int, default=300, help="test systems per class")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "runs/science-detectability")
    args = ap.parse_args()

    import h5py
    import numpy as np

    from lenssr.science.classifier import Recipe, predict_proba, prepare_images, train_classifier
    from lenssr.science.stats import ovr_auc
    from lenssr.science.validate import CLASS_NAMES
    from lenssr.simulation import simulate
    from lenssr.simulation.presets import load_preset, parse_overrides

    def hr_split(preset, tag: str, n: int, seed: int):
        path = args.out / f"{tag}-n{n}-seed{seed}.h5"  # tag: the variant's name
        simulate(preset, 3 * n, path, seed=seed, workers=args.workers, classes=CLASS_NAMES,
                 progress=False)  # fmt: skip
        with h5py.File(path, "r") as f:
            return f["hr"][:].astype(np.float32), f["label"][:].astype(np.int64)

    recipe = Recipe(epochs=args.epochs)
    rows = []
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    for name in names:
        preset_name, overrides = VARIANTS[name]
        preset = load_preset(preset_name, parse_overrides(overrides)) if overrides else preset_name
        x_train, y_train = hr_split(preset, f"{name}-train", args.n_train, 0)
        x_test, y_test = hr_split(preset, f"{name}-test", args.n_test, 1)
        model, log = train_classifier(prepare_images(x_train), y_train, recipe)
        auc = ovr_auc(y_test, predict_proba(model, prepare_images(x_test)))
        rows.append((name, " ".join(f"--set {o}" for o in overrides), auc, log.losses[-1]))
        print(f"{name}: macro AUC {np.mean(auc):.3f}", flush=True)

    print(f"\nHR-trained classifier, {args.epochs} epochs, {args.n_train}/{args.n_test} systems "
          "per class (train/test); one-vs-rest AUC on the test set, 0.5 = chance")  # fmt: skip
    print("| variant | overrides | " + " | ".join(CLASS_NAMES) + " | macro | final loss |")
    print("|---|---|" + "---|" * (len(CLASS_NAMES) + 2))
    for name, sets, auc, loss in rows:
        cells = " | ".join(f"{a:.3f}" for a in auc)
        print(f"| {name} | {sets or '-'} | {cells} | {np.mean(auc):.3f} | {loss:.3f} |")


if __name__ == "__main__":
    main()
