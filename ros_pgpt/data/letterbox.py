"""Letterboxing between source camera pixels and the square network input.

An image of any size and aspect ratio is scaled so its longer side equals the
network side and padded at the bottom/right. The mapping is a pure scale, so
boxes and masks map back to source pixels exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

PAD_VALUE = 114  # mid-grey padding, far from every object colour


@dataclass(frozen=True)
class Letterbox:
    """The scale between one source image and the square network input."""

    source_width: int
    source_height: int
    side: int

    @property
    def scale(self) -> float:
        return self.side / max(self.source_width, self.source_height)

    @property
    def content_size(self) -> tuple[int, int]:
        """Width and height of the image inside the padded square."""
        return (max(1, round(self.source_width * self.scale)),
                max(1, round(self.source_height * self.scale)))

    @classmethod
    def for_image(cls, image: np.ndarray, side: int) -> "Letterbox":
        height, width = image.shape[:2]
        return cls(source_width=width, source_height=height, side=side)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> side x side x 3 uint8 RGB."""
        width, height = self.content_size
        interpolation = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, (width, height), interpolation=interpolation)
        out = np.full((self.side, self.side, 3), PAD_VALUE, dtype=np.uint8)
        out[:height, :width] = resized
        return out

    def apply_mask(self, mask: np.ndarray, out_side: int) -> np.ndarray:
        """Source bool mask -> soft float32 mask on an out_side grid of the square."""
        factor = out_side / self.side
        width = max(1, round(self.content_size[0] * factor))
        height = max(1, round(self.content_size[1] * factor))
        resized = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
        out = np.zeros((out_side, out_side), dtype=np.float32)
        out[:height, :width] = resized
        return out

    def boxes_to_unit(self, boxes: np.ndarray) -> np.ndarray:
        """Source-pixel boxes (N,4 xyxy) -> boxes in [0,1] of the square."""
        return np.asarray(boxes, dtype=np.float32) * (self.scale / self.side)

    def boxes_from_unit(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes in [0,1] of the square -> source pixels, clipped to the image."""
        out = np.asarray(boxes, dtype=np.float32) * (self.side / self.scale)
        out[..., 0::2] = out[..., 0::2].clip(0, self.source_width)
        out[..., 1::2] = out[..., 1::2].clip(0, self.source_height)
        return out

    def source_pixels_per_cell(self, grid_side: int) -> float:
        """Source pixels spanned by one cell of a grid_side x grid_side grid over the square."""
        return self.side / (self.scale * grid_side)

    def mask_logits_to_source(self, logits: np.ndarray) -> np.ndarray:
        """(N, S, S) logits on the square grid -> (N, H, W) logits in source pixels.

        One affine warp per mask, sampling each source pixel centre at its exact
        position on the grid (no crop-then-resize rounding).
        """
        k = 1.0 / self.source_pixels_per_cell(logits.shape[-1])  # source px -> grid cells
        warp = np.array([[k, 0, 0.5 * k - 0.5], [0, k, 0.5 * k - 0.5]], dtype=np.float64)
        size = (self.source_width, self.source_height)
        out = np.empty((logits.shape[0], self.source_height, self.source_width), np.float32)
        for i, plane in enumerate(logits):
            out[i] = cv2.warpAffine(np.ascontiguousarray(plane, dtype=np.float32), warp, size,
                                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_REPLICATE)
        return out


def image_tensor(image: np.ndarray, letterbox: Letterbox) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (3, S, S) float in [0, 1]."""
    square = letterbox.apply_image(image)
    return torch.from_numpy(square).permute(2, 0, 1).float().div_(255.0)


