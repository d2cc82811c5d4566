"""Projectors from the vision feature pyramid to LLM-width visual tokens.

All three are elastic in the Matryoshka sense: one set of weights runs at any
visual-token count up to ``max_tokens``; training draws the count per step.

- ``CAbstractor`` (Honeybee): residual conv blocks, adaptive pooling to an
  n x n grid, more residual conv blocks, an MLP readout, and a 2-D position
  code per output cell, so spatial layout survives the projector. The pooling
  is an average, or (``pool_heads``) softmax-weighted by learned score maps.

Every projector ends in a LayerNorm: the LLM's RMSNorm divides the gradient
reaching a token by that token's scale, and unnormalised readouts of
ImageNet features came out ~25 per channel, which starved the projector of
gradient (measured 0.002 vs 1.2 into the LLM).
- ``LinearProjector``: the same pooling, then one linear layer (baseline).
- ``QueryResampler``: M learned queries cross-attending to the feature map;
  the first m are used (Matryoshka Query Transformer style; baseline).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ros_pgpt.model.common import LayerNorm2d, sincos_2d


def grid_side(num_tokens: int, max_tokens: int) -> int:
    """Side of the largest square grid with at most ``num_tokens`` cells."""
    if num_tokens < 1:
        raise ValueError(f"visual token count must be >= 1, got {num_tokens}")
    return math.isqrt(min(num_tokens, max_tokens))


class ResBlock(nn.Module):
    """Pre-norm residual block: LN2d -> 3x3 conv -> SiLU -> 3x3 conv."""

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(self.norm(x))))


def _semantic_map(features: list[torch.Tensor], pixels: torch.Tensor | None = None) -> torch.Tensor:
    """Stride-16 map with the stride-32 map upsampled onto it, channel-concatenated; a ``pixels`` map at
    half its stride (the decoder's, ``ModelConfig.projector_pixels``) is average-pooled onto it too."""
    fine, coarse = features[2], features[3]
    parts = [fine, F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)]
    if pixels is not None:
        # A fixed 2x2 window, not adaptive pooling: ONNX export needs the pooling size constant.
        parts.append(F.avg_pool2d(pixels, 2, ceil_mode=True))
    return torch.cat(parts, dim=1)


class _GridPositions(nn.Module):
    """Adds a learned projection of a 2-D sin-cos code of each grid cell's centre."""

    def __init__(self, *, out_dim: int, code_dim: int = 64) -> None:
        super().__init__()
        self.code_dim = code_dim
        self.proj = nn.Linear(code_dim, out_dim)

    def forward(self, tokens: torch.Tensor, side: int) -> torch.Tensor:
        code = sincos_2d(side, side, self.code_dim, device=tokens.device, dtype=tokens.dtype)
        return tokens + self.proj(code).unsqueeze(0)


class _GridProjector(nn.Module):
    """Shared tail of the grid projectors: n x n cells -> position code -> LayerNorm."""

    def __init__(self, *, out_dim: int, max_tokens: int) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self.positions = _GridPositions(out_dim=out_dim)
        self.out_norm = nn.LayerNorm(out_dim)

    def tokens_for(self, num_tokens: int) -> int:
        return grid_side(num_tokens, self.max_tokens) ** 2

    def _finish(self, cells: torch.Tensor, side: int) -> torch.Tensor:
        """cells (B, n*n, D) in row-major order -> visual tokens."""
        return self.out_norm(self.positions(cells, side))


# Bound on the pooling score maps' log-weights: a cell can weight one pixel up to e^(2 x 5) ~ 22000 times
# another, and exp() needs no max subtraction (no per-window reduction, exact under any pooling).
POOL_LOG_WEIGHT = 5.0


