"""ONNX export of a checkpoint (issue 4): files, manifest, and every graph against PyTorch.

The checkpoint is the trained default one when present, else an untrained
tiny one; it is exported once for the module into a temporary directory.
"""

import json
import math
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ros_pgpt.model.build import load_model
from ros_pgpt.export.graphs import ProjectorGraph, pooling_matrix, supported_counts
from ros_pgpt.export.llm import KVLlama
from ros_pgpt.export.onnx_export import ParityError, check_parity, example_frames, export_checkpoint
from ros_pgpt.export.testing import shared_export
from ros_pgpt.export.artifacts import checkpoint_fingerprint, export_status, file_sha256

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    checkpoint, out, _trained = shared_export(tmp_path_factory)
    manifest = json.loads((out / "manifest.json").read_text())
    return checkpoint, out, manifest, load_model(checkpoint)


def session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def rel(a, b):
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-6))


def test_supported_counts_are_the_squares():
    assert supported_counts(64) == [1, 4, 9, 16, 25, 36, 49, 64]
    assert supported_counts(16) == [1, 4, 9, 16]


@pytest.mark.parametrize("side", [1, 3, 6, 7, 8])
def test_pooling_matrix_is_adaptive_avg_pool(side):
    x = torch.randn(2, 5, 20, 20)
    pooled = (x.flatten(2) @ pooling_matrix(20, 20, side)).view(2, 5, side, side)
    torch.testing.assert_close(pooled, torch.nn.functional.adaptive_avg_pool2d(x, side), rtol=1e-5, atol=1e-6)


def test_manifest_lists_every_file_with_hash_shapes_and_precision(exported):
    checkpoint, out, manifest, model = exported
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["checkpoint_sha256"] == checkpoint_fingerprint(checkpoint)
    counts = supported_counts(model.projector.max_tokens)
    assert manifest["model"]["visual_token_counts"] == counts
    expected = {"frame", "perception", "box_encoder", "llm_fp32", "llm_int8", "llm_int4", "embeddings"} | {
        f"projector_n{c}" for c in counts}
    assert set(manifest["files"]) == expected
    for name, entry in manifest["files"].items():
        path = out / entry["file"]
        assert path.is_file() and path.stat().st_size == entry["bytes"]
        assert file_sha256(path) == entry["sha256"], name
        assert entry["precision"].split()[0] in ("fp32", "int8", "int4")
    frame = manifest["files"]["frame"]
    assert frame["inputs"][0] == {"name": "images", "shape": ["batch", 3, model.image_size, model.image_size],
                                  "dtype": "float32"}
    assert manifest["files"]["perception"]["inputs"][0]["shape"][:2] == ["batch", "objects"]
    assert [o["name"] for o in frame["outputs"]] == ["attn_kv", "mask_map", "proj_map"]
    assert "tensorrt" in manifest and manifest["tensorrt"]["built"] == []
    assert export_status(checkpoint, out)[0]


def test_manifest_parity_figures(exported):
    _, _, manifest, _ = exported
    parity = manifest["parity"]
    assert max(v for k, v in parity["frame"].items() if k.endswith("_rel")) < 1e-4
    assert max(parity["projector"].values()) < 1e-4
    assert parity["perception"]["boxes_rel"] < 1e-3 and parity["perception"]["mask_iou_min"] >= 0.99
    assert parity["llm_fp32"]["logits_rel"] < 1e-4 and parity["llm_fp32"]["argmax_agree"]
    assert parity["llm_int8"]["logits_rel"] < 0.1 and parity["llm_int4"]["logits_rel"] < 0.2


def test_frame_graph_dynamic_batch(exported):
    _, out, _, model = exported
    pixels = example_frames(model.image_size, count=3, seed=11)
    attn_kv, mask_map = session(out / "frame.onnx").run(["attn_kv", "mask_map"], {"images": pixels})
    with torch.no_grad():
        features = model.encode_frames(torch.from_numpy(pixels))
    assert rel(mask_map, features.mask_map.numpy()) < 1e-4
    blocks = model.perception_decoder.blocks
    assert attn_kv.shape[:2] == (3, 2 * len(blocks))
    attn = blocks[0].attn
    dim = attn.embed_dim
    keys = features.memory @ attn.in_proj_weight[dim:2 * dim].T + attn.in_proj_bias[dim:2 * dim]
    assert rel(attn_kv[:, 0], keys.detach().numpy()) < 1e-4


