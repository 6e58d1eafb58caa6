"""Print the README's model-zoo table from the shipped descriptors (test metrics written by
``lenssr ship``). Run: .venv/bin/python docs/figures/zoo_table.py"""

from __future__ import annotations

import json

from lenssr.models import shipped_models

ORDER = ["srcnn", "edsr", "lapsrn", "esrgan", "hybrid-fast", "hybrid", "hybrid-gan"]


def row(name: str, desc: dict) -> str:
    m = desc["metrics"]
    psnr, ssim, mse = m["psnr"], m["ssim"], m["mse"]
    return (
        f"| `{name}` | {desc['num_params']:,} | {psnr['mean']:.2f} ± {psnr['std']:.2f} "
        f"| {ssim['mean']:.5f} | {mse['mean']:.2e} | {m['hallucination']:.3f} |"
    )


def main() -> None:
    shipped = shipped_models()
    descs = {n: json.loads(p.with_suffix(".json").read_text()) for n, p in shipped.items()}
    names = [n for n in ORDER if n in descs] + sorted(set(descs) - set(ORDER))
    first = descs[names[0]]["metrics"]
    bic = first["bicubic"]
    print(f"Held-out test set: {first['n_test']} pairs of `{first['test_data']}`.\n")
    print("| model | parameters | PSNR (dB) | SSIM | MSE | hallucination |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| `bicubic` | 0 | {bic['psnr']['mean']:.2f} ± {bic['psnr']['std']:.2f} "
        f"| {bic['ssim']['mean']:.5f} | {bic['mse']['mean']:.2e} | {bic['hallucination']:.3f} |"
    )
    for name in names:
        print(row(name, descs[name]))


if __name__ == "__main__":
    main()
