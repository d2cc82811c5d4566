"""A training run's configuration: ``TrainConfig``, and the YAML file that holds it.

One YAML file holds the ``model:`` section (``ros_pgpt.model.config.ModelConfig``)
and the ``train:`` section (``TrainConfig``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ros_pgpt.model.config import ModelConfig, config_from_dict, model_config_from_dict


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
    # Denormal floats flushed to zero (ros_pgpt/training/numerics.py); false only to measure what it buys.
    flush_denormals: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train_config_from_dict(values: dict[str, Any] | None) -> TrainConfig:
    return config_from_dict(TrainConfig, values)


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
