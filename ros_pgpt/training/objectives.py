"""The training objectives: one function per loss family.

Each reads the model, the batch and what the teacher-forced pass computed
(``Pass``, teacher_forcing.py) and returns its named losses ({} where the
model or the batch has nothing for it). ``TrainConfig`` weighs each name
(``<name>_weight``). PerceptionGPT's own: the LM loss and the box (L1 +
GIoU) and mask (BCE + Dice) losses of every ``<obj>``; ours: the match head,
the visual pointer, the attribute and superlative heads, the pixel box
votes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ros_pgpt.model.grounding_model import FrameFeatures
from ros_pgpt.model.losses import dice_loss, generalized_box_iou
from ros_pgpt.model.perception import centre_cells
from ros_pgpt.training.regions import attribute_labels, region_owners


@dataclass
class Pass:
    """What one teacher-forced pass computed (teacher_forcing.py)."""

    frames: FrameFeatures
    visual: torch.Tensor  # (B, n, D) the LLM's hidden states over the visual tokens
    hidden: torch.Tensor  # (N, T, D) ... over the text
    logits: torch.Tensor  # (N, T, V)
    boxes: torch.Tensor | None = None  # (Ko, 4) decoded at the <obj> targets (None: no targets)
    mask_logits: torch.Tensor | None = None  # (Ko, h, w)
    match_logits: torch.Tensor | None = None  # (Ko + Kp,) targets, then the probes (None: no match head)

    @property
    def frame_count(self) -> int:
        return self.frames.mask_map.shape[0]

    @property
    def side(self) -> int:
        return math.isqrt(self.visual.shape[1])  # the visual tokens' grid


def language(model, batch, run: Pass) -> dict:
    logits = run.logits
    return {"lm": F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.labels.reshape(-1), ignore_index=-100)}


def boxes_and_masks(model, batch, run: Pass) -> dict:
    if run.boxes is None:
        return {}
    return {"box_l1": F.l1_loss(run.boxes, batch.obj_boxes),
            "box_giou": (1 - generalized_box_iou(run.boxes, batch.obj_boxes)).mean(),
            "mask_bce": F.binary_cross_entropy_with_logits(run.mask_logits, batch.obj_masks),
            "mask_dice": dice_loss(run.mask_logits, batch.obj_masks)}


def match(model, batch, run: Pass) -> dict:
    """The match head: targets are positives, the probes (absent objects) negatives, each averaged on its
    own: absent prompts are a minority of the mix, and the threshold should not learn their rarity."""
    if run.match_logits is None:
        return {}
    targets = len(batch.obj_rows)
    positives, negatives = run.match_logits[:targets], run.match_logits[targets:]
    loss = F.binary_cross_entropy_with_logits(positives, torch.ones_like(positives))
    if negatives.numel():
        loss = loss + F.binary_cross_entropy_with_logits(negatives, torch.zeros_like(negatives))
    return {"match": loss}


def pointer(model, batch, run: Pass) -> dict:
    """Each perception token points at the visual token holding its object's centre."""
    if model.pointer is None or not batch.obj_rows.numel():
        return {}
    frame = batch.scene_index[batch.obj_rows]
    logits = model.pointer(run.hidden[batch.obj_rows, batch.obj_cols], run.visual[frame])
    return {"pointer": F.cross_entropy(logits, centre_cells(batch.obj_boxes, run.side))}


def attributes(model, batch, run: Pass) -> dict:
    """Colour, shape and size of the object at each perception token, visual token and memory pixel."""
    losses = {}
    if model.token_attributes is not None:
        if batch.obj_rows.numel():
            objects = run.hidden[batch.obj_rows, batch.obj_cols]
            losses["attr_token"] = model.token_attributes.loss(objects, batch.object_attributes[batch.obj_objects])
        visual = run.visual
        cells = attribute_labels(batch, region_owners(batch, run.frame_count, run.side, with_centres=True))
        losses["attr_visual"] = model.token_attributes.loss(visual.reshape(-1, visual.shape[-1]), cells)
    if model.pixel_attributes is not None:
        memory = run.frames.memory
        owners = region_owners(batch, run.frame_count, math.isqrt(memory.shape[1]), with_centres=False)
        losses["attr_pixel"] = model.pixel_attributes.loss(memory.reshape(-1, memory.shape[-1]),
                                                           attribute_labels(batch, owners))
    return losses


def superlatives(model, batch, run: Pass) -> dict:
    """Which superlatives name each object, on the visual tokens it owns and on its perception tokens."""
    if model.superlatives is None:
        return {}
    owners = region_owners(batch, run.frame_count, run.side, with_centres=True)
    owned = owners >= 0
    rows = torch.cat([run.visual.reshape(-1, run.visual.shape[-1])[owned], run.hidden[batch.obj_rows, batch.obj_cols]])
    labels = batch.object_superlatives[torch.cat([owners[owned], batch.obj_objects])]
    known = labels >= 0
    loss = F.binary_cross_entropy_with_logits(model.superlatives(rows)[known], labels[known]) if known.any() \
        else rows.sum() * 0
    return {"superlative": loss}


def box_votes(model, batch, run: Pass) -> dict:
    """Pixel votes: every pixel that an object covers votes for that object's box."""
    if model.perception_decoder.box_readout != "pixel_votes":
        return {}
    owners = region_owners(batch, run.frame_count, batch.object_masks.shape[-1], with_centres=False)
    votes = model.perception_decoder.votes(run.frames.mask_map).permute(0, 2, 3, 1).reshape(-1, 4)
    covered = owners >= 0
    return {"box_votes": F.l1_loss(votes[covered], batch.object_boxes[owners[covered]])} if covered.any() else {}


OBJECTIVES = (language, boxes_and_masks, match, pointer, attributes, superlatives, box_votes)
