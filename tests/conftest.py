"""Shared test fixtures: tiny model configurations and small synthetic LR/HR pair files.

- `tiny_configs`: name -> constructor kwargs of every built-in architecture, small enough for a
  shared 2-core CPU; `tiny_hybrid`: the hybrid's as a config `model` section (with "name");
  `model_section(name)`: the same for any architecture, usable from module-scoped fixtures.
- `tiny_model(name, **overrides)`: such a model, built after `torch.manual_seed(0)`.
- `tiny_cond`: kwargs of a tiny instrument-conditioned hybrid with a sigma head (x2, one
  pyramid level, two FiLM-modulated residual blocks).
- a test that takes an argument `tiny_arch` runs once per built-in architecture.
- `make_pairs(path, n, h, scale, seed)`: writes an HDF5 pair file of smooth blobs;
  `blob_pairs`: one such file (24 pairs, LR 12x12 -> HR 24x24) shared by the whole session.
- `train_config(pairs, out, steps, **sections)`: a tiny supervised training config.

The whole session caches ONNX exports in a temporary folder (``LENSSR_CACHE_DIR``), never in
the user's cache.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lenssr.models import create_model

# Constructor kwargs (besides `scale`) of each built-in architecture, tiny on purpose.
TINY_CONFIGS: dict[str, dict] = {
    "bicubic": {},
    "srcnn": {"num_feat": 8, "num_feat2": 4},
    "edsr": {"num_feat": 8, "num_block": 2},
    "lapsrn": {"num_feat": 8, "num_conv": 2},
    "esrgan": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4},
    "hybrid": {
        "num_feat": 8,
        "num_res_blocks": 1,
        "embed_dim": 16,
        "depth": 1,
        "num_heads": 2,
        "pos_grid": 4,
    },
}


# A tiny hybrid conditioned on the instrument (PSF FWHM, log10 noise) with a sigma head.
TINY_COND: dict = {
    "num_feat": 8,
    "num_res_blocks": 2,
    "embed_dim": 16,
    "depth": 1,
    "num_heads": 2,
    "pos_grid": 4,
    "num_levels": 1,
    "cond_dim": 2,
    "sigma_head": True,
}


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``LENSSR_CACHE_DIR`` (``lenssr.inference.backend.CACHE_ENV``) for the whole session:
    exports go to a temporary folder."""
    folder = tmp_path_factory.mktemp("onnx-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("LENSSR_CACHE_DIR", str(folder))
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def tiny_cond() -> dict:
    """Constructor kwargs of the tiny conditioned sigma-head hybrid (read-only)."""
    return copy.deepcopy(TINY_COND)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise every test that takes `tiny_arch` over the built-in architectures."""
    if "tiny_arch" in metafunc.fixturenames:
        metafunc.parametrize("tiny_arch", sorted(TINY_CONFIGS))


@pytest.fixture
def tiny_configs() -> dict[str, dict]:
    """name -> tiny constructor kwargs of every built-in architecture (a fresh copy)."""
    return copy.deepcopy(TINY_CONFIGS)


def tiny_model_section(name: str) -> dict:
    """A tiny architecture as a training config's `model` section: {"name": name, ...}."""
    return {"name": name, **copy.deepcopy(TINY_CONFIGS[name])}


@pytest.fixture(scope="session")
def model_section() -> Callable[[str], dict]:
    """Factory `model_section(name)` -> a fresh {"name": name, **tiny kwargs} (any scope)."""
    return tiny_model_section


@pytest.fixture
def tiny_hybrid() -> dict:
    """The tiny hybrid as a training config's `model` section: {"name": "hybrid", ...}."""
    return tiny_model_section("hybrid")


@pytest.fixture
def tiny_model() -> Callable[..., torch.nn.Module]:
    """Factory: `tiny_model(name, **overrides)` -> a tiny model seeded with torch seed 0."""

    def build(name: str, **overrides: object) -> torch.nn.Module:
        torch.manual_seed(0)
        return create_model(name, **{**TINY_CONFIGS[name], **overrides})

    return build


def write_blob_pairs(
    path: Path, n: int = 24, h: int = 12, scale: int = 2, seed: int = 0, blobs: int = 3
) -> Path:
    """Write an HDF5 pair file of smooth Gaussian blobs in the data contract's schema.

    HR: (n, s*h, s*h) float32, `blobs` Gaussians of amplitude 1..5 and width 0.05..0.2 of the
    image on a 0.1 floor; LR: (n, h, h) the s x s block mean of HR plus N(0, 0.01) noise (a
    flux-conserving instrument in surface-brightness units); "label" (n,) all zeros.
    """
    rng = np.random.default_rng(seed)
    size = h * scale
    yy, xx = np.mgrid[0:size, 0:size] / size
    hr = np.empty((n, size, size), np.float32)
    for i in range(n):
        img = np.zeros((size, size))
        for _ in range(blobs):
            cy, cx, w = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
            img += rng.uniform(1, 5) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * w * w))
        hr[i] = img + 0.1
    lr = hr.reshape(n, h, scale, h, scale).mean(axis=(2, 4))
    lr += rng.normal(0, 0.01, lr.shape).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["lr"] = lr.astype(np.float32)
        f["hr"] = hr
        f["label"] = np.zeros(n, np.int8)
        f.attrs["scale"] = scale
    return path


