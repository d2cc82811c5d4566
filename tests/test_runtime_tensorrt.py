"""TensorRT engines and backend (issue 4).

The machines this project has had cannot install TensorRT, so the tests that
need it skip there with the reason; they run wherever ``tensorrt`` imports
and a CUDA device exists (e.g. a Jetson). The pure-Python parts (profiles,
stamps, the build plan, calibration data) run everywhere.
"""

import json

import numpy as np
import pytest

from ros_pgpt.export.tensorrt_build import (
    MAX_BATCH,
    MAX_OBJECTS,
    calibration_batches,
    engine_plan,
    profiles_for,
    stamp_matches,
    tensorrt_available,
)

TRT_OK, TRT_WHY = tensorrt_available()
needs_tensorrt = pytest.mark.skipif(not TRT_OK, reason=f"needs TensorRT and a CUDA device: {TRT_WHY}")

MANIFEST = {
    "model": {"image_size": 128, "max_visual_tokens": 16},
    "files": {
        "frame": {"inputs": [{"name": "images", "shape": ["batch", 3, 128, 128]}]},
        "projector_n4": {"inputs": [{"name": "proj_map", "shape": ["batch", 32, 8, 8]}]},
        "perception": {"inputs": [{"name": "hidden", "shape": ["batch", "objects", 64]},
                                  {"name": "attn_kv", "shape": ["batch", 2, 256, 32]},
                                  {"name": "mask_map", "shape": ["batch", 16, 32, 32]},
                                  {"name": "visual", "shape": ["batch", "side", "side", 64]}]},
        "box_encoder": {"inputs": [{"name": "boxes", "shape": ["count", 4]}]},
        "llm_fp32": {"inputs": [{"name": "embeds", "shape": ["batch", "tokens", 64]}]},
        "embeddings": {},
    },
}


def test_profiles_cover_batch_objects_and_visual_grid():
    (images,) = profiles_for("frame", MANIFEST)
    assert images.min == (1, 3, 128, 128) and images.max == (MAX_BATCH, 3, 128, 128)
    hidden, attn_kv, _, visual = profiles_for("perception", MANIFEST)
    assert hidden.min == (1, 1, 64) and hidden.max == (MAX_BATCH, MAX_OBJECTS, 64)
    assert attn_kv.opt == (1, 2, 256, 32)
    assert visual.min == (1, 1, 1, 64) and visual.max == (MAX_BATCH, 4, 4, 64)
    with pytest.raises(ValueError, match="no profile rule"):
        profiles_for("llm_fp32", MANIFEST)


def test_engine_plan_keeps_the_llm_on_onnxruntime_and_int8_for_the_encoder():
    assert dict(engine_plan(MANIFEST, "fp16")) == {"frame": "fp16", "projector_n4": "fp16", "perception": "fp16",
                                                   "box_encoder": "fp16"}
    assert dict(engine_plan(MANIFEST, "int8"))["frame"] == "int8"
    assert dict(engine_plan(MANIFEST, "int8"))["perception"] == "fp16"


def test_stamp_mismatch_names_the_difference(tmp_path):
    stamp = {"tensorrt": "10.3.0", "gpu": {"name": "Orin", "compute_capability": "8.7"}, "onnx_sha256": "ab",
             "precision": "fp16", "profiles": {}}
    path = tmp_path / "frame.fp16.engine.json"
    assert stamp_matches(path, stamp) == (False, "no stamp")
    path.write_text(json.dumps(stamp))
    assert stamp_matches(path, stamp)[0]
    ok, why = stamp_matches(path, stamp | {"tensorrt": "10.4.0"})
    assert not ok and "tensorrt differs" in why
    ok, why = stamp_matches(path, stamp | {"gpu": {"name": "RTX 4090", "compute_capability": "8.9"}})
    assert not ok and "gpu differs" in why


def test_calibration_batches_are_generator_scenes():
    batches = list(calibration_batches(MANIFEST, frames=3))
    assert len(batches) == 3 and batches[0].shape == (1, 3, 128, 128) and batches[0].dtype == np.float32
    assert 0.0 <= batches[0].min() and batches[0].max() <= 1.0
    assert not np.array_equal(batches[0], batches[1])


def test_tensorrt_unavailability_has_a_reason():
    if not TRT_OK:
        assert "tensorrt" in TRT_WHY


# -- with TensorRT ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from ros_pgpt.export.onnx_export import export_checkpoint
    from ros_pgpt.export.testing import tiny_checkpoint

    tmp = tmp_path_factory.mktemp("trt")
    checkpoint = tiny_checkpoint(tmp / "tiny")
    out = tmp / "onnx"
    manifest = export_checkpoint(checkpoint, out, tensorrt=("fp16",))
    return checkpoint, out, manifest


@needs_tensorrt
def test_fp16_engines_are_built_and_stamped(exported):
    _, out, manifest = exported
    built = {entry["graph"] for entry in manifest["tensorrt"]["built"]}
    assert built == {g for g, _ in engine_plan(manifest, "fp16")}
    for entry in manifest["tensorrt"]["built"]:
        stamp = json.loads((out / (entry["file"] + ".json")).read_text())
        assert stamp["precision"] == entry["precision"] and stamp["gpu"]["name"]
    assert (out / "tensorrt" / "timing.cache").is_file()


@needs_tensorrt
def test_engine_is_rebuilt_when_the_stamp_does_not_match(exported):
    from ros_pgpt.export.tensorrt_build import engine_path, ensure_engine

    _, out, manifest = exported
    path = engine_path(out, "box_encoder", "fp16")
    stamp_file = out / "tensorrt" / "box_encoder.fp16.engine.json"
    stamp = json.loads(stamp_file.read_text())
    stamp_file.write_text(json.dumps(stamp | {"tensorrt": "0.0.0"}))
    before = path.stat().st_mtime_ns
    ensure_engine(out, manifest, "box_encoder", "fp16")
    assert path.stat().st_mtime_ns != before
    assert json.loads(stamp_file.read_text())["tensorrt"] == stamp["tensorrt"]


@needs_tensorrt
def test_int8_encoder_engine_calibrates_on_scenes(exported):
    from ros_pgpt.export.tensorrt_build import ensure_engine

    _, out, manifest = exported
    path = ensure_engine(out, manifest, "frame", "int8", calibration_frames=8)
    assert path.is_file() and (out / "tensorrt" / "frame.int8.calibration").is_file()


@needs_tensorrt
def test_tensorrt_backend_agrees_with_onnxruntime(exported):
    from ros_pgpt.data import SceneGenerator
    from ros_pgpt.inference.backends import create_predictor

    checkpoint, out, _ = exported
    trt = create_predictor(checkpoint, backend="tensorrt", precision="fp16", engine_dir=out)
    ort = create_predictor(checkpoint, backend="onnxruntime", precision="fp32", engine_dir=out)
    assert trt.backend["backend"] == "tensorrt"
    sample = SceneGenerator().sample(10**12 + 42, n_queries=3)
    for query in sample.queries:
        a = ort.ground(sample.scene.image, query.prompt, key=1, boxes=query.input_boxes)
        b = trt.ground(sample.scene.image, query.prompt, key=1, boxes=query.input_boxes)
        assert len(a.objects) == len(b.objects)
        for x, y in zip(a.objects, b.objects):  # fp16: looser than the fp32 ONNX parity
            assert np.abs(np.subtract(x.box, y.box)).max() <= 1e-2 * 640
            union = (x.mask | y.mask).sum()
            assert union == 0 or (x.mask & y.mask).sum() / union >= 0.9
