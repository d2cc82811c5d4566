"""PerceptionGPT's light heads around the LLM.

- ``PerceptionEncoder``: a box -> one LLM input embedding, so prompts can hold
  boxes ("what is in <box>?") and the token after each decoded object knows
  which object was just found.
- ``VisualPointer``: scores the visual tokens against a perception token's
  hidden state; its cross-entropy against the cell that holds the object's
  centre gives the LLM a direct localization signal, which box and mask
  losses alone pass back to it only weakly at the start. At run time its
  log-probabilities (``VisualPointer.grid``) help the decoder choose which
  object a token means.
- ``AttributeHeads`` (training only): colour / shape / size classifiers on
  perception-token hiddens, on the visual tokens' hiddens (what sits at each
  grid cell) and on the decoder's pixel memory (what covers each pixel). Dense
  labels teach both sides of the query-to-pixel match what to encode long
  before the sparse box and mask losses would.
- ``PerceptionDecoder``: a perception token's hidden state -> a box and a
  full-resolution mask. The hidden state becomes a query that cross-attends to
  a stride-8 feature pyramid map, then an MLP regresses the box and a dot
  product with a stride-4 map gives mask logits. The pixel side
  (``encode_pixels``) depends only on the frame and is cached per frame.
  Optionally a match head scores whether the decoded object is what the token
  asked for, so a run can refuse a look-alike instead of boxing it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ros_pgpt.model.attention import CrossAttentionBlock
from ros_pgpt.model.common import MLP, LayerNorm2d, box_fourier, sincos_2d
from ros_pgpt.model.losses import box_iou


class PerceptionEncoder(nn.Module):
    """Unit xyxy box -> LLM-width embedding."""

    def __init__(self, *, out_dim: int, code_dim: int = 32) -> None:
        super().__init__()
        self.code_dim = code_dim
        self.mlp = MLP(dims=[4 * code_dim, out_dim, out_dim])

    def forward(self, boxes: torch.Tensor) -> torch.Tensor:
        return self.mlp(box_fourier(boxes, self.code_dim))


class VisualPointer(nn.Module):
    """Token hidden (K, D) x visual-token hiddens (K, n, D) -> logits (K, n)."""

    def __init__(self, *, hidden_dim: int, dim: int = 128) -> None:
        super().__init__()
        self.query = nn.Linear(hidden_dim, dim)
        self.key = nn.Linear(hidden_dim, dim)
        self.scale = dim ** -0.5

    def forward(self, hidden: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        return torch.einsum("kd,knd->kn", self.query(hidden), self.key(visual)) * self.scale

    def grid(self, hidden: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Token hiddens (B, K, D) x one frame's visual-token hiddens laid out as their grid (B, s, s, D) ->
        log-probabilities (B, K, s, s) that each token's object is centred in each cell."""
        logits = torch.einsum("bkd,bijd->bkij", self.query(hidden), self.key(visual)) * self.scale
        return logits.flatten(2).log_softmax(-1).view_as(logits)


def centre_cells(boxes: torch.Tensor, side: int) -> torch.Tensor:
    """Row-major index of the cell of a side x side grid holding each unit box's centre (boxes (..., 4) ->
    (...)): the pointer's training target and where the run-time choice reads it."""
    cell = ((boxes[..., :2] + boxes[..., 2:]) / 2 * side).long().clamp(0, side - 1)
    return cell[..., 1] * side + cell[..., 0]


