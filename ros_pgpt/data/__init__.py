"""Training/evaluation data: synthetic tabletop scenes and a RefCOCO-style loader."""
from ros_pgpt.data.scenes import (
    COLOURS,
    SHAPES,
    SIZES,
    QUERY_KINDS,
    DEFAULT_QUERY_WEIGHTS,
    SceneObject,
    Scene,
    Query,
    Sample,
    SceneGenerator,
    SceneMix,
    describe_object,
    noun_phrase,
)
from ros_pgpt.data.corpus import text_corpus
from ros_pgpt.data.refcoco import RefCocoDataset

__all__ = [
    "COLOURS", "SHAPES", "SIZES", "QUERY_KINDS", "DEFAULT_QUERY_WEIGHTS",
    "SceneObject", "Scene", "Query", "Sample", "SceneGenerator", "SceneMix", "describe_object", "noun_phrase",
    "text_corpus", "RefCocoDataset",
]
