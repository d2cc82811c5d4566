"""The perception decoder's query block: cross-attention to a frame's pixel memory, then an MLP.

Written out once (not ``nn.MultiheadAttention.forward``), so that training,
the PyTorch engine and the ONNX graphs (which trace it) run the same code, and
split where the run time splits the work: ``keys_values`` per frame,
``attend`` per perception token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ros_pgpt.model.common import MLP


class CrossAttentionBlock(nn.Module):
    """A query block: cross-attention to the frame's memory, then an MLP.

    The memory's keys and values (``keys_values``) depend only on the frame, so
    engines compute them once per frame and every perception token reuses
    them; ``attend`` is the attention itself, written out (not
    ``nn.MultiheadAttention.forward``) so that the ONNX graphs trace this very
    code. ``attn`` is kept for its parameters (their checkpoint names).
    """

    def __init__(self, *, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dims=[dim, dim * 4, dim])

    def keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory (B, L, dim) -> its keys and values (B, L, dim) each (the packed in-projection's rows)."""
        dim = self.attn.embed_dim
        weight, bias = self.attn.in_proj_weight, self.attn.in_proj_bias
        return (F.linear(memory, weight[dim:2 * dim], bias[dim:2 * dim]),
                F.linear(memory, weight[2 * dim:], bias[2 * dim:]))

    def attend(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """Multi-head attention of queries (B, K, dim) over keys/values (B, L, dim), with an additive
        (B, K, L) bias shared by the heads (no dropout: it has none)."""
        dim, heads = self.attn.embed_dim, self.attn.num_heads
        head_dim = dim // heads
        q = F.linear(query, self.attn.in_proj_weight[:dim], self.attn.in_proj_bias[:dim])
        batch, count, length = q.shape[0], q.shape[1], keys.shape[1]
        q = q.view(batch, count, heads, head_dim).transpose(1, 2)
        k = keys.view(batch, length, heads, head_dim).transpose(1, 2)
        v = values.view(batch, length, heads, head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * head_dim ** -0.5
        if bias is not None:
            scores = scores + bias.unsqueeze(1)
        out = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(batch, count, dim)
        return self.attn.out_proj(out)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        query = query + self.attend(self.norm_q(query), keys, values, bias)
        return query + self.mlp(self.norm_mlp(query))