def test_projector_graph_at_every_count_matches_the_model(exported):
    """One graph per count; each checked numerically against GroundingModel.image_prefix."""
    _, out, manifest, model = exported
    pixels = example_frames(model.image_size, count=2, seed=12)
    proj_map = session(out / "frame.onnx").run(["proj_map"], {"images": pixels})[0]
    with torch.no_grad():
        features = model.encode_frames(torch.from_numpy(pixels))
    for count in manifest["model"]["visual_token_counts"]:
        got = session(out / f"projector_n{count}.onnx").run(["prefix"], {"proj_map": proj_map})[0]
        with torch.no_grad():
            expected = model.image_prefix(features, count).numpy()
        assert got.shape == expected.shape == (2, count + 3, model.language_model.hidden_size)
        assert rel(got, expected) < 1e-4, count


def test_projector_rejects_non_square_counts(exported):
    _, _, _, model = exported
    with pytest.raises(ValueError, match="unsupported"):
        ProjectorGraph(model, 5, 8)


def test_perception_graph_dynamic_objects(exported):
    _, out, _, model = exported
    pixels = example_frames(model.image_size, count=2, seed=13)
    attn_kv, mask_map = session(out / "frame.onnx").run(["attn_kv", "mask_map"], {"images": pixels})
    with torch.no_grad():
        features = model.encode_frames(torch.from_numpy(pixels))
    hidden = torch.randn(2, 5, model.language_model.hidden_size)
    side = math.isqrt(model.projector.max_tokens) - 1  # any grid side: the export traced the largest
    visual = torch.randn(2, side * side, model.language_model.hidden_size)
    with torch.no_grad():
        pointer = model.pointer_grid(hidden, visual)
        boxes, logits, match = model.perception_decoder(hidden, features.memory, features.mask_map, pointer)
        feedback = model.perception_encoder(boxes.reshape(-1, 4)).view(2, 5, -1)
    graph = session(out / "perception.onnx")
    names = ["boxes", "mask_logits", "feedback"] + ([] if match is None else ["match_logits"])
    assert [o.name for o in graph.get_outputs()] == names  # match logits exactly when the model has a match head
    feeds = {"hidden": hidden.numpy(), "attn_kv": attn_kv, "mask_map": mask_map}
    if pointer is not None:  # the pointer's keys: the visual tokens' hiddens as their grid
        feeds["visual"] = visual.unflatten(1, (side, side)).numpy()
    assert ("visual" in [i.name for i in graph.get_inputs()]) == (pointer is not None)
    got = graph.run(names, feeds)
    assert np.abs(got[0] - boxes.numpy()).max() <= 1e-3 * np.abs(boxes.numpy()).max()
    for b in range(2):
        for k in range(5):
            a, e = got[1][b, k] > 0, logits.numpy()[b, k] > 0
            union = (a | e).sum()
            assert union == 0 or (a & e).sum() / union >= 0.99
    if match is not None:
        assert got[3].shape == (2, 5) and rel(got[3], match.numpy()) < 1e-3
    assert rel(got[2], feedback.numpy()) < 1e-4


def test_perception_graph_with_the_pointer_prior(tmp_path):
    """A decoder that attends under the pointer's prior (``pointer_prior``) exports with the pointer inside
    the graph: ONNX Runtime reproduces PyTorch at several batch sizes, object counts and grid sides."""
    from ros_pgpt.export.onnx_export import export_perception
    from ros_pgpt.export.testing import tiny_checkpoint

    model = load_model(tiny_checkpoint(tmp_path / "tiny", pointer_prior=True)).eval()
    path, parity = export_perception(model, tmp_path, example_frames(model.image_size))
    assert [i.name for i in session(path).get_inputs()] == ["hidden", "attn_kv", "mask_map", "visual"]
    assert check_parity({"perception": parity}) == []
    assert parity["mask_logits_rel"] < 1e-4 and parity["feedback_rel"] < 1e-4


