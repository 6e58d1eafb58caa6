"""Shipped weights: ``src/lenssr/models/weights/<name>.safetensors`` + ``.json`` + ``.md`` card.

Nothing is downloaded: a model is "shipped" when its weights and descriptor are in the package.
"""

from __future__ import annotations

from pathlib import Path


def weights_dir() -> Path:
    """The package folder holding the shipped checkpoints."""
    return Path(__file__).resolve().parent / "weights"


def shipped_models(directory: str | Path | None = None) -> dict[str, Path]:
    """``name -> <name>.safetensors`` for every shipped checkpoint that has its ``.json``.

    ``directory`` defaults to :func:`weights_dir`; names are sorted.
    """
    folder = Path(directory) if directory is not None else weights_dir()
    if not folder.is_dir():
        return {}
    found = {}
    for weights in sorted(folder.glob("*.safetensors")):
        if weights.with_suffix(".json").is_file():
            found[weights.stem] = weights
    return found


def model_card(name: str, directory: str | Path | None = None) -> str | None:
    """Text of the shipped model card ``<name>.md`` (None when there is none)."""
    folder = Path(directory) if directory is not None else weights_dir()
    card = folder / f"{name}.md"
    return card.read_text() if card.is_file() else None
