"""Images/s of the static site against ``lenssr serve`` on the same zip, in headless Chromium.

``python -m lenssr.site.bench [--n 40] [--model hybrid] [--isolated]`` writes a zip of ``n``
75x75 LR images (.npy and FITS), exports the site, serves it with the standard library's static
file server (``--isolated``: with the COOP/COEP headers that let ONNX Runtime Web use threads)
and runs the zip through the page; then starts ``lenssr serve``'s app on the same machine and
runs the same zip through its page. Each time is from the click on Upscale to the download link
(model loading included). Prints one line per run and their ratio. Needs Debian's chromium
(``make browser``) and Playwright (the dev extra).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def bench_zip(path: Path, n: int) -> Path:
    """``n`` 75x75 noisy ring images, .npy and FITS alternating."""
    from astropy.io import fits

    rng = np.random.default_rng(0)
    y, x = np.indices((75, 75), dtype=np.float64)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            r = np.hypot(y - 37 - rng.uniform(-3, 3), x - 37 - rng.uniform(-3, 3))
            img = np.exp(-((r - 16) ** 2) / 6) + 1.5 * np.exp(-r / 3) + rng.normal(0, 0.02, r.shape)
            buf = io.BytesIO()
            if i % 2:
                fits.PrimaryHDU(img.astype(np.float32)).writeto(buf)
                zf.writestr(f"LR/lens_{i:03d}.fits", buf.getvalue())
            else:
                np.save(buf, img.astype(np.float32))
                zf.writestr(f"LR/lens_{i:03d}.npy", buf.getvalue())
    return path


class _Static(http.server.SimpleHTTPRequestHandler):
    isolated = False

    def end_headers(self) -> None:
        if self.isolated:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, *args: object) -> None:
        pass


def run_page(url: str, src: Path, model: str, timeout_s: float = 1800) -> float:
    """Seconds from the click on Upscale to the finished job on the page at ``url``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(timeout_s * 1000)
        page.goto(url)
        page.wait_for_selector(f"#model option[value='{model}']", state="attached")
        page.select_option("#model", model)
        page.set_input_files("#files", str(src))
        t0 = time.perf_counter()
        page.click("#start")
        page.wait_for_function(
            "() => /^(Done|Failed)/.test(document.getElementById('status').textContent)"
        )
        seconds = time.perf_counter() - t0
        status = page.text_content("#status")
        browser.close()
    if not status.startswith("Done"):
        raise SystemExit(f"{url}: {status}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="images in the zip")
    parser.add_argument("--model", default="hybrid")
    parser.add_argument("--isolated", action="store_true", help="serve with COOP/COEP headers")
    opts = parser.parse_args()

    from lenssr.site import export_site
    from lenssr.web import Settings, create_app
    from lenssr.web.local import free_port

    tmp = Path(tempfile.mkdtemp(prefix="lenssr-bench-site-"))
    src = bench_zip(tmp / "lenses.zip", opts.n)
    site = export_site(tmp / "site", [opts.model])

    handler = functools.partial(
        type("H", (_Static,), {"isolated": opts.isolated}), directory=str(site)
    )
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    t_site = run_page(f"http://127.0.0.1:{srv.server_address[1]}/index.html", src, opts.model)
    srv.shutdown()
    label = "site (WASM, threads)" if opts.isolated else "site (WASM, 1 thread)"
    print(f"{label}: {opts.n} images in {t_site:.1f} s = {opts.n / t_site:.2f} images/s")

    import uvicorn

    port = free_port()
    app = create_app(Settings(model=opts.model, port=port, work_dir=tmp / "jobs"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    t_server = run_page(f"http://127.0.0.1:{port}/", src, opts.model)
    server.should_exit = True
    thread.join(timeout=10)
    print(f"lenssr serve (ONNX Runtime, CPU): {opts.n} images in {t_server:.1f} s = "
          f"{opts.n / t_server:.2f} images/s")  # fmt: skip
    print(f"site / server: {t_server / t_site:.2f}x the server's images/s")


if __name__ == "__main__":
    main()