@pytest.fixture(scope="session")
def make_pairs() -> Callable[..., Path]:
    """The pair-file writer `write_blob_pairs(path, n=24, h=12, scale=2, seed=0, blobs=3)`."""
    return write_blob_pairs


@pytest.fixture(scope="session")
def blob_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 blob pairs, LR 12x12 -> HR 24x24 (x2), written once per session."""
    return write_blob_pairs(tmp_path_factory.mktemp("blob-pairs") / "pairs.h5")


def tiny_train_config(pairs: Path, out: Path, steps: int = 20, **sections: object) -> dict:
    """A supervised training config of a tiny EDSR on `pairs` that runs `steps` steps.

    Patches 8x8 LR, batch 4, validation every 10 steps on 4 images, one CPU thread, checkpoints
    in `out` (the last one kept). A keyword section replaces `model` and is merged into any
    other section of the same name (a non-dict value replaces it).
    """
    cfg: dict = {
        "model": {"name": "edsr", "num_feat": 8, "num_block": 1},
        "data": {"train": str(pairs), "val_fraction": 0.25, "patch_size": 8, "batch_size": 4},
        "optim": {"lr": 3e-3},
        "schedule": {"warmup_steps": 2},
        "ema": {"decay": 0.9},
        "val": {"every_steps": 10, "max_images": 4},
        "log": {"tensorboard": False},
        "checkpoint": {"dir": str(out), "keep_last": 1},
        "threads": 1,
        "budget": {"steps": steps},
    }
    for key, value in sections.items():
        merge = isinstance(value, dict) and key != "model"
        cfg[key] = {**cfg.get(key, {}), **value} if merge else value
    return cfg


@pytest.fixture(scope="session")
def train_config() -> Callable[..., dict]:
    """The config builder `tiny_train_config(pairs, out, steps=20, **sections)`."""
    return tiny_train_config


@pytest.fixture
def grad_norms(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The total gradient norm every AdamW step of the test sees, in call order."""
    norms: list[float] = []
    original = torch.optim.AdamW.step

    def spy(self: torch.optim.AdamW, *args: object, **kwargs: object) -> object:
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    return norms


def _default_sigint() -> None:
    """In a child before exec: SIGINT back to its default, so Python installs its Ctrl-C
    handler even when the test run itself ignores SIGINT (a background or nohup'd CI job)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def interruptible() -> dict:
    """``subprocess.Popen`` keywords for a child that a test interrupts as Ctrl-C would: its own
    process group (``os.killpg``) and the default SIGINT disposition."""
    return {"start_new_session": True, "preexec_fn": _default_sigint}


#: Debian's Chromium and the flags of every browser test (``make browser`` installs it).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright, one per test module."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
