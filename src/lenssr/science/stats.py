"""ROC AUC (one-vs-rest, macro), paired bootstrap intervals and the LR->HR gap fraction.

Conventions:

* **AUC** of a score for a binary truth is the Mann-Whitney statistic: the probability that a
  random positive scores higher than a random negative, ties counting one half (identical to
  ``sklearn.metrics.roc_auc_score``). One-vs-rest AUC of class ``c`` uses ``proba[:, c]`` as the
  score and ``labels == c`` as the truth; the **macro AUC** is the unweighted mean over classes.
* **Bootstrap**: ``n_boot`` resamples of the test set drawn with replacement by
  ``np.random.default_rng(seed)``; the 95% interval is the 2.5 and 97.5 percentiles of the
  resampled statistic. The same resampled indices are used for every input type (the test set is
  shared), so intervals of differences and of the gap fraction are *paired*.
* **Gap fraction** of a model: ``(AUC_model - AUC_bicubic) / (AUC_HR - AUC_bicubic)``; 0 means
  no better than bicubic upsampling of the LR image, 1 means as good as the real HR image.
* **Operating point** (:func:`threshold_at_fpr`): the threshold ``t`` on a score at which a
  reference input's false-positive rate is at most ``fpr``: the smallest score value of the
  reference negatives with at most ``floor(fpr * n)`` of them strictly above it. A negative is
  a false positive when its score is strictly above ``t``. :func:`operating_point_fprs`
  calibrates ``t`` on the reference input and applies it to every input; in each bootstrap
  resample ``t`` is calibrated again on the resampled reference negatives, so the intervals
  include the uncertainty of the operating point itself.
* **Interval verdict** (:func:`interval_verdict`) of a difference that should not be positive:
  ``pass`` when its whole 95% interval lies at or below 0, ``fail`` when it lies above 0,
  ``straddles`` when it contains 0 with positive values.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(truth: np.ndarray, score: np.ndarray) -> float | np.ndarray:
    """ROC AUC of ``score`` for binary ``truth`` (Mann-Whitney, ties = 1/2).

    Args:
        truth: ``(n,)`` or ``(B, n)`` booleans (or 0/1).
        score: same shape, any real numbers (higher = more likely positive).

    Returns:
        A float for 1-D input, ``(B,)`` for 2-D input; ``nan`` where one class is absent.
    """
    truth = np.asarray(truth).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    if truth.shape != score.shape:
        raise ValueError(f"truth and score shapes differ: {truth.shape} vs {score.shape}")
    single = truth.ndim == 1
    t, s = np.atleast_2d(truth), np.atleast_2d(score)
    ranks = rankdata(s, axis=1)
    n_pos = t.sum(axis=1).astype(np.float64)
    n_neg = t.shape[1] - n_pos
    u = (ranks * t).sum(axis=1) - n_pos * (n_pos + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
    return float(out[0]) if single else out


def ovr_auc(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC per class: ``(n,)`` int labels, ``(n, C)`` scores -> ``(C,)``."""
    labels = np.asarray(labels)
    proba = np.asarray(proba, dtype=np.float64)
    return np.array([auc(labels == c, proba[:, c]) for c in range(proba.shape[1])])


