"""Dataset generation: HDF5 (chunked, resumable) or DeepLense folder layout, with workers.

Sample *i* of seed *s* uses ``np.random.default_rng([s, i])`` and class
``classes[i % len(classes)]``, so the data are bit-identical for any number of workers.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
from pathlib import Path

import numpy as np

from lenssr.errors import ConfigError, LenssrError
from lenssr.simulation.presets import Preset, preset_from_config, resolve_preset
from lenssr.simulation.sampling import CLASSES, sample_system

__all__ = ["render_samples", "simulate"]

UNITS = "e-/s/arcsec^2"
HDF5_SUFFIXES = (".h5", ".hdf5")
_BLOCK = 8  # samples per worker task

_renderers: dict[str, object] = {}


def _renderer(preset_json: str):
    """Per-process cached Renderer for a preset (grids, kernels, FFT plans)."""
    from lenssr.simulation.render import Renderer

    r = _renderers.get(preset_json)
    if r is None:
        _renderers.clear()
        r = Renderer(preset_from_config(json.loads(preset_json)))
        _renderers[preset_json] = r
    return r


def render_samples(
    preset: Preset | str, seed: int, indices: list[int] | range, classes: tuple[int, ...]
) -> dict:
    """Render samples ``indices`` (noisy LR/HR, labels, parameters) in this process.

    Returns:
        dict with ``lr`` (K, h, w) f4, ``hr`` (K, H, W) f4, ``label`` (K,) i1, ``params``
        (dict of (K,) float64), ``sub_x``, ``sub_y``, ``sub_mass`` (lists of arrays).
    """
    preset = resolve_preset(preset)
    return _render_block((preset.to_json(), seed, list(indices), tuple(classes)))


def _render_block(task: tuple[str, int, list[int], tuple[int, ...]]) -> dict:
    preset_json, seed, indices, classes = task
    r = _renderer(preset_json)
    lrs, hrs, labels, params, sx, sy, sm = [], [], [], [], [], [], []
    for i in indices:
        rng = np.random.default_rng([seed, i])
        label = classes[i % len(classes)]
        system = sample_system(r.preset, rng, label, r.distances)
        obs = r.observe(system, rng)
        system.params["lr_peak_snr"] = obs.lr_peak_snr
        lrs.append(obs.lr)
        hrs.append(obs.hr)
        labels.append(label)
        params.append(system.params)
        sx.append(system.sub_x.astype(np.float32))
        sy.append(system.sub_y.astype(np.float32))
        sm.append(system.sub_mass.astype(np.float32))
    keys = sorted(params[0]) if params else []
    return {
        "indices": list(indices),
        "lr": np.stack(lrs),
        "hr": np.stack(hrs),
        "label": np.asarray(labels, dtype=np.int8),
        "params": {k: np.asarray([p[k] for p in params], dtype=np.float64) for k in keys},
        "sub_x": sx,
        "sub_y": sy,
        "sub_mass": sm,
    }


def _class_ids(classes) -> tuple[int, ...]:
    if isinstance(classes, str):
        classes = [c for c in classes.split(",") if c.strip()]
    ids = []
    for c in classes:
        name = str(c).strip()
        if name not in CLASSES:
            raise ConfigError(f"unknown class {name!r} (choose from {', '.join(CLASSES)})")
        ids.append(CLASSES.index(name))
    if not ids:
        raise ConfigError("at least one class is needed")
    return tuple(ids)


def _run_blocks(preset: Preset, seed: int, indices: list[int], classes, workers: int):
    """Yield rendered blocks in index order (in-process for 1 worker, else a process pool)."""
    pj = preset.to_json()
    tasks = [(pj, seed, indices[k : k + _BLOCK], classes) for k in range(0, len(indices), _BLOCK)]
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            yield _render_block(t)
        return
    methods = mp.get_all_start_methods()
    fork = "fork" in methods
    if fork:
        _renderer(pj)  # import lenstronomy and build grids/kernels once; workers inherit them
    ctx = mp.get_context("fork" if fork else None)
    # Workers ignore SIGINT: Ctrl-C reaches the main process only, which terminates the pool
    # (a worker interrupted inside a task would leave the pool waiting for its result).
    pool = ctx.Pool(min(workers, len(tasks)), initializer=_ignore_sigint)
    try:
        yield from pool.imap(_render_block, tasks)
    except BaseException:  # KeyboardInterrupt, GeneratorExit, errors: stop the workers now
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()


def _ignore_sigint() -> None:
    """Pool initializer: the parent handles Ctrl-C (it terminates the pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _settings(preset: Preset, n: int, seed: int, classes, layout: str) -> dict:
    return {
        "preset": preset.to_json(),
        "n": int(n),
        "seed": int(seed),
        "classes": json.dumps([CLASSES[c] for c in classes]),
        "layout": layout,
    }


def simulate(
    preset: Preset | str,
    n: int,
    out: str | Path,
    seed: int = 0,
    workers: int = 1,
    layout: str = "hdf5",
    classes=CLASSES,
    progress: bool = True,
    chunk_size: int = 256,
) -> Path:
    """Simulate ``n`` LR/HR pairs and write them to ``out``.

    Args:
        preset: a :class:`Preset` or preset name.
        n: number of pairs.
        out: ``.h5`` file (``layout='hdf5'``) or a folder (``layout='deeplense'``:
            ``LR/sample{i}.npy``, ``HR/sample{i}.npy`` float32 2-D, ``metadata.json``).
        seed: base seed; sample i uses ``default_rng([seed, i])``.
        workers: processes (results do not depend on it).
        layout: ``'hdf5'`` or ``'deeplense'``.
        classes: class names (subset of ``no_sub, cdm, axion``), assigned round-robin.
        progress: show a progress bar with ETA.
        chunk_size: samples per write and resume checkpoint.

    Returns:
        ``out``. HDF5 is written to ``<out>.partial`` and renamed at the end; re-running the same
        command after an interruption resumes from the last complete chunk.
    """
    preset = resolve_preset(preset)
    if n < 1:
        raise ConfigError("n must be >= 1")
    if workers < 1:
        raise ConfigError("workers must be >= 1")
    if chunk_size < 1:
        raise ConfigError("chunk_size must be >= 1")
    cls = _class_ids(classes)
    out = Path(out)
    if layout == "hdf5" and out.suffix.lower() not in HDF5_SUFFIXES:
        raise ConfigError(
            f"output {out}: an HDF5 data set needs a .h5 or .hdf5 name "
            "(or use --layout deeplense with a folder)"
        )
    settings = _settings(preset, n, seed, cls, layout)
    if layout == "hdf5":
        return _simulate_hdf5(preset, n, out, seed, workers, cls, progress, chunk_size, settings)
    if layout == "deeplense":
        return _simulate_deeplense(
            preset, n, out, seed, workers, cls, progress, chunk_size, settings
        )
    raise ConfigError(f"unknown layout {layout!r} (use hdf5 or deeplense)")


def is_complete(out: str | Path, layout: str = "hdf5") -> bool:
    """True when ``out`` already holds a finished data set (a re-run only checks that its
    settings match and writes nothing)."""
    out = Path(out)
    return out.is_file() if layout == "hdf5" else (out / "metadata.json").is_file()


def _check_same(attrs, settings: dict, path: Path) -> bool:
    return all(str(attrs.get(f"run_{k}", "")) == str(v) for k, v in settings.items())


def _simulate_hdf5(preset, n, out, seed, workers, cls, progress, chunk_size, settings) -> Path:
    import h5py

    from lenssr.progress import progress_bar

    partial = out.with_name(out.name + ".partial")
    if out.exists():
        try:
            with h5py.File(out, "r") as f:
                same = _check_same(f.attrs, settings, out)
        except OSError:
            same = False
        if same:
            return out
        raise LenssrError(f"{out} already exists (with other settings); choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = 0
    if partial.exists():
        try:
            with h5py.File(partial, "r") as f:
                if not _check_same(f.attrs, settings, partial):
                    raise LenssrError(
                        f"{partial} is an interrupted run with other settings; delete it or "
                        "re-run with the same preset, n, seed and classes"
                    )
                done = int(f.attrs["n_done"])
        except OSError:
            done = 0  # unreadable (killed mid-write): start again
            partial.unlink()
    if done == 0 and not partial.exists():
        _create_h5(partial, preset, n, seed, cls, settings)
    todo = list(range(done, n))
    with (
        h5py.File(partial, "r+") as f,
        progress_bar(n, f"simulate {preset.name}", enabled=progress) as advance,
    ):
        advance(done)
        buf: list[dict] = []
        for block in _run_blocks(preset, seed, todo, cls, workers):
            buf.append(block)
            count = sum(len(b["indices"]) for b in buf)
            last = buf[-1]["indices"][-1] == n - 1
            if count >= chunk_size or last:
                _write_chunk(f, buf)
                buf = []
            advance(len(block["indices"]))
    os.replace(partial, out)
    return out


def _create_h5(path: Path, preset: Preset, n, seed, cls, settings) -> None:
    import h5py

    h, hh = preset.lr.num_pix, preset.hr.num_pix
    with h5py.File(path, "w") as f:
        f.create_dataset("lr", (n, h, h), dtype="f4", chunks=(1, h, h))
        f.create_dataset("hr", (n, hh, hh), dtype="f4", chunks=(1, hh, hh))
        f.create_dataset("label", (n,), dtype="i1")
        f.create_group("params")
        sub = f.create_group("subhalos")
        vlen = h5py.vlen_dtype(np.float32)
        for k in ("x", "y", "mass"):
            sub.create_dataset(k, (n,), dtype=vlen)
        sub.attrs["units"] = "x, y: arcsec; mass: Msun"
        f.attrs["classes"] = json.dumps([CLASSES[c] for c in cls])
        f.attrs["class_names"] = json.dumps(list(CLASSES))
        f.attrs["preset"] = preset.to_json()
        f.attrs["preset_name"] = preset.name
        f.attrs["lr_pixel_scale"] = preset.lr.pixel_scale
        f.attrs["hr_pixel_scale"] = preset.hr.pixel_scale
        f.attrs["scale"] = preset.scale
        f.attrs["units"] = UNITS
        f.attrs["seed"] = int(seed)
        f.attrs["n_done"] = 0
        for k, v in settings.items():
            f.attrs[f"run_{k}"] = v


def _write_chunk(f, blocks: list[dict]) -> None:
    """Write consecutive rendered blocks and advance the resume checkpoint ``n_done``."""
    idx = [i for b in blocks for i in b["indices"]]
    lo, hi = idx[0], idx[-1] + 1
    n = f["lr"].shape[0]
    f["lr"][lo:hi] = np.concatenate([b["lr"] for b in blocks])
    f["hr"][lo:hi] = np.concatenate([b["hr"] for b in blocks])
    f["label"][lo:hi] = np.concatenate([b["label"] for b in blocks])
    for key in blocks[0]["params"]:
        if key not in f["params"]:
            f["params"].create_dataset(key, (n,), dtype="f8", fillvalue=np.nan)
        f["params"][key][lo:hi] = np.concatenate([b["params"][key] for b in blocks])
    for name, key in (("x", "sub_x"), ("y", "sub_y"), ("mass", "sub_mass")):
        ds = f["subhalos"][name]
        for i, arr in zip(idx, (a for b in blocks for a in b[key]), strict=True):
            ds[i] = arr
    f.attrs["n_done"] = hi
    f.flush()


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(arr, dtype=np.float32))
    os.replace(tmp, path)


def _simulate_deeplense(preset, n, out, seed, workers, cls, progress, chunk_size, settings) -> Path:
    from lenssr.progress import progress_bar

    meta_path = out / "metadata.json"
    state_path = out / ".lenssr_partial.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("run") == settings:
            return out
        raise LenssrError(f"{out} already holds a dataset (with other settings)")
    done = 0
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if state.get("run") != settings:
            raise LenssrError(
                f"{out} holds an interrupted run with other settings; delete it or re-run the same "
                "command"
            )
        done = int(state["n_done"])
    (out / "LR").mkdir(parents=True, exist_ok=True)
    (out / "HR").mkdir(parents=True, exist_ok=True)
    labels = [CLASSES[cls[i % len(cls)]] for i in range(n)]
    with progress_bar(n, f"simulate {preset.name}", enabled=progress) as advance:
        advance(done)
        pending = 0
        for block in _run_blocks(preset, seed, list(range(done, n)), cls, workers):
            for k, i in enumerate(block["indices"]):
                _save_npy(out / "LR" / f"sample{i}.npy", block["lr"][k])
                _save_npy(out / "HR" / f"sample{i}.npy", block["hr"][k])
            pending += len(block["indices"])
            if pending >= chunk_size:
                _write_state(state_path, settings, block["indices"][-1] + 1)
                pending = 0
            advance(len(block["indices"]))
    meta = {
        "n": n,
        "labels": labels,
        "classes": [CLASSES[c] for c in cls],
        "preset": json.loads(preset.to_json()),
        "lr_pixel_scale": preset.lr.pixel_scale,
        "hr_pixel_scale": preset.hr.pixel_scale,
        "scale": preset.scale,
        "units": UNITS,
        "seed": seed,
        "files": {"lr": "LR/sample{i}.npy", "hr": "HR/sample{i}.npy"},
        "run": settings,
    }
    tmp = meta_path.with_name("metadata.json.tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, meta_path)
    state_path.unlink(missing_ok=True)
    return out


def _write_state(path: Path, settings: dict, n_done: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"run": settings, "n_done": n_done}))
    os.replace(tmp, path)