class CAbstractor(_GridProjector):
    """Honeybee's convolutional abstractor with an elastic output grid.

    ``pool_heads`` = 0 pools to the grid by averaging. With k > 0 a 1x1 conv
    gives k score maps; the channels fall into k groups, and each group is
    pooled as an average weighted by exp(its score map), so a cell can keep
    the features of the object it holds rather than their mean with the
    background. The scores start at zero: training starts from average pooling.
    """

    def __init__(self, *, in_channels: int, channels: int, out_dim: int, depth: int,
                 max_tokens: int, input_side: int, pool_heads: int = 0) -> None:
        super().__init__(out_dim=out_dim, max_tokens=max_tokens)
        if pool_heads and channels % pool_heads:
            raise ValueError(f"pool_heads={pool_heads} must divide projector channels {channels}")
        self.pool_scores = nn.Conv2d(channels, pool_heads, 1) if pool_heads else None
        if self.pool_scores is not None:
            nn.init.zeros_(self.pool_scores.weight)
            nn.init.zeros_(self.pool_scores.bias)
        self.stem = nn.Conv2d(in_channels, channels, 1)
        self.input_pos = nn.Parameter(torch.zeros(1, channels, input_side, input_side))
        nn.init.trunc_normal_(self.input_pos, std=0.02)
        self.before = nn.Sequential(*[ResBlock(channels=channels) for _ in range(depth)])
        self.after = nn.Sequential(*[ResBlock(channels=channels) for _ in range(depth)])
        self.readout = nn.Sequential(nn.Linear(channels, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def trunk(self, features: list[torch.Tensor], pixels: torch.Tensor | None = None) -> torch.Tensor:
        """The count-independent part (stem, input positions, blocks before pooling): computed once per
        frame at run time, whatever the visual-token count."""
        x = self.stem(_semantic_map(features, pixels))
        pos = self.input_pos
        if pos.shape[-2:] != x.shape[-2:]:
            pos = F.interpolate(pos, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.before(x + pos)

    def pool(self, x: torch.Tensor, average) -> torch.Tensor:
        """Trunk map (B, C, H, W) -> grid (B, C, n, n), given ``average`` (B, c, H, W) -> (B, c, n, n):
        adaptive average pooling in training, a matmul with its matrix in the export."""
        if self.pool_scores is None:
            return average(x)
        weights = torch.exp(POOL_LOG_WEIGHT * torch.tanh(self.pool_scores(x) / POOL_LOG_WEIGHT))  # (B, k, H, W)
        grouped = x.unflatten(1, (weights.shape[1], -1)) * weights.unsqueeze(2)  # (B, k, C/k, H, W)
        pooled = average(grouped.flatten(1, 2)).unflatten(1, (weights.shape[1], -1))
        return (pooled / average(weights).unsqueeze(2)).flatten(1, 2)

    def forward(self, features: list[torch.Tensor], num_tokens: int,
                pixels: torch.Tensor | None = None) -> torch.Tensor:
        side = grid_side(num_tokens, self.max_tokens)
        x = self.pool(self.trunk(features, pixels), lambda m: F.adaptive_avg_pool2d(m, side))
        x = self.after(x)
        return self._finish(self.readout(x.flatten(2).transpose(1, 2)), side)


class LinearProjector(_GridProjector):
    """Baseline: pool to the grid, one linear layer per cell, position code."""

    def __init__(self, *, in_channels: int, out_dim: int, max_tokens: int, **_: object) -> None:
        super().__init__(out_dim=out_dim, max_tokens=max_tokens)
        self.linear = nn.Linear(in_channels, out_dim)

    def forward(self, features: list[torch.Tensor], num_tokens: int,
                pixels: torch.Tensor | None = None) -> torch.Tensor:
        side = grid_side(num_tokens, self.max_tokens)
        x = F.adaptive_avg_pool2d(_semantic_map(features, pixels), side)
        return self._finish(self.linear(x.flatten(2).transpose(1, 2)), side)


class QueryResampler(nn.Module):
    """Baseline: learned queries cross-attend to the map; the first m are kept."""

    def __init__(self, *, in_channels: int, channels: int, out_dim: int, depth: int,
                 max_tokens: int, heads: int = 4, **_: object) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self.stem = nn.Linear(in_channels, channels)
        self.queries = nn.Parameter(torch.randn(max_tokens, channels) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(channels, heads, channels * 2, dropout=0.0,
                                       batch_first=True, norm_first=True)
            for _ in range(depth))
        self.pos_dim = 64
        self.pos_proj = nn.Linear(self.pos_dim, channels)
        self.readout = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, out_dim))

    def tokens_for(self, num_tokens: int) -> int:
        if num_tokens < 1:
            raise ValueError(f"visual token count must be >= 1, got {num_tokens}")
        return min(num_tokens, self.max_tokens)

    def forward(self, features: list[torch.Tensor], num_tokens: int,
                pixels: torch.Tensor | None = None) -> torch.Tensor:
        count = self.tokens_for(num_tokens)
        x = _semantic_map(features, pixels)
        height, width = x.shape[-2:]
        memory = self.stem(x.flatten(2).transpose(1, 2))
        memory = memory + self.pos_proj(sincos_2d(height, width, self.pos_dim, device=x.device, dtype=x.dtype))
        # Each query sees only itself and earlier queries, so the first m mean
        # the same thing whatever m is (the Matryoshka property).
        mask = torch.triu(torch.full((count, count), float("-inf"), device=x.device), diagonal=1)
        queries = self.queries[:count].unsqueeze(0).expand(x.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, memory, tgt_mask=mask)
        return self.readout(queries)


PROJECTORS = {"c_abstractor": CAbstractor, "linear": LinearProjector, "resampler": QueryResampler}


def build_projector(name: str, *, in_channels: int, channels: int, out_dim: int, depth: int,
                    max_tokens: int, input_side: int, pool_heads: int = 0) -> nn.Module:
    try:
        cls = PROJECTORS[name]
    except KeyError:
        raise ValueError(f"unknown projector {name!r}: choose from {sorted(PROJECTORS)}") from None
    if pool_heads and cls is not CAbstractor:
        raise ValueError("projector_pool_heads needs the c_abstractor projector")
    options = {"pool_heads": pool_heads} if pool_heads else {}
    return cls(in_channels=in_channels, channels=channels, out_dim=out_dim, depth=depth,
               max_tokens=max_tokens, input_side=input_side, **options)
