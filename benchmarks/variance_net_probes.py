"""Variance-network probes: which change to the network moves its development coverage?

The shipped uncertainty map is the three-term calibration times a variance network
(``lenssr.inference.variance_net``). On the 19 development sets of
``uncertainty_bootstrap.py`` it misses in the same places whatever recipe trained it. Each probe
here trains ``--members`` members (seeds 0, 1, ...) on the pairs of
``configs/uncertainty/variants/stress-b.yaml`` with **one** change against the shipped
architecture and loss, and scores their mean log-factor on the development sets (training path,
the cached features of ``uncertainty_bootstrap.dev_sets``):

- ``baseline``: no change (80 px crops, Gaussian likelihood, global-average branch);
- ``noglob``: without the global-average branch (a crop and a whole image then see the same
  context);
- ``whole``: whole 150 px images (batch 4) instead of 80 px crops;
- ``lnoise``: plus a local-noise channel, ``log(local rms / global noise) / 2`` of the LR
  image's difference from its 4-neighbour mean (smoothed by 1.5 LR pixels; Poisson noise of
  lens light and arcs raises it);
- ``consistency``: plus the local reduced chi^2 of data consistency,
  ``log(smoothed (lr - A(sr))^2 / noise^2) / 4`` (``A``: ``consistency.reobserve``), which
  grows where the SR image disagrees with its own observation;
- ``tta``: plus the spread of the 8 rotated/flipped SR predictions (the model's own
  disagreement, in the null space of the observation): ``(log(tta) + 6) / 3`` and
  ``log(tta / calibrated sigma)`` in the normalised units;
- ``ens:LABEL``: plus the spread of other SR networks of the same architecture (the group
  ``LABEL`` of ``--partners``; the spread is the rms of each partner's SR image about the
  model's, smoothed by a 1-pixel Gaussian), in the channels of ``tta``. Networks trained from
  other seeds see where models that learned different priors disagree;
- ``pinball``: the pinball (quantile) loss of ``|hr - sr|`` at 68.27% (1 sigma) and 95.45%
  (2 sigma, weighted 2), divided by the calibrated sigma, over all pixels plus over the arc
  pixels, instead of the Gaussian likelihood.

Members are trained on one thread (the same weights everywhere) and saved in ``--cache``
(``<weights hash>/<probe>-<seed>.pt``); a later run reuses them, so two processes with
``--seeds 0`` and ``--seeds 1`` can train in parallel and a third scores. The TTA spreads and
each partner's spreads (``ens-<partner weights hash>-<set>.npz``) are cached there too.

Usage::

    python benchmarks/variance_net_probes.py --probes baseline,noglob --seeds 0   # train
    python benchmarks/variance_net_probes.py --probes baseline,noglob --out docs/uncertainty/probes
    python benchmarks/variance_net_probes.py --probes baseline,ens:stage1 \
        --partners stage1=runs/stage1/hybrid.safetensors --out runs/probes

Prints one comparable figure per probe: development sets (of 19) within target and the worst
miss, with the baseline's measured in the same run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import nn
from uncertainty_bootstrap import coverages, dev_sets, report_dev, worst

from lenssr.data.augment import dihedral, inverse_dihedral
from lenssr.inference import variance_net as vn
from lenssr.inference.api import load_model
from lenssr.inference.consistency import blur_sigma, reobserve

RECIPE = "configs/uncertainty/variants/stress-b.yaml"
#: probe -> (global branch, crop [HR pixels], batch, extra channels, loss)
PROBES = {
    "baseline": (True, 80, 8, None, "nll"),
    "noglob": (False, 80, 8, None, "nll"),
    "whole": (True, 150, 4, None, "nll"),
    "lnoise": (True, 80, 8, "lnoise", "nll"),
    "consistency": (True, 80, 8, "consistency", "nll"),
    "tta": (True, 80, 8, "tta", "nll"),
    "pinball": (True, 80, 8, None, "pinball"),
    "ens": (True, 80, 8, "ens", "nll"),
}
#: the ``ens:LABEL`` probes' partner SR models by label (``--partners``), as ``(key, model)``
#: with ``key`` the first 8 hex digits of the weights' hash (names their caches); set in ``main``
PARTNERS: dict[str, list[tuple[str, object]]] = {}


def spec_of(probe: str) -> tuple:
    """A probe's ``PROBES`` entry, with the partner group as the extra channel of ``ens:LABEL``."""
    if probe.startswith("ens:"):
        return (*PROBES["ens"][:3], probe, PROBES["ens"][4])
    return PROBES[probe]


