"""CLI commands of lenssr.models (registered by lenssr.cli): ``lenssr models``."""

from __future__ import annotations

import json
from typing import Any

import typer


def _format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def models_summary() -> dict[str, list[dict[str, Any]]]:
    """Registered architectures (default config) and shipped checkpoints, as plain dicts."""
    from lenssr.models import count_parameters, create_model, list_models, read_descriptor
    from lenssr.models.zoo import shipped_models

    archs = []
    for name in list_models():
        model = create_model(name)
        archs.append(
            {
                "arch": name,
                "params": count_parameters(model),
                "scale": model.scale,
                "scales": list(model.scales),
                "class": type(model).__name__,
            }
        )
    shipped = []
    for name, path in shipped_models().items():
        desc = read_descriptor(path)
        shipped.append(
            {
                "name": name,
                "arch": desc.get("arch", "?"),
                "params": desc.get("num_params"),
                "scales": desc.get("scales", []),
                "metrics": desc.get("metrics", {}),
                "instrument": instrument_label(desc),
                "path": str(path),
            }
        )
    return {"architectures": archs, "shipped": shipped}


def instrument_label(desc: dict[str, Any]) -> str:
    """What LR instruments a shipped model was trained for: ``any (<mixture> mix)`` for an
    instrument-aware model, else ``single (<preset>)`` (its training data's one camera)."""
    cond = desc.get("conditioning") or {}
    if cond.get("inputs"):
        mix = (cond.get("range") or {}).get("mixture", "instrument")
        return f"any ({mix} mix)"
    training = desc.get("training") or {}
    data = (training.get("config") or {}).get("data", {}) if isinstance(training, dict) else {}
    if data.get("mixture"):
        return f"mixture ({data['mixture']}), no instrument input"
    preset = (data.get("simulate") or {}).get("preset") or "default"
    return f"single ({preset})"


def _scales(scales: list[int]) -> str:
    return ",".join(f"x{s}" for s in scales)


def metric_mean(metrics: Any, key: str) -> float | None:
    """The mean of metric ``key`` of a model card's ``metrics``: a number, or the ``mean`` of
    a ``{"mean", "std", ...}`` summary as :func:`lenssr.training.ship_model` writes it."""
    value = metrics.get(key) if isinstance(metrics, dict) else None
    if isinstance(value, dict):
        value = value.get("mean")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """List registered architectures and shipped weights with parameter counts."""
    summary = models_summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    rows = [
        [a["arch"], a["class"], f"{a['params']:,}", f"x{a['scale']}", _scales(a["scales"])]
        for a in summary["architectures"]
    ]
    typer.echo("Architectures (default configuration):")
    typer.echo(_format_table(["arch", "class", "params", "default", "scales"], rows))
    typer.echo("")
    if not summary["shipped"]:
        typer.echo("Shipped weights: none (lenssr/models/weights/ is empty)")
        return
    rows = []
    for s in summary["shipped"]:
        params = f"{s['params']:,}" if isinstance(s["params"], int) else "?"
        psnr, ssim = metric_mean(s["metrics"], "psnr"), metric_mean(s["metrics"], "ssim")
        rows.append(
            [
                s["name"],
                s["arch"],
                params,
                _scales(s["scales"]),
                f"{psnr:.2f}" if psnr is not None else "-",
                f"{ssim:.4f}" if ssim is not None else "-",
                s["instrument"],
            ]
        )
    typer.echo("Shipped weights (psnr [dB] and ssim: mean over the test set of each model card):")
    typer.echo(
        _format_table(["name", "arch", "params", "scales", "psnr", "ssim", "LR instrument"], rows)
    )


def register(app: typer.Typer) -> None:
    """Add this area's commands to the ``lenssr`` app."""
    app.command("models")(models_command)
