"""The guided-filter mask refinement: the filter's definition, and what it does to masks."""

from __future__ import annotations

import cv2
import numpy as np

from ros_pgpt.inference.mask_refine import guided_filter, refine_mask
from ros_pgpt.data.geometry import mask_iou
from ros_pgpt.data.letterbox import Letterbox


def _per_window(guide: np.ndarray, source: np.ndarray, radius: int, eps: float, y: int, x: int) -> float:
    """He et al.'s definition at one pixel: average over the windows holding it of each window's
    ridge-regularized affine fit of the source on the guide's colours."""
    total = 0.0
    for cy in range(y - radius, y + radius + 1):
        for cx in range(x - radius, x + radius + 1):
            window = np.s_[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1]
            colours = guide[window].reshape(-1, 3).astype(np.float64)
            values = source[window].reshape(-1).astype(np.float64)
            mean_colour, mean_value = colours.mean(0), values.mean()
            covariance = np.cov(colours.T, bias=True) + eps * np.eye(3)
            slope = np.linalg.solve(covariance, ((colours - mean_colour) * (values - mean_value)[:, None]).mean(0))
            total += slope @ guide[y, x] + mean_value - slope @ mean_colour
    return total / (2 * radius + 1) ** 2


def test_guided_filter_matches_its_definition():
    rng = np.random.default_rng(0)
    guide = rng.random((16, 16, 3), dtype=np.float32)
    source = rng.random((16, 16), dtype=np.float32)
    filtered = guided_filter(guide, source, 2, 1e-2)
    for y, x in [(4, 4), (7, 9), (11, 6)]:  # at least two radii from the border
        assert abs(filtered[y, x] - _per_window(guide, source, 2, 1e-2, y, x)) < 1e-4


def _scene(flat: bool = False, radius: int = 45):
    """A 640x480 frame with one red disc on a textured background, and mask logits as the head gives
    them: the disc's coverage of the 80x80 stride-4 grid of the 320-pixel input, blurred by one cell
    and shifted by one (a blurred, slightly misplaced mask), warped back to source pixels."""
    rng = np.random.default_rng(1)
    image = np.full((480, 640, 3), 120, np.uint8) if flat else rng.integers(90, 150, (480, 640, 3), np.uint8)
    truth = np.zeros((480, 640), np.uint8)
    cv2.circle(truth, (300, 200), radius, 1, -1)
    truth = truth.astype(bool)
    if not flat:
        image[truth] = (210, 40, 30)
    letterbox = Letterbox(source_width=640, source_height=480, side=320)
    cover = cv2.GaussianBlur(letterbox.apply_mask(truth, 80), (0, 0), 1.0)
    cover = np.roll(cover, 1, axis=1)
    logits = np.log(np.clip(cover, 1e-4, 1 - 1e-4) / (1 - np.clip(cover, 1e-4, 1 - 1e-4))) * 2
    return image, letterbox.mask_logits_to_source(logits[None])[0], truth


def test_refinement_snaps_a_blurred_mask_onto_the_object():
    image, logits, truth = _scene()
    plain = logits > -2.0
    refined = refine_mask(image, logits, threshold=-2.0, cell_px=8.0)
    assert refined.dtype == bool and refined.shape == truth.shape
    assert mask_iou(refined, truth) > 0.95
    assert mask_iou(refined, truth) > mask_iou(plain, truth) + 0.1


def test_refinement_without_edges_moves_no_edge_further_than_its_window_and_keeps_small_masks():
    """On a flat image the filter can only smooth: the mask keeps its core and loses no object."""
    for radius in (45, 10):  # a 20-pixel disc is smaller than the filter's window
        image, logits, _ = _scene(flat=True, radius=radius)
        plain = logits > -2.0
        refined = refine_mask(image, logits, threshold=-2.0, cell_px=8.0)
        assert refined.any() and mask_iou(refined, plain) > 0.5
        assert not (refined & ~cv2.dilate(plain.astype(np.uint8), np.ones((49, 49), np.uint8)).astype(bool)).any()
    assert not refine_mask(image, np.full_like(logits, -10.0), threshold=-2.0, cell_px=8.0).any()
