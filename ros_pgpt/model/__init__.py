"""Model parts, one module each: image encoder, projector, language model, perception heads."""

from ros_pgpt.model.grounding_model import FrameFeatures, GroundingModel
from ros_pgpt.model.image_encoder import EfficientNetLite0Encoder, HFVisionEncoder, build_image_encoder
from ros_pgpt.model.language_model import LanguageModel, build_language_model
from ros_pgpt.model.perception import PerceptionDecoder, PerceptionEncoder
from ros_pgpt.model.projector import CAbstractor, LinearProjector, QueryResampler, build_projector

__all__ = [
    "CAbstractor", "EfficientNetLite0Encoder", "FrameFeatures", "GroundingModel", "HFVisionEncoder",
    "LanguageModel", "LinearProjector", "PerceptionDecoder", "PerceptionEncoder", "QueryResampler",
    "build_image_encoder", "build_language_model", "build_projector",
]
