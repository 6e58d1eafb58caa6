"""GAN ablation at equal budget: PatchGAN vs SRGAN-D, BCE (vanilla) vs WGAN-GP.

Every run starts from the same generator checkpoint (``--init``; made here by a short
denoising pretraining when omitted), uses configs/gan-hybrid.yaml with only the discriminator
and the adversarial loss changed, and trains ``--steps`` generator steps. The generators are
then evaluated on the validation pairs with ``lenssr.evaluation.evaluate`` (PSNR, SSIM with the
project convention, and the hallucination number: mean |log10| of the SR/HR power-spectrum
ratio, 0 = perfect). Prints one Markdown table.

Usage::

    python benchmarks/compare_gan.py [--init ckpt] [--steps 300] [--n-train 300]
        [--train data/default-train.h5] [--val data/default-val.h5] [--n-eval 200]
        [--vgg-weights vgg19.pth] [--adversarial vanilla,wgan-gp] [--threads N]
        [--out runs/compare-gan]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _compare_util import evaluate_checkpoints, print_table, subset_pairs

ROOT = Path(__file__).resolve().parents[1]
DISCRIMINATORS = {
    "patchgan": {"name": "patchgan", "num_feat": 32, "num_layers": 3},
    "srgan": {"name": "srgan", "num_feat": 32, "num_blocks": 4, "max_feat": 256, "dense_feat": 256},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, default=ROOT / "data/default-train.h5")
    ap.add_argument("--val", type=Path, default=ROOT / "data/default-val.h5")
    ap.add_argument("--init", type=Path, default=None, help="generator checkpoint")
    ap.add_argument("--pretrain-steps", type=int, default=300, help="when --init is omitted")
    ap.add_argument("--steps", type=int, default=300, help="generator steps per run")
    ap.add_argument("--n-train", type=int, default=None, help="use the first N pairs (h5)")
    ap.add_argument("--n-eval", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--discriminators", default="patchgan,srgan")
    ap.add_argument("--adversarial", default="vanilla,wgan-gp")
    ap.add_argument("--vgg-weights", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per run")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/compare-gan")
    ap.add_argument("--tag", default=time.strftime("%Y%m%d-%H%M%S"))
    args = ap.parse_args()

    from lenssr.training import load_task_config, pretrain, train_gan

    out = args.out / args.tag
    train = args.train
    if args.n_train:
        train, _ = subset_pairs(args.train, args.n_train, out / f"train-{args.n_train}.h5")
    data = [f"data.train={train}", f"data.val={args.val}"]
    if args.batch_size:
        data.append(f"data.batch_size={args.batch_size}")
    if args.threads:
        data.append(f"threads={args.threads}")
    init = args.init
    if init is None:
        cfg = load_task_config(
            "denoise",
            ROOT / "configs/pretrain-hybrid.yaml",
            [f"data.train={args.train}", f"data.val={args.val}", "budget.minutes=null",
             f"budget.steps={args.pretrain_steps}", f"schedule.total_steps={args.pretrain_steps}"],
        )  # fmt: skip
        init = pretrain(cfg, out=out / "pretrain", device=args.device)

    checkpoints: dict[str, Path] = {"init (no GAN)": Path(init)}
    seconds: dict[str, float] = {}
    for disc in args.discriminators.split(","):
        for adv in args.adversarial.split(","):
            label = f"{disc} + {adv}"
            overrides = [
                *data,
                f"init={init}",
                "budget.minutes=null",
                f"budget.steps={args.steps}",
                f"schedule.total_steps={args.steps}",
                f"val.every_steps={max(1, args.steps // 4)}",
                f"gan.adversarial={adv}",
                f"gan.discriminator.batch_norm={str(adv != 'wgan-gp').lower()}",
            ]
            cfg = load_task_config("gan", ROOT / "configs/gan-hybrid.yaml", overrides)
            cfg["gan"]["discriminator"] = {
                **DISCRIMINATORS[disc],
                "batch_norm": adv != "wgan-gp",
            }
            if adv == "wgan-gp":
                cfg["gan"]["d_steps"] = 1  # equal budget: same number of D updates everywhere
            t0 = time.monotonic()
            checkpoints[label] = train_gan(
                cfg,
                vgg_weights=args.vgg_weights,
                out=out / f"{disc}-{adv}",
                device=args.device,
                quiet=True,
            )
            seconds[label] = time.monotonic() - t0
            print(f"{label}: {seconds[label]:.0f} s", flush=True)

    rows = evaluate_checkpoints(checkpoints, args.val, args.n_eval, args.device)
    table = [
        [label, r["psnr"], r["ssim"], r["hallucination"], f"{seconds.get(label, 0.0):.0f}"]
        for label, r in rows.items()
    ]
    print(f"\nGAN ablation: {args.steps} generator steps each, train {train}, "
          f"eval {args.n_eval} pairs of {args.val}")  # fmt: skip
    print_table(["model", "PSNR dB", "SSIM", "halluc.", "train s"], table)


if __name__ == "__main__":
    main()