class _Zero(nn.Module):
    """Stands in for the global-average branch of a ``noglob`` member: adds nothing."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(h)


def member_net(in_ch: int, glob: bool) -> vn.VarianceNet:
    """A shipped-architecture member (``torch.manual_seed`` first), without the global-average
    branch when not ``glob``."""
    net = vn.VarianceNet(in_ch)
    if not glob:
        net.glob = _Zero()
    return net


def mean_of(nets: list[nn.Module]) -> vn.VarianceEnsemble:
    ens = vn.VarianceEnsemble(0)
    ens.members = nn.ModuleList(nets)
    return ens.eval()


# --- extra channels, from the features of ``variance_net.features`` (channel 0: SR, 1: LR
# nearest-upsampled, 2: (log calibrated sigma + 6) / 3, 3: u + 2, 4: FWHM / 3 - 0.6) ----------


def _upsample(f: np.ndarray, like: np.ndarray) -> np.ndarray:
    s = like.shape[-1] // f.shape[-1]
    return np.repeat(np.repeat(f, s, -2), s, -1)[..., : like.shape[-2], : like.shape[-1]]


def local_noise(x: np.ndarray, d: dict, s: int) -> np.ndarray:
    lr = x[:, 1, ::s, ::s].astype(np.float64)
    noise = 10 ** d["u"].astype(np.float64)  # the LR noise in the normalised units
    p = np.pad(lr, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    nb = (p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]) / 4
    loc = np.sqrt(gaussian_filter((lr - nb) ** 2 / 1.25, (0, 1.5, 1.5)))
    f = np.log(np.maximum(loc / noise[:, None, None], 0.1)) / 2.0
    return _upsample(f, x[:, 0])[:, None]


def consistency(x: np.ndarray, d: dict, s: int, hr_fwhm: float) -> np.ndarray:
    sr = x[:, 0].astype(np.float64)
    lr = x[:, 1, ::s, ::s].astype(np.float64)
    noise = 10 ** d["u"].astype(np.float64)
    fw = d["fwhm"].astype(np.float64)
    out = np.empty(sr.shape, np.float32)
    with torch.no_grad():
        for i in range(len(sr)):
            a = reobserve(torch.from_numpy(sr[i][None, None]), s, blur_sigma(fw[i], s, hr_fwhm))
            c2 = gaussian_filter((lr[i] - a[0, 0].numpy()) ** 2, 1.5) / noise[i] ** 2
            out[i] = _upsample(0.5 * np.log(np.maximum(c2, 0.01)) / 2.0, sr[i])
    return out[:, None]


def tta_spread(model, d: dict, path: Path) -> np.ndarray:
    """Standard deviation ``(N, H, W)`` of the 8 rotated/flipped SR predictions of each LR image
    with its own PSF (input units), cached at ``path``."""
    if path.is_file():
        with np.load(path) as f:
            return f["tta"]
    unc, model.uncertainty = model.uncertainty, {}
    lr, fw = d["lr"], d["fwhm"]
    out = np.empty(d["sr"].shape, np.float32)
    try:
        for i in range(len(lr)):
            views = [np.ascontiguousarray(dihedral(lr[i : i + 1], j))[0] for j in range(8)]
            sr = model.upscale(np.stack(views), psf_fwhm=float(fw[i]), pixel_scale=1.0)
            back = [inverse_dihedral(sr[j : j + 1], j)[0] for j in range(8)]
            out[i] = np.stack(back).astype(np.float64).std(0)
    finally:
        model.uncertainty = unc
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, tta=out)
    return out


def partner_spread(partner, d: dict, path: Path) -> np.ndarray:
    """``(N, H, W)``: one partner's squared difference from the model's SR image (``d["sr"]``),
    each LR image with its own PSF, smoothed by a 1-pixel Gaussian (input units squared),
    cached at ``path`` (as its square root)."""
    if path.is_file():
        with np.load(path) as f:
            return f["ens"].astype(np.float64) ** 2
    lr, fw = d["lr"], d["fwhm"]
    sq = np.empty(d["sr"].shape, np.float64)
    for i in range(len(lr)):
        sr = partner.upscale(lr[i : i + 1], psf_fwhm=float(fw[i]), pixel_scale=1.0)
        sq[i] = (sr[0].astype(np.float64) - d["sr"][i]) ** 2
    sq = gaussian_filter(sq, (0, 1.0, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, ens=np.sqrt(sq).astype(np.float32))
    return sq


def ens_spread(group: list, d: dict, cache: Path, stem: str) -> np.ndarray:
    """Rms ``(N, H, W)`` of a partner group's SR images about the model's own, smoothed by a
    1-pixel Gaussian (input units); each partner's part cached as ``ens-<key>-<stem>.npz``."""
    sq = [partner_spread(m, d, cache / f"ens-{key}-{stem}.npz") for key, m in group]
    return np.sqrt(np.mean(sq, 0)).astype(np.float32)


