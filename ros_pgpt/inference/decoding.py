"""The decoding rules: how the Predictor turns the model's outputs into an answer.

One frozen object holds every rule's value. The Predictor takes one
(``Predictor(model, rules=DecodingRules(match_threshold=0.3))``, or the fields
as keywords), the node's parameters (``ros_pgpt.ros.params``) and the CLI flags
(``ros_pgpt.training.evaluate.add_held_out_arguments``) default from it, and
tests/test_decoding_rules.py holds config/perception.yaml, docs/NODE.md's
parameter table and docs/MODEL.md's run-time rules table to it. The sweeps
that chose the values are linked from docs/MODEL.md ("Run-time rules").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecodingRules:
    """The shipped decoding; ``DecodingRules()`` is what the node, the CLI and the Python API use."""

    # A first object the match head scores below this is refused (answer "none"): absent prompts say "none".
    match_threshold: float = 0.4
    # After an object, decode another <obj> whenever it is this likely (the LLM stops plural answers early).
    next_object_threshold: float = 0.2
    # The LLM's "none" is overruled (object decoded, match head decides) where <obj> is this likely.
    first_object_threshold: float = 0.1
    # A later object overlapping an earlier one's box by this IoU is that object found again: the answer ends.
    duplicate_iou: float = 0.5
    # Mask logit above which a pixel is on (-2: p=0.12): the head is under-confident at object edges.
    mask_threshold: float = -2.0
    # Snap mask edges to the image's colour edges (ros_pgpt/inference/mask_refine.py): sharper than stride 4.
    refine_masks: bool = True
    # Most objects in one answer: bounds a runaway answer.
    max_objects: int = 8
    # Most answer tokens (None: 12): bounds a runaway answer.
    max_answer_tokens: int | None = None

    def answer_token_limit(self) -> int:
        """Tokens decoded at most: one per object, or a short text answer."""
        return self.max_answer_tokens or 12
