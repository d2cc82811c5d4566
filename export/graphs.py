"""The deployable pieces of a ``GroundingModel`` as plain tensor-in/tensor-out modules.

Split by how often each runs at query time:

- ``FrameGraph`` (once per frame): images (B,3,S,S) in [0,1] -> the perception
  decoder's pixel side (its cross-attention keys/values ``attn_kv`` over the
  stride-8 memory, and ``mask_map``) and the C-Abstractor's
  count-independent trunk (``proj_map``: stem + input position + the residual
  blocks before pooling). Every prompt on the frame, at any visual-token
  count, reuses these.
- ``ProjectorGraph(n)`` (once per frame and token count): ``proj_map`` ->
  the LLM image prefix ``<bos> <image> v_1..v_n </image>`` as embeddings.
  One graph per supported count (the squares 1..M): adaptive average pooling
  to an n x n grid is written as a matmul with a constant pooling matrix
  taken from ``F.adaptive_avg_pool2d`` itself, so it is exact for every
  count, exportable by the legacy exporter and plain GEMM for TensorRT.
- ``PerceptionGraph`` (once per ``<obj>``): hidden states (B,K,H) + the cached
  pixel side (``attn_kv``, ``mask_map``) [+ the image prefix's visual-token
  hiddens as their grid (B,s,s,H), for models with a visual pointer] ->
  boxes (B,K,4), mask logits (B,K,h,w) and the feedback embedding of each box
  (the perception encoder), dynamic B, K and s.
- ``BoxEncoderGraph``: prompt boxes (N,4) -> embeddings (for "<box>" prompts).
- ``KVLlama`` (see llm.py): the language model with an explicit KV cache.

Each wrapper reuses the model's own submodules; ``check_*`` functions in
onnx_export.py compare them (and the ONNX files) against the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ros_pgpt.model.projector import CAbstractor


def supported_counts(max_tokens: int) -> list[int]:
    """Visual-token counts the projector can produce: the squares up to ``max_tokens``."""
    side = 1
    counts = []
    while side * side <= max_tokens:
        counts.append(side * side)
        side += 1
    return counts


def _require_cabstractor(model) -> CAbstractor:
    projector = model.projector
    if not isinstance(projector, CAbstractor):
        raise NotImplementedError(
            f"export supports the c_abstractor projector; this checkpoint uses {type(projector).__name__}")
    return projector


class FrameGraph(nn.Module):
    """images -> (attn_kv, mask_map, proj_map): all the per-frame work.

    ``attn_kv`` (B, 2*layers, L, dim) holds the perception decoder's
    cross-attention keys and values for each block: they depend only on the
    frame, so they are projected once here instead of once per object.
    """

    def __init__(self, model) -> None:
        super().__init__()
        _require_cabstractor(model)
        self.model = model

    def forward(self, images: torch.Tensor):
        model = self.model
        frames = model.encode_frames(images)
        attn_kv = torch.stack([kv for pair in frames.keys_values for kv in pair], 1)
        proj_map = model.projector.trunk(frames.pyramid, model.projector_pixel_input(frames))
        return attn_kv, frames.mask_map, proj_map


def pooling_matrix(height: int, width: int, side: int) -> torch.Tensor:
    """(H*W, side*side) matrix P with x.flatten(2) @ P == adaptive_avg_pool2d(x, side).flatten(2)."""
    basis = torch.eye(height * width, dtype=torch.float64).view(height * width, 1, height, width)
    return F.adaptive_avg_pool2d(basis, side).view(height * width, side * side).float()


class ProjectorGraph(nn.Module):
    """proj_map (B,C,h,w) -> image prefix embeddings (B, n+3, D) for one token count n."""

    def __init__(self, model, count: int, map_side: int) -> None:
        super().__init__()
        projector = _require_cabstractor(model)
        side = int(round(count ** 0.5))
        if side * side != count or count > projector.max_tokens:
            raise ValueError(f"unsupported visual-token count {count}")
        self.side = side
        self.projector = projector
        self.register_buffer("pool", pooling_matrix(map_side, map_side, side), persistent=False)
        with torch.no_grad():
            ids = model.ids
            lm = model.language_model
            head = lm.embed(torch.tensor([ids.bos, ids.image_start]))
            tail = lm.embed(torch.tensor([ids.image_end]))
        self.register_buffer("head", head.detach().clone(), persistent=False)
        self.register_buffer("tail", tail.detach().clone(), persistent=False)

    def forward(self, proj_map: torch.Tensor) -> torch.Tensor:
        projector = self.projector
        batch = proj_map.shape[0]
        side = self.side
        pooled = projector.pool(
            proj_map, lambda m: torch.matmul(m.flatten(2), self.pool).unflatten(2, (side, side)))
        x = projector.after(pooled)
        cells = projector.readout(x.flatten(2).transpose(1, 2))
        # The projector's own tail (position code, output norm) so the graph follows the model code.
        finish = getattr(projector, "_finish", None)
        tokens = finish(cells, self.side) if finish is not None else projector.positions(cells, self.side)
        head = self.head.unsqueeze(0).expand(batch, -1, -1)
        tail = self.tail.unsqueeze(0).expand(batch, -1, -1)
        return torch.cat([head, tokens, tail], dim=1)


class PerceptionGraph(nn.Module):
    """(hidden (B,K,H), attn_kv, mask_map[, visual (B,s,s,H)]) -> (boxes (B,K,4), mask logits (B,K,h,w),
    feedback (B,K,H)[, match logits (B,K) with a match head]).

    ``GroundingModel.perceive`` (pointer -> decoder -> feedback, what the
    PyTorch engine runs) with the keys/values from ``FrameGraph``.
    """

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.pointer = model.pointer

    def input_names(self) -> list[str]:
        return ["hidden", "attn_kv", "mask_map"] + (["visual"] if self.pointer is not None else [])

    def forward(self, hidden: torch.Tensor, attn_kv: torch.Tensor, mask_map: torch.Tensor,
                visual: torch.Tensor | None = None):
        keys_values = [(attn_kv[:, 2 * index], attn_kv[:, 2 * index + 1])
                       for index in range(len(self.model.perception_decoder.blocks))]
        boxes, logits, feedback, match = self.model.perceive(hidden, keys_values, mask_map, visual)
        return (boxes, logits, feedback) if match is None else (boxes, logits, feedback, match)


class BoxEncoderGraph(nn.Module):
    """boxes (N,4) unit xyxy -> embeddings (N,H)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.encoder = model.perception_encoder

    def forward(self, boxes: torch.Tensor) -> torch.Tensor:
        return self.encoder(boxes)
