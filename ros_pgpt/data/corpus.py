"""Text corpus for training a small tokenizer on the generator's own language."""
from __future__ import annotations

import numpy as np

from ros_pgpt.data.scenes import (
    COLOURS,
    LARGE_SIZE_RANGE,
    SHAPES,
    SIZES,
    SMALL_SIZE_RANGE,
    Scene,
    SceneGenerator,
    SceneObject,
)

__all__ = ["text_corpus"]

_W, _H = 640, 480
_EMPTY_MASK = np.zeros((0, 0), bool)


def _layout_scene(rng: np.random.Generator) -> Scene:
    """Objects with attributes and boxes but no pixels (queries only need those)."""
    objs = []
    for _ in range(int(rng.integers(1, 7))):
        size = SIZES[int(rng.integers(2))]
        lo, hi = SMALL_SIZE_RANGE if size == "small" else LARGE_SIZE_RANGE
        e = float(rng.uniform(lo, hi))
        x0 = float(rng.integers(0, int(_W - e)))
        y0 = float(rng.integers(0, int(_H - e)))
        objs.append(SceneObject(colour=tuple(COLOURS)[int(rng.integers(len(COLOURS)))],
                                shape=SHAPES[int(rng.integers(len(SHAPES)))], size=size,
                                box=(x0, y0, float(round(x0 + e)), float(round(y0 + e))),
                                mask=_EMPTY_MASK, size_px=e))
    image = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (_H, _W, 3))  # shape only
    return Scene(image=image, objects=objs)


def text_corpus(n_samples: int, seed: int) -> list[str]:
    """Prompt strings and answer texts as the generator produces them.

    For each of ``n_samples`` layouts, four queries (default kind mix) are made;
    every prompt is returned (with its literal ``<box>`` placeholders) followed
    by its ``answer_text`` when that is non-empty. Deterministic in ``seed``.
    No images are rendered, so this is fast (~0.3 ms per sample).
    """
    rng = np.random.default_rng(seed)
    gen = SceneGenerator()
    out: list[str] = []
    for _ in range(int(n_samples)):
        scene = _layout_scene(rng)
        for q in gen.queries(scene, rng, 4):
            out.append(q.prompt)
            if q.answer_text:
                out.append(q.answer_text)
    return out