def tta_channels(model, x: np.ndarray, d: dict, tta: np.ndarray) -> np.ndarray:
    _, span = vn.set_normalization(model, d["lr"])
    span = np.asarray(span, np.float64).reshape(-1, 1, 1)
    lt = np.log(np.maximum(tta.astype(np.float64) / span, 1e-8))
    lcal = x[:, 2].astype(np.float64) * 3.0 - 6.0
    return np.stack([(lt + 6.0) / 3.0, np.clip(lt - lcal, np.log(1e-4), None)], 1)


def with_extra(model, x: torch.Tensor, d: dict, extra: str | None, cache: Path, stem: str,
               hr_fwhm: float) -> torch.Tensor:  # fmt: skip
    """``x`` with the ``extra`` channels of a set; spreads cached in ``cache`` under ``stem``."""
    if extra is None:
        return x
    xn = x.numpy()
    s = d["sr"].shape[-1] // d["lr"].shape[-1]  # SR scale
    if extra == "lnoise":
        ch = local_noise(xn, d, s)
    elif extra == "consistency":
        ch = consistency(xn, d, s, hr_fwhm)
    elif extra.startswith("ens:"):
        ch = tta_channels(model, xn, d, ens_spread(PARTNERS[extra[4:]], d, cache, stem))
    else:
        ch = tta_channels(model, xn, d, tta_spread(model, d, cache / f"tta-{stem}.npz"))
    return torch.from_numpy(np.concatenate([xn, ch.astype(np.float32)], 1))


# --- training ---------------------------------------------------------------------------


def pinball(lsig: torch.Tensor, r: torch.Tensor, arc: torch.Tensor) -> torch.Tensor:
    a = r.abs()
    per = 0.0
    for q, k, w in ((0.6827, 1.0, 1.0), (0.9545, 2.0, 2.0)):
        d = a - k * torch.exp(lsig)
        per = per + w * torch.maximum(q * d, (q - 1) * d) / k
    per = per / torch.exp(lsig.detach())
    return per.mean() + (per * arc).sum() / arc.sum().clamp(min=1.0)


def train(data: tuple, val: tuple, probe: str, seed: int, steps: int) -> vn.VarianceNet:
    """One member by ``variance_net.train_member`` with the recipe's settings and the probe's
    crop, batch and loss."""
    glob, crop, batch, _, loss_kind = spec_of(probe)
    cfg = {**vn.load_recipe(RECIPE), "steps": steps, "crop": crop, "batch_size": batch}
    torch.manual_seed(seed)
    net = member_net(data[0].shape[1], glob)
    vn.train_member(net, data, val, cfg, seed, pinball if loss_kind == "pinball" else None)
    return net.eval()


