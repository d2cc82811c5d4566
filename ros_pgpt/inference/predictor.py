"""The runtime face of the model: ground a prompt on an image.

    predictor = Predictor.from_checkpoint("checkpoints/default")
    result = predictor.ground(image_rgb, "the small red star")

The vision encoder runs once per frame; every further prompt on the same frame
reuses its features and the KV cache of the image prefix. The numbers are
computed by an engine (``ros_pgpt.inference.backends``: PyTorch, ONNX Runtime or
TensorRT); this module is the generation loop around it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ros_pgpt.data.prompts import encode_prompt
from ros_pgpt.inference.decoding import DecodingRules
from ros_pgpt.inference.mask_refine import refine_mask
from ros_pgpt.data.geometry import box_iou
from ros_pgpt.model.grounding_model import GroundingModel
from ros_pgpt.model.language_model import NONE_ANSWER
from ros_pgpt.data.phrases import object_phrase
from ros_pgpt.data.letterbox import Letterbox
from ros_pgpt.data.wording import known_prompt


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
    answer_tokens: int = 0  # tokens decoded after the prompt, the final <eos> or refused <obj> included
    rejected: int = 0  # 1 when the match head refused the first object (the answer is then "none")
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds per stage


@dataclass
class _Frame:
    key: object
    image: np.ndarray  # the source RGB image, the guide of mask refinement
    letterbox: Letterbox
    features: object  # the engine's per-frame output (FrameFeatures for PyTorch)
    prefixes: dict  # visual-token count -> LMState of the image prefix (KV cache + length)


class Stopwatch:
    """Milliseconds per stage: ``lap(stage)`` adds the time since the previous lap to ``timings[stage]``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (now - self._last) * 1000.0
        self._last = now


