"""The interface between the predictor's generation loop and a backend.

``Predictor`` (ros_pgpt/inference/predictor.py) owns the loop: letterboxing, the frame
cache, the per-count image-prefix cache, greedy decoding, the perception
feedback and postprocessing. An ``Engine`` owns the numbers: it runs the
vision graph, the projector, the LLM with its KV cache, and the perception
heads, on PyTorch, ONNX Runtime or TensorRT.

Values that cross the interface:
- pixels: what ``Engine.pixels`` makes of the letterboxed image ((1, 3, S, S)
  float32 in [0, 1]);
- ``frame``: whatever ``encode_frame`` returns (opaque to the loop);
- ``state``: an ``LMState`` (a KV cache in the engine's own form + its length).
  States are never changed in place except by ``forward`` on a state that
  came from ``fork``; the cached image-prefix state stays as it was;
- ``embeds``/``hidden``/``feedback``: opaque tensors of the engine;
- ``logits``: float32 numpy (V,) of the last position;
- ``visual``: an image-prefix state's ``LMState.visual``, the LLM's last
  hidden states over the visual tokens in the engine's own form (None for
  models without a visual pointer); ``perceive`` reads it to point;
- ``perceive`` returns box (4,) unit xyxy and mask logits (h, w), numpy, the
  feedback embedding, and the match head's probability that the object is
  what the token asked for (None for models without a match head).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class LMState:
    cache: Any  # the engine's KV cache
    length: int  # tokens in the cache (= position of the next token)
    visual: Any = None  # image-prefix states: the visual tokens' last hidden states (None without a pointer)


class Engine:
    """Base class: see the module docstring for the contract."""

    name = "abstract"
    precision = "fp32"
    has_match_head = False  # whether ``perceive`` gives a match probability
    reason = "asked for explicitly"  # why this backend runs (``create_engine`` sets it for "auto")
    image_size: int
    mask_side: int
    max_visual_tokens: int
    tokenizer: Any
    ids: Any

    def describe(self) -> dict:
        """What runs where (for logs and the bench)."""
        return {"backend": self.name, "precision": self.precision}

    def tokens_for(self, count: int) -> int:
        raise NotImplementedError

    def pixels(self, image: np.ndarray, letterbox) -> np.ndarray:
        """HxWx3 uint8 RGB -> the frame input (1, 3, S, S) float32 in [0, 1], C-contiguous numpy.

        Plain numpy (no PyTorch op: its OpenMP workers would spin on the cores
        the next ONNX Runtime call needs); the PyTorch engine overrides this.
        """
        square = letterbox.apply_image(image)
        return np.ascontiguousarray(square.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)

    def encode_frame(self, pixels: np.ndarray):
        raise NotImplementedError

    def image_prefix(self, frame, count: int) -> LMState:
        """Prefill ``<bos> <image> v_1..v_count </image>``; the state (with ``visual``) is cached per frame
        and count."""
        raise NotImplementedError

    def fork(self, state: LMState) -> LMState:
        """A private copy of ``state`` for one prompt."""
        raise NotImplementedError

    def embed(self, ids: list[int], box_positions=(), boxes: np.ndarray | None = None, feedback=None):
        """Token embeddings (1, T, D); prompt boxes fill ``box_positions``; ``feedback`` adds to every row."""
        raise NotImplementedError

    def forward(self, state: LMState, embeds) -> tuple[LMState, Any, np.ndarray]:
        """Run the LLM on ``embeds`` after ``state``: (new state, last hidden (1,1,D), last logits (V,))."""
        raise NotImplementedError

    def perceive(self, frame, hidden, visual) -> tuple[np.ndarray, np.ndarray, Any, float | None]:
        """Perception token hidden state (+ the prefix's ``visual``) -> (box (4,), mask logits (h,w), feedback
        embedding, match probability)."""
        raise NotImplementedError
