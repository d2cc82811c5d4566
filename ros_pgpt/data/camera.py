"""What a real camera brings to a synthetic scene: photographs behind the
objects and the frame's exposure, colour cast, noise, blur and compression.

Photographs are the samples that ship in scikit-image's and matplotlib's wheels
(``skimage/data``, ``matplotlib/mpl-data/sample_data``, read from the installed
packages; nothing is downloaded). Training draws from
:data:`TRAIN_PHOTOS` unless told otherwise; :data:`HELD_OUT_PHOTOS` is reserved for the evaluation
(``ros-pgpt eval --conditions``) and never appears in training.
"""
from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

__all__ = ["TRAIN_PHOTOS", "HELD_OUT_PHOTOS", "PHOTO_FILES", "photo", "photo_background", "recolour",
           "camera_effects"]

_SKIMAGE = "skimage/data/"
_MATPLOTLIB = "matplotlib/mpl-data/sample_data/"
#: photograph name -> file inside an installed package (colour and grey photographs and textures)
PHOTO_FILES: dict[str, str] = {
    "brick": _SKIMAGE + "brick.png", "grass": _SKIMAGE + "grass.png", "gravel": _SKIMAGE + "gravel.png",
    "camera": _SKIMAGE + "camera.png", "coins": _SKIMAGE + "coins.png", "moon": _SKIMAGE + "moon.png",
    "page": _SKIMAGE + "page.png", "chelsea": _SKIMAGE + "chelsea.png", "rocket": _SKIMAGE + "rocket.jpg",
    "motorcycle": _SKIMAGE + "motorcycle_left.png", "hubble": _SKIMAGE + "hubble_deep_field.jpg",
    "ihc": _SKIMAGE + "ihc.png", "retina": _SKIMAGE + "retina.jpg", "colour": _SKIMAGE + "color.png",
    "chessboard": _SKIMAGE + "chessboard_RGB.png", "logo": _SKIMAGE + "logo.png",
    "hopper": _MATPLOTLIB + "grace_hopper.jpg", "present": _MATPLOTLIB + "Minduka_Present_Blue_Pack.png",
    "astronaut": _SKIMAGE + "astronaut.png", "coffee": _SKIMAGE + "coffee.png", "text": _SKIMAGE + "text.png",
    "clock": _SKIMAGE + "clock_motion.png", "cell": _SKIMAGE + "cell.png",
}
#: the default draw (the shipped stage 2's); the colourful colour, chessboard, logo, hopper and present are
#: drawn only where a config names them (docs/experiments/2026-12-07-colourful-photos.md)
TRAIN_PHOTOS: tuple[str, ...] = ("brick", "grass", "gravel", "camera", "coins", "moon", "page", "chelsea",
                                 "rocket", "motorcycle", "hubble", "ihc", "retina")
#: never drawn in training: the evaluation's "held-out photographs" condition
HELD_OUT_PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "text", "clock", "cell")


def _photo_path(name: str) -> Path:
    package, _, inside = PHOTO_FILES[name].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"photograph {name!r} needs the {package} package (pip install -r requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / inside


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """The photograph ``name`` as HxWx3 uint8 RGB (grey ones repeated over 3 channels); decoded once."""
    if name not in PHOTO_FILES:
        raise ValueError(f"unknown photograph {name!r}; known: {sorted(PHOTO_FILES)}")
    path = _photo_path(name)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read {path}")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    image.setflags(write=False)
    return image


def photo_background(rng: np.random.Generator, W: int, H: int, names: tuple[str, ...]) -> tuple[str, np.ndarray]:
    """(name, HxWx3 uint8): a random crop (35-100 % of the largest one with the frame's aspect),
    maybe mirrored, of one of ``names``, resized to the frame."""
    name = names[int(rng.integers(len(names)))]
    source = photo(name)
    ph, pw = source.shape[:2]
    full_w = min(pw, ph * W / H)
    crop_w = full_w * rng.uniform(0.35, 1.0)
    crop_h = crop_w * H / W
    x0 = rng.uniform(0.0, pw - crop_w)
    y0 = rng.uniform(0.0, ph - crop_h)
    crop = source[int(y0):int(y0 + crop_h), int(x0):int(x0 + crop_w)]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return name, cv2.resize(np.ascontiguousarray(crop), (W, H), interpolation=cv2.INTER_LINEAR)


def recolour(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """``img`` with its hues rotated by a random angle and its saturation scaled by 0.6-1.6: a
    photograph whose colours the training set has not seen (grey ones stay grey)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + int(rng.integers(1, 180))) % 180  # OpenCV's hue is 0-179
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.6, 1.6), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def camera_effects(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Each of these with probability one half (at least one): exposure (gain x0.55-1.35 and gamma
    0.7-1.5), white-balance colour cast (+-8 % per channel), sensor noise (sigma 4-12), blur
    (Gaussian sigma 0.8-2 or motion 3-9 px) and JPEG compression (quality 15-60)."""
    chosen = rng.random(5) < 0.5
    if not chosen.any():
        chosen[int(rng.integers(5))] = True
    exposure, cast, noise, blur, jpeg = chosen
    if exposure or cast:
        gain = rng.uniform(0.55, 1.35) if exposure else 1.0
        gamma = rng.uniform(0.7, 1.5) if exposure else 1.0
        channels = rng.uniform(0.92, 1.08, 3) if cast else np.ones(3)
        levels = (np.arange(256, dtype=np.float32) / 255.0)[:, None]
        table = np.clip(255.0 * (levels ** gamma) * gain * channels[None, :], 0, 255).astype(np.uint8)
        img = cv2.LUT(img, table[None])  # one 256-entry table per channel
    if noise:  # a random window of the lighting's fixed noise image: drawing fresh noise costs 5x more
        H, W = img.shape[:2]
        k = rng.uniform(4.0, 12.0) / NOISE_SIGMA
        oy, ox = int(rng.integers(NOISE_PAD)), int(rng.integers(NOISE_PAD))
        img = cv2.addWeighted(img, 1.0, noise_bank(H, W)[oy:oy + H, ox:ox + W], k, -128.0 * k)
    if blur:
        if rng.random() < 0.5:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.8, 2.0))
        else:
            length = int(rng.integers(3, 10))
            kernel = np.zeros((length, length), np.float32)
            kernel[length // 2, :] = 1.0 / length
            angle = math.degrees(rng.uniform(0.0, math.pi))
            rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
            kernel = cv2.warpAffine(kernel, rotation, (length, length))
            img = cv2.filter2D(img, -1, kernel / kernel.sum())
    if jpeg:
        ok, data = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 61))])
        assert ok
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(img)


_NOISE_BANK: dict[tuple[int, int], np.ndarray] = {}
NOISE_PAD = 32
NOISE_SIGMA = 16.0


def noise_bank(h: int, w: int) -> np.ndarray:
    """Fixed (seed-independent) Gaussian noise image, uint8 centred at 128."""
    key = (h, w)
    bank = _NOISE_BANK.get(key)
    if bank is None:
        r = np.random.default_rng(0x5EED)
        bank = np.clip(r.normal(128.0, NOISE_SIGMA, (h + NOISE_PAD, w + NOISE_PAD, 3)), 0, 255)
        bank = bank.astype(np.uint8)
        _NOISE_BANK[key] = bank
    return bank