def training_data(model, h: str, extra: str | None, cache: Path) -> tuple[tuple, tuple]:
    cfg = vn.load_recipe(RECIPE)
    boot = vn.bootstrap_recipe(cfg)
    sets = []
    for spec in cfg["sets"]:
        d = vn.rendered_set(model, spec, Path(cfg["cache"]), h, boot)
        x, *rest = vn.set_tensors(model, d)
        stem = f"{spec['name']}-{spec['n']}-{spec['seed']}"
        sets.append((with_extra(model, x, d, extra, cache, stem, boot["hr_psf_fwhm_pix"]), *rest))
    n_val = int(cfg["n_val"])
    val = tuple(t[-n_val:] for t in sets[0])
    data = tuple(torch.cat([sets[0][i][:-n_val], *(s[i] for s in sets[1:])]) for i in range(4))
    return data, val


def members(model, h: str, probe: str, seeds: list[int], steps: int, cache: Path) -> list:
    if probe.startswith("ens:"):  # named by the partners' weights, not by the label
        tag = "ens-" + "-".join(key for key, _ in PARTNERS[probe[4:]])
    else:
        tag = probe
    paths = {s: cache / f"{tag}-{s}.pt" for s in seeds}
    nets = {}
    for s, p in paths.items():
        if p.is_file():
            ck = torch.load(p)
            net = member_net(ck["in_ch"], spec_of(probe)[0])
            net.load_state_dict(ck["state"])
            nets[s] = net.eval()
    todo = [s for s in seeds if s not in nets]
    if todo:
        data, val = training_data(model, h, spec_of(probe)[3], cache)
        for s in todo:
            nets[s] = train(data, val, probe, s, steps)
            cache.mkdir(parents=True, exist_ok=True)
            torch.save({"state": nets[s].state_dict(), "in_ch": data[0].shape[1]}, paths[s])
        del data, val
    return [nets[s] for s in seeds]


def spread_stats(model, d: dict, cache: Path, name: str, ens: list[str]) -> dict:
    """How well each spread (the bootstrap's rms shift ``sqrt(b2)``, the TTA spread where it is
    cached, the ``ens`` probes' spreads) tells the arc pixels' errors: the Spearman correlation of
    ``|hr - sr| / sigma`` with ``spread / sigma`` over the arc pixels (``sigma``: the three-term
    map), and the spread's rms over the error's rms there."""
    from scipy.stats import spearmanr

    from lenssr.inference.uncertainty import calibrated_sigma

    arc = d["arc"].astype(bool)
    if not arc.any():
        return {}
    # in the normalised units, so that every image weighs alike in the rms ratio
    span = np.broadcast_to(vn.set_normalization(model, d["lr"])[1], arc.shape)[arc]
    err = np.abs(d["hr"].astype(np.float64) - d["sr"])[arc] / span
    sig = calibrated_sigma(d["sr"], d["sig"], d["u"], model.uncertainty)[arc] / span
    cands = {"bootstrap": np.sqrt(np.maximum(d["b2"], 0.0))}
    if (cache / f"tta-{name}.npz").is_file():
        cands["tta"] = tta_spread(model, d, cache / f"tta-{name}.npz")
    for p in ens:
        cands[p] = ens_spread(PARTNERS[p[4:]], d, cache, name)
    out = {}
    for label, f in cands.items():
        v = np.asarray(f, np.float64)[arc] / span
        rho = float(spearmanr(err / sig, v / sig)[0])
        ratio = float(np.sqrt(np.mean(v**2) / np.mean(err**2)))
        out[label] = {"spearman": round(rho, 3), "rms_ratio": round(ratio, 3)}
    return out


