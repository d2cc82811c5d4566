"""The grounding model: vision encoder -> elastic projector -> LLM -> perception heads.

A sequence is ``<bos> <image> v_1..v_n </image> prompt <answer> answer <eos>``.
The image prefix comes first so its KV cache serves every prompt on a frame.
An answer is one ``<obj>`` per object (left to right), the word "none", or
text (for "what is in <box>?"). The hidden state at each ``<obj>`` is decoded
into a box and a mask; the next input embedding carries that box back through
the perception encoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ros_pgpt.model.language_model import LanguageModel
from ros_pgpt.model.losses import dice_loss, generalized_box_iou
from ros_pgpt.model.perception import (
    AttributeHeads,
    PerceptionDecoder,
    PerceptionEncoder,
    VisualPointer,
    centre_cells,
)


@dataclass
class FrameFeatures:
    """Everything the model keeps about one batch of frames (cached per frame at run time)."""

    pyramid: list[torch.Tensor]
    memory: torch.Tensor  # (B, L, dim) decoder attention memory
    mask_map: torch.Tensor  # (B, C, h, w) decoder mask features
    pixel_map: torch.Tensor  # (B, dim, h', w') decoder stride-8 features, detached (the projector's extra input)


@dataclass
class SequenceBatch:
    """Text side of a training batch; positions index the text part (after the image prefix)."""

    scene_index: torch.Tensor  # (N,) which frame each sequence reads
    text_ids: torch.Tensor  # (N, T) right-padded
    text_mask: torch.Tensor  # (N, T) bool
    labels: torch.Tensor  # (N, T) next-token targets, -100 = ignore
    box_rows: torch.Tensor  # (Kb,) <box> placeholders
    box_cols: torch.Tensor
    box_values: torch.Tensor  # (Kb, 4) unit xyxy
    obj_rows: torch.Tensor  # (Ko,) <obj> answer tokens
    obj_cols: torch.Tensor
    obj_slots: torch.Tensor  # (Ko,) index of the object among its frame's objects
    obj_boxes: torch.Tensor  # (Ko, 4) unit xyxy targets
    obj_masks: torch.Tensor  # (Ko, h, w) soft targets on the mask grid
    # Every object of every frame, for the dense losses (None without them).
    obj_objects: torch.Tensor | None = None  # (Ko,) which object each <obj> is
    object_frames: torch.Tensor | None = None  # (No,)
    object_masks: torch.Tensor | None = None  # (No, h, w) visible coverage on the mask grid
    object_boxes: torch.Tensor | None = None  # (No, 4) unit xyxy
    object_attributes: torch.Tensor | None = None  # (No, 3) colour, shape, size ids (0 = no object)
    object_superlatives: torch.Tensor | None = None  # (No, L) batching.superlative_labels (-1 = none applies)
    # The last prompt token of every object question (not "what is in <box>?"): it decides the answer.
    decision_rows: torch.Tensor | None = None  # (Nd,)
    decision_cols: torch.Tensor | None = None
    decision_boxes: torch.Tensor | None = None  # (Nd, 4) first target's unit box (zeros when absent)
    decision_present: torch.Tensor | None = None  # (Nd,) bool
    # <obj> tokens forced onto prompts whose object is absent (no LM target): the match head's negatives.
    probe_rows: torch.Tensor | None = None  # (Kp,)
    probe_cols: torch.Tensor | None = None
    probe_slots: torch.Tensor | None = None  # (Kp,) slots after the frame's <obj> targets


class GroundingModel(nn.Module):
    def __init__(self, *, image_encoder: nn.Module, projector: nn.Module, language_model: LanguageModel,
                 perception_encoder: PerceptionEncoder, perception_decoder: PerceptionDecoder,
                 image_size: int, projector_pixels: bool = False, pointer: VisualPointer | None = None,
                 token_attributes: AttributeHeads | None = None, pixel_attributes: AttributeHeads | None = None,
                 superlatives: nn.Module | None = None, answer_format: str = "perception") -> None:
        super().__init__()
        self.answer_format = answer_format  # "perception" or "text_coordinates" (see ModelConfig)
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

    @property
    def needs_object_list(self) -> bool:
        """Whether the dense training losses need every object of every frame (``collate(list_objects=)``)."""
        return (self.pixel_attributes is not None or self.perception_decoder.box_readout == "pixel_votes"
                or self.superlatives is not None)

    @property
    def collate_options(self) -> dict:
        """The keyword arguments of ``batching.collate`` that make this model's training batches."""
        return {"image_size": self.image_size, "mask_side": self.mask_side, "answer_format": self.answer_format,
                "list_objects": self.needs_object_list,
                "match_probes": self.perception_decoder.match_head is not None}

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
        return FrameFeatures(pyramid=pyramid, memory=memory, mask_map=mask_map, pixel_map=pixel_map.detach())

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
    def visual_hidden(prefix_hidden: torch.Tensor) -> torch.Tensor:
        """The visual-token slice (B, n, D) of a sequence laid out like an ``image_prefix`` (its embeddings
        or the LLM's hidden states over it): after ``<bos> <image>``, before ``</image>``."""
        return prefix_hidden[:, 2:-1]

    def pointer_grid(self, hidden: torch.Tensor, visual: torch.Tensor) -> torch.Tensor | None:
        """Perception-token hiddens (B, K, D) and their frames' visual-token hiddens (B, n, D) -> the
        pointer's log-probabilities over the n cells (B, K, s, s), or None for a model without a pointer."""
        if self.pointer is None:
            return None
        side = math.isqrt(visual.shape[1])
        return self.pointer.grid(hidden, visual.unflatten(1, (side, side)))

    # -- training ---------------------------------------------------------
    def text_embeddings(self, batch: SequenceBatch) -> torch.Tensor:
        """Token embeddings plus perception-encoder codes for input boxes and object feedback."""
        embeds = self.language_model.embed(batch.text_ids)
        extra = torch.zeros_like(embeds)
        if batch.box_rows.numel():
            extra[batch.box_rows, batch.box_cols] = self.perception_encoder(batch.box_values)
        # The token after each <obj> carries the box just found (teacher forcing).
        follow = batch.obj_cols + 1
        keep = follow < embeds.shape[1]
        if keep.any():
            extra[batch.obj_rows[keep], follow[keep]] += self.perception_encoder(batch.obj_boxes[keep])
        return embeds + extra

    def forward(self, images: torch.Tensor, batch: SequenceBatch, num_tokens: int,
                pyramid: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Teacher-forced losses for one batch at one visual-token count.

        The image prefix runs once per frame; its KV cache is then gathered for
        every prompt on that frame (as at run time), which keeps the LLM cost
        per prompt to its text tokens.
        """
        from transformers import DynamicCache

        if self.needs_object_list and batch.object_masks is None:
            raise ValueError("this model's dense losses need every object: collate(..., list_objects=True)")
        frames = self.encode_frames(images, pyramid)
        prefix = self.image_prefix(frames, num_tokens)
        prefix_len = prefix.shape[1]
        cache = DynamicCache()
        prefix_hidden, _, _ = self.language_model(prefix, past_key_values=cache)
        _select_frames(cache, batch.scene_index)
        embeds = self.text_embeddings(batch)
        rows = embeds.shape[0]
        attention = torch.cat([batch.text_mask.new_ones(rows, prefix_len), batch.text_mask], dim=1)
        positions = torch.arange(prefix_len, prefix_len + embeds.shape[1], device=embeds.device)
        hidden, logits, _ = self.language_model(embeds, attention_mask=attention.long(), past_key_values=cache,
                                                position_ids=positions.expand(rows, -1))
        lm = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.labels.reshape(-1), ignore_index=-100)
        losses = {"lm": lm}
        visual = self.visual_hidden(prefix_hidden)
        side = math.isqrt(visual.shape[1])  # the visual tokens' grid
        matching = self.perception_decoder.match_head is not None
        if matching and batch.probe_rows is None:
            raise ValueError("this model's match head needs negatives: collate(..., match_probes=True)")
        if batch.obj_rows.numel():
            frame = batch.scene_index[batch.obj_rows]
            objects = hidden[batch.obj_rows, batch.obj_cols]
            decoded_rows, decoded_cols, decoded_slots = batch.obj_rows, batch.obj_cols, batch.obj_slots
            if matching:  # the probes ride in the same decoder call, in slots after the targets
                decoded_rows = torch.cat([decoded_rows, batch.probe_rows])
                decoded_cols = torch.cat([decoded_cols, batch.probe_cols])
                decoded_slots = torch.cat([decoded_slots, batch.probe_slots])
            decoded_frames = batch.scene_index[decoded_rows]
            slots = hidden.new_zeros(images.shape[0], int(decoded_slots.max()) + 1, hidden.shape[-1])
            slots[decoded_frames, decoded_slots] = hidden[decoded_rows, decoded_cols]
            pointer = self.pointer_grid(slots, visual) if self.perception_decoder.prior_gain is not None else None
            boxes, mask_logits, match_logits = self.perception_decoder(slots, frames.memory, frames.mask_map, pointer)
            targets = len(batch.obj_rows)
            boxes, mask_logits = boxes[frame, batch.obj_slots], mask_logits[frame, batch.obj_slots]
            losses["box_l1"] = F.l1_loss(boxes, batch.obj_boxes)
            losses["box_giou"] = (1 - generalized_box_iou(boxes, batch.obj_boxes)).mean()
            losses["mask_bce"] = F.binary_cross_entropy_with_logits(mask_logits, batch.obj_masks)
            losses["mask_dice"] = dice_loss(mask_logits, batch.obj_masks)
            if matching:
                match_logits = match_logits[decoded_frames, decoded_slots]
                losses["match"] = _balanced_bce(match_logits[:targets], match_logits[targets:])
            if self.pointer is not None:
                logits = self.pointer(objects, visual[frame])
                losses["pointer"] = F.cross_entropy(logits, centre_cells(batch.obj_boxes, side))
            if self.token_attributes is not None:
                losses["attr_token"] = self.token_attributes.loss(objects, batch.object_attributes[batch.obj_objects])
        if self.pointer is not None and self.pointer.no_match is not None and batch.decision_rows.numel():
            logits = self.pointer(hidden[batch.decision_rows, batch.decision_cols],
                                  visual[batch.scene_index[batch.decision_rows]])
            no_match = torch.full_like(batch.decision_rows, visual.shape[1])
            target = torch.where(batch.decision_present, centre_cells(batch.decision_boxes, side), no_match)
            losses["decision"] = F.cross_entropy(logits, target)
        if self.token_attributes is not None or self.superlatives is not None:  # both label the visual cells
            owners = region_owners(batch, images.shape[0], side, with_centres=True)
        if self.token_attributes is not None:
            cells = attribute_labels(batch, owners)
            losses["attr_visual"] = self.token_attributes.loss(visual.reshape(-1, visual.shape[-1]), cells)
        if self.superlatives is not None:
            owned = owners >= 0
            rows = torch.cat([visual.reshape(-1, visual.shape[-1])[owned], hidden[batch.obj_rows, batch.obj_cols]])
            labels = batch.object_superlatives[torch.cat([owners[owned], batch.obj_objects])]
            known = labels >= 0
            losses["superlative"] = (F.binary_cross_entropy_with_logits(self.superlatives(rows)[known], labels[known])
                                     if known.any() else rows.sum() * 0)
        if self.pixel_attributes is not None:
            memory_side = math.isqrt(frames.memory.shape[1])
            pixels = attribute_labels(batch, region_owners(batch, images.shape[0], memory_side, with_centres=False))
            losses["attr_pixel"] = self.pixel_attributes.loss(frames.memory.reshape(-1, frames.memory.shape[-1]),
                                                              pixels)
        if self.perception_decoder.box_readout == "pixel_votes":
            # Every pixel that an object covers votes for that object's box.
            owners = region_owners(batch, images.shape[0], batch.object_masks.shape[-1], with_centres=False)
            votes = self.perception_decoder.votes(frames.mask_map).permute(0, 2, 3, 1).reshape(-1, 4)
            covered = owners >= 0
            if covered.any():
                losses["box_votes"] = F.l1_loss(votes[covered], batch.object_boxes[owners[covered]])
        return losses


def _select_frames(cache, index: torch.Tensor) -> None:
    """Give every prompt (row) its frame's KV cache, ``index`` naming each row's frame. ``index_select``
    instead of the cache's own fancy indexing: its backward (``index_add``) is ~4x faster than the
    accumulating ``index_put`` that indexing backs onto."""
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, index)
        layer.values = layer.values.index_select(0, index)


def _balanced_bce(positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Mean BCE of the positives (target 1) plus that of the negatives (target 0), each averaged on its own:
    absent prompts are a minority of the mix, and the threshold should not learn their rarity."""
    loss = F.binary_cross_entropy_with_logits(positives, torch.ones_like(positives))
    if negatives.numel():
        loss = loss + F.binary_cross_entropy_with_logits(negatives, torch.zeros_like(negatives))
    return loss


NO_OBJECT, AMBIGUOUS = -1, -2


def region_owners(batch: SequenceBatch, frames: int, side: int, *, with_centres: bool) -> torch.Tensor:
    """The object (index into the batch's object list) owning each cell of a side x side grid per frame.

    (frames * side²,) row-major. A cell belongs to the object covering at least
    half of it (or, ``with_centres``, holding its centre: small objects still
    own a coarse cell); ``NO_OBJECT`` where objects cover under 5 %;
    ``AMBIGUOUS`` otherwise.
    """
    count = batch.object_frames.numel()
    cover = F.adaptive_avg_pool2d(batch.object_masks[:, None], side).flatten(1)  # (No, side²)
    per_frame = cover.new_zeros(frames, count, side * side)
    per_frame[batch.object_frames, torch.arange(count, device=cover.device)] = cover
    best, owners = per_frame.max(dim=1)
    empty = per_frame.sum(dim=1) < 0.05
    owners[empty] = NO_OBJECT
    owners[~empty & (best < 0.5)] = AMBIGUOUS
    owners = owners.flatten()
    if with_centres:
        flat = batch.object_frames * side * side + centre_cells(batch.object_boxes, side)
        holders = torch.zeros_like(owners).index_add_(0, flat, torch.ones_like(flat))
        owners[flat] = torch.arange(count, device=owners.device)
        owners[holders > 1] = AMBIGUOUS
    return owners


def attribute_labels(batch: SequenceBatch, owners: torch.Tensor) -> torch.Tensor:
    """Owners -> (N, 3) colour, shape, size labels: 0 for no object, -100 (ignored) where ambiguous."""
    labels = batch.object_attributes[owners.clamp(min=0)]
    labels[owners == NO_OBJECT] = 0
    labels[owners == AMBIGUOUS] = -100
    return labels
