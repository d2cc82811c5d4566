"""Training/evaluation data: synthetic tabletop scenes and a RefCOCO-style loader."""
from .scenes import (
    COLOURS, SHAPES, SIZES, QUERY_KINDS, DEFAULT_QUERY_WEIGHTS,
    SceneObject, Scene, Query, Sample, SceneGenerator, SceneMix, describe_object, noun_phrase,
)
from .corpus import text_corpus
from .refcoco import RefCocoDataset

__all__ = [
    "COLOURS", "SHAPES", "SIZES", "QUERY_KINDS", "DEFAULT_QUERY_WEIGHTS",
    "SceneObject", "Scene", "Query", "Sample", "SceneGenerator", "SceneMix", "describe_object", "noun_phrase",
    "text_corpus", "RefCocoDataset",
]
