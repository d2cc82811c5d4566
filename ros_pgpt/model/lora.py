"""Low-rank adapters for a frozen pretrained LLM (LoRA)."""

from __future__ import annotations

import torch
from torch import nn


class LoRALinear(nn.Module):
    """y = W x + (B A x) * scale, with W frozen and A, B trained."""

    def __init__(self, *, base: nn.Linear, rank: int, alpha: float = 16.0) -> None:
        super().__init__()
        self.base = base
        self.lora_a = nn.Parameter(torch.randn(rank, base.in_features) / rank)
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale


def add_lora(model: nn.Module, *, rank: int, targets: tuple[str, ...] = ("q_proj", "v_proj")) -> int:
    """Wrap every Linear whose attribute name is in ``targets``; returns how many."""
    wrapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                setattr(module, name, LoRALinear(base=child, rank=rank))
                wrapped += 1
    return wrapped
