"""The grounding model: vision encoder -> elastic projector -> LLM -> perception heads.

A sequence is ``<bos> <image> v_1..v_n </image> prompt <answer> answer <eos>``.
The image prefix comes first so its KV cache serves every prompt on a frame.
An answer is one ``<obj>`` per object (left to right), the word "none", or
text (for "what is in <box>?"). The hidden state at each ``<obj>`` is decoded
into a box and a mask; the next input embedding carries that box back through
the perception encoder.

``GroundingModel`` holds what runs at query time and the steps an engine
takes: ``encode_frames`` (once per frame), ``image_prefix`` (once per frame
and visual-token count), ``visual_grid`` (the prefix's visual tokens for the
pointer) and ``perceive`` (once per ``<obj>``: pointer -> decoder ->
feedback). The training-only heads (attribute and superlative heads) are held
here so the checkpoint keeps them; their objectives live in
``ros_pgpt.training.objectives``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ros_pgpt.model.language_model import LanguageModel
from ros_pgpt.model.perception import AttributeHeads, PerceptionDecoder, PerceptionEncoder, VisualPointer


@dataclass
class FrameFeatures:
    """Everything the model keeps about one batch of frames (cached per frame at run time)."""

    pyramid: list[torch.Tensor]
    memory: torch.Tensor  # (B, L, dim) decoder attention memory
    mask_map: torch.Tensor  # (B, C, h, w) decoder mask features
    pixel_map: torch.Tensor  # (B, dim, h', w') decoder stride-8 features, detached (the projector's extra input)
    keys_values: list  # per decoder block, the memory's attention keys and values (B, L, dim) each

    def first(self, count: int) -> "FrameFeatures":
        """The features of the first ``count`` frames."""
        return FrameFeatures(pyramid=[level[:count] for level in self.pyramid], memory=self.memory[:count],
                             mask_map=self.mask_map[:count], pixel_map=self.pixel_map[:count],
                             keys_values=[(keys[:count], values[:count]) for keys, values in self.keys_values])


class GroundingModel(nn.Module):
    def __init__(self, *, image_encoder: nn.Module, projector: nn.Module, language_model: LanguageModel,
                 perception_encoder: PerceptionEncoder, perception_decoder: PerceptionDecoder,
                 image_size: int, projector_pixels: bool = False, pointer: VisualPointer | None = None,
                 token_attributes: AttributeHeads | None = None, pixel_attributes: AttributeHeads | None = None,
                 superlatives: nn.Module | None = None) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.projector = projector
        self.language_model = language_model
        self.perception_encoder = perception_encoder
        self.perception_decoder = perception_decoder
        self.pointer = pointer  # trained by its own loss; at run time it helps the decoder (None: no pointer)
        # Training-only attribute heads: on LLM hiddens (perception tokens and visual tokens
        # share one, so both encode attributes alike) and on the decoder's pixel memory.
        self.token_attributes = token_attributes
        self.pixel_attributes = pixel_attributes
        # Training-only: which superlatives name each object, read off the same LLM hiddens (visual tokens
        # and perception tokens), so the LLM compares objects where it sees them (superlative_heads).
        self.superlatives = superlatives
        self.image_size = image_size
        self.projector_pixels = projector_pixels  # the projector also reads frames.pixel_map

    @property
    def ids(self):
        return self.language_model.ids

    @property
    def mask_side(self) -> int:
        return self.image_size // self.image_encoder.strides[0]

    # -- frame side -------------------------------------------------------
    def encode_frames(self, images: torch.Tensor, pyramid: list[torch.Tensor] | None = None) -> FrameFeatures:
        """images (B, 3, S, S) in [0, 1] -> features reused by every prompt on them.

        ``pyramid``: the encoder's outputs when computed elsewhere (a frozen
        encoder run by ONNX Runtime during training).
        """
        if pyramid is None:
            # A frozen encoder runs without autograd even inside a training step.
            trains = torch.is_grad_enabled() and any(p.requires_grad for p in self.image_encoder.parameters())
            with torch.set_grad_enabled(trains):
                pyramid = self.image_encoder(images)
        memory, mask_map, pixel_map = self.perception_decoder.encode_pixels(pyramid)
        return FrameFeatures(pyramid=pyramid, memory=memory, mask_map=mask_map, pixel_map=pixel_map.detach(),
                             keys_values=self.perception_decoder.keys_values(memory))

    def image_prefix(self, frames: FrameFeatures, num_tokens: int) -> torch.Tensor:
        """(B, n + 3, D) embeddings of ``<bos> <image> visual tokens </image>``."""
        visual = self.projector(frames.pyramid, num_tokens, self.projector_pixel_input(frames))
        batch = visual.shape[0]
        ids = self.ids
        head = self.language_model.embed(torch.tensor([ids.bos, ids.image_start], device=visual.device))
        tail = self.language_model.embed(torch.tensor([ids.image_end], device=visual.device))
        return torch.cat([head.expand(batch, -1, -1), visual, tail.expand(batch, -1, -1)], dim=1)

    def projector_pixel_input(self, frames: FrameFeatures) -> torch.Tensor | None:
        """What the projector reads beside the pyramid: the decoder's pixel map with ``projector_pixels``."""
        return frames.pixel_map if self.projector_pixels else None

    @staticmethod
    def visual_hidden(prefix_hidden):
        """The visual-token slice (B, n, D) of a sequence laid out like an ``image_prefix`` (its embeddings
        or the LLM's hidden states over it; torch or numpy): after ``<bos> <image>``, before ``</image>``."""
        return prefix_hidden[:, 2:-1]

    @staticmethod
    def visual_grid(prefix_hidden):
        """``visual_hidden`` laid out as the tokens' square grid (B, s, s, D): what ``perceive`` points over."""
        visual = GroundingModel.visual_hidden(prefix_hidden)
        side = math.isqrt(visual.shape[1])
        return visual.reshape(visual.shape[0], side, side, visual.shape[-1])

    def pointer_grid(self, hidden: torch.Tensor, visual: torch.Tensor) -> torch.Tensor | None:
        """Perception-token hiddens (B, K, D) and their frames' visual-token hiddens (B, n, D) -> the
        pointer's log-probabilities over the n cells (B, K, s, s), or None for a model without a pointer."""
        if self.pointer is None:
            return None
        side = math.isqrt(visual.shape[1])
        return self.pointer.grid(hidden, visual.unflatten(1, (side, side)))

    def perceive(self, hidden: torch.Tensor, keys_values: list, mask_map: torch.Tensor,
                 visual: torch.Tensor | None = None):
        """One step per ``<obj>``: pointer -> decoder -> feedback.

        hidden (B, K, H): perception tokens' hidden states; ``keys_values`` and
        ``mask_map``: their frames' (``FrameFeatures``); ``visual`` (B, s, s, H):
        the image prefix's ``visual_grid`` (models with a visual pointer; else
        None). Returns boxes (B, K, 4) unit xyxy, mask logits (B, K, h, w), the
        feedback embedding of each box (B, K, H) for the next input token, and
        match logits (B, K) or None without a match head.
        """
        pointer = None if self.pointer is None else self.pointer.grid(hidden, visual)
        boxes, mask_logits, match = self.perception_decoder.decode(hidden, keys_values, mask_map, pointer)
        feedback = self.perception_encoder(boxes.reshape(-1, 4)).view(boxes.shape[0], boxes.shape[1], -1)
        return boxes, mask_logits, feedback, match
