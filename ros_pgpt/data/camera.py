"""What a real camera brings to a synthetic scene: photographs behind the
objects and the frame's exposure, colour cast, noise, blur and compression.

Photographs are the samples that ship in scikit-image's wheel (``skimage/data``,
read from the installed package; nothing is downloaded). Training draws from
:data:`TRAIN_PHOTOS`; :data:`HELD_OUT_PHOTOS` is reserved for the evaluation
(``ros-pgpt eval --conditions``) and never appears in training.
"""
from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

__all__ = ["TRAIN_PHOTOS", "HELD_OUT_PHOTOS", "PHOTO_FILES", "photo", "photo_background", "camera_effects"]

#: photograph name -> file in skimage/data (colour and grey photographs and textures)
PHOTO_FILES: dict[str, str] = {
    "brick": "brick.png", "grass": "grass.png", "gravel": "gravel.png", "camera": "camera.png",
    "coins": "coins.png", "moon": "moon.png", "page": "page.png", "chelsea": "chelsea.png",
    "rocket": "rocket.jpg", "motorcycle": "motorcycle_left.png", "hubble": "hubble_deep_field.jpg",
    "ihc": "ihc.png", "retina": "retina.jpg",
    "astronaut": "astronaut.png", "coffee": "coffee.png", "text": "text.png", "clock": "clock_motion.png",
    "cell": "cell.png",
}
TRAIN_PHOTOS: tuple[str, ...] = ("brick", "grass", "gravel", "camera", "coins", "moon", "page", "chelsea",
                                 "rocket", "motorcycle", "hubble", "ihc", "retina")
#: never drawn in training: the evaluation's "held-out photographs" condition
HELD_OUT_PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "text", "clock", "cell")


def _photo_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("photo backgrounds need scikit-image (pip install -r requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """The photograph ``name`` as HxWx3 uint8 RGB (grey ones repeated over 3 channels); decoded once."""
    if name not in PHOTO_FILES:
        raise ValueError(f"unknown photograph {name!r}; known: {sorted(PHOTO_FILES)}")
    path = _photo_dir() / PHOTO_FILES[name]
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
