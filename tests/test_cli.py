"""The command line as a user meets it: every command has help, mistakes are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [
    "simulate",
    "degrade",
    "train",
    "ship",
    "evaluate",
    "upscale",
    "export",
    "models",
    "pretrain",
    "gan",
    "tune",
    "validate-science",
    "serve",
]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lenssr.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_help_lists_every_command() -> None:
    res = run_cli("--help")
    assert res.returncode == 0
    for name in COMMANDS:
        assert name in res.stdout, name


def test_version() -> None:
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.startswith("lenssr ")


def test_cli_import_does_not_load_torch() -> None:
    code = "import sys, lenssr.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name: str) -> None:
    res = run_cli(name, "--help")
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("upscale", "missing.npy", "-o", "out.npy", "--model", "bicubic"),
        ("evaluate", "--model", "bicubic", "--data", "missing.h5"),
        ("train", "--config", "missing.yaml"),
        ("simulate", "--n", "2", "--out", "x.h5", "--set", "lr.bogus=1"),
    ],
)
def test_user_mistakes_are_one_line(args: tuple[str, ...], tmp_path: Path) -> None:
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "Traceback" not in res.stderr


def test_a_clean_up_error_during_ctrl_c_counts_as_the_interrupt() -> None:
    from lenssr.cli import _from_interrupt

    try:
        try:
            raise KeyboardInterrupt
        finally:
            {}["missing"]  # a library's finally block failing while Ctrl-C unwinds
    except KeyError as exc:
        assert _from_interrupt(exc)
    assert not _from_interrupt(ValueError("plain"))
