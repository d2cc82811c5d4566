"""Ranks the objects a perception token could mean against each other.

Superlatives and relations ("the leftmost red square", "the star left of the
red circle") are decided by comparing objects, while the mask query and the
match head look at one object at a time. ``ObjectRanker`` takes a token's
intent and a set of objects (what each shows, pooled from the match head's
evidence channels, and its box), lets every object compare itself with every
other (a relation network: a message from each pair, computed from both
objects and their boxes' offset, summed, so "how many objects like this one lie
to my left" is one learned sum), and gives each object a logit. Trained with
cross-entropy over a frame's true objects, the token's object as the target; at
run time it ranks the objects under the token's mask
(``PerceptionDecoder._pick_candidate``).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import MLP, box_fourier

EXCLUDED = -1e4  # the logit of a set slot holding no object (fp16-safe, off any softmax)


class ObjectRanker(nn.Module):
    """(token hiddens (N, H), object evidence (N, C, E), unit boxes (N, C, 4), valid (N, C)) -> logits (N, C)."""

    def __init__(self, *, hidden_dim: int, evidence_dim: int, dim: int = 128, code_dim: int = 16) -> None:
        super().__init__()
        self.code_dim = code_dim
        self.intent = MLP(dims=[hidden_dim, dim, dim])
        self.describe = MLP(dims=[evidence_dim + 4 * code_dim, dim, dim])
        self.fuse = MLP(dims=[3 * dim, dim, dim])
        self.relate = MLP(dims=[2 * dim + 4, dim, dim])
        self.score = MLP(dims=[2 * dim, dim, 1])

    def forward(self, hidden: torch.Tensor, evidence: torch.Tensor, boxes: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        count = boxes.shape[1]
        code = box_fourier(boxes.reshape(-1, 4), self.code_dim).view(*boxes.shape[:2], -1)
        objects = self.describe(torch.cat([evidence, code], dim=-1))
        intent = self.intent(hidden).unsqueeze(1).expand_as(objects)
        own = self.fuse(torch.cat([objects, intent, objects * intent], dim=-1))  # (N, C, d): this object for this token
        pairs = torch.cat([own.unsqueeze(2).expand(-1, -1, count, -1), own.unsqueeze(1).expand(-1, count, -1, -1),
                           boxes.unsqueeze(2) - boxes.unsqueeze(1)], dim=-1)
        others = valid.unsqueeze(1) & ~torch.eye(count, dtype=torch.bool, device=boxes.device)
        messages = (self.relate(pairs) * others.unsqueeze(-1).to(own.dtype)).sum(dim=2)
        logits = self.score(torch.cat([own, messages], dim=-1)).squeeze(-1)
        return logits.masked_fill(~valid, EXCLUDED)
