"""Dense labels on grids: which object owns each cell of a frame (the attribute and superlative heads'
and the box votes' targets)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ros_pgpt.model.perception import centre_cells

NO_OBJECT, AMBIGUOUS = -1, -2


def region_owners(batch, frames: int, side: int, *, with_centres: bool) -> torch.Tensor:
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


def attribute_labels(batch, owners: torch.Tensor) -> torch.Tensor:
    """Owners -> (N, 3) colour, shape, size labels: 0 for no object, -100 (ignored) where ambiguous."""
    labels = batch.object_attributes[owners.clamp(min=0)]
    labels[owners == NO_OBJECT] = 0
    labels[owners == AMBIGUOUS] = -100
    return labels
