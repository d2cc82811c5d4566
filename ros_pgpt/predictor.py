"""The runtime face of the model: ground a prompt on an image.

    predictor = Predictor.from_checkpoint("checkpoints/default")
    result = predictor.ground(image_rgb, "the small red star")

The vision encoder runs once per frame; every further prompt on the same frame
reuses its features and the KV cache of the image prefix.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .batching import encode_prompt, image_tensor, normalize_prompt
from .modeling.grounding_model import FrameFeatures, GroundingModel
from .transforms import Letterbox


@dataclass
class GroundedObject:
    phrase: str
    score: float
    box: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max in source pixels
    mask: np.ndarray | None  # HxW bool in source pixels, or None when not requested


@dataclass
class GroundingResult:
    prompt: str
    answer: str
    objects: list[GroundedObject]
    visual_tokens: int
    frame_cached: bool
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds per stage


@dataclass
class _Frame:
    key: object
    letterbox: Letterbox
    features: FrameFeatures
    prefixes: dict  # visual-token count -> (KV cache, prefix length)


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (now - self._last) * 1000.0
        self._last = now


def referring_phrase(prompt: str) -> str:
    """The prompt without a question mark: the words each object answers."""
    return normalize_prompt(prompt).rstrip("?.! ")


class Predictor:
    """Greedy grounding with per-frame caching over a ``GroundingModel``."""

    def __init__(self, model: GroundingModel, *, max_objects: int = 8, max_answer_tokens: int = 12,
                 mask_threshold: float = 0.0) -> None:
        self.model = model.eval()
        self.max_objects = max_objects
        self.max_answer_tokens = max_answer_tokens
        self.mask_threshold = mask_threshold
        self.device = next(model.parameters()).device
        self._frame: _Frame | None = None

    @classmethod
    def from_checkpoint(cls, directory: str | Path, **kwargs) -> "Predictor":
        from .build import load_model

        return cls(load_model(directory), **kwargs)

    @property
    def max_visual_tokens(self) -> int:
        return self.model.projector.max_tokens

    def tokens_for(self, visual_tokens: int | None) -> int:
        requested = visual_tokens or self.max_visual_tokens
        if requested > self.max_visual_tokens:
            raise ValueError(f"visual_tokens={requested} exceeds the model's maximum {self.max_visual_tokens}")
        return self.model.projector.tokens_for(requested)

    @torch.inference_mode()
    def set_image(self, image: np.ndarray, key: object = None) -> bool:
        """Encode a frame unless ``key`` names the cached one; returns True when cached."""
        if key is not None and self._frame is not None and self._frame.key == key:
            return True
        _check_image(image)
        letterbox = Letterbox.for_image(image, self.model.image_size)
        pixels = image_tensor(image, letterbox).unsqueeze(0).to(self.device)
        features = self.model.encode_frames(pixels)
        self._frame = _Frame(key=key, letterbox=letterbox, features=features, prefixes={})
        return False

    @torch.inference_mode()
    def ground(self, image: np.ndarray | None, prompt: str, *, visual_tokens: int | None = None,
               masks: bool = True, boxes=(), key: object = None) -> GroundingResult:
        """Ground ``prompt`` on ``image`` (None: the frame set last).

        ``boxes`` (source pixels) fill "<box>" placeholders in the prompt.
        """
        watch = _Stopwatch()
        count = self.tokens_for(visual_tokens)
        if image is None and self._frame is None:
            raise ValueError("no image: pass one or call set_image first")
        watch.lap("preprocess")
        cached = True if image is None else self.set_image(image, key)
        frame = self._frame
        watch.lap("vision")
        ids = self.model.ids
        encoded = encode_prompt(self.model.language_model.tokenizer, ids, prompt,
                                frame.letterbox.boxes_to_unit(np.asarray(boxes, np.float32).reshape(-1, 4)))
        prefix_cache, prefix_len = self._prefix(frame, count)
        # A private copy: the prefix cache stays as it was for the next prompt (a few hundred KB).
        objects, answer_ids = self._generate(frame, encoded, copy.deepcopy(prefix_cache), prefix_len, watch)
        result_objects = self._postprocess(frame, objects, masks, referring_phrase(prompt))
        watch.lap("postprocess")
        answer = self.model.language_model.tokenizer.decode(answer_ids, skip_special_tokens=False)
        watch.timings["total"] = sum(watch.timings.values())
        return GroundingResult(prompt=prompt, answer=answer.strip(), objects=result_objects,
                               visual_tokens=count, frame_cached=cached, timings=watch.timings)

    def _prefix(self, frame: _Frame, count: int):
        if count not in frame.prefixes:
            from transformers import DynamicCache

            embeds = self.model.image_prefix(frame.features, count)
            cache = DynamicCache()
            self.model.language_model(embeds, past_key_values=cache)
            frame.prefixes[count] = (cache, embeds.shape[1])
        return frame.prefixes[count]

    def _generate(self, frame: _Frame, encoded, cache, prefix_len: int, watch: _Stopwatch):
        model, ids = self.model, self.model.ids
        lm = model.language_model
        tokens = torch.tensor([encoded.ids], device=self.device)
        embeds = lm.embed(tokens)
        if encoded.box_positions:
            codes = model.perception_encoder(torch.from_numpy(encoded.boxes).to(self.device))
            embeds[0, encoded.box_positions] += codes
        position = prefix_len
        hidden, logits, _ = lm(embeds, past_key_values=cache, position_ids=self._positions(position, embeds))
        position += embeds.shape[1]
        watch.lap("prefill")
        objects, answer = [], []
        memory, mask_map = frame.features.memory, frame.features.mask_map
        feedback = None
        for _ in range(self.max_answer_tokens):
            probs = logits[0, -1].softmax(-1)
            token = int(probs.argmax())
            if token == ids.eos or (token == ids.obj and len(objects) >= self.max_objects):
                break
            answer.append(token)
            embeds = lm.embed(torch.tensor([[token]], device=self.device))
            if feedback is not None:
                embeds = embeds + feedback
            hidden, logits, _ = lm(embeds, past_key_values=cache, position_ids=self._positions(position, embeds))
            position += 1
            feedback = None
            if token == ids.obj:
                watch.lap("decode")
                box, mask_logits = model.perception_decoder(hidden[:, -1:], memory, mask_map)
                objects.append((float(probs[token]), box[0, 0], mask_logits[0, 0]))
                feedback = model.perception_encoder(box[0]).unsqueeze(1)
                watch.lap("perception")
        watch.lap("decode")
        return objects, answer

    @staticmethod
    def _positions(start: int, embeds: torch.Tensor) -> torch.Tensor:
        return torch.arange(start, start + embeds.shape[1], device=embeds.device).unsqueeze(0)

    def _postprocess(self, frame: _Frame, objects, masks: bool, phrase: str) -> list[GroundedObject]:
        if not objects:
            return []
        letterbox = frame.letterbox
        boxes = letterbox.boxes_from_unit(torch.stack([o[1] for o in objects]).cpu().numpy())
        planes = None
        if masks:
            logits = torch.stack([o[2] for o in objects]).cpu().numpy()
            planes = letterbox.mask_logits_to_source(logits) > self.mask_threshold
        return [GroundedObject(phrase=phrase, score=score, box=tuple(float(v) for v in boxes[i]),
                               mask=None if planes is None else planes[i])
                for i, (score, _, _) in enumerate(objects)]


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("image must be an HxWx3 uint8 RGB array")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ValueError(f"image is too small ({image.shape[1]}x{image.shape[0]}); need at least 8x8 pixels")
