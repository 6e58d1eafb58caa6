"""Figures and the Markdown/JSON report of ``validate-science``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lenssr.evaluation.evaluator import clean_json
from lenssr.science.stats import roc_curve

__all__ = [
    "TARGET_GAP_FRACTION",
    "clean_json",
    "guard_verdict",
    "plot_examples",
    "plot_roc",
    "render_markdown",
    "verdict",
    "write_report",
]

#: A model must close at least this fraction of the LR->HR macro-AUC gap (project target).
TARGET_GAP_FRACTION = 0.5


def plot_roc(
    fixed: Mapping[str, tuple[np.ndarray, np.ndarray]],
    realistic: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    classes: Sequence[str],
) -> Path:
    """One-vs-rest ROC curves: one column per class; row 1 the HR-trained classifier on every
    input type, row 2 classifiers trained and tested on each input type.

    Args:
        fixed, realistic: input type -> ``(labels (n,), proba (n, C))``.
        path: output PNG.
        classes: class names (index = label).
    """
    from matplotlib.figure import Figure

    from lenssr.science.stats import auc

    path = Path(path)
    rows = [("HR-trained classifier", fixed), ("trained on each input type", realistic)]
    fig = Figure(figsize=(4.0 * len(classes), 7.6), dpi=110)
    axes = fig.subplots(2, len(classes), squeeze=False)
    for r, (title, curves) in enumerate(rows):
        for c, cname in enumerate(classes):
            ax = axes[r][c]
            for kind, (labels, proba) in curves.items():
                truth = np.asarray(labels) == c
                fpr, tpr = roc_curve(truth, proba[:, c])
                ax.plot(fpr, tpr, lw=1.3, label=f"{kind} ({auc(truth, proba[:, c]):.3f})")
            ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
            ax.set_title(f"{cname} vs rest: {title}", fontsize=9)
            ax.set_xlabel("false-positive rate")
            ax.set_ylabel("true-positive rate")
            ax.legend(fontsize=7, loc="lower right")
            ax.set_aspect("equal")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_examples(
    lr: np.ndarray,
    images: Mapping[str, np.ndarray],
    path: str | Path,
    classes: Sequence[str],
    models: Sequence[str],
) -> Path:
    """One row per class: LR, bicubic, each SR model, HR and the residual (last SR - HR).

    All panels of a row share one stretch: ``asinh`` of the surface brightness scaled by the HR
    image's 99.5th percentile, same colour limits; the residual uses the same scale, centred on
    zero.

    Args:
        lr: ``(C, h, w)`` LR examples, one per class.
        images: input type -> ``(C, H, W)`` (keys ``hr``, ``bicubic`` and the models).
        path: output PNG.
        classes: class names, one per row.
        models: SR model names (columns after bicubic).
    """
    from matplotlib.figure import Figure

    path = Path(path)
    cols = ["LR", "bicubic", *models, "HR", "residual"]
    fig = Figure(figsize=(2.2 * len(cols), 2.3 * len(classes)), dpi=100)
    axes = fig.subplots(len(classes), len(cols), squeeze=False)
    last = models[-1] if models else "bicubic"
    for r, cname in enumerate(classes):
        hr = images["hr"][r]
        s = float(np.percentile(np.abs(hr), 99.5)) or 1.0

        def stretch(x: np.ndarray, s: float = s) -> np.ndarray:
            return np.arcsinh(np.asarray(x, dtype=np.float64) / (0.02 * s))

        vmax = float(stretch(hr).max())
        vmin = float(stretch(np.percentile(hr, 0.5)))
        panels = [lr[r], images["bicubic"][r], *[images[m][r] for m in models], hr]
        for c, img in enumerate(panels):
            axes[r][c].imshow(stretch(img), origin="lower", cmap="magma", vmin=vmin, vmax=vmax)
        res = stretch(images[last][r] - hr)
        lim = max(vmax - vmin, 1e-12) / 2
        axes[r][-1].imshow(res, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
        for c, name in enumerate(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name if name != "residual" else f"{last} - HR", fontsize=9)
            if c == 0:
                ax.set_ylabel(cname)
    fig.suptitle("asinh stretch (same limits per row)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _fmt(v: float | None, nd: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{nd}f}"


def _ci(ci: Sequence[float | None]) -> str:
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def verdict(report: Mapping[str, Any]) -> list[str]:
    """Plain sentences on whether each model reaches the gap-fraction target (honest either way)."""
    lines = []
    gaps = report["gap_fraction"]
    h = report["fixed_classifier"]["hr"]["macro_auc"]
    b = report["fixed_classifier"]["bicubic"]["macro_auc"]
    if not h > b:
        lines.append(
            f"The HR images are not better than bicubic-upsampled LR images for this classifier "
            f"(macro AUC {_fmt(h)} vs {_fmt(b)}): there is no LR->HR gap to close, so the gap "
            "fractions are undefined. Train longer or on more data before drawing conclusions."
        )
    for m in report["config"]["models"]:
        for proto, label in (("fixed_classifier", "HR-trained"), ("realistic", "own-trained")):
            g = gaps[proto][m]["gap_fraction"]
            lo = gaps[proto][m]["ci95"][0]
            if g is None or not math.isfinite(g):
                continue
            met = g >= TARGET_GAP_FRACTION
            sure = lo is not None and math.isfinite(lo) and lo >= TARGET_GAP_FRACTION
            state = (
                "reaches the target" + (" (also at the lower 95% bound)" if sure else "")
                if met
                else "does NOT reach the target"
            )
            lines.append(
                f"**{m}** ({label} classifier) closes {_fmt(100 * g, 0)}% of the LR->HR "
                f"macro-AUC gap (95% CI {_fmt(100 * lo, 0) if lo is not None else 'n/a'}%..."
                f"{_fmt(100 * (gaps[proto][m]['ci95'][1] or float('nan')), 0)}%): it {state} "
                f"of {int(100 * TARGET_GAP_FRACTION)}%."
            )
    return lines


def _pct(v: float | None, nd: int = 1, sign: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{100 * v:+.{nd}f}" if sign else f"{100 * v:.{nd}f}"


def _sig(v: float | None) -> str:
    """Three significant digits (ratios that may span decades)."""
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"


def guard_verdict(report: Mapping[str, Any]) -> list[str]:
    """Plain sentences on the false-positive guard of each SR model (from ``false_positives``)."""
    fp = report.get("false_positives")
    if not fp:
        return []
    words = {
        "pass": "passes: its interval lies at or below 0, it adds no false positives",
        "straddles": "is undecided: the interval contains 0, more test images would tell",
        "fail": "FAILS: the interval lies above 0, it shows substructure where there is none",
        "n/a": "cannot be judged (no interval)",
    }
    lines = []
    for m in report["config"]["models"]:
        r = fp["per_input"].get(m)
        if r is None:
            continue
        lo, hi = r["diff_ci95"]
        lines.append(
            f"**{m}** false positives on `no_sub` at the HR {_pct(fp['target_fpr'], 0)}% "
            f"operating point: {_pct(r['fpr'])}% (HR {_pct(fp['per_input']['hr']['fpr'])}%), "
            f"difference {_pct(r['diff_vs_hr'], sign=True)} points "
            f"(95% CI {_pct(lo, sign=True)}...{_pct(hi, sign=True)}): the guard "
            f"{words.get(r['verdict'], r['verdict'])}."
        )
    return lines


def _guard_markdown(report: Mapping[str, Any]) -> list[str]:
    """The two hallucination-guard tables (absent from reports that predate them)."""
    lines: list[str] = []
    fp = report.get("false_positives")
    if fp:
        lines += [
            "### Hallucination guard: false positives on systems without substructure",
            "",
            f"Score: {fp['score']}. Operating point: the threshold "
            f"{_fmt(fp['threshold'])} (95% CI {_ci(fp['threshold_ci95'])}) above which at most "
            f"{_pct(fp['target_fpr'], 0)}% of the {fp['n_no_sub']} HR `no_sub` test images "
            "score; the same threshold on every input type. Intervals: paired bootstrap of the "
            "test set, the threshold recalibrated on HR in each resample. Verdict on "
            "FPR - FPR_HR: pass = interval at or below 0, straddles = contains 0, "
            "fail = above 0 (target: no more false positives than HR).",
            "",
            "| input | FPR on no_sub [95% CI] | FPR - FPR_HR [95% CI] | verdict |",
            "|---|---|---|---|",
        ]
        for kind in report["input_types"]:
            r = fp["per_input"].get(kind)
            if r is None:
                continue
            diff = (
                "0 (reference)"
                if kind == "hr"
                else f"{_fmt(r['diff_vs_hr'])} {_ci(r['diff_ci95'])}"
            )
            lines.append(
                f"| {kind} | {_fmt(r['fpr'])} {_ci(r['ci95'])} | {diff} | {r['verdict']} |"
            )
        lines.append("")
    bg = report.get("background_power")
    if bg:
        mask = bg["mask"]
        bands = bg["bands"]
        lines += [
            "### Hallucination guard: power of the sky background",
            "",
            "Background: the pixels of each HR test image farther than "
            f"{mask['grow_px']} px from any pixel where the HR image, smoothed by a Gaussian of "
            f"{_fmt(mask['smooth_px'], 1)} px, reaches {_fmt(mask['k_sigma'], 1)} x the HR sky "
            f"noise ({_fmt(mask['sigma_hr'], 3)}); the same mask for every input type, "
            f"cosine-tapered over {_fmt(mask['taper_px'], 1)} px. Spectrum of the image minus "
            "its background median, under that taper; ratio P_input / P_HR of the power "
            "integrated over each band (cycles per HR pixel: "
            + ", ".join(f"{b} {_fmt(lo, 3)}-{_fmt(hi, 3)}" for b, (lo, hi) in bands.items())
            + "; the high band lies above the LR Nyquist frequency), per image, then the median "
            f"over the {bg['n_images']} of {bg['n_test']} test images whose tapered background "
            f"covers at least {_pct(mask['min_fraction'], 0)}% of the image, with a bootstrap "
            "95% interval. 1 = the HR background's texture; > 1 = extra power (invented "
            "structure, or LR noise carried over: see bicubic); < 1 = smoothed away.",
            "",
            "| input | " + " | ".join(f"{b} [95% CI]" for b in bands) + " |",
            "|" + "---|" * (len(bands) + 1),
        ]
        for kind in report["input_types"]:
            r = bg["per_input"].get(kind)
            if r is None:
                continue
            cells = [
                f"{_sig(r[b]['ratio'])} [{_sig(r[b]['ci95'][0])}, {_sig(r[b]['ci95'][1])}]"
                for b in bands
            ]
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """The README-ready Markdown report: tables plus what they mean."""
    cfg = report["config"]
    classes = report["classes"]
    lines = [
        "## Science validation: does super-resolution help detect substructure?",
        "",
        f"Preset `{cfg['preset']}`"
        + (f" with `{', '.join(cfg['preset_overrides'])}`" if cfg.get("preset_overrides") else "")
        + f", {cfg['n_train_per_class']} training and "
        f"{cfg['n_test_per_class']} held-out test systems per class ({', '.join(classes)}), "
        f"seed {cfg['seed']}. Classifier: small ResNet, {report['recipe']['epochs']} epochs, "
        "AdamW, the 8 dihedral augmentations; identical recipe for every input type. "
        f"AUC: one-vs-rest ROC AUC; 95% intervals from {cfg['n_boot']} bootstrap resamples of "
        "the test set (paired across input types).",
        "",
    ]
    for proto, title in (
        ("fixed_classifier", "Classifier trained on HR, tested on each input type"),
        ("realistic", "Classifier trained and tested on each input type"),
    ):
        lines += [f"### {title}", ""]
        head = "| input | " + " | ".join(f"AUC {c}" for c in classes) + " | macro AUC [95% CI] |"
        head += " gap closed [95% CI] |"
        lines += [head, "|" + "---|" * (len(classes) + 3)]
        for kind in report["input_types"]:
            r = report[proto][kind]
            cells = [_fmt(r["per_class"][c]["auc"]) for c in classes]
            gap = report["gap_fraction"][proto].get(kind)
            if kind == "hr":
                gtxt = "1 (reference)"
            elif kind == "bicubic":
                gtxt = "0 (reference)"
            else:
                gtxt = f"{_fmt(gap['gap_fraction'], 2)} {_ci(gap['ci95'])}"
            lines.append(
                f"| {kind} | "
                + " | ".join(cells)
                + f" | {_fmt(r['macro_auc'])} {_ci(r['macro_ci95'])} | {gtxt} |"
            )
        lines.append("")
    lines += [
        "### Image fidelity on the test set",
        "",
        "| input | Einstein radius median abs. error [arcsec] | flux error | flux residual "
        "| hallucination number |",
        "|---|---|---|---|---|",
    ]
    for kind in report["input_types"]:
        f = report["fidelity"][kind]
        lines.append(
            f"| {kind} | {_fmt(f['einstein_mae_arcsec'], 4)} | {_fmt(f['flux_error'], 4)} | "
            f"{_fmt(f['flux_residual'], 4)} | {_fmt(f['hallucination_number'], 3)} |"
        )
    lines += [
        "",
        f"Einstein radius estimator: {report['einstein_estimator']}. The HR row is the "
        "estimator's own error floor. Flux error / residual: the image re-observed with the "
        "preset's noiseless instrument model against the LR input (the HR row is the floor set "
        "by the LR noise). Hallucination number: mean |log10| of the SR/HR power-spectrum ratio "
        "(0 = HR texture at every scale).",
        "",
    ]
    lines += _guard_markdown(report)
    lines += [
        "### What it means",
        "",
        "The gap fraction is (AUC_model - AUC_bicubic) / (AUC_HR - AUC_bicubic) on the macro "
        "AUC: 0 = no better than bicubic upsampling of the LR image, 1 = as good as a real HR "
        "image. The project target is that the hybrid model closes at least half of the gap.",
        "",
    ]
    lines += [f"- {s}" for s in verdict(report) + guard_verdict(report)] or [
        "- No SR model was evaluated."
    ]
    lines.append("")
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], out: str | Path) -> dict[str, str]:
    """Write ``report.md`` (and a first ``report.json``) into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean = clean_json(report)
    md = out / "report.md"
    md.write_text(render_markdown(clean))
    js = out / "report.json"
    js.write_text(json.dumps(clean, indent=2, allow_nan=False))
    return {"report_md": str(md), "report_json": str(js)}