class Predictor:
    """Greedy grounding with per-frame caching over an engine (PyTorch, ONNX Runtime, TensorRT).

    ``Predictor(model)`` runs a ``GroundingModel`` in PyTorch;
    ``Predictor.from_engine(engine)`` runs any ``ros_pgpt.inference.backends`` engine
    (``ros_pgpt.inference.backends.create_predictor`` picks one).

    The rules are ``self.rules`` (``ros_pgpt.inference.decoding.DecodingRules``;
    keyword arguments override its fields). With a match head, a first object
    whose match probability is below ``match_threshold`` is refused: the answer
    is "none" (the prompt describes nothing in the image). Where the LLM answers "none" but the <obj> token's
    probability reaches ``first_object_threshold``, the object is decoded and
    the match head decides. A later object on an earlier one's box ends the
    answer: the model has found that object again. An object's score is its
    match probability, else the probability of its <obj> token. Once an object
    is found, another is decoded whenever the <obj> token's probability reaches
    ``next_object_threshold``, even where ending the answer is likelier. With
    ``refine_masks`` each mask's edges are snapped to the image's colour edges
    (``ros_pgpt.inference.mask_refine``).
    """

    def __init__(self, model: GroundingModel | None = None, *, rules: DecodingRules | None = None, engine=None,
                 **overrides) -> None:
        if engine is None:
            if model is None:
                raise ValueError("Predictor needs a model or an engine")
            from ros_pgpt.inference.torch_engine import TorchEngine

            engine = TorchEngine(model)
        self.engine = engine
        self.model = getattr(engine, "model", model)  # None for engines without a PyTorch model
        # ``overrides``: DecodingRules fields (match_threshold=0.3, refine_masks=False, ...) over ``rules``.
        self.rules = replace(rules or DecodingRules(), **overrides)
        # The first token of the answer "none": the LLM's "not found".
        self._none_token = engine.tokenizer.encode(NONE_ANSWER, add_special_tokens=False)[0]
        self.device = getattr(engine, "device", torch.device("cpu"))
        self._frame: _Frame | None = None

    @classmethod
    def from_checkpoint(cls, directory: str | Path, **kwargs) -> "Predictor":
        from ros_pgpt.model.build import load_model

        return cls(load_model(directory), **kwargs)

    @classmethod
    def from_engine(cls, engine, **kwargs) -> "Predictor":
        return cls(None, engine=engine, **kwargs)

    @property
    def backend(self) -> dict:
        """What runs the model: backend, precision, providers/threads, and why this backend."""
        return {**self.engine.describe(), "reason": self.engine.reason}

    @property
    def max_visual_tokens(self) -> int:
        return self.engine.max_visual_tokens

    def tokens_for(self, visual_tokens: int | None) -> int:
        requested = visual_tokens or self.max_visual_tokens
        if requested > self.max_visual_tokens:
            raise ValueError(f"visual_tokens={requested} exceeds the model's maximum {self.max_visual_tokens}")
        return self.engine.tokens_for(requested)

    def set_image(self, image: np.ndarray, key: object = None) -> bool:
        """Encode a frame unless ``key`` names the cached one; returns True when cached."""
        if key is not None and self._frame is not None and self._frame.key == key:
            return True
        letterbox, pixels = self._preprocess(image)
        self._encode(key, image, letterbox, pixels)
        return False

    def _preprocess(self, image: np.ndarray):
        _check_image(image)
        letterbox = Letterbox.for_image(image, self.engine.image_size)
        return letterbox, self.engine.pixels(image, letterbox)

    def _encode(self, key, image: np.ndarray, letterbox: Letterbox, pixels) -> None:
        features = self.engine.encode_frame(pixels)
        self._frame = _Frame(key=key, image=image, letterbox=letterbox, features=features, prefixes={})

    def ground(self, image: np.ndarray | None, prompt: str, *, visual_tokens: int | None = None,
               masks: bool = True, boxes=(), key: object = None) -> GroundingResult:
        """Ground ``prompt`` on ``image`` (None: the frame set last).

        ``boxes`` (source pixels) fill "<box>" placeholders in the prompt. The prompt is read in its
        trained phrasing (``ros_pgpt.data.wording``); each object's ``phrase`` is that phrasing. A prompt with
        words the model has never seen raises ``ros_pgpt.data.wording.UnknownWords`` (a ValueError naming them).
        """
        watch = Stopwatch()
        text = known_prompt(prompt)  # UnknownWords before any work: the model cannot answer it
        count = self.tokens_for(visual_tokens)
        if image is None and self._frame is None:
            raise ValueError("no image: pass one or call set_image first")
        cached = image is None or (key is not None and self._frame is not None and self._frame.key == key)
        pending = None if cached else self._preprocess(image)
        watch.lap("preprocess")
        if pending is not None:
            self._encode(key, image, *pending)
        frame = self._frame
        watch.lap("vision")
        engine = self.engine
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        _check_boxes(boxes, frame.letterbox)
        encoded = encode_prompt(engine.tokenizer, engine.ids, prompt, frame.letterbox.boxes_to_unit(boxes))
        prefix = self._prefix(frame, count)
        objects, answer_ids, rejected = self._generate(frame, encoded, prefix, watch)
        # A refused first object is the model's "not found".
        answer = engine.tokenizer.decode(answer_ids, skip_special_tokens=False).strip() or ("none" if rejected else "")
        result_objects = self._postprocess(frame, objects, masks, object_phrase(text))
        watch.lap("postprocess")
        watch.timings["total"] = sum(watch.timings.values())
        return GroundingResult(prompt=prompt, answer=answer, objects=result_objects,
                               visual_tokens=count, frame_cached=cached, timings=watch.timings,
                               answer_tokens=len(answer_ids) + 1, rejected=rejected)

    def _prefix(self, frame: _Frame, count: int):
        if count not in frame.prefixes:
            frame.prefixes[count] = self.engine.image_prefix(frame.features, count)
        return frame.prefixes[count]

    def _generate(self, frame: _Frame, encoded, prefix, watch: Stopwatch):
        engine, ids, rules = self.engine, self.engine.ids, self.rules
        state = engine.fork(prefix)
        embeds = engine.embed(encoded.ids, encoded.box_positions, encoded.boxes)
        state, hidden, logits = engine.forward(state, embeds)
        watch.lap("prefill")
        objects, answer = [], []
        feedback = None
        rejected = 0
        for _ in range(rules.answer_token_limit()):
            token = int(logits.argmax())
            if token == ids.eos and objects and _probability(logits, ids.obj) >= rules.next_object_threshold:
                token = ids.obj
            if (token == self._none_token and not answer and engine.has_match_head
                    and _probability(logits, ids.obj) >= rules.first_object_threshold):
                token = ids.obj  # the match head below accepts or refuses it
            if token == ids.eos or (token == ids.obj and len(objects) >= rules.max_objects):
                break
            state, hidden, logits_next = engine.forward(state, engine.embed([token], feedback=feedback))
            feedback = None
            if token == ids.obj:
                watch.lap("decode")
                box, mask_logits, feedback, match = engine.perceive(frame.features, hidden, prefix.visual)
                watch.lap("perception")
                # The match head was trained to tell a first object from an absent one: it decides
                # whether there is any object; how many is the LLM's call.
                if match is not None and not objects and match < rules.match_threshold:
                    rejected = 1
                    break
                if any(box_iou(box, other[1]) >= rules.duplicate_iou for other in objects):
                    break  # the model has found an earlier object again
                objects.append((_probability(logits, token) if match is None else match, box, mask_logits))
            answer.append(token)
            logits = logits_next
        watch.lap("decode")
        return objects, answer, rejected

    def _postprocess(self, frame: _Frame, objects, masks: bool, phrase: str) -> list[GroundedObject]:
        if not objects:
            return []
        letterbox = frame.letterbox
        boxes = letterbox.boxes_from_unit(np.stack([np.asarray(o[1], np.float32) for o in objects]))
        planes, rules = None, self.rules
        if masks:
            grid = np.stack([np.asarray(o[2], np.float32) for o in objects])
            logits = letterbox.mask_logits_to_source(grid)
            if rules.refine_masks:
                cell_px = letterbox.source_pixels_per_cell(grid.shape[-1])
                planes = [refine_mask(frame.image, plane, threshold=rules.mask_threshold, cell_px=cell_px)
                          for plane in logits]
            else:
                planes = logits > rules.mask_threshold
        return [GroundedObject(phrase=phrase, score=score, box=tuple(float(v) for v in boxes[i]),
                               mask=None if planes is None else planes[i])
                for i, (score, _, _) in enumerate(objects)]


def _probability(logits: np.ndarray, token: int) -> float:
    """softmax(logits)[token] in float32, as torch computes it."""
    shifted = logits.astype(np.float32) - logits.max()
    weights = np.exp(shifted)
    return float(weights[token] / weights.sum())


def _check_boxes(boxes: np.ndarray, letterbox: Letterbox) -> None:
    """Input boxes (source pixels) must be boxes that overlap the image."""
    width, height = letterbox.source_width, letterbox.source_height
    for index, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"input box {index} {(x0, y0, x1, y1)} is empty or inverted (needs x_max > x_min, "
                             f"y_max > y_min)")
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise ValueError(f"input box {index} {(x0, y0, x1, y1)} lies outside the {width}x{height} image")


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("image must be an HxWx3 uint8 RGB array")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ValueError(f"image is too small ({image.shape[1]}x{image.shape[0]}); need at least 8x8 pixels")
