"""Prompts as the model reads them: normalised, in the trained phrasing, tokenized.

Training and inference encode prompts through the same function, so what the
model sees at run time is exactly what it was trained on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ros_pgpt.data.wording import canonical_prompt
from ros_pgpt.model.language_model import BOX, TokenIds

# Longest prompt accepted, in characters (the node rejects longer ones).
MAX_PROMPT_CHARS = 512

def normalize_prompt(prompt: str) -> str:
    """Lower-case, single spaces, no surrounding blanks."""
    return re.sub(r"\s+", " ", prompt).strip().lower()


@dataclass
class EncodedPrompt:
    ids: list[int]  # prompt tokens followed by the answer separator
    box_positions: list[int]  # indices in ``ids`` of <box> placeholders
    boxes: np.ndarray  # (K, 4) unit xyxy boxes for those placeholders


def encode_prompt(tokenizer, ids: TokenIds, prompt: str, boxes_unit=()) -> EncodedPrompt:
    """Tokenize a prompt in its trained phrasing (``ros_pgpt.data.wording.canonical_prompt``, the identity on
    generated prompts); each literal "<box>" takes the next box of ``boxes_unit``."""
    text = normalize_prompt(prompt)
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt has {len(text)} characters; the limit is {MAX_PROMPT_CHARS}")
    text = canonical_prompt(text)
    if not text:
        raise ValueError("the prompt is empty")
    boxes = np.asarray(boxes_unit, dtype=np.float32).reshape(-1, 4)
    if text.count(BOX) != len(boxes):
        raise ValueError(f"the prompt has {text.count(BOX)} {BOX} placeholders but {len(boxes)} boxes were given")
    token_ids = tokenizer.encode(text, add_special_tokens=False) + [ids.sep]
    positions = [i for i, token in enumerate(token_ids) if token == ids.box]
    return EncodedPrompt(ids=token_ids, box_positions=positions, boxes=boxes)
