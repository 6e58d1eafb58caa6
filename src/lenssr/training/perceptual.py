"""Perceptual (feature-space) losses: VGG-19 features or the pretrained lensing encoder.

:class:`VGG19Features` is a plain-torch VGG-19 ``features`` stack whose parameter names are
torchvision's (``features.N.weight`` / ``features.N.bias``), so a torchvision-format state dict
(``vgg19-dcbb9e9d.pth`` or a ``.safetensors`` of it) loads directly; nothing is downloaded.
Single-channel images are replicated to 3 channels and normalised with the ImageNet mean/std.

Without VGG weights, :class:`EncoderFeatures` uses a frozen copy of the pretrained hybrid's
encoder (:meth:`HybridSR.encode`: conv + residual + transformer stages), a feature network
trained on lensing images.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenssr.errors import ConfigError

#: torchvision's VGG-19 ("E") layout: channel counts and "M" for 2x2 max pooling.
VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
    512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``features`` index of conv5_4 (before its ReLU), the layer ESRGAN uses.
DEFAULT_VGG_LAYER = 34


def _vgg_layers(last: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    ch = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(ch, int(v), 3, padding=1), nn.ReLU(inplace=False)]
            ch = int(v)
    if not 0 <= last < len(layers):
        raise ConfigError(f"vgg_layer must be in 0..{len(layers) - 1}, got {last}")
    return nn.Sequential(*layers[: last + 1])


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict of tensors from a ``.safetensors`` or torch (``.pth``/``.pt``) file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"VGG weights not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise ConfigError(f"cannot read VGG weights {path}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"{path} holds no state dict of tensors")
    return state


class VGG19Features(nn.Module):
    """Frozen VGG-19 features up to ``features[layer]`` (inclusive): ``(B, 1 or 3, H, W) ->
    (B, C, H / 2**pools, W / 2**pools)``.

    Input is in normalised image units (~[0, 1]); one channel is replicated to three, then
    ImageNet mean/std normalisation is applied. ``weights``: a torchvision-format file; keys
    outside ``features.0 .. features.layer`` (e.g. ``classifier.*``) are ignored, missing or
    wrongly shaped ones raise a one-line :class:`ConfigError`.
    """

    def __init__(self, weights: str | Path | None = None, layer: int = DEFAULT_VGG_LAYER) -> None:
        super().__init__()
        self.features = _vgg_layers(layer)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        if weights is not None:
            self.load_weights(weights)
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, path: str | Path) -> None:
        """Load the ``features.*`` tensors of a torchvision VGG-19 state dict."""
        state = read_state_dict(path)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        own = {k: v for k, v in self.state_dict().items() if k.startswith("features.")}
        missing = sorted(set(own) - set(state))
        wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
        if missing or wrong:
            detail = ", ".join((missing + wrong)[:4])
            raise ConfigError(
                f"{path} is not a torchvision VGG-19 state dict: {len(missing)} missing and "
                f"{len(wrong)} wrongly shaped 'features.N.weight/bias' keys ({detail})"
            )
        self.load_state_dict({k: state[k] for k in own}, strict=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.features((x - self.mean) / self.std)

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # always frozen: no dropout/BN, but keep it explicit


class EncoderFeatures(nn.Module):
    """Frozen copy of a hybrid's encoder: ``(B, 1, H, W) -> (B, num_feat, H, W)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not hasattr(model, "encode"):
            raise ConfigError(
                f"the lensing-encoder perceptual loss needs a hybrid generator (with encode), "
                f"not {getattr(model, 'arch_name', type(model).__name__)!r}; "
                "pass --vgg-weights or set gan.weights.perceptual: 0"
            )
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        self.model.eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.model.encode(x)

    def train(self, mode: bool = True) -> EncoderFeatures:
        return super().train(False)


class PerceptualLoss(nn.Module):
    """``criterion(features(sr), features(hr))`` with ``criterion`` ``l1`` or ``mse``."""

    def __init__(self, features: nn.Module, criterion: str = "l1") -> None:
        super().__init__()
        if criterion not in ("l1", "mse"):
            raise ConfigError(f"gan.perceptual.criterion must be l1 or mse, got {criterion!r}")
        self.features = features
        self.fn = F.l1_loss if criterion == "l1" else F.mse_loss

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        with torch.no_grad():
            target = self.features(hr)
        return self.fn(self.features(sr), target)
