"""Small building blocks shared by the model parts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW map (as in SAM and Honeybee)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The fused kernel on a channels-last view instead of a mean/var/divide chain: on the decoder's
        # stride-4 map (6x128x80x80 a training step) forward + backward with the GELU after it took
        # 53 ms instead of 82 on the 2-core CPU.
        normed = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return normed.permute(0, 3, 1, 2)


class MLP(nn.Module):
    """Linear layers with GELU between them."""

    def __init__(self, *, dims: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if index < len(dims) - 2:
                layers.append(nn.GELU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(N,) positions in [0, 1] -> (N, dim) sin/cos code."""
    freqs = torch.arange(dim // 2, device=positions.device, dtype=positions.dtype)
    freqs = torch.pow(torch.full_like(freqs, 100.0), -freqs / (dim // 2)) * 100.0
    angles = positions[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def sincos_2d(height: int, width: int, dim: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(height*width, dim) code of each cell centre, row-major, coordinates in [0, 1]."""
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    half = dim // 2
    return torch.cat([sincos_1d(grid_x.flatten(), half), sincos_1d(grid_y.flatten(), half)], dim=-1)


def box_fourier(boxes: torch.Tensor, dim: int) -> torch.Tensor:
    """(N, 4) unit xyxy boxes -> (N, 4 * dim) sin/cos code."""
    return torch.cat([sincos_1d(boxes[:, i].contiguous(), dim) for i in range(4)], dim=-1)
