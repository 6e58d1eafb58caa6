"""A ``lenssr serve`` on localhost for scripts and tests: a free port and a server process that
is ready (``/healthz`` answers) when the ``with`` block starts and stopped when it ends."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_process(*serve_args: str, port: int | None = None, timeout: float = 120) -> Iterator[str]:
    """Run ``python -m lenssr.cli serve --port PORT *serve_args`` and yield its base URL once
    ``/healthz`` answers 200; the process is terminated on exit.

    Raises:
        RuntimeError: the server exited or did not answer within ``timeout`` seconds (the
            message ends with its stderr).
    """
    import httpx

    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "lenssr.cli", "serve", "--port", str(port), *serve_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        end = time.time() + timeout
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > end or proc.poll() is not None:
                proc.terminate()
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"lenssr serve did not start: {err[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