class AttributeHeads(nn.Module):
    """Features (N, dim) -> one linear classifier per attribute; class 0 of each means "no object"."""

    def __init__(self, *, dim: int, classes: tuple[int, ...]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(dim, count) for count in classes)

    def loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the attributes; labels (N, attributes), -100 = ignore.

        Rows showing an object and empty rows (class 0) are averaged apart: empty cells are most of
        a frame, and a plain mean let them hide how poorly objects were told apart.
        """
        objects = labels[:, 0] > 0
        losses = []
        for index, head in enumerate(self.heads):
            valid = labels[:, index] >= 0
            if not valid.any():
                continue
            per_row = F.cross_entropy(head(features), labels[:, index].clamp(min=0), reduction="none")
            losses.append(torch.stack([per_row[valid & side].mean() for side in (objects, ~objects)
                                       if (valid & side).any()]).mean())
        return torch.stack(losses).mean() if losses else features.sum() * 0


BOX_READOUTS = ("query", "pixel_votes")
MATCH_EVIDENCE = 32  # mask-map channels the match head reads
# Run-time readout with pixel votes (docs/MODEL.md): pixels whose box votes overlap by this IoU show
# one object; up to CANDIDATES objects under a mask (by mask logit) are candidates for the token's object.
# Every candidate is ranked by match logit + POINTED_MASS_WEIGHT * log(share) + POINTER_WEIGHT * the
# pointer's log-probability of the cell holding its box centre (the pointer prior): the LLM's own view of
# where the object is vouches for objects the mask barely reaches. All chosen on held-out seed 1
# (docs/MODEL.md). The ranking without a pointer prior was an ablation: git tag ablation-variants.
VOTE_AGREEMENT = 0.5
CANDIDATES = 4
POINTED_MASS_WEIGHT = 0.25
POINTER_WEIGHT = 1.0
OTHER_OBJECT_LOGIT = -20.0  # a candidate's mask logits on the other candidates' pixels (off at any threshold)
OUTSIDE_CANDIDATE = 1e4  # subtracted from mask logits off a candidate: its softmax ignores them (fp16-safe)
# The pointer prior (``pointer_prior``) biases the decoder's attention by the pointer's log-probabilities,
# floored here so that a confident pointer dims the cells it rules out without blinding the decoder to them.
PRIOR_FLOOR = -8.0


class PerceptionDecoder(nn.Module):
    """Hidden states + cached pixel features -> (unit xyxy boxes, mask logits).

    ``box_readout``: "query" regresses the box from the attended query with an
    MLP (PerceptionGPT); "pixel_votes" has every stride-4 pixel predict the box
    of the object under it (query-independent, trained densely on all objects)
    and reads a query's box as the vote averaged under its mask's softmax, so a
    box is as good as the mask that selects it (``readout`` at run time,
    ``dense_readout`` in training).

    ``match_head``: a verifier that compares what the token asks for (its
    hidden state) with what its mask found (evidence channels of the mask map
    pooled under the mask) and returns a logit that the object matches;
    trained against tokens forced onto prompts whose object is absent. Its
    gradient reaches the LLM (which learns to say in the token what to check)
    but not the box and mask path, which it could only disturb.

    ``pointer_prior``: the visual pointer's log-probabilities (upsampled to the
    stride-8 memory) bias the cross-attention, scaled by a learned gain: the
    decoder looks first where the LLM points.
    """

    def __init__(self, *, hidden_dim: int, feature_channels: tuple[int, ...], dim: int = 128,
                 layers: int = 2, heads: int = 4, box_readout: str = "query", match_head: bool = False,
                 pointer_prior: bool = False) -> None:
        super().__init__()
        if box_readout not in BOX_READOUTS:
            raise ValueError(f"unknown box_readout {box_readout!r}: choose from {', '.join(BOX_READOUTS)}")
        if match_head and box_readout == "pixel_votes" and not pointer_prior:
            raise ValueError("a match head on pixel votes ranks its candidates with the pointer prior: set "
                             "pointer_prior (the ranking without it is at git tag ablation-variants)")
        self.dim = dim
        self.heads = heads
        self.box_readout = box_readout
        self.prior_gain = nn.Parameter(torch.ones(())) if pointer_prior else None
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in feature_channels)
        self.smooth = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), LayerNorm2d(dim), nn.GELU())
        self.mask_features = nn.Sequential(LayerNorm2d(dim), nn.GELU(), nn.Conv2d(dim, dim // 2, 1))
        self.query = MLP(dims=[hidden_dim, dim, dim])
        self.blocks = nn.ModuleList(CrossAttentionBlock(dim=dim, heads=heads) for _ in range(layers))
        self.norm_out = nn.LayerNorm(dim)
        if box_readout == "query":
            self.box_head = MLP(dims=[dim, dim, 4])
        else:
            # Distances from each stride-8 pixel to its object's four sides (FCOS-style).
            self.box_votes = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1), nn.GELU(),
                                           nn.Conv2d(dim // 2, 4, 1))
        self.mask_embed = MLP(dims=[dim, dim, dim // 2])
        self.match_head = None
        if match_head:
            # What each stride-8 pixel shows, for the verifier only: channels of the mask map after the
            # mask features, before the votes.
            self.evidence = nn.Conv2d(dim, MATCH_EVIDENCE, 1)
            self.match_intent = MLP(dims=[hidden_dim, dim, dim])
            self.match_found = nn.Linear(dim, MATCH_EVIDENCE)
            self.match_head = MLP(dims=[dim + 2 * MATCH_EVIDENCE, dim, 1])

    def encode_pixels(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pyramid (strides 4, 8, 16, 32) -> (attention memory (B, L, dim), mask map (B, C, H/4, W/4),
        pixel map (B, dim, H/8, W/8): the memory before its position code).

        A top-down FPN down to stride 8 feeds the attention; the stride-4 map
        for the masks adds the finest level with 1x1 convs only (it is large).
        With a match head the mask map carries the verifier's evidence channels
        next; with pixel votes its last four channels are each pixel's box vote
        (unit x0, y0, x1, y1).
        """
        x = self.lateral[3](features[3])
        for level in (2, 1):
            lateral = self.lateral[level](features[level])
            x = lateral + F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        stride8 = self.smooth(x)
        fine = self.lateral[0](features[0])
        fine = fine + F.interpolate(stride8, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        mask_map = self.mask_features(fine)
        if self.match_head is not None:
            evidence = F.interpolate(self.evidence(stride8.detach()), size=fine.shape[-2:], mode="bilinear",
                                     align_corners=False)
            mask_map = torch.cat([mask_map, evidence], dim=1)
        if self.box_readout == "pixel_votes":
            distances = F.interpolate(F.softplus(self.box_votes(stride8)) * 0.1, size=fine.shape[-2:],
                                      mode="bilinear", align_corners=False)
            mask_map = torch.cat([mask_map, _box_votes(distances)], dim=1)
        height, width = stride8.shape[-2:]
        memory = stride8.flatten(2).transpose(1, 2)
        memory = memory + sincos_2d(height, width, self.dim, device=memory.device, dtype=memory.dtype)
        return memory, mask_map, stride8

    def keys_values(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Attention memory (B, L, dim) -> each block's keys and values: the frame's share of the work."""
        return [block.keys_values(memory) for block in self.blocks]

    def forward(self, hidden: torch.Tensor, memory: torch.Tensor, mask_map: torch.Tensor,
                pointer: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The run-time readout (``decode``) from the attention memory itself."""
        return self.decode(hidden, self.keys_values(memory), mask_map, pointer)

    def decode(self, hidden: torch.Tensor, keys_values: list, mask_map: torch.Tensor,
               pointer: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Run time: hidden (B, K, H): K perception tokens per frame; ``keys_values`` and mask_map from
        the frame (``keys_values(memory)``, ``encode_pixels``); pointer: the tokens' ``VisualPointer.grid``
        log-probabilities (B, K, s, s), when the model has one.

        Queries do not attend to each other, so padding slots change nothing.
        Returns boxes (B, K, 4) unit xyxy, mask logits (B, K, h, w) and match
        logits (B, K) (None without a match head).
        """
        query, prior = self.attend(hidden, keys_values, mask_map, pointer)
        return self.readout(hidden, query, mask_map, prior)

    def decode_for_training(self, hidden: torch.Tensor, keys_values: list, mask_map: torch.Tensor,
                            pointer: torch.Tensor | None = None):
        """``decode`` with the training readout (``dense_readout``)."""
        query, _ = self.attend(hidden, keys_values, mask_map, pointer)
        return self.dense_readout(hidden, query, mask_map)

    def attend(self, hidden: torch.Tensor, keys_values: list, mask_map: torch.Tensor,
               pointer: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(attended queries (B, K, dim), the pointer prior on the memory grid or None)."""
        prior = self.prior(pointer, mask_map)
        bias = self.attention_bias(prior)
        query = self.query(hidden)
        for block, (keys, values) in zip(self.blocks, keys_values):
            query = block(query, keys, values, bias)
        return self.norm_out(query), prior

    def prior(self, pointer: torch.Tensor | None, mask_map: torch.Tensor) -> torch.Tensor | None:
        """Pointer log-probabilities (B, K, s, s) -> the same on the stride-8 memory grid (B, K, h/2, w/2)."""
        if pointer is None:
            if self.prior_gain is not None:
                raise ValueError("this decoder's attention needs the visual pointer's log-probabilities")
            return None
        size = (mask_map.shape[-2] // 2, mask_map.shape[-1] // 2)
        return F.interpolate(pointer, size=size, mode="nearest")

    def attention_bias(self, prior: torch.Tensor | None) -> torch.Tensor | None:
        """(B, K, L) additive attention bias from the prior, or None without ``pointer_prior``."""
        if self.prior_gain is None:
            return None
        return self.prior_gain * prior.clamp(min=PRIOR_FLOOR).flatten(2)

    def readout(self, hidden: torch.Tensor, query: torch.Tensor, mask_map: torch.Tensor,
                prior: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Run time: hidden states (B, K, H), their attended queries (B, K, dim) and the pointer prior
        (B, K, h', w') or None -> (boxes, mask logits, match logits or None). With pixel votes only one
        object's pixels are averaged: the mask peak's, or with a match head the best-matching of the
        objects under the mask."""
        if self.box_readout != "pixel_votes":
            return self.dense_readout(hidden, query, mask_map)
        logits, weights = self._mask(query, mask_map)
        intent = None if self.match_head is None else self.match_intent(hidden)
        votes = self.votes(mask_map).flatten(2)
        if intent is None:
            return torch.einsum("bkp,bcp->bkc", _same_object(weights, logits.flatten(2), votes), votes), \
                logits, None
        return self._pick_candidate(intent, logits, weights, votes, mask_map, prior)

    def dense_readout(self, hidden: torch.Tensor, query: torch.Tensor, mask_map: torch.Tensor):
        """Training: as ``readout``, but pixel votes are read under the whole softmax, so the box loss
        also pushes mask mass off other objects."""
        logits, weights = self._mask(query, mask_map)
        intent = None if self.match_head is None else self.match_intent(hidden)
        if self.box_readout == "query":
            boxes = self._query_box(query)
        else:
            boxes = torch.einsum("bkp,bcp->bkc", weights, self.votes(mask_map).flatten(2))
        return boxes, logits, None if intent is None else self._match(intent, weights, mask_map)

    def _mask(self, query: torch.Tensor, mask_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask logits (B, K, h, w), their softmax over the pixels (B, K, h*w))."""
        features = mask_map[:, :self.dim // 2]
        logits = torch.einsum("bkc,bchw->bkhw", self.mask_embed(query), features)
        return logits, logits.flatten(2).softmax(dim=-1)

    def _match(self, intent: torch.Tensor, weights: torch.Tensor, mask_map: torch.Tensor) -> torch.Tensor:
        """Match logits (B, K) of the objects that ``weights`` (B, K, P) pool the evidence channels under."""
        evidence = mask_map[:, self.dim // 2:self.dim // 2 + MATCH_EVIDENCE].flatten(2)
        found = torch.einsum("bkp,bcp->bkc", weights.detach(), evidence)
        return self.match_head(torch.cat([intent, found, self.match_found(intent) * found], dim=-1)).squeeze(-1)

    def _pick_candidate(self, intent, logits, weights, votes, mask_map, prior):
        """Run-time readout with pixel votes and a match head: the object a mask holds most is not
        always the one the prompt asks for, so each of the objects it holds (the pixels voting like a
        peak, strongest first) is scored by the match head, the log of its share of the mask and the
        pointer prior's log-probability at its box centre; the best is read out. Its mask drops the
        pixels of the other objects held."""
        flat = logits.flatten(2)
        free = torch.ones_like(weights, dtype=torch.bool)
        owners = torch.full_like(flat, -1, dtype=torch.long)  # which candidate each pixel votes for (-1: none)
        scores, boxes, matches = [], [], []
        for index in range(CANDIDATES):
            peak = flat.masked_fill(~free, float("-inf")).argmax(dim=-1)
            agree = _agrees_with(votes, peak) & free
            mass = (weights * agree).sum(dim=-1)
            # The mask's softmax restricted to the candidate: exact even where its share underflows.
            kept = (flat - OUTSIDE_CANDIDATE * (~agree).to(flat.dtype)).softmax(dim=-1)
            match = self._match(intent, kept, mask_map)
            box = torch.einsum("bkp,bcp->bkc", kept, votes)
            share = mass.clamp(min=1e-12).log()
            valid = agree.any(dim=-1)  # empty only once every pixel is taken
            score = match + POINTED_MASS_WEIGHT * share + POINTER_WEIGHT * _value_at(prior, box)
            owners = torch.where(agree & valid.unsqueeze(-1), torch.full_like(owners, index), owners)
            scores.append(score if index == 0 else score.masked_fill(~valid, float("-inf")))  # the peak's always counts
            boxes.append(box)
            matches.append(match)
            free = free & ~agree
        chosen = torch.stack(scores, dim=-1).argmax(dim=-1, keepdim=True)  # (B, K, 1)
        box = torch.stack(boxes, dim=-2).gather(-2, chosen.unsqueeze(-1).expand(-1, -1, -1, 4)).squeeze(-2)
        match = torch.stack(matches, dim=-1).gather(-1, chosen).squeeze(-1)
        others = (owners >= 0) & (owners != chosen)
        masked = torch.where(others, torch.minimum(flat, torch.full_like(flat, OTHER_OBJECT_LOGIT)), flat)
        return box, masked.view_as(logits), match

    def _query_box(self, query: torch.Tensor) -> torch.Tensor:
        cx, cy, w, h = self.box_head(query).sigmoid().unbind(-1)
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)

    @staticmethod
    def votes(mask_map: torch.Tensor) -> torch.Tensor:
        """The per-pixel box votes (B, 4, h, w) of a pixel-votes mask map."""
        return mask_map[:, -4:]


def _agrees_with(votes: torch.Tensor, pixel: torch.Tensor) -> torch.Tensor:
    """(B, K, P) bool: where a pixel's box vote (votes (B, 4, P)) overlaps the vote at ``pixel`` (B, K)
    by IoU >= ``VOTE_AGREEMENT``, i.e. the pixels of the same object (an occluded object's separate
    visible parts all vote for its one box, so they agree too)."""
    pixel_votes = votes.transpose(1, 2).gather(1, pixel.unsqueeze(-1).expand(-1, -1, 4))  # (B, K, 4)
    return box_iou(votes.transpose(1, 2).unsqueeze(1), pixel_votes.unsqueeze(2)) >= VOTE_AGREEMENT


def _value_at(grid: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Square grids (B, K, s, s) read at the cell holding the centre of unit boxes (B, K, 4), one per map."""
    return grid.flatten(2).gather(-1, centre_cells(boxes, grid.shape[-1]).unsqueeze(-1)).squeeze(-1)


def _same_object(weights: torch.Tensor, logits: torch.Tensor, votes: torch.Tensor) -> torch.Tensor:
    """Mask weights (B, K, P) kept on the mask peak's object, renormalized: a mask that spills onto a
    second object would otherwise average two boxes into one that lies on neither."""
    kept = weights * _agrees_with(votes, logits.argmax(dim=-1))
    return kept / kept.sum(dim=-1, keepdim=True)  # the peak always agrees with itself: never empty


def _box_votes(distances: torch.Tensor) -> torch.Tensor:
    """(B, 4, h, w) distances to the left, top, right, bottom sides -> unit xyxy box per pixel."""
    height, width = distances.shape[-2:]
    ys = (torch.arange(height, device=distances.device, dtype=distances.dtype) + 0.5) / height
    xs = (torch.arange(width, device=distances.device, dtype=distances.dtype) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    left, top, right, bottom = distances.unbind(1)
    return torch.stack([grid_x - left, grid_y - top, grid_x + right, grid_y + bottom], dim=1)
