"""The browser runtime files of the site, copied from ``node_modules`` into ``vendor/``.

``make site`` runs ``npm ci`` in this folder (versions pinned by ``package.json`` and
``package-lock.json``) and then ``python -m lenssr.site.vendor``, which copies the files below
into ``src/lenssr/site/vendor/`` (ignored by git, shipped as package data), with the packages'
licences. :func:`lenssr.site.export_site` copies ``vendor/`` into every exported site, so the page
loads nothing from a CDN.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent
NODE_MODULES = HERE / "node_modules"
VENDOR = HERE / "vendor"

#: ``(npm package, file inside it, name in vendor/)``. The WebGPU bundle of ONNX Runtime Web
#: runs both the ``webgpu`` and the ``wasm`` execution providers with one WASM binary.
FILES: tuple[tuple[str, str, str], ...] = (
    ("onnxruntime-web", "dist/ort.webgpu.bundle.min.mjs", "ort.webgpu.bundle.min.mjs"),
    (
        "onnxruntime-web",
        "dist/ort-wasm-simd-threaded.asyncify.wasm",
        "ort-wasm-simd-threaded.asyncify.wasm",
    ),
    ("fflate", "esm/browser.js", "fflate.mjs"),
)

#: The MIT licence text, for packages whose npm tarball carries none (onnxruntime-web states
#: "Licensed under the MIT License" in its package.json and in the header of its bundles).
MIT = """Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""
COPYRIGHT = {"onnxruntime-web": "Copyright (c) Microsoft Corporation. All rights reserved."}


def missing() -> list[str]:
    """Names of vendor files not built yet (empty when ``make site`` has run)."""
    return [name for _, _, name in FILES if not (VENDOR / name).is_file()]


def versions() -> dict[str, str]:
    """Installed version of each npm package of :data:`FILES` (from its package.json)."""
    out = {}
    for pkg in sorted({p for p, _, _ in FILES}):
        meta = NODE_MODULES / pkg / "package.json"
        if meta.is_file():
            out[pkg] = json.loads(meta.read_text())["version"]
    return out


def licences() -> str:
    """The licence of every vendored package (its LICENSE file, else its declared licence)."""
    parts = []
    for pkg, version in versions().items():
        root = NODE_MODULES / pkg
        declared = json.loads((root / "package.json").read_text()).get("license", "see package")
        text = next((f.read_text() for f in sorted(root.glob("LICEN[CS]E*")) if f.is_file()), None)
        if text is None and declared == "MIT":
            text = f"MIT License\n\n{COPYRIGHT.get(pkg, '')}\n\n{MIT}"
        parts.append(f"== {pkg} {version} ({declared}) ==\n\n{text or declared}\n")
    return "\n".join(parts)


def copy_vendor() -> Path:
    """Copy :data:`FILES` from ``node_modules`` into ``vendor/`` (with ``versions.json``)."""
    VENDOR.mkdir(exist_ok=True)
    for pkg, rel, name in FILES:
        src = NODE_MODULES / pkg / rel
        if not src.is_file():
            raise SystemExit(f"{src} not found: run `npm ci` in {HERE} first (make site)")
        shutil.copyfile(src, VENDOR / name)
    (VENDOR / "LICENSES.txt").write_text(licences())
    (VENDOR / "versions.json").write_text(json.dumps(versions(), indent=1) + "\n")
    return VENDOR


if __name__ == "__main__":
    print(f"site runtime files in {copy_vendor()}", file=sys.stderr)
