"""Does denoising pretraining help? Supervised fine-tuning with vs without it, at equal budget,
in a small (300 pairs) and a large (20000 pairs) regime.

Pretraining runs once, on the LR images of the whole training file used as unpaired data
(``configs/pretrain-hybrid.yaml``, ``--pretrain-steps``; or ``--pretrained PATH``). For each
regime the first N pairs are the labelled set; the tuned hybrid (``configs/hybrid-tuned.yaml``)
is trained for ``--steps`` steps from scratch and from the pretrained weights (``lenssr train
--init``), and every checkpoint is evaluated on the held-out test pairs (``--eval``) with
``lenssr.evaluation.evaluate``. Prints one Markdown table.

A run already made with the same config and budget can be reused instead of retrained with
``--reuse N:scratch=PATH`` or ``--reuse N:pretrained=PATH`` (for example the shipped
``hybrid``'s own run for ``20000:scratch``).

Usage::

    python benchmarks/compare_pretraining.py [--regimes 300,20000] [--steps 1000]
        [--pretrain-steps 800] [--pretrained PATH] [--reuse N:KIND=PATH ...]
        [--train data/default-train.h5] [--val data/default-val.h5]
        [--eval data/default-test.h5] [--n-eval 1000] [--threads 2]
        [--out runs/compare-pretraining]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _compare_util import evaluate_checkpoints, print_table, subset_pairs

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, default=ROOT / "data/default-train.h5")
    ap.add_argument("--val", type=Path, default=ROOT / "data/default-val.h5")
    ap.add_argument("--eval", type=Path, default=ROOT / "data/default-test.h5")
    ap.add_argument("--config", type=Path, default=ROOT / "configs/hybrid-tuned.yaml")
    ap.add_argument("--regimes", default="300,20000", help="labelled pairs per regime")
    ap.add_argument("--steps", type=int, default=1000, help="fine-tuning steps per run")
    ap.add_argument("--pretrain-steps", type=int, default=800)
    ap.add_argument("--pretrained", type=Path, default=None, help="skip pretraining: use this")
    ap.add_argument(
        "--reuse",
        action="append",
        default=[],
        metavar="N:KIND=PATH",
        help="use this checkpoint for regime N, KIND scratch|pretrained",
    )
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per run")
    ap.add_argument("--n-eval", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/compare-pretraining")
    ap.add_argument("--tag", default=time.strftime("%Y%m%d-%H%M%S"))
    args = ap.parse_args()

    from lenssr.training import load_config, load_task_config, pretrain, train

    out = args.out / args.tag
    common = [f"data.val={args.val}", "budget.minutes=null"]
    if args.batch_size:
        common.append(f"data.batch_size={args.batch_size}")
    if args.threads:
        common.append(f"threads={args.threads}")
    reuse: dict[tuple[int, str], Path] = {}
    for item in args.reuse:
        try:
            key, path = item.split("=", 1)
            n_text, kind = key.split(":")
            reuse[(int(n_text), kind)] = Path(path)
        except ValueError:
            ap.error(f"--reuse {item}: expected N:KIND=PATH")
        if kind not in ("scratch", "pretrained") or not Path(path).is_file():
            ap.error(f"--reuse {item}: KIND must be scratch|pretrained and PATH a checkpoint")
    pretrained = args.pretrained
    t0 = time.monotonic()
    if pretrained is None:
        cfg = load_task_config(
            "denoise",
            ROOT / "configs/pretrain-hybrid.yaml",
            [*common, f"data.train={args.train}", f"budget.steps={args.pretrain_steps}",
             f"schedule.total_steps={args.pretrain_steps}"],
        )  # fmt: skip
        pretrained = pretrain(cfg, out=out / "pretrain", device=args.device)
    pretrain_s = time.monotonic() - t0

    checkpoints: dict[str, Path] = {}
    meta: dict[str, tuple[int, str, str]] = {}  # pairs, pretrained?, train seconds
    for n in (int(v) for v in args.regimes.split(",")):
        data, n_pairs = subset_pairs(args.train, n, out / f"train-{n}.h5")
        for init in (None, pretrained):
            kind = "pretrained" if init else "scratch"
            label = f"{n_pairs} pairs, {kind}"
            if (n, kind) in reuse:
                checkpoints[label] = reuse[(n, kind)]
                meta[label] = (n_pairs, "yes" if init else "no", "reused")
                print(f"{label}: reused {reuse[(n, kind)]}", flush=True)
                continue
            cfg = load_config(
                args.config,
                [*common, f"data.train={data}", f"budget.steps={args.steps}",
                 f"schedule.total_steps={args.steps}",
                 f"val.every_steps={max(1, args.steps // 4)}"],
            )  # fmt: skip
            t1 = time.monotonic()
            run = out / f"n{n}-{'pre' if init else 'scratch'}"
            checkpoints[label] = train(cfg, init=init, out=run, device=args.device, quiet=True)
            meta[label] = (n_pairs, "yes" if init else "no", f"{time.monotonic() - t1:.0f}")
            print(f"{label}: {meta[label][2]} s", flush=True)

    for label, path in checkpoints.items():
        print(f"{label}: {path}", flush=True)
    rows = evaluate_checkpoints(checkpoints, args.eval, args.n_eval, args.device)
    table = []
    for label, r in rows.items():
        n_pairs, pre, secs = meta.get(label, ("-", "-", "0"))
        table.append([label, n_pairs, pre, r["psnr"], r["ssim"], r["hallucination"], secs])
    print(f"\nPretraining ablation: {args.steps} fine-tuning steps per run; pretraining "
          f"{args.pretrain_steps} steps on the LR of {args.train} ({pretrain_s:.0f} s); "
          f"eval {args.n_eval} pairs of {args.eval}")  # fmt: skip
    print_table(["model", "pairs", "pretrained", "PSNR dB", "SSIM", "halluc.", "train s"], table)


if __name__ == "__main__":
    main()
