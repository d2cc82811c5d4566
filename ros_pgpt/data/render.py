"""A scene's pixels: shape masks drawn with sub-pixel accuracy, procedural backgrounds and lighting.

``scenes.SceneGenerator`` decides what goes where; this draws it. Every function takes its randomness
from the generator's ``rng``, so a scene stays a function of its seed.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ros_pgpt.data import camera

__all__ = ["half_extents", "render_shape", "clip_to_frame", "const_image", "background", "apply_lighting"]

# ----------------------------------------------------------------------------
# Shape rendering
# ----------------------------------------------------------------------------

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


def _unit_vertices(shape: str, angle: float) -> np.ndarray:
    """Vertices (N, 2) of the shape around the origin, rotated by ``angle`` rad."""
    if shape == "square":
        a = angle + np.array([0.25, 0.75, 1.25, 1.75]) * math.pi
        r = np.ones(4)
    elif shape == "triangle":
        a = angle + np.array([0.5, 0.5 + 2 / 3, 0.5 + 4 / 3]) * math.pi
        r = np.ones(3)
    elif shape == "star":
        a = angle + np.arange(10) * (math.pi / 5) - 0.5 * math.pi
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    elif shape == "hexagon":
        a = angle + np.arange(6) * (math.pi / 3)
        r = np.ones(6)
    elif shape == "cross":  # a plus sign, arms a third of its width
        x = np.array([1, 1, 3, 3, 1, 1, -1, -1, -3, -3, -1, -1]) / 3
        y = np.array([3, 1, 1, -1, -1, -3, -3, -1, -1, 1, 1, 3]) / 3
        a, r = np.arctan2(y, x) + angle, np.hypot(x, y)
    elif shape == "ellipse":  # half as wide as long
        t = np.arange(48) * (2 * math.pi / 48)
        x, y = np.cos(t), 0.5 * np.sin(t)
        a, r = np.arctan2(y, x) + angle, np.hypot(x, y)
    else:
        raise ValueError(shape)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _render_local(shape: str, extent: float, angle: float, cx: float, cy: float):
    """Boolean mask of the shape in a local ROI; returns (x0, y0, mask)."""
    if shape == "circle":
        r = 0.5 * (extent - 1.0)
        x0 = int(math.floor(cx - r)) - 1
        y0 = int(math.floor(cy - r)) - 1
        w = int(math.ceil(cx + r)) + 2 - x0
        h = int(math.ceil(cy + r)) + 2 - y0
        m = np.zeros((h, w), np.uint8)
        cv2.circle(m, (int(round((cx - x0) * _ONE)), int(round((cy - y0) * _ONE))),
                   int(round(r * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
        return x0, y0, m.view(bool)
    raise AssertionError


def _vertices(shape: str, extent: float, angle: float) -> np.ndarray:
    """A polygon shape's vertices scaled to ``extent`` and centred on its box."""
    v = _unit_vertices(shape, angle)
    span = (v.max(0) - v.min(0)).max()
    v = v * ((extent - 1.0) / span)
    return v - 0.5 * (v.max(0) + v.min(0))


def half_extents(shape: str, extent: float, angle: float):
    """(polygon vertices or None for a circle, (left, up, right, down) half extents from the centre)."""
    if shape == "circle":
        r = 0.5 * (extent - 1.0)
        return None, (r, r, r, r)
    v = _vertices(shape, extent, angle)
    mn, mx = v.min(0), v.max(0)
    return v, (-mn[0], -mn[1], mx[0], mx[1])


def clip_to_frame(x0: int, y0: int, mask: np.ndarray, W: int, H: int):
    """The part of a local mask at (x0, y0) inside a W x H frame: (x0, y0, mask)."""
    h, w = mask.shape
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + w, W), min(y0 + h, H)
    if (cx0, cy0, cx1, cy1) == (x0, y0, x0 + w, y0 + h):
        return x0, y0, mask
    if cx0 >= cx1 or cy0 >= cy1:
        return cx0, cy0, np.zeros((0, 0), bool)
    return cx0, cy0, mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]


def render_shape(shape, extent, verts, cx, cy):
    """Boolean mask of a shape centred at (cx, cy) (``verts`` from half_extents); returns (x0, y0, mask)."""
    if shape == "circle":
        return _render_local(shape, extent, 0.0, cx, cy)
    pts = verts + (cx, cy)
    x0 = int(math.floor(pts[:, 0].min())) - 1
    y0 = int(math.floor(pts[:, 1].min())) - 1
    w = int(math.ceil(pts[:, 0].max())) + 2 - x0
    h = int(math.ceil(pts[:, 1].max())) + 2 - y0
    m = np.zeros((h, w), np.uint8)
    ip = np.round((pts - (x0, y0)) * _ONE).astype(np.int32)
    cv2.fillPoly(m, [ip], 1, cv2.LINE_8, _SHIFT)
    return x0, y0, m.view(bool)


# ----------------------------------------------------------------------------
# Backgrounds and lighting
# ----------------------------------------------------------------------------

_BG_KINDS = ("flat", "gradient", "noise", "wood", "checker", "blotches")
_BG_WEIGHTS = np.array([0.15, 0.2, 0.2, 0.15, 0.12, 0.18])
_BG_CUM = np.cumsum(_BG_WEIGHTS) / _BG_WEIGHTS.sum()
# low-saturation relative tints of a grey level (neutral, brown, cool, greenish-grey);
# saturation of the base colour stays <= ~0.2
_TINTS = np.array([[0, 0, 0], [0.12, 0.03, -0.09], [-0.05, 0.0, 0.08], [-0.04, 0.05, -0.04]],
                  np.float32)

