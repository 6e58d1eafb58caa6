"""``export_site``: write the static in-browser site (page, ONNX models, runtime) to a folder.

The folder holds

* ``index.html``, ``app.js`` (page), ``worker.js`` (the pipeline, in a Web Worker) and
  ``lib/*.js`` (file formats, normalisation, tiling), from ``lenssr/site/static``;
* ``style.css``, the stylesheet of ``lenssr serve``'s page (copied, so both look the same), and
  ``site.css`` with the few rules of this page only;
* ``models/<name>-x<scale>.onnx``, the graphs the CLI runs (the ONNX Runtime export cache of
  :func:`lenssr.inference.backend.cached_onnx`, parity-checked against PyTorch), and
  ``models/models.json``, what the page needs of each descriptor;
* ``vendor/``: ONNX Runtime Web and fflate with their licences (built by ``make site``).

Nothing is fetched from another origin at run time, so the folder can be served by any static
file server (GitHub Pages, ``python -m http.server``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lenssr.errors import LenssrError
from lenssr.site import vendor

STATIC = Path(__file__).parent / "static"
WEB_STYLE = Path(__file__).parent.parent / "web" / "static" / "style.css"
#: Models exported when none are named.
DEFAULT_MODELS: tuple[str, ...] = ("hybrid",)


def model_entry(name: str, descriptor: dict[str, Any], scale: int, file: str) -> dict[str, Any]:
    """The page's view of one exported graph: what ``lenssr.inference.base.Upscaler`` reads
    from a descriptor (normalisation kind, size rules, conditioning and its training range)."""
    cond = descriptor.get("conditioning") or {}
    return {
        "name": name,
        "file": file,
        "scale": scale,
        "arch": descriptor.get("arch", name),
        "normalization": (descriptor.get("normalization") or {}).get("kind", "minmax"),
        "size_multiple": max(1, int(descriptor.get("size_multiple", 1))),
        "min_side": 4,  # lenssr.inference.onnx_export.ONNX_MIN_SIDE
        "conditioned": bool(cond.get("inputs")),
        "instrument_range": dict(cond.get("range") or {}),
        "description": f"{descriptor.get('arch', name)} network (shipped weights)",
    }


def export_site(
    out: str | Path,
    models: Sequence[str] = DEFAULT_MODELS,
    progress: bool = False,
) -> Path:
    """Write the static site to ``out`` (created; files of an earlier export are replaced).

    Args:
        out: output folder.
        models: shipped model names (``hybrid``, ``edsr``, ...); each is exported at every
            scale it serves.
        progress: print one line per exported graph.

    Returns:
        ``out`` as a Path.

    Raises:
        LenssrError: unknown model, a model ONNX Runtime cannot run, or the runtime files are
            missing (``make site`` builds them).
    """
    from lenssr import __version__
    from lenssr.inference.api import load_model
    from lenssr.inference.backend import BackendUnavailable, cached_onnx

    if not models:
        raise LenssrError("export-site needs at least one model")
    absent = vendor.missing()
    if absent:
        raise LenssrError(
            f"the site's runtime files are missing ({', '.join(absent)}): run `make site` "
            f"(npm ci + python -m lenssr.site.vendor in {vendor.HERE})"
        )
    dest = Path(out)
    if dest.exists() and not dest.is_dir():
        raise LenssrError(f"{dest} exists and is not a folder")
    dest.mkdir(parents=True, exist_ok=True)

    shutil.copytree(STATIC, dest, dirs_exist_ok=True)
    shutil.copyfile(WEB_STYLE, dest / "style.css")
    shutil.copytree(vendor.VENDOR, dest / "vendor", dirs_exist_ok=True)

    entries = []
    (dest / "models").mkdir(exist_ok=True)
    for name in dict.fromkeys(models):
        if name == "bicubic":
            raise LenssrError("bicubic has no network to export; name a shipped model")
        sr = load_model(name, device="cpu", backend="torch")
        for s in sr.scales:
            try:
                path, _ = cached_onnx(sr, s)
            except BackendUnavailable as exc:
                raise LenssrError(f"model {name!r} x{s}: no ONNX graph ({exc})") from exc
            file = f"{name}-x{s}.onnx"
            shutil.copyfile(path, dest / "models" / file)
            entries.append(model_entry(name, sr.descriptor, s, file))
            if progress:
                print(f"  {file}: {(dest / 'models' / file).stat().st_size / 1e6:.1f} MB")
    manifest = {
        "lenssr_version": __version__,
        "default": entries[0]["name"],
        "runtime": vendor.versions() or json.loads((vendor.VENDOR / "versions.json").read_text()),
        "models": entries,
    }
    (dest / "models" / "models.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return dest
