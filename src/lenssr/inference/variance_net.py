"""The post-hoc variance network: a per-pixel factor on the calibrated 1-sigma map.

The three-term calibration (``lenssr.inference.uncertainty.calibrated_sigma``) scales the sigma
head per noise level but not per pixel, and on the lensed arcs of sources the SR network never
saw its errors are wider than the head predicts in some places and narrower in others. With the
SR model frozen, a small CNN ``g`` learns the missing per-pixel factor:

    sigma = sigma_calibrated * exp(mean_k g_k(features))

- ``g_k``: ``members`` networks of the same architecture (32 channels: one 3x3 input
  convolution, five residual 3x3 convolutions with dilations 1, 2, 4, 8, 16, a global-average
  branch after the second, a zero-initialised 1x1 output, so each starts from the calibrated
  sigma), each from its own seed; averaging their log-factors removes most of the spread that
  one network's initialisation gives.
- features at each HR pixel (:func:`features`): the SR image and the LR image (nearest
  upsampled) in the model's normalised units, ``log(sigma_calibrated / (hi - lo))``, the relative
  LR noise ``u = log10(noise_sigma / (hi - lo))`` and the LR PSF FWHM [LR pixels]; with a
  ``bootstrap`` recipe also the re-observation bootstrap of the image
  (:mod:`lenssr.inference.bootstrap`: its rms shift and its noise response, normalised, and the
  ratio of the rms shift to the calibrated sigma), which follows the image's own morphology and
  noise where the other features only know the training mixture.
- trained (:func:`train_variance_net`, ``lenssr calibrate CHECKPOINT --variance-net CONFIG``) by
  the Gaussian likelihood of ``hr - sr`` over all pixels plus, weighted ``arc_weight``, over the
  lensed-arc pixels, on pairs rendered from presets (``configs/uncertainty/variance-net.yaml``:
  ``survey-mix`` and a morphology-shift preset), random HR crops with the 8 rotations/flips.

The weights are a safetensors file beside the checkpoint (``<stem>.sigma.safetensors``), named
in the descriptor's ``uncertainty.variance_net`` section with the architecture, the training
config and the validation coverage. Images above 512x512 HR pixels are processed in overlapping
tiles (bounded memory).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lenssr.errors import LenssrError

#: The per-pixel input channels, in order (:func:`features`).
FEATURES = ("sr", "lr", "log_sigma", "log10_noise", "psf_fwhm_pix")
#: The channels a ``bootstrap`` recipe adds after :data:`FEATURES`.
BOOT_FEATURES = ("log_boot", "log_boot_noise", "log_boot_ratio")
#: Images with more HR pixels than this are processed in tiles.
TILE_PIXELS = 512 * 512
#: Tile side and overlap [HR pixels]; the receptive field of the dilated stack is 63 pixels.
TILE, TILE_OVERLAP = 256, 64

#: Training recipe defaults (``configs/uncertainty/variance-net.yaml`` overrides them).
DEFAULTS: dict[str, Any] = {
    "sets": [
        {"name": "train", "preset": "survey-mix", "n": 2000, "seed": 1000},
        {
            "name": "stress",
            "preset": "configs/uncertainty/stress-preset.yaml",
            "n": 400,
            "seed": 5000,
        },
    ],  # fmt: skip
    "n_val": 200,
    "members": 4,
    "steps": 1200,
    "batch_size": 8,
    "crop": 80,
    "lr": 1.0e-3,
    "arc_weight": 1.0,
    "coverage_weight": 0.0,
    "channels": 32,
    "dilations": [1, 2, 4, 8, 16],
    "cache": "runs/variance-net",
    "threads": 2,
    "bootstrap": None,  # {draws, seed}: add the re-observation bootstrap features
}


class VarianceNet(nn.Module):
    """One member: per-pixel log-factor ``(B, H, W)`` of features ``(B, C, H, W)``."""

    def __init__(self, in_ch: int = len(FEATURES), ch: int = 32, dilations=(1, 2, 4, 8, 16)):
        super().__init__()
        self.inp = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(ch, ch, 3, padding=k, dilation=k) for k in dilations)
        self.glob = nn.Linear(ch, ch)
        self.out = nn.Conv2d(ch, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.inp(x))
        for i, block in enumerate(self.blocks):
            h = h + F.gelu(block(h))
            if i == 1:
                h = h + self.glob(h.mean((2, 3)))[:, :, None, None]
        return self.out(h)[:, 0]


class VarianceEnsemble(nn.Module):
    """The mean log-factor of several :class:`VarianceNet` members."""

    def __init__(
        self,
        members: int,
        ch: int = 32,
        dilations=(1, 2, 4, 8, 16),
        seed: int | None = None,
        in_ch: int = len(FEATURES),
    ) -> None:
        """``seed``: member ``k``'s initial weights from ``torch.manual_seed(seed + k)``."""
        super().__init__()
        nets = []
        for k in range(members):
            if seed is not None:
                torch.manual_seed(seed + k)
            nets.append(VarianceNet(in_ch, ch, dilations))
        self.members = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def features(
    sr_n: np.ndarray, lr_n: np.ndarray, sigma_n: np.ndarray, log10_noise: np.ndarray,
    psf_fwhm_pix: np.ndarray, boot: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:  # fmt: skip
    """The network's input ``(N, C, H, W)`` float32: :data:`FEATURES`, then
    :data:`BOOT_FEATURES` when ``boot`` is given.

    Args:
        sr_n: SR images ``(N, H, W)`` in the model's normalised units (``(sr - lo) / (hi - lo)``).
        lr_n: the LR images ``(N, h, w)`` in the same units (``H = s h``).
        sigma_n: the calibrated 1-sigma ``(N, H, W)`` in the same units.
        log10_noise: ``(N,)`` relative LR noise ``log10(noise_sigma / (hi - lo))``.
        psf_fwhm_pix: ``(N,)`` or one LR PSF FWHM [LR pixels].
        boot: ``(b2, bn2)`` ``(N, H, W)`` of :func:`lenssr.inference.bootstrap.bootstrap_terms`
            in the normalised units squared.
    """
    sr_n = np.asarray(sr_n, np.float64)
    n, hh, ww = sr_n.shape
    lr_n = np.asarray(lr_n, np.float64)
    s = hh // lr_n.shape[-2]
    lr_up = np.repeat(np.repeat(lr_n, s, -2), s, -1)[:, :hh, :ww]
    shape = sr_n.shape
    u = np.broadcast_to(np.asarray(log10_noise, np.float64).reshape(-1), (n,))
    fw = np.broadcast_to(np.asarray(psf_fwhm_pix, np.float64).reshape(-1), (n,))
    chans = [
        sr_n,
        lr_up,
        (np.log(np.maximum(np.asarray(sigma_n, np.float64), 1e-8)) + 6.0) / 3.0,
        np.broadcast_to(u[:, None, None] + 2.0, shape),
        np.broadcast_to(fw[:, None, None] / 3.0 - 0.6, shape),
    ]
    if boot is not None:
        rms, rms_noise = (np.sqrt(np.maximum(np.asarray(b, np.float64), 0.0)) for b in boot)
        sig = np.maximum(np.asarray(sigma_n, np.float64), 1e-30)
        chans += [
            (np.log(np.maximum(rms, 1e-8)) + 6.0) / 3.0,
            (np.log(np.maximum(rms_noise, 1e-8)) + 6.0) / 3.0,
            np.log(np.maximum(rms / sig, 1e-4)),
        ]
    return np.nan_to_num(np.stack(chans, 1)).astype(np.float32)


def _tile_weights(start: int, size: int, length: int) -> np.ndarray:
    from lenssr.inference.tiling import blend_weights_1d

    return blend_weights_1d(start, size, length, TILE_OVERLAP, 1)


def log_factor(net: nn.Module, x: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """``net``'s log-factor ``(N, H, W)`` float64 of features ``(N, C, H, W)``: whole images
    up to :data:`TILE_PIXELS` HR pixels, overlapping blended tiles above (bounded memory)."""
    from lenssr.inference.tiling import tile_starts

    n, _, h, w = x.shape
    out = np.empty((n, h, w), np.float64)
    with torch.no_grad():
        if h * w <= TILE_PIXELS:
            for i in range(0, n, batch_size):
                out[i : i + batch_size] = net(torch.from_numpy(x[i : i + batch_size])).numpy()
            return out
        th, tw = min(TILE, h), min(TILE, w)
        for i in range(n):
            acc = np.zeros((h, w))
            wsum = np.zeros((h, w))
            for y0 in tile_starts(h, th, TILE_OVERLAP):
                wy = _tile_weights(y0, th, h)
                for x0 in tile_starts(w, tw, TILE_OVERLAP):
                    t = torch.from_numpy(
                        np.ascontiguousarray(x[i : i + 1, :, y0 : y0 + th, x0 : x0 + tw])
                    )
                    wt = wy[:, None] * _tile_weights(x0, tw, w)[None, :]
                    acc[y0 : y0 + th, x0 : x0 + tw] += wt * net(t)[0].numpy()
                    wsum[y0 : y0 + th, x0 : x0 + tw] += wt
            out[i] = acc / np.maximum(wsum, 1e-12)
    return out


def sigma_path(checkpoint: str | Path) -> Path:
    """``<stem>.sigma.safetensors`` beside a checkpoint (stem, ``.safetensors`` or ``.json``)."""
    from lenssr.models.checkpoint import checkpoint_paths

    weights, _ = checkpoint_paths(checkpoint)
    return weights.with_name(weights.name[: -len(".safetensors")] + ".sigma.safetensors")


def save_variance_net(path: Path, net: VarianceEnsemble, section: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path), metadata={"lenssr_variance_net": json.dumps(section)})


_CACHE: dict[tuple[str, float], VarianceEnsemble] = {}


def load_variance_net(path: Path, section: dict[str, Any]) -> VarianceEnsemble:
    """The ensemble stored at ``path`` (architecture from the descriptor ``section``), cached."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from lenssr.models.checkpoint import load_state_dict_strict

    if not path.is_file():
        raise LenssrError(f"variance network weights not found: {path}")
    key = (str(path.resolve()), path.stat().st_mtime)
    if key not in _CACHE:
        net = VarianceEnsemble(int(section["members"]), int(section["channels"]),
                               tuple(section["dilations"]),
                               in_ch=len(section.get("features", FEATURES)))  # fmt: skip
        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise LenssrError(f"{path}: cannot read weights ({exc})") from exc
        load_state_dict_strict(net, state, str(path))
        _CACHE[key] = net.eval()
    return _CACHE[key]


# --- training -----------------------------------------------------------------------------

SET_KEYS = ("lr", "hr", "arc", "sr", "sig", "u", "fwhm")
BOOT_KEYS = ("b2", "bn2")


def set_bootstrap(model, d: dict[str, np.ndarray], boot: dict[str, Any]) -> dict[str, np.ndarray]:
    """``b2, bn2`` of every pair of a rendered set, each with its own PSF, by
    :meth:`Upscaler.bootstrap`, as ``upscale(return_sigma=True)`` computes them (the noise sigma
    estimated, as ``upscale`` does when it is not given)."""
    from lenssr.data.normalize import noise_sigma_mad

    b2, bn2 = [], []
    for i in range(len(d["lr"])):
        lr = d["lr"][i : i + 1].astype(np.float64)
        noise = np.array([noise_sigma_mad(np.nan_to_num(lr[0]))])
        a, b = model.bootstrap(lr, d["sr"][i : i + 1], float(d["fwhm"][i]), noise, boot)
        b2.append(a[0])
        bn2.append(b[0])
    return {"b2": np.stack(b2), "bn2": np.stack(bn2)}


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def predicted_set(
    model,
    lr: np.ndarray,
    hr: np.ndarray,
    arc: np.ndarray,
    fwhm: np.ndarray,
    boot: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Pairs ``lr, hr, arc`` observed with LR PSFs ``fwhm`` ``(N,)`` [LR pixels] and the model's
    raw predictions, as :func:`set_tensors` takes them (``SET_KEYS``; with ``boot`` ``{draws,
    seed, hr_psf_fwhm_pix}`` also the bootstrap's ``BOOT_KEYS``)."""
    from lenssr.inference.uncertainty import raw_predictions

    sr, sig, u = raw_predictions(model, lr, fwhm)
    out = dict(zip(SET_KEYS, (lr, hr, arc, sr, sig, u, fwhm), strict=True))
    if boot:
        out.update(set_bootstrap(model, out, boot))
    return out


def rendered_set(
    model, spec: dict[str, Any], cache: Path, model_hash: str, boot: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """A set's rendered pairs with the model's raw predictions (``SET_KEYS``; with ``boot``
    ``{draws, seed, hr_psf_fwhm_pix}`` also the bootstrap's ``BOOT_KEYS``), from the cache when
    it holds this set for these weights, else rendered (chunks of 100) and saved."""
    from lenssr.inference.uncertainty import render_calibration_set

    path = cache / f"{spec['name']}-{spec['n']}-{spec['seed']}.npz"
    keys = SET_KEYS + (BOOT_KEYS if boot else ())
    if path.is_file():
        with np.load(path) as f:
            if "model" in f.files and str(f["model"]) == model_hash:
                if all(k in f.files for k in keys):
                    return {k: f[k] for k in keys}
    parts: dict[str, list] = {}
    n, seed = int(spec["n"]), int(spec["seed"])
    for start in range(0, n, 100):
        cal = render_calibration_set(spec["preset"], min(100, n - start), seed + start)
        fw = cal["psf_fwhm"] / cal["pixel_scale"]
        chunk = predicted_set(model, cal["lr"], cal["hr"], cal["arc"], fw, boot)
        for k, v in chunk.items():
            parts.setdefault(k, []).append(v)
        print(f"  {path.stem}: {min(n, start + 100)} pairs", flush=True)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, model=np.array(model_hash), **out)
    return out


def set_normalization(model, lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi - lo)`` of the model's normalisation of LR images ``(N, h, w)``, with the noise
    sigma estimated as ``upscale`` does when it is not given (broadcastable to the images)."""
    from lenssr.data.normalize import noise_sigma_mad

    lr = np.asarray(lr, np.float64)
    noise = np.array([noise_sigma_mad(np.nan_to_num(im)) for im in lr])
    lo, hi = model.normalization.stats(lr, noise_sigma=noise)
    return lo, hi - lo


def set_tensors(model, d: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    """``(features, residual hr - sr, log calibrated sigma, arc mask)`` of a set, normalised
    units, exactly as :meth:`Upscaler.calibrated_sigma` sees them."""
    from lenssr.inference.uncertainty import calibrated_sigma

    lr = d["lr"].astype(np.float64)
    lo, span = set_normalization(model, lr)
    cal = calibrated_sigma(d["sr"], d["sig"], d["u"], model.uncertainty)
    boot = (d["b2"] / span**2, d["bn2"] / span**2) if "b2" in d else None
    x = features((d["sr"] - lo) / span, (lr - lo) / span, cal / span, d["u"], d["fwhm"], boot)
    ls = np.log(np.maximum(cal / span, 1e-8)).astype(np.float32)
    r = ((d["hr"] - d["sr"]) / span).astype(np.float32)
    arc = d["arc"].astype(np.float32)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (x, r, ls, arc))


def nll(lsig: torch.Tensor, r: torch.Tensor, arc: torch.Tensor, arc_weight: float) -> torch.Tensor:
    """Gaussian negative log-likelihood (up to constants) over all pixels plus ``arc_weight``
    times that over the arc pixels."""
    per = 2.0 * lsig + (r * torch.exp(-lsig)) ** 2
    on_arc = (per * arc).sum() / arc.sum().clamp(min=1.0)
    return per.mean() + arc_weight * on_arc


def coverage_penalty(lsig: torch.Tensor, r: torch.Tensor, arc: torch.Tensor) -> torch.Tensor:
    """Squared distance of the 1- and 2-sigma coverages from the Gaussian's, in units of the
    targets' tolerances (6 and 3 points), with soft indicators of ``|z| <= k`` (width 0.1 k):
    over all pixels image by image (thousands of pixels each), plus over the arc pixels of the
    whole batch (a crop holds too few of them for a per-image coverage)."""
    from lenssr.inference.uncertainty import GAUSS_1SIGMA, GAUSS_2SIGMA

    z = (r * torch.exp(-lsig)).abs()
    inside = [torch.sigmoid((k - z) / (0.1 * k)) for k in (1.0, 2.0)]

    def distance(c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
        return ((c1 - GAUSS_1SIGMA) / 0.06) ** 2 + ((c2 - GAUSS_2SIGMA) / 0.03) ** 2

    per_image = distance(*(t.mean((-2, -1)) for t in inside)).mean()
    n_arc = arc.sum()
    if n_arc < 16:
        return per_image
    return per_image + distance(*((t * arc).sum() / n_arc for t in inside))


def objective(lsig: torch.Tensor, r: torch.Tensor, arc: torch.Tensor, cfg: dict[str, Any]):
    """The training loss: :func:`nll`, plus ``coverage_weight`` x :func:`coverage_penalty`."""
    loss = nll(lsig, r, arc, float(cfg["arc_weight"]))
    weight = float(cfg.get("coverage_weight", 0.0))
    return loss + weight * coverage_penalty(lsig, r, arc) if weight else loss


def train_member(
    net: nn.Module, data: tuple, val: tuple, cfg: dict[str, Any], seed: int, loss=None
) -> list:
    """Train one member on ``data`` (:func:`set_tensors`), logging the validation loss.
    Random ``crop`` x ``crop`` crops (the whole image when ``crop`` is at least its size) with
    the 8 rotations/flips; ``loss(lsig, r, arc)``: :func:`objective` by default."""
    if loss is None:

        def loss(lsig, r, arc):
            return objective(lsig, r, arc, cfg)

    x, r, ls, arc = data
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    steps, crop, batch = int(cfg["steps"]), int(cfg["crop"]), int(cfg["batch_size"])
    opt = torch.optim.Adam(net.parameters(), float(cfg["lr"]))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, float(cfg["lr"]), total_steps=steps,
                                                pct_start=0.05)  # fmt: skip
    size = x.shape[-1]
    crop = min(crop, size)
    log = []
    for step in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(x), batch))
        i0, j0 = (int(v) for v in rng.integers(0, size - crop, 2)) if crop < size else (0, 0)
        parts = [t[idx][..., i0 : i0 + crop, j0 : j0 + crop] for t in (x, r, ls, arc)]
        k = int(rng.integers(4))
        parts = [torch.rot90(t, k, (-2, -1)) for t in parts]
        if rng.random() < 0.5:
            parts = [t.flip(-1) for t in parts]
        value = loss(parts[2] + net(parts[0]), parts[1], parts[3])
        opt.zero_grad()
        value.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            with torch.no_grad():
                v = float(loss(val[2] + net(val[0]), val[1], val[3]))
            log.append([step, round(value.item(), 5), round(v, 5)])
            print(f"  member {seed} step {step}: train {value.item():.4f}, validation {v:.4f}",
                  flush=True)  # fmt: skip
    return log


def load_recipe(config: str | Path | None) -> dict[str, Any]:
    """:data:`DEFAULTS` updated by a YAML recipe (unknown keys are an error)."""
    from lenssr.config import read_yaml_file

    cfg = copy.deepcopy(DEFAULTS)
    if config is not None:
        given = read_yaml_file(config) or {}
        unknown = sorted(set(given) - set(DEFAULTS))
        if unknown:
            raise LenssrError(f"{config}: unknown variance-net keys: {', '.join(unknown)}")
        cfg.update(given)
    if int(cfg["members"]) < 1 or int(cfg["steps"]) < 1:
        raise LenssrError(f"{config}: members and steps must be >= 1")
    return cfg


def bootstrap_recipe(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The recipe's ``bootstrap`` section completed with the HR PSF of its first set's preset
    (``{draws, seed, hr_psf_fwhm_pix}``), or None."""
    boot = cfg.get("bootstrap")
    if not boot:
        return None
    out = {"draws": int(boot.get("draws", 8)), "seed": int(boot.get("seed", 0))}
    from lenssr.simulation.presets import load_preset

    out["hr_psf_fwhm_pix"] = load_preset(str(cfg["sets"][0]["preset"])).hr.psf_fwhm_pix
    return out


def train_variance_net(
    checkpoint: str | Path, config: str | Path | None = None, write: bool = True
) -> dict[str, Any]:
    """Train the variance network of ``checkpoint`` (a sigma-head model with its three-term
    calibration) by the recipe ``config`` and, with ``write``, save it beside the checkpoint
    and name it in the descriptor. Returns the descriptor section."""
    from lenssr.inference.api import load_model
    from lenssr.inference.uncertainty import coverage
    from lenssr.models.checkpoint import checkpoint_paths, read_descriptor

    cfg = load_recipe(config)
    t0 = time.time()
    torch.set_num_threads(int(cfg["threads"]))
    weights, desc_path = checkpoint_paths(checkpoint)
    model = load_model(weights, device="cpu", backend="torch")
    if not model.has_sigma or not model.uncertainty.get("coefficients"):
        raise LenssrError(f"{weights}: needs a sigma head calibrated by `lenssr calibrate` first")
    model.uncertainty.pop("variance_net", None)  # train on the three-term sigma alone
    model_hash = _file_hash(weights)
    cache = Path(cfg["cache"])
    boot = bootstrap_recipe(cfg)
    sets = [
        set_tensors(model, rendered_set(model, spec, cache, model_hash, boot))
        for spec in cfg["sets"]
    ]
    n_val = int(cfg["n_val"])
    val = tuple(t[-n_val:] for t in sets[0])
    train = tuple(torch.cat([sets[0][i][:-n_val], *(s[i] for s in sets[1:])]) for i in range(4))
    names = list(FEATURES) + (list(BOOT_FEATURES) if boot else [])
    ens = VarianceEnsemble(int(cfg["members"]), int(cfg["channels"]), tuple(cfg["dilations"]),
                           seed=0, in_ch=len(names))  # fmt: skip
    logs = [train_member(m, train, val, cfg, seed=k) for k, m in enumerate(ens.members)]
    ens.eval()
    xv, rv, lsv, av = val
    lsig = lsv.numpy() + log_factor(ens, xv.numpy())
    zero, arc = np.zeros(rv.shape, np.float32), av.numpy().astype(bool)
    validation = {}
    for label, s in (("variance_net", np.exp(lsig)), ("three_term", np.exp(lsv.numpy()))):
        validation[label] = {"all": coverage(zero, s, rv.numpy()),
                             "arc": coverage(zero, s, rv.numpy(), arc)}  # fmt: skip
    section = {
        "file": sigma_path(weights).name,
        "features": names,
        "members": int(cfg["members"]),
        "channels": int(cfg["channels"]),
        "dilations": [int(v) for v in cfg["dilations"]],
        "bootstrap": boot,
        "recipe": str(config) if config is not None else None,
        "config": cfg,
        "weights_sha256_16": model_hash,
        "training_log": logs,
        "validation": validation,
        "wall_s": round(time.time() - t0, 1),
    }
    if write:
        save_variance_net(sigma_path(weights), ens, {k: section[k] for k in
                          ("features", "members", "channels", "dilations")})  # fmt: skip
        sigma_path(weights).chmod(0o644)
        descriptor = read_descriptor(weights)
        descriptor.setdefault("uncertainty", {})["variance_net"] = section
        desc_path.write_text(json.dumps(descriptor, indent=2) + "\n")
    return section