def _bg_colour(rng) -> np.ndarray:
    level = rng.uniform(60.0, 205.0)
    tint = _TINTS[rng.integers(len(_TINTS))] * rng.uniform(0.0, 1.0)
    return np.clip(level * (1.0 + tint), 0, 255).astype(np.float32)


def _second_colour(rng, c) -> np.ndarray:
    d = rng.uniform(12.0, 40.0) * (1 if c.mean() < 130 else -1)
    return np.clip(c + d + rng.normal(0, 3, 3), 0, 255).astype(np.float32)


def _smooth_field(rng, h, w, cells) -> np.ndarray:
    """Smooth random field in roughly [-1, 1] of shape (h, w)."""
    gh = max(2, int(round(cells * h / max(h, w))) + 1)
    gw = max(2, int(round(cells * w / max(h, w))) + 1)
    g = rng.standard_normal((gh, gw)).astype(np.float32) * 0.6
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def _mix(c1, c2, t) -> np.ndarray:
    """``c1 + t * (c2 - c1)`` per channel for a float field ``t`` -> (h, w, 3) uint8."""
    chans = [np.clip(c1[c] + t * (c2[c] - c1[c]), 0, 255).astype(np.uint8) for c in range(3)]
    return cv2.merge(chans)


def const_image(h: int, w: int, rgb) -> np.ndarray:
    """Fast constant (h, w, 3) uint8 image (numpy broadcasting over 3 channels is slow)."""
    row = np.tile(np.asarray(rgb, np.uint8), w)
    return np.broadcast_to(row, (h, w * 3)).reshape(h, w, 3).copy()


def background(rng, W: int, H: int, scale: float):
    """Returns (kind, HxWx3 uint8 RGB background)."""
    kind = _BG_KINDS[int(np.searchsorted(_BG_CUM, rng.random(), side="right"))]
    c1 = _bg_colour(rng)
    if kind == "flat":
        return kind, const_image(H, W, np.round(c1))
    h, w = max(2, H // 4), max(2, W // 4)  # work at quarter resolution, upscale
    if kind == "gradient":
        corners = np.stack([c1 + rng.uniform(-35, 35) for _ in range(4)])
        ty = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
        tx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
        chans = [np.clip((1 - ty) * ((1 - tx) * corners[0, c] + tx * corners[1, c])
                         + ty * ((1 - tx) * corners[2, c] + tx * corners[3, c]), 0, 255).astype(np.uint8)
                 for c in range(3)]
        small = cv2.merge(chans)
    elif kind == "noise":
        c2 = _second_colour(rng, c1)
        f = _smooth_field(rng, h, w, rng.uniform(4, 24))
        f += 0.5 * rng.standard_normal((h, w)).astype(np.float32)
        small = _mix(c1, c2, 0.5 * np.clip(f, -1.5, 1.5))
    elif kind == "wood":
        c2 = _second_colour(rng, c1)
        a = rng.uniform(0, math.pi)
        period = rng.uniform(12.0, 50.0) * scale / 4.0
        u = (np.arange(w, dtype=np.float32)[None, :] * math.cos(a)
             + np.arange(h, dtype=np.float32)[:, None] * math.sin(a))
        warp = _smooth_field(rng, h, w, rng.uniform(2, 6)) * rng.uniform(1.0, 4.0)
        t = 0.5 + 0.5 * np.sin(u * (2 * math.pi / period) + warp)
        small = _mix(c1, c2, t ** rng.uniform(0.6, 2.0))
    elif kind == "checker":
        c2 = _second_colour(rng, c1)
        cell = max(4, int(rng.uniform(16.0, 72.0) * scale))
        ny, nx = H // cell + 2, W // cell + 2
        pat = ((np.arange(ny)[:, None] + np.arange(nx)[None, :]) % 2).astype(np.float32)
        big = cv2.resize(_mix(c1, c2, pat), (nx * cell, ny * cell), interpolation=cv2.INTER_NEAREST)
        oy, ox = int(rng.integers(cell)), int(rng.integers(cell))
        return kind, big[oy:oy + H, ox:ox + W].copy()
    else:  # blotches
        c2 = _second_colour(rng, c1)
        f = _smooth_field(rng, h, w, rng.uniform(5, 14))
        small = _mix(c1, c2, 1.0 / (1.0 + np.exp(-6.0 * (f - rng.uniform(-0.3, 0.3)))))
    return kind, cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)


def apply_lighting(rng, img: np.ndarray, noisy_bg: bool) -> np.ndarray:
    """Global contrast/brightness, optional smooth illumination gradient with a
    slight colour cast, optional Gaussian noise, optional mild blur."""
    H, W = img.shape[:2]
    alpha, beta = rng.uniform(0.85, 1.15), rng.uniform(-20.0, 20.0)
    if rng.random() < 0.6:  # smooth illumination gradient (contrast folded in)
        g = rng.uniform(0.8, 1.15, (3, 3, 1)) * rng.uniform(0.95, 1.05, (1, 1, 3))
        g = np.clip(g * 128.0, 0, 255).astype(np.uint8)
        gain = cv2.resize(g, (W, H), interpolation=cv2.INTER_LINEAR)
        img = cv2.multiply(img, gain, scale=alpha / 128.0)
        alpha = 1.0
    if noisy_bg or rng.random() < 0.5:  # noise (brightness folded in)
        sigma = rng.uniform(2.0, 8.0)
        bank = camera.noise_bank(H, W)
        oy, ox = int(rng.integers(camera.NOISE_PAD)), int(rng.integers(camera.NOISE_PAD))
        k = sigma / camera.NOISE_SIGMA
        img = cv2.addWeighted(img, alpha, bank[oy:oy + H, ox:ox + W], k, beta - 128.0 * k)
    else:
        img = cv2.convertScaleAbs(img, alpha=alpha, beta=beta)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.4, 1.0))
    return img
