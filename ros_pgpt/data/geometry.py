"""Box and mask overlap measures shared by the evaluation, the demo and the node tools."""

from __future__ import annotations

import numpy as np


def box_iou(a, b) -> float:
    """IoU of two (x0, y0, x1, y1) boxes (for two empty boxes: 1 if identical, else 0)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else float(list(a) == list(b))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks (1 when both are empty: they agree)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def match_boxes(predicted, truth) -> list[float]:
    """Greedy one-to-one IoU matching, best IoU first (IoU > 0 only): for each ground-truth box, the IoU of
    the predicted box matched to it (0.0 if none)."""
    pairs = sorted(((box_iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)),
                   reverse=True)
    used_p, used_t, ious = set(), set(), [0.0] * len(truth)
    for iou, i, j in pairs:
        if iou <= 0:
            break
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            ious[j] = iou
    return ious
