"""Box and mask losses (PerceptionGPT: L1 + GIoU for boxes, BCE + Dice for masks)."""

from __future__ import annotations

import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of xyxy boxes (..., 4) that broadcast against each other."""
    return _iou_and_union(a, b)[0]


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise GIoU of paired xyxy boxes (N, 4), (N, 4) -> (N,)."""
    iou, union = _iou_and_union(a, b)
    hull = (torch.max(a[..., 2:], b[..., 2:]) - torch.min(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    return iou - (hull - union) / hull.clamp(min=1e-7)


def _iou_and_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    top_left = torch.max(a[..., :2], b[..., :2])
    bottom_right = torch.min(a[..., 2:], b[..., 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = box_area(a) + box_area(b) - inter
    return inter / union.clamp(min=1e-7), union


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean soft Dice loss over masks (N, H, W)."""
    probs = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    numerator = 2 * (probs * targets).sum(-1) + 1
    denominator = probs.sum(-1) + targets.sum(-1) + 1
    return (1 - numerator / denominator).mean()
