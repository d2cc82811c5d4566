"""The deployable pieces of a ``GroundingModel`` as plain tensor-in/tensor-out modules.

Split by how often each runs at query time:

- ``FrameGraph`` (once per frame): images (B,3,S,S) in [0,1] -> the perception
  decoder's pixel side (``memory``, ``mask_map``) and the C-Abstractor's
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
  pixel side -> boxes (B,K,4), mask logits (B,K,h,w) and the feedback
  embedding of each box (the perception encoder), dynamic B and K.
- ``BoxEncoderGraph``: prompt boxes (N,4) -> embeddings (for "<box>" prompts).
- ``KVLlama`` (see llm.py): the language model with an explicit KV cache.

Each wrapper reuses the model's own submodules; ``check_*`` functions in
onnx_export.py compare them (and the ONNX files) against the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ros_pgpt.modeling.projector import CAbstractor, _semantic_map


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
    """images -> (memory, mask_map, proj_map): all the per-frame work."""

    def __init__(self, model) -> None:
        super().__init__()
        self.encoder = model.image_encoder
        self.decoder = model.perception_decoder
        self.projector = _require_cabstractor(model)

    def forward(self, images: torch.Tensor):
        pyramid = self.encoder(images)
        memory, mask_map = self.decoder.encode_pixels(pyramid)
        projector = self.projector
        x = projector.stem(_semantic_map(pyramid))
        pos = projector.input_pos
        if pos.shape[-2:] != x.shape[-2:]:
            pos = F.interpolate(pos, size=x.shape[-2:], mode="bilinear", align_corners=False)
        proj_map = projector.before(x + pos)
        return memory, mask_map, proj_map


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
        self.after = projector.after
        self.readout = projector.readout
        self.register_buffer("pool", pooling_matrix(map_side, map_side, side), persistent=False)
        from ros_pgpt.modeling.common import sincos_2d

        positions = projector.positions
        with torch.no_grad():
            code = positions.proj(sincos_2d(side, side, positions.code_dim))
            ids = model.ids
            lm = model.language_model
            head = lm.embed(torch.tensor([ids.bos, ids.image_start]))
            tail = lm.embed(torch.tensor([ids.image_end]))
        self.register_buffer("position_code", code.detach().clone(), persistent=False)
        self.register_buffer("head", head.detach().clone(), persistent=False)
        self.register_buffer("tail", tail.detach().clone(), persistent=False)

    def forward(self, proj_map: torch.Tensor) -> torch.Tensor:
        batch, channels = proj_map.shape[0], proj_map.shape[1]
        pooled = torch.matmul(proj_map.flatten(2), self.pool).view(batch, channels, self.side, self.side)
        x = self.after(pooled)
        tokens = self.readout(x.flatten(2).transpose(1, 2)) + self.position_code
        head = self.head.unsqueeze(0).expand(batch, -1, -1)
        tail = self.tail.unsqueeze(0).expand(batch, -1, -1)
        return torch.cat([head, tokens, tail], dim=1)


class PerceptionGraph(nn.Module):
    """(hidden (B,K,H), memory, mask_map) -> (boxes (B,K,4), mask logits (B,K,h,w), feedback (B,K,H))."""

    def __init__(self, model) -> None:
        super().__init__()
        self.decoder = model.perception_decoder
        self.encoder = model.perception_encoder

    def forward(self, hidden: torch.Tensor, memory: torch.Tensor, mask_map: torch.Tensor):
        boxes, logits = self.decoder(hidden, memory, mask_map)
        feedback = self.encoder(boxes.reshape(-1, 4)).view(boxes.shape[0], boxes.shape[1], -1)
        return boxes, logits, feedback


class BoxEncoderGraph(nn.Module):
    """boxes (N,4) unit xyxy -> embeddings (N,H)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.encoder = model.perception_encoder

    def forward(self, boxes: torch.Tensor) -> torch.Tensor:
        return self.encoder(boxes)
