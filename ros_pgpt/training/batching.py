"""Training batches: scenes, prompts and answers turned into one ``SequenceBatch``.

Prompts go through ``ros_pgpt.data.prompts.encode_prompt``, the function the
predictor uses at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ros_pgpt.data.scenes import BASE_MASKS, COLOURS, POSITION_WORDS, SHAPES, SIZES
from ros_pgpt.model.language_model import NONE_ANSWER, TokenIds
from ros_pgpt.data.letterbox import Letterbox, image_tensor
from ros_pgpt.data.prompts import encode_prompt

COLOUR_NAMES = tuple(COLOURS)
# Classes of the attribute heads (colour, shape, size), each with 0 = "no object".
ATTRIBUTE_NAMES = ("colour", "shape", "size")  # the order of object_attribute_ids
ATTRIBUTE_CLASSES = (len(COLOURS) + 1, len(SHAPES) + 1, len(SIZES) + 1)
# One label per superlative descriptor ("object", a shape, a colour, both) and position word.
SUPERLATIVE_LABELS = len(BASE_MASKS) * len(POSITION_WORDS)


@dataclass
class SequenceBatch:
    """A training batch's text side and targets (``collate``); positions index the text part (after the
    image prefix)."""

    scene_index: torch.Tensor  # (N,) which frame each sequence reads
    text_ids: torch.Tensor  # (N, T) right-padded
    text_mask: torch.Tensor  # (N, T) bool
    labels: torch.Tensor  # (N, T) next-token targets, -100 = ignore
    box_rows: torch.Tensor  # (Kb,) <box> placeholders
    box_cols: torch.Tensor
    box_values: torch.Tensor  # (Kb, 4) unit xyxy
    obj_rows: torch.Tensor  # (Ko,) <obj> answer tokens
    obj_cols: torch.Tensor
    obj_slots: torch.Tensor  # (Ko,) index of the object among its frame's objects
    obj_boxes: torch.Tensor  # (Ko, 4) unit xyxy targets
    obj_masks: torch.Tensor  # (Ko, h, w) soft targets on the mask grid
    # Every object of every frame, for the dense losses (None without them).
    obj_objects: torch.Tensor | None = None  # (Ko,) which object each <obj> is
    object_frames: torch.Tensor | None = None  # (No,)
    object_masks: torch.Tensor | None = None  # (No, h, w) visible coverage on the mask grid
    object_boxes: torch.Tensor | None = None  # (No, 4) unit xyxy
    object_attributes: torch.Tensor | None = None  # (No, 3) colour, shape, size ids (0 = no object)
    object_superlatives: torch.Tensor | None = None  # (No, L) batching.superlative_labels (-1 = none applies)
    # <obj> tokens forced onto prompts whose object is absent (no LM target): the match head's negatives.
    probe_rows: torch.Tensor | None = None  # (Kp,)
    probe_cols: torch.Tensor | None = None
    probe_slots: torch.Tensor | None = None  # (Kp,) slots after the frame's <obj> targets

    def to(self, device) -> "SequenceBatch":
        return SequenceBatch(**{k: None if v is None else v.to(device) for k, v in vars(self).items()})


def answer_ids(tokenizer, ids: TokenIds, query) -> list[int]:
    """Target answer, then <eos>: the description text, "none", or one <obj> per target."""
    if query.kind == "describe":
        body = tokenizer.encode(query.answer_text, add_special_tokens=False)
    elif query.targets:
        body = [ids.obj] * len(query.targets)
    else:
        body = tokenizer.encode(NONE_ANSWER, add_special_tokens=False)
    return body + [ids.eos]


def object_attribute_ids(obj) -> tuple[int, int, int]:
    """(colour, shape, size) class ids of a scene object; 0 is left for "no object", and a size between
    the bands (no size word names it) is -100, ignored by the losses."""
    size = SIZES.index(obj.size) + 1 if obj.size in SIZES else -100
    return (COLOUR_NAMES.index(obj.colour) + 1, SHAPES.index(obj.shape) + 1, size)


def superlative_labels(scene) -> np.ndarray:
    """(objects, SUPERLATIVE_LABELS): for each descriptor a superlative can use (the objects sharing this
    object's colour and/or shape, or all of them) and each position word ("leftmost", ...), 1 where this
    object is the extreme one of its group that way, 0 where another is, -1 where it is alone in its
    group (no superlative can name it)."""
    attrs = [(o.size, o.colour, o.shape) for o in scene.objects]
    centres = np.array([o.centre for o in scene.objects], np.float32).reshape(-1, 2)
    labels = np.full((len(attrs), SUPERLATIVE_LABELS), -1, np.float32)
    for group_index, mask in enumerate(BASE_MASKS):
        groups: dict[tuple, list[int]] = {}
        for index, own in enumerate(attrs):
            groups.setdefault(tuple(value for value, used in zip(own, mask) if used), []).append(index)
        for group in groups.values():
            if len(group) < 2:
                continue
            for word_index, (axis, sign) in enumerate(POSITION_WORDS.values()):
                column = group_index * len(POSITION_WORDS) + word_index
                labels[group, column] = 0.0
                labels[max(group, key=lambda j: sign * centres[j, axis]), column] = 1.0
    return labels


def collate(items, tokenizer, ids: TokenIds, *, image_size: int, mask_side: int,
            list_objects: bool = False, match_probes: bool = False):
    """items: list of (Scene, list[Query]) -> (images (B,3,S,S), SequenceBatch).

    ``list_objects``: also list every object of every frame (visible mask on
    the mask grid, box, attribute ids) for the dense training losses.
    ``match_probes``: for every absent-object prompt, one more sequence that
    answers it with an <obj> token anyway (no LM target): what the decoder
    makes of it is a negative for the match head.
    """
    images, rows, objects = [], [], []
    first_object = []  # index in ``objects`` of each frame's first object
    masks: dict[tuple[int, int], np.ndarray] = {}  # (frame, object) -> mask grid; prompts share objects

    def object_mask(scene_index: int, letterbox: Letterbox, scene, index: int) -> np.ndarray:
        key = (scene_index, index)
        if key not in masks:
            masks[key] = letterbox.apply_mask(scene.objects[index].mask, mask_side)
        return masks[key]

    for scene_index, (scene, queries) in enumerate(items):
        letterbox = Letterbox.for_image(scene.image, image_size)
        images.append(image_tensor(scene.image, letterbox))
        first_object.append(len(objects))
        if list_objects:
            extremes = superlative_labels(scene)
            for index, obj in enumerate(scene.objects):
                objects.append((scene_index, object_mask(scene_index, letterbox, scene, index),
                                letterbox.boxes_to_unit(obj.box), object_attribute_ids(obj), extremes[index]))
        for query in queries:
            rows.append((scene_index, letterbox, scene, query))

    text, labels, box_refs, obj_refs, probes = [], [], [], [], []
    for row, (scene_index, letterbox, scene, query) in enumerate(rows):
        prompt = encode_prompt(tokenizer, ids, query.prompt, letterbox.boxes_to_unit(query.input_boxes))
        answer = answer_ids(tokenizer, ids, query)
        sequence = prompt.ids + answer
        # Logit at position t predicts token t+1: supervise from the separator on.
        target = [-100] * (len(prompt.ids) - 1) + answer + [-100]
        text.append(sequence)
        labels.append(target)
        box_refs += [(row, col, box) for col, box in zip(prompt.box_positions, prompt.boxes)]
        for k, index in enumerate(query.targets):
            obj = scene.objects[index]
            obj_refs.append((row, len(prompt.ids) + k, letterbox.boxes_to_unit(obj.box),
                             object_mask(scene_index, letterbox, scene, index), first_object[scene_index] + index))
        if match_probes and query.kind == "absent":
            probes.append((scene_index, prompt.ids + [ids.obj]))
    for scene_index, sequence in probes:
        text.append(sequence)
        labels.append([-100] * len(sequence))
    probe_rows = list(range(len(rows), len(rows) + len(probes)))
    decoded_slots = _slots([rows[r[0]][0] for r in obj_refs] + [p[0] for p in probes])

    length = max(len(t) for t in text)
    text_ids = torch.full((len(text), length), ids.pad, dtype=torch.long)
    label_ids = torch.full((len(text), length), -100, dtype=torch.long)
    text_mask = torch.zeros((len(text), length), dtype=torch.bool)
    for row, (sequence, target) in enumerate(zip(text, labels)):
        text_ids[row, :len(sequence)] = torch.tensor(sequence)
        label_ids[row, :len(target)] = torch.tensor(target)
        text_mask[row, :len(sequence)] = True

    def column(refs, index, dtype=torch.long):
        return torch.tensor([r[index] for r in refs], dtype=dtype)

    batch = SequenceBatch(
        scene_index=torch.tensor([r[0] for r in rows] + [p[0] for p in probes], dtype=torch.long),
        text_ids=text_ids, text_mask=text_mask, labels=label_ids,
        box_rows=column(box_refs, 0), box_cols=column(box_refs, 1),
        box_values=torch.tensor(np.array([r[2] for r in box_refs], np.float32).reshape(-1, 4)),
        obj_rows=column(obj_refs, 0), obj_cols=column(obj_refs, 1), obj_slots=decoded_slots[:len(obj_refs)],
        obj_boxes=torch.tensor(np.array([r[2] for r in obj_refs], np.float32).reshape(-1, 4)),
        obj_masks=torch.tensor(np.array([r[3] for r in obj_refs], np.float32).reshape(-1, mask_side, mask_side)),
    )
    if match_probes:
        batch.probe_rows = torch.tensor(probe_rows, dtype=torch.long)
        batch.probe_cols = torch.tensor([len(p[1]) - 1 for p in probes], dtype=torch.long)
        batch.probe_slots = decoded_slots[len(obj_refs):]
    if list_objects:
        batch.obj_objects = column(obj_refs, 4)
        batch.object_frames = column(objects, 0)
        batch.object_masks = torch.tensor(np.array([o[1] for o in objects], np.float32)
                                          .reshape(-1, mask_side, mask_side))
        batch.object_boxes = torch.tensor(np.array([o[2] for o in objects], np.float32).reshape(-1, 4))
        batch.object_attributes = torch.tensor(np.array([o[3] for o in objects], np.int64).reshape(-1, 3))
        batch.object_superlatives = torch.tensor(np.array([o[4] for o in objects], np.float32)
                                                 .reshape(-1, SUPERLATIVE_LABELS))
    return torch.stack(images), batch


def _slots(frames: list[int]) -> torch.Tensor:
    """Running index of each entry among the entries of the same frame."""
    seen: dict[int, int] = {}
    slots = []
    for frame in frames:
        slots.append(seen.get(frame, 0))
        seen[frame] = slots[-1] + 1
    return torch.tensor(slots, dtype=torch.long)