def bootstrap_indices(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` resampling indices (with replacement) of a test set of ``n`` items."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def ovr_auc_bootstrap(labels: np.ndarray, proba: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC of every bootstrap resample: ``(B, n)`` indices -> ``(B, C)``."""
    labels = np.asarray(labels)
    proba = np.asarray(proba, dtype=np.float64)
    lab = labels[indices]
    return np.stack([auc(lab == c, proba[:, c][indices]) for c in range(proba.shape[1])], axis=1)


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples`` (nan-aware), e.g. ``(2.5%, 97.5%)``."""
    a = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(np.asarray(samples, dtype=np.float64), [a, 1.0 - a])
    return float(lo), float(hi)


def gap_fraction(auc_model, auc_bicubic, auc_hr):
    """``(AUC_model - AUC_bicubic) / (AUC_HR - AUC_bicubic)``; floats or arrays (elementwise).

    ``nan`` where HR is not better than bicubic (no gap to close).
    """
    m, b, h = (np.asarray(v, dtype=np.float64) for v in (auc_model, auc_bicubic, auc_hr))
    gap = h - b
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(gap > 0, (m - b) / np.where(gap > 0, gap, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def roc_curve(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates ``(fpr, tpr)`` for all thresholds (ties grouped).

    Both start at 0 and end at 1; the trapezoidal area under them equals :func:`auc`.
    """
    truth = np.asarray(truth).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], truth[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each tie group
    tp = np.cumsum(t)[last]
    fp = (last + 1) - tp
    n_pos, n_neg = max(int(t.sum()), 1), max(int((~t).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def threshold_at_fpr(negative_scores: np.ndarray, fpr: float = 0.1) -> float:
    """Threshold at which at most ``floor(fpr * n)`` of ``n`` negatives score strictly above.

    The smallest such value among the scores (module docstring); ``nan`` without negatives.
    """
    s = np.sort(np.asarray(negative_scores, dtype=np.float64).ravel())
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    if len(s) == 0:
        return float("nan")
    m = min(int(np.floor(fpr * len(s) + 1e-9)), len(s) - 1)
    return float(s[len(s) - m - 1])


def false_positive_rate(negative_scores: np.ndarray, threshold: float) -> float:
    """Fraction of negatives scoring strictly above ``threshold`` (``nan`` without negatives)."""
    s = np.asarray(negative_scores, dtype=np.float64)
    return float(np.mean(s > threshold)) if s.size else float("nan")


def operating_point_fprs(
    negative: np.ndarray,
    scores: dict[str, np.ndarray],
    reference: str,
    indices: np.ndarray,
    fpr: float = 0.1,
) -> dict[str, dict]:
    """False-positive rates of every input at the reference input's operating point.

    Args:
        negative: ``(n,)`` booleans, True for the test items without the signal.
        scores: input name -> ``(n,)`` scores of the same test items (higher = signal).
        reference: the input whose negatives calibrate the threshold (e.g. ``hr``).
        indices: ``(B, n)`` bootstrap indices (:func:`bootstrap_indices`), shared by all inputs.
        fpr: the reference false-positive rate that sets the threshold.

    Returns:
        ``{"threshold": float, "threshold_boot": (B,), "inputs": {name: {"fpr": float,
        "boot": (B,), "diff": float, "diff_boot": (B,)}}}``; ``diff`` is the input's FPR minus
        the reference's, paired (same resampled items, same recalibrated threshold).
    """
    negative = np.asarray(negative, dtype=bool)
    s = {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}
    t = threshold_at_fpr(s[reference][negative], fpr)
    point = {k: false_positive_rate(v[negative], t) for k, v in s.items()}
    t_boot = np.empty(len(indices))
    boot = {k: np.empty(len(indices)) for k in s}
    for b, idx in enumerate(np.asarray(indices)):
        neg = idx[negative[idx]]
        t_boot[b] = threshold_at_fpr(s[reference][neg], fpr)
        for k, v in s.items():
            boot[k][b] = false_positive_rate(v[neg], t_boot[b])
    ref_p, ref_b = point[reference], boot[reference]
    inputs = {
        k: {
            "fpr": point[k],
            "boot": boot[k],
            "diff": point[k] - ref_p,
            "diff_boot": boot[k] - ref_b,
        }
        for k in s
    }
    return {"threshold": t, "threshold_boot": t_boot, "inputs": inputs}


def interval_verdict(lo: float, hi: float) -> str:
    """``pass`` (interval at or below 0), ``fail`` (above 0), ``straddles`` or ``n/a`` (nan)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "n/a"
    if hi <= 0.0:
        return "pass"
    if lo > 0.0:
        return "fail"
    return "straddles"


def median_bootstrap(values: np.ndarray, indices: np.ndarray) -> tuple[float, np.ndarray]:
    """Median of the finite ``values`` (``(n,)``, nan = left out) and of every resample ``(B,)``.

    A resample without a finite value gives ``nan``.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    point = float(np.median(v[finite])) if finite.any() else float("nan")
    res = v[np.asarray(indices)]
    ok = np.isfinite(res).any(axis=1)
    boot = np.full(len(res), np.nan)
    if ok.any():
        boot[ok] = np.nanmedian(res[ok], axis=1)
    return point, boot