@pytest.mark.parametrize("past,tokens", [(0, 7), (5, 1), (40, 3)])
def test_llm_graph_matches_transformers(exported, past, tokens):
    from transformers import DynamicCache

    _, out, _, model = exported
    lm = model.language_model
    graph = KVLlama(lm)
    generator = torch.Generator().manual_seed(past + tokens)
    history = torch.randn(1, past + tokens, graph.hidden_size, generator=generator) * 0.05
    cache = DynamicCache()
    with torch.no_grad():
        if past:
            lm(history[:, :past], past_key_values=cache)
        positions = torch.arange(past, past + tokens).unsqueeze(0)
        hidden, logits, _ = lm(history[:, past:], past_key_values=cache, position_ids=positions)
    sess = session(out / "llm_fp32.onnx")
    kv = [np.zeros((1, graph.kv_heads, 0, graph.head_dim), np.float32)] * (2 * graph.num_layers)
    if past:
        kv = sess.run(None, {"embeds": history[:, :past].numpy()} | dict(zip(graph.input_names()[1:], kv)))[2:]
    got = sess.run(None, {"embeds": history[:, past:].numpy()} | dict(zip(graph.input_names()[1:], kv)))
    assert got[0].shape == (1, tokens, graph.hidden_size)  # every new position: the pointer's keys
    assert rel(got[0], hidden.numpy()) < 1e-4
    assert rel(got[1], logits[:, -1].numpy()) < 1e-4
    assert got[2].shape == (1, graph.kv_heads, past + tokens, graph.head_dim)


def test_quantized_llms_are_smaller(exported):
    _, _, manifest, _ = exported
    files = manifest["files"]
    assert files["llm_int8"]["bytes"] < 0.6 * files["llm_fp32"]["bytes"]
    assert files["llm_int4"]["bytes"] < files["llm_int8"]["bytes"]


def test_export_of_other_weights_is_refused(exported, tmp_path):
    checkpoint, out, _, _ = exported
    other = tmp_path / "other"
    other.mkdir()
    for name in ("config.yaml", "tokenizer.json", "tokenizer_config.json"):
        (other / name).write_bytes((checkpoint / name).read_bytes())
    (other / "model.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes() + b" ")
    ready, reason = export_status(other, out)
    assert not ready and "other weights" in reason


def test_cli_export_writes_a_manifest(tmp_path):
    """``ros-pgpt export`` end to end on a tiny checkpoint, two counts, no int8 (fast)."""
    from ros_pgpt.export.testing import tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path / "tiny")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ros_pgpt.cli", "export", "--checkpoint", str(checkpoint),
                           "--out", str(out), "--tokens", "4,16", "--no-int8", "--tensorrt", "none", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["visual_token_counts"] == [4, 16]
    assert "llm_int8" not in manifest["files"] and (out / "projector_n16.onnx").is_file()
    assert manifest["tensorrt"]["reason"] == "not requested"


def test_cli_export_rejects_unsupported_counts(tmp_path):
    from ros_pgpt.export.testing import tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path / "tiny")
    with pytest.raises(ValueError, match="not squares"):
        export_checkpoint(checkpoint, tmp_path / "out", counts=[5], tensorrt=())


def test_check_parity_names_each_failure():
    good = {"frame": {"mask_map_b1_rel": 1e-6}, "projector": {"n4_rel": 1e-7},
            "perception": {"boxes_rel": 1e-7, "mask_iou_min": 1.0}, "llm_fp32": {"logits_rel": 1e-7,
                                                                                "argmax_agree": True}}
    assert check_parity(good) == []
    bad = good | {"projector": {"n4_rel": 1e-7, "n9_rel": 0.5}, "perception": {"boxes_rel": 1e-7, "mask_iou_min": 0.9}}
    failures = check_parity(bad)
    assert any("projector.n9_rel" in f for f in failures) and any("mask_iou_min" in f for f in failures)


def test_export_refuses_a_graph_that_drifted_from_the_model(tmp_path, monkeypatch):
    """A wrapper that no longer follows the model code fails the export; no manifest is written."""
    from ros_pgpt.export import graphs
    from ros_pgpt.export.testing import tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path / "tiny")
    original = graphs.ProjectorGraph.forward
    monkeypatch.setattr(graphs.ProjectorGraph, "forward", lambda self, proj_map: original(self, proj_map) * 1.01)
    with pytest.raises(ParityError, match="projector"):
        export_checkpoint(checkpoint, tmp_path / "out", counts=[4], int8=False, tensorrt=())
    assert not (tmp_path / "out" / "manifest.json").exists()
