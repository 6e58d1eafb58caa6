"""Screenshot of the web page after a real job: 12 simulated default-preset LR images upscaled by
the shipped hybrid (docs/screenshots/web-hybrid.png). Needs Debian's chromium (`make browser`).

Run: .venv/bin/python docs/figures/make_web_screenshot.py
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
from playwright.sync_api import sync_playwright

from lenssr.simulation import simulate
from lenssr.web.local import serve_process

OUT = Path(__file__).resolve().parents[1] / "screenshots" / "web-hybrid.png"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "pairs.h5"
        simulate("default", n=12, out=h5, seed=11, workers=1, progress=False)
        with h5py.File(h5) as f:
            lr = f["lr"][:]
        src = Path(tmp) / "lenses.zip"
        with zipfile.ZipFile(src, "w") as z:
            for i, img in enumerate(lr):
                buf = io.BytesIO()
                np.save(buf, img)
                z.writestr(f"LR/lens_{i:03d}.npy", buf.getvalue())
        with serve_process("--model", "hybrid") as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1180, "height": 900})
            page.goto(url)
            page.wait_for_selector("#model option[value=hybrid]", state="attached")
            page.set_input_files("#files", str(src))
            page.select_option("#model", "hybrid")
            page.click("#start")
            page.wait_for_function(
                "() => /^(Done|Failed)/.test(document.getElementById('status').textContent)",
                timeout=300_000,
            )
            page.wait_for_function(
                "() => [...document.querySelectorAll('.compare img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            for k, value in enumerate(("50", "35", "65", "50", "40", "60")):
                page.locator(".compare input[type=range]").nth(k).fill(value)
            page.screenshot(path=str(OUT), full_page=True)
            browser.close()
    print(OUT)


if __name__ == "__main__":
    main()