def write_spreads(spreads: dict, out: Path, flags: str) -> None:
    labels = list(dict.fromkeys(k for v in spreads.values() for k in v))
    lines = ["| set | " + " | ".join(labels) + " |", "| --- |" + " --- |" * len(labels)]
    for n, v in spreads.items():
        cells = [
            f"{v[k]['spearman']:+.2f} ({v[k]['rms_ratio']:.2f})" if k in v else "" for k in labels
        ]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    head = ("Arc pixels of each development set: Spearman correlation of |hr - sr| / sigma with "
            "spread / sigma (sigma: the three-term map), and in brackets the spread's rms over "
            f"the error's rms. `python benchmarks/{Path(__file__).name} {flags}`.")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "spreads.md").write_text(head + "\n\n" + "\n".join(lines) + "\n")
    (out / "spreads.json").write_text(json.dumps(spreads, indent=1) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hybrid")
    ap.add_argument("--probes", default="baseline,noglob,lnoise,consistency,tta,pinball")
    ap.add_argument("--seeds", default="0,1", help="members to train (and score, with --out)")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--cache", type=Path, default=Path("runs/variance-net-probes"))
    ap.add_argument(
        "--features",
        type=Path,
        default=Path("runs/uncertainty-bootstrap"),
        help="uncertainty_bootstrap.py's cache of development-set features",
    )
    ap.add_argument(
        "--partners",
        default="",
        help="partner groups of the ens:LABEL probes, LABEL=FILE[+FILE...][,LABEL=...]: SR "
        "weights (.safetensors) of the model's architecture",
    )
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model, device="cpu", backend="torch")
    model.uncertainty.pop("variance_net", None)
    seeds = [int(s) for s in args.seeds.split(",")]
    probes = args.probes.split(",")
    for item in filter(None, args.partners.split(",")):
        label, _, paths = item.partition("=")
        PARTNERS[label] = []
        for w in paths.split("+"):
            partner = load_model(w, device="cpu", backend="torch")
            partner.uncertainty = {}
            key = vn._file_hash(partner.weights_dir / f"{partner.name}.safetensors")[:8]
            PARTNERS[label].append((key, partner))
    known = set(PROBES) - {"ens"} | {f"ens:{label}" for label in PARTNERS}
    unknown = sorted(set(probes) - known)
    if unknown:
        ap.error(f"unknown probes: {', '.join(unknown)} (known: {', '.join(sorted(known))}; "
                 "ens:LABEL needs --partners LABEL=FILE)")  # fmt: skip
    # members and TTA spreads depend on the SR weights: one folder per weights hash
    h = vn._file_hash(model.weights_dir / f"{model.name}.safetensors")
    cache = args.cache / h
    nets = {p: mean_of(members(model, h, p, seeds, args.steps, cache)) for p in probes}
    if args.train_only:
        return
    hr_fwhm = vn.bootstrap_recipe(vn.load_recipe(RECIPE))["hr_psf_fwhm_pix"]
    results: dict[str, dict] = {}
    spreads: dict[str, dict] = {}
    ens = [p for p in probes if p.startswith("ens:")]
    for n, d in dev_sets(model, hr_fwhm, args.features):
        x, r, ls, arc = vn.set_tensors(model, d)
        t = {"r": r.numpy().astype(np.float64), "arc": arc.numpy().astype(bool)}
        for p, net in nets.items():
            xx = with_extra(model, x, d, spec_of(p)[3], cache, n, hr_fwhm)
            lf = vn.log_factor(net, np.ascontiguousarray(xx.numpy()))
            results.setdefault(p, {})[n] = coverages(t, np.exp(ls.numpy() + lf))
        print(n, {p: round(worst(c[n]), 2) for p, c in results.items()}, flush=True)
        spreads[n] = spread_stats(model, d, cache, n, ens)
    flags = f"--probes {args.probes} --seeds {args.seeds} --steps {args.steps}"
    if args.partners:
        flags += f" --partners {args.partners}"
    if args.out:
        write_spreads(spreads, args.out, flags)
    report_dev(results, args.out, "probes", f"variance-network probes ({len(seeds)} members)",
               flags, Path(__file__).name)  # fmt: skip


if __name__ == "__main__":
    main()
