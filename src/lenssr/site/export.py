"""``export_site``: write the static in-browser site (page, ONNX models, runtime) to a folder.

The folder holds

* ``boot.js`` (starts the page, served or opened from disk), ``app.js`` (page),
  ``worker.js`` (the pipeline, in a Web Worker), ``lib/*.js`` (file formats, normalisation,
  tiling) and ``site.css`` (the few rules of this page only), from ``lenssr/site/static``;
* what the page shares with ``lenssr serve``'s, from ``lenssr/web/static``: ``index.html``,
  written from that page's template by :func:`site_page`, ``style.css`` and ``ui.js`` (the
  drop zone, progress, refused files, before/after previews), copied;
* ``models/<name>-x<scale>.onnx``, the graphs the CLI runs (the ONNX Runtime export cache of
  :func:`lenssr.inference.backend.cached_onnx`, parity-checked against PyTorch), and
  ``models/models.json``, what the page needs of each descriptor;
* ``vendor/``: ONNX Runtime Web and fflate with their licences (built by ``make site``);
* ``offline.js`` (unless ``offline=False``): the scripts, the runtime and the models as one
  classic script, which ``boot.js`` runs when the page is opened from disk (``file://``, where
  browsers run neither module scripts nor workers from files).

Nothing is fetched from another origin at run time, so the folder can be served by any static
file server (GitHub Pages, ``python -m http.server``).
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lenssr.errors import LenssrError
from lenssr.site import vendor

STATIC = Path(__file__).parent / "static"
WEB_STATIC = Path(__file__).parent.parent / "web" / "static"
#: Files of lenssr serve's page the site uses as they are.
WEB_SHARED: tuple[str, ...] = ("style.css", "ui.js")
#: Modules of the page in dependency order.
PAGE_MODULES: tuple[str, ...] = ("ui.js", "app.js")
#: Models exported when none are named.
DEFAULT_MODELS: tuple[str, ...] = ("hybrid",)
#: Modules of the worker in dependency order (each imports only modules before it).
WORKER_MODULES: tuple[str, ...] = (
    "vendor/fflate.mjs",
    "vendor/ort.webgpu.bundle.min.mjs",
    "lib/normalize.js",
    "lib/instrument.js",
    "lib/formats.js",
    "lib/pipeline.js",
    "worker.js",
)
_RELATIVE_IMPORT = re.compile(r'(from\s*)"(\.{1,2}/[^"]+)"')
_SERVE_ONLY = re.compile(r"<!--serve-->.*?<!--/serve-->", re.DOTALL)
_SITE_ONLY = re.compile(r"<!--site\s(.*?)-->", re.DOTALL)


def site_page(template: str) -> str:
    """The site's ``index.html`` from ``lenssr serve``'s page ``template``: without what lies
    between ``<!--serve-->`` and ``<!--/serve-->``, with the markup of ``<!--site ...-->``
    comments."""
    return _SITE_ONLY.sub(r"\1", _SERVE_ONLY.sub("", template))


def _offline_source(path: str, text: str, modules: Sequence[str]) -> str:
    """``text`` of the module at ``path`` with its relative imports as ``"@lenssr/<path>"``
    (boot.js replaces them with blob: URLs); each must be one of ``modules``."""

    def resolve(m: re.Match) -> str:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(path), m.group(2)))
        if target not in modules:
            raise LenssrError(f"{path} imports {m.group(2)}, not a module of the offline site")
        return f'{m.group(1)}"@lenssr/{target}"'

    return _RELATIVE_IMPORT.sub(resolve, text)


def write_offline(dest: Path, manifest: dict[str, Any]) -> Path:
    """``dest/offline.js``: ``self.LENSSR_OFFLINE = {sources, page, order, binaries, manifest}``
    with the page's and worker's scripts (``page`` and ``order``: their modules in dependency
    order), the WASM runtime and the models (base64)."""
    sources = {}
    for modules in (PAGE_MODULES, WORKER_MODULES):
        for path in modules:
            sources[path] = _offline_source(path, (dest / path).read_text(), modules)
    binaries = {"vendor/ort-wasm-simd-threaded.asyncify.wasm": None}
    binaries.update({f"models/{m['file']}": None for m in manifest["models"]})
    for path in binaries:
        binaries[path] = base64.b64encode((dest / path).read_bytes()).decode("ascii")
    data = {"sources": sources, "page": list(PAGE_MODULES), "order": list(WORKER_MODULES)}
    data["binaries"] = binaries
    data["manifest"] = manifest
    out = dest / "offline.js"
    out.write_text(
        "// lenssr site for file:// use (written by lenssr export-site; see boot.js)\n"
        f"self.LENSSR_OFFLINE = {json.dumps(data)};\n"
    )
    return out


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
    offline: bool = True,
) -> Path:
    """Write the static site to ``out`` (created; files of an earlier export are replaced).

    Args:
        out: output folder.
        models: shipped model names (``hybrid``, ``edsr``, ...); each is exported at every
            scale it serves.
        progress: print one line per exported graph.
        offline: also write ``offline.js``, so that the page works opened from disk.

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
    for name in WEB_SHARED:
        shutil.copyfile(WEB_STATIC / name, dest / name)
    (dest / "index.html").write_text(site_page((WEB_STATIC / "index.html").read_text()))
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
    if offline:
        write_offline(dest, manifest)
    else:
        (dest / "offline.js").unlink(missing_ok=True)
    return dest
