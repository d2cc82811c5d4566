"""Export a checkpoint to ONNX, quantize the LLM, check every graph against PyTorch.

    from ros_pgpt.export.onnx_export import export_checkpoint
    manifest = export_checkpoint("ros_pgpt/checkpoints/default", "out/export")

Writes (see graphs.py for what each graph holds):
    frame.onnx                 images (B,3,S,S)            -> attn_kv, mask_map, proj_map
    projector_n{n}.onnx        proj_map (B,C,h,w)           -> prefix (B,n+3,D)   one per count n
    perception.onnx            hidden (B,K,D), attn_kv, mask_map[, visual (B,s,s,D)]
                                                            -> boxes, mask_logits, feedback[, match_logits]
    box_encoder.onnx           boxes (N,4)                  -> embeddings (N,D)
    llm_fp32.onnx / llm_int8.onnx  embeds + past KV         -> hidden (every position), logits, present KV
    llm_int4.onnx              (with int4=True) weight-only int4 MatMulNBits LLM
    embeddings.npy             the LLM's input embedding table (token id -> row)
    manifest.json              files, shapes, precisions, sha256, parity figures
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ros_pgpt.data.geometry import mask_iou
from ros_pgpt.export.artifacts import MANIFEST, MANIFEST_VERSION, checkpoint_fingerprint, file_sha256

from ros_pgpt.export.graphs import (
    BoxEncoderGraph,
    FrameGraph,
    PerceptionGraph,
    ProjectorGraph,
    supported_counts,
)
from ros_pgpt.export.llm import KVLlama

log = logging.getLogger(__name__)
OPSET = 17


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            axes: dict) -> Path:
    """Legacy (TorchScript) exporter: every dynamic axis is then checked numerically by the caller."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
        produced = module(*args)
    _declare_output_shapes(path, dict(zip(outputs, produced if isinstance(produced, tuple) else (produced,))), axes)
    return path


def _declare_output_shapes(path: Path, produced: dict, axes: dict) -> None:
    """Write each output's shape into the graph: named dynamic axes, the example's size elsewhere.

    The TorchScript exporter leaves generated names (or wrong ones) on output
    axes it cannot infer; the manifest and TensorRT read these shapes.
    """
    import onnx

    model = onnx.load(str(path))
    for value in model.graph.output:
        tensor = produced[value.name]
        dims = value.type.tensor_type.shape.dim
        while len(dims) < tensor.dim():
            dims.add()
        for axis, dim in enumerate(dims):
            dynamic = axes.get(value.name, {}).get(axis)
            if dynamic:
                dim.dim_param = dynamic
            else:
                dim.dim_value = int(tensor.shape[axis])
    onnx.save(model, str(path))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest error relative to the reference's scale (max |a-b| / max(|b|, 1e-6))."""
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-6)) if a.size else 0.0


def _abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max()) if a.size else 0.0


def _onnx_io(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def describe(values):
        out = []
        for value in values:
            tensor = value.type.tensor_type
            dims = [d.dim_param if d.dim_param else d.dim_value for d in tensor.shape.dim]
            out.append({"name": value.name, "shape": dims,
                        "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name})
        return out

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


def example_frames(image_size: int, count: int = 2, seed: int = 7) -> np.ndarray:
    """(count,3,S,S) float32 letterboxed scenes from the generator (realistic activations)."""
    from ros_pgpt.data.letterbox import image_tensor
    from ros_pgpt.data import SceneGenerator
    from ros_pgpt.data.letterbox import Letterbox

    generator = SceneGenerator(resolutions=[(640, 480)])
    frames = []
    for index in range(count):
        image = generator.sample(seed * 1000 + index, n_queries=1).scene.image
        frames.append(image_tensor(image, Letterbox.for_image(image, image_size)).numpy())
    return np.stack(frames)


# -- graphs ----------------------------------------------------------------------------------

FRAME_OUTPUTS = ["attn_kv", "mask_map", "proj_map"]


def export_frame(model, out: Path, pixels: np.ndarray) -> tuple[Path, dict]:
    graph = FrameGraph(model).eval()
    names = FRAME_OUTPUTS
    path = _export(graph, (torch.from_numpy(pixels[:1]),), out / "frame.onnx", ["images"], names,
                   {"images": {0: "batch"}} | {n: {0: "batch"} for n in names})
    session = _session(path)
    parity = {}
    with torch.no_grad():
        for batch in (1, pixels.shape[0]):
            reference = model.encode_frames(torch.from_numpy(pixels[:batch]))
            expected = graph(torch.from_numpy(pixels[:batch]))
            got = session.run(names, {"images": pixels[:batch]})
            # The wrapper's mask map is the model's own; ORT equals the wrapper.
            assert torch.equal(reference.mask_map, expected[1]), "FrameGraph.mask_map differs from encode_frames"
            for name, exp, value in zip(names, expected, got):
                parity[f"{name}_b{batch}_max_abs"] = _abs(value, exp.numpy())
                parity[f"{name}_b{batch}_rel"] = _rel(value, exp.numpy())
    return path, parity


def export_projectors(model, out: Path, pixels: np.ndarray, counts: list[int]) -> tuple[dict, dict]:
    frame = FrameGraph(model).eval()
    with torch.no_grad():
        features = model.encode_frames(torch.from_numpy(pixels))
        proj_map = frame(torch.from_numpy(pixels))[2]
    side = proj_map.shape[-1]
    paths, parity = {}, {}
    for count in counts:
        graph = ProjectorGraph(model, count, side).eval()
        path = _export(graph, (proj_map[:1],), out / f"projector_n{count}.onnx", ["proj_map"], ["prefix"],
                       {"proj_map": {0: "batch"}, "prefix": {0: "batch"}})
        session = _session(path)
        worst = 0.0
        for batch in (1, pixels.shape[0]):
            with torch.no_grad():
                reference = model.image_prefix(features.first(batch), count).numpy()
            got = session.run(["prefix"], {"proj_map": proj_map[:batch].numpy()})[0]
            if got.shape != reference.shape:
                raise AssertionError(f"projector n={count}: ONNX gives {got.shape}, PyTorch {reference.shape}")
            worst = max(worst, _rel(got, reference))
        paths[count] = path
        parity[f"n{count}_rel"] = worst
    return paths, parity


def export_perception(model, out: Path, pixels: np.ndarray) -> tuple[Path, dict]:
    """The per-object graph, checked against ``GroundingModel.perceive`` on the model's own frame, at
    several batch sizes, object counts and (with a visual pointer) visual-token grid sides."""
    graph = PerceptionGraph(model).eval()
    with torch.no_grad():
        features = model.encode_frames(torch.from_numpy(pixels))
        attn_kv = FrameGraph(model).eval()(torch.from_numpy(pixels))[0]
    hidden_size = model.language_model.hidden_size
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(pixels.shape[0], 3, hidden_size, generator=generator)
    max_side = math.isqrt(model.projector.max_tokens)
    visual = torch.randn(pixels.shape[0], max_side, max_side, hidden_size, generator=generator)
    pointing = model.pointer is not None
    matching = model.perception_decoder.match_head is not None
    names = ["boxes", "mask_logits", "feedback"] + (["match_logits"] if matching else [])
    inputs = graph.input_names()

    def feeds(batch: int, objects: int, side: int) -> tuple:
        return (hidden[:batch, :objects], attn_kv[:batch], features.mask_map[:batch]) \
            + ((visual[:batch, :side, :side],) if pointing else ())

    axes = {"hidden": {0: "batch", 1: "objects"}, "attn_kv": {0: "batch"}, "mask_map": {0: "batch"},
            "visual": {0: "batch", 1: "side", 2: "side"}}
    path = _export(graph, feeds(1, 2, max_side), out / "perception.onnx", inputs, names,
                   {name: axes[name] for name in inputs} | {name: {0: "batch", 1: "objects"} for name in names})
    session = _session(path)
    parity = {"boxes_rel": 0.0, "mask_iou_min": 1.0, "mask_logits_rel": 0.0, "feedback_rel": 0.0}
    if matching:
        parity["match_logits_rel"] = 0.0
    for batch, objects, side in ((1, 1, max_side), (1, 3, max(1, max_side // 2)), (pixels.shape[0], 2, max_side - 1)):
        args = feeds(batch, objects, side)
        with torch.no_grad():
            boxes, logits, feedback, match = model.perceive(args[0], features.first(batch).keys_values, args[2],
                                                            args[3] if pointing else None)
        got = session.run(names, {name: value.numpy() for name, value in zip(inputs, args)})
        parity["boxes_rel"] = max(parity["boxes_rel"], _rel(got[0], boxes.numpy()))
        parity["mask_logits_rel"] = max(parity["mask_logits_rel"], _rel(got[1], logits.numpy()))
        parity["feedback_rel"] = max(parity["feedback_rel"], _rel(got[2], feedback.numpy()))
        if matching:
            parity["match_logits_rel"] = max(parity["match_logits_rel"], _rel(got[3], match.numpy()))
        for k in range(objects):
            for b in range(batch):
                parity["mask_iou_min"] = min(parity["mask_iou_min"],
                                             mask_iou(got[1][b, k] > 0, logits.numpy()[b, k] > 0))
    return path, parity


def export_box_encoder(model, out: Path) -> tuple[Path, dict]:
    graph = BoxEncoderGraph(model).eval()
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.4, 0.9]])
    path = _export(graph, (boxes[:2],), out / "box_encoder.onnx", ["boxes"], ["embeddings"],
                   {"boxes": {0: "count"}, "embeddings": {0: "count"}})
    with torch.no_grad():
        expected = model.perception_encoder(boxes).numpy()
    got = _session(path).run(["embeddings"], {"boxes": boxes.numpy()})[0]
    return path, {"embeddings_rel": _rel(got, expected)}


def export_llm(model, out: Path, pixels: np.ndarray) -> tuple[Path, dict]:
    """fp32 LLM graph; checked against transformers with a DynamicCache on a real prefix + prompt."""
    lm = model.language_model
    graph = KVLlama(lm).eval()
    hidden_size = graph.hidden_size
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(1, 5, hidden_size, generator=generator)
    past = [torch.randn(1, graph.kv_heads, 3, graph.head_dim, generator=generator)
            for _ in range(2 * graph.num_layers)]
    axes = {"embeds": {0: "batch", 1: "tokens"}, "hidden": {0: "batch", 1: "tokens"}, "logits": {0: "batch"}}
    for name in graph.input_names()[1:]:
        axes[name] = {0: "batch", 2: "past"}
    for name in graph.output_names()[2:]:
        axes[name] = {0: "batch", 2: "total"}
    path = _export(graph, (example, *past), out / "llm_fp32.onnx", graph.input_names(), graph.output_names(), axes)
    parity = llm_parity(model, path)
    return path, parity


def llm_parity(model, path: Path, count: int = 16) -> dict:
    """Run prefix prefill, a prompt prefill and 3 decode steps through ONNX and transformers."""
    from transformers import DynamicCache

    count = model.projector.tokens_for(count)
    lm = model.language_model
    graph = KVLlama(lm)
    session = _session(path)
    generator = torch.Generator().manual_seed(1)
    pixels = torch.rand(1, 3, model.image_size, model.image_size, generator=generator)
    prompt = lm.tokenizer.encode("the small red star", add_special_tokens=False) + [model.ids.sep]
    steps = [torch.tensor([prompt]), torch.tensor([[model.ids.obj]]), torch.tensor([[model.ids.obj]]),
             torch.tensor([[model.ids.eos]])]
    worst = {"hidden_rel": 0.0, "logits_rel": 0.0, "argmax_agree": True}
    with torch.no_grad():
        prefix = model.image_prefix(model.encode_frames(pixels), count)
        cache = DynamicCache()
        past = [np.asarray(t) for t in graph.empty_past()]
        names = graph.output_names()
        feeds = [prefix] + [lm.embed(ids) for ids in steps]
        position = 0
        for embeds in feeds:
            positions = torch.arange(position, position + embeds.shape[1]).unsqueeze(0)
            ref_hidden, ref_logits, _ = lm(embeds, past_key_values=cache, position_ids=positions)
            inputs = {"embeds": embeds.numpy()} | dict(zip(graph.input_names()[1:], past))
            got = session.run(names, inputs)
            past = got[2:]
            # Every position: the prefix's visual tokens are the pointer's keys.
            worst["hidden_rel"] = max(worst["hidden_rel"], _rel(got[0], ref_hidden.numpy()))
            worst["logits_rel"] = max(worst["logits_rel"], _rel(got[1], ref_logits[:, -1].numpy()))
            if position:  # the prefix ends in </image>, whose next-token guess is never used
                worst["argmax_agree"] &= bool(got[1].argmax(-1)[0] == int(ref_logits[0, -1].argmax()))
            position += embeds.shape[1]
    return worst


def quantize_llm(fp32_path: Path, out: Path) -> Path:
    """Dynamic int8 (weights int8 per output channel, activations quantized at run time) of every MatMul."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = out / "llm_int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("root").setLevel(logging.ERROR)
        quantize_dynamic(str(fp32_path), str(path), op_types_to_quantize=["MatMul", "Gemm"],
                         per_channel=True, weight_type=QuantType.QInt8)
    return path


def quantize_llm_int4(fp32_path: Path, out: Path, block_size: int = 32) -> Path:
    """Weight-only int4 (block-wise, symmetric) MatMulNBits: the route that carries to Jetson (CUDA kernels)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    path = out / "llm_int4.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("root").setLevel(logging.ERROR)
        quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32_path)), bits=4, block_size=block_size,
                                         is_symmetric=True)
        quantizer.process()
        onnx.save(quantizer.model.model, str(path))
    return path


# -- the whole export ------------------------------------------------------------------------

class ParityError(AssertionError):
    """An exported graph does not reproduce the PyTorch model."""


# Largest accepted errors (relative to the reference's scale) per graph; int8/int4 only need the same argmax.
PARITY_LIMITS = {"frame": 1e-4, "projector": 1e-4, "box_encoder": 1e-4, "llm_fp32": 1e-4}


def check_parity(parity: dict) -> list[str]:
    """Human-readable failures of the export-time checks (empty when every graph agrees)."""
    failures = []
    for graph, limit in PARITY_LIMITS.items():
        for key, value in parity.get(graph, {}).items():
            if key.endswith("_rel") and not value <= limit:
                failures.append(f"{graph}.{key}={value:.3g} > {limit:g}")
    perception = parity.get("perception", {})
    if not perception.get("boxes_rel", 1.0) <= 1e-3:
        failures.append(f"perception.boxes_rel={perception.get('boxes_rel')} > 1e-3")
    if not perception.get("mask_iou_min", 0.0) >= 0.99:
        failures.append(f"perception.mask_iou_min={perception.get('mask_iou_min')} < 0.99")
    if not perception.get("match_logits_rel", 0.0) <= 1e-3:  # the match head decides whether an object is kept
        failures.append(f"perception.match_logits_rel={perception.get('match_logits_rel')} > 1e-3")
    if "llm_fp32" in parity and not parity["llm_fp32"].get("argmax_agree", False):
        failures.append("llm_fp32: next-token argmax differs from PyTorch")
    return failures


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, counts: list[int] | None = None,
                      int8: bool = True, int4: bool = False, tensorrt: tuple[str, ...] | None = None,
                      calibration_frames: int = 64) -> dict:
    """Export ``checkpoint`` into ``out_dir`` and write ``manifest.json`` (returned).

    ``tensorrt``: precisions ("fp16", "int8") to build engines for; None builds
    fp16 and int8 when TensorRT and a CUDA device are present, () builds none.
    """
    from ros_pgpt.model.build import load_model

    started = time.perf_counter()
    checkpoint, out = Path(checkpoint), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # an interrupted export leaves no valid manifest
    # Generated files (ONNX, engines, manifest) never belong in git, wherever the directory is.
    (out / ".gitignore").write_text("# written by ros-pgpt export\n*\n")
    model = load_model(checkpoint).eval()
    all_counts = supported_counts(model.projector.max_tokens)
    counts = sorted(set(counts or all_counts))
    unsupported = [c for c in counts if c not in all_counts]
    if unsupported:
        raise ValueError(f"visual-token counts {unsupported} are not squares <= {model.projector.max_tokens}")
    pixels = example_frames(model.image_size)
    files, parity = {}, {}
    timings = {}

    def note(name, path, precision_name, stage_started):
        files[name] = {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
                       "precision": precision_name, **_onnx_io(path)}
        timings[name] = round(time.perf_counter() - stage_started, 2)
        log.info("exported %s (%.1f s)", path.name, timings[name])

    t = time.perf_counter()
    path, parity["frame"] = export_frame(model, out, pixels)
    note("frame", path, "fp32", t)
    t = time.perf_counter()
    paths, parity["projector"] = export_projectors(model, out, pixels, counts)
    for count, path in paths.items():
        note(f"projector_n{count}", path, "fp32", t)
    t = time.perf_counter()
    path, parity["perception"] = export_perception(model, out, pixels)
    note("perception", path, "fp32", t)
    t = time.perf_counter()
    path, parity["box_encoder"] = export_box_encoder(model, out)
    note("box_encoder", path, "fp32", t)
    t = time.perf_counter()
    llm_path, parity["llm_fp32"] = export_llm(model, out, pixels)
    note("llm_fp32", llm_path, "fp32", t)
    if int8:
        t = time.perf_counter()
        path = quantize_llm(llm_path, out)
        parity["llm_int8"] = llm_parity(model, path)
        note("llm_int8", path, "int8 (dynamic, per-channel weights)", t)
    if int4:
        t = time.perf_counter()
        path = quantize_llm_int4(llm_path, out)
        parity["llm_int4"] = llm_parity(model, path)
        note("llm_int4", path, "int4 (weight-only, block 32, MatMulNBits)", t)
    table = model.language_model.model.get_input_embeddings().weight.detach().numpy().astype(np.float32)
    np.save(out / "embeddings.npy", table)
    files["embeddings"] = {"file": "embeddings.npy", "sha256": file_sha256(out / "embeddings.npy"),
                           "bytes": (out / "embeddings.npy").stat().st_size, "precision": "fp32",
                           "shape": list(table.shape)}
    lm = KVLlama(model.language_model)
    import onnx
    import onnxruntime

    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_sha256": checkpoint_fingerprint(checkpoint),
        "created_unix": int(time.time()),
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                     "opset": OPSET, "torch_onnx_exporter": "torchscript (dynamo=False)",
                     "python": platform.python_version(), "machine": platform.machine()},
        "model": {"image_size": model.image_size, "mask_side": model.mask_side,
                  "max_visual_tokens": model.projector.max_tokens, "visual_token_counts": counts,
                  "hidden_size": lm.hidden_size, "vocab_size": lm.vocab_size, "llm_layers": lm.num_layers,
                  "llm_kv_heads": lm.kv_heads, "llm_head_dim": lm.head_dim,
                  "ids": dataclasses.asdict(model.ids)},
        "files": files,
        "parity": parity,
        "export_seconds": timings,
    }
    failures = check_parity(parity)
    if failures:
        raise ParityError(f"exported graphs disagree with the PyTorch model ({out}, no manifest written): "
                          + "; ".join(failures))
    manifest["tensorrt"] = _tensorrt_step(out, manifest, tensorrt, calibration_frames)
    manifest["total_seconds"] = round(time.perf_counter() - started, 1)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _tensorrt_step(out: Path, manifest: dict, precisions, calibration_frames: int) -> dict:
    from ros_pgpt.export import tensorrt_build

    available, reason = tensorrt_build.tensorrt_available()
    if precisions == ():
        return {"built": [], "reason": "not requested"}
    if not available:
        if precisions:
            raise RuntimeError(f"TensorRT engines requested but {reason}")
        return {"built": [], "reason": reason}
    built = tensorrt_build.build_all(out, manifest, precisions=precisions or ("fp16", "int8"),
                                     calibration_frames=calibration_frames)
    return {"built": built, "reason": "built"}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="ros-pgpt export",
                                     description="Export a checkpoint to ONNX (+ int8 LLM, + TensorRT engines "
                                                 "where TensorRT and a GPU exist) and write manifest.json.")
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--out", default=None,
                        help="export directory (default: $ROS_PGPT_EXPORT_DIR or <checkpoint>/export)")
    parser.add_argument("--tokens", default=None, help="comma-separated visual-token counts (default: all squares <= M)")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 LLM")
    parser.add_argument("--int4", action="store_true", help="also write an int4 weight-only LLM (llm_int4.onnx)")
    parser.add_argument("--tensorrt", default=None, metavar="PRECISIONS",
                        help="TensorRT engines to build: 'fp16,int8' (default when TensorRT+GPU exist), or 'none'")
    parser.add_argument("--calibration-frames", type=int, default=64, help="INT8 calibration scenes")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ros_pgpt.checkpoints import default_checkpoint
    from ros_pgpt.export.artifacts import default_export_dir

    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    out = Path(args.out) if args.out else default_export_dir(checkpoint)
    trt = None if args.tensorrt is None else (() if args.tensorrt == "none" else tuple(args.tensorrt.split(",")))
    counts = [int(t) for t in args.tokens.split(",")] if args.tokens else None
    manifest = export_checkpoint(checkpoint, out, counts=counts, int8=not args.no_int8, int4=args.int4, tensorrt=trt,
                                 calibration_frames=args.calibration_frames)
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print(f"exported {checkpoint} -> {out} in {manifest['total_seconds']} s")
        for name, entry in manifest["files"].items():
            print(f"  {entry['file']:<24} {entry['bytes'] / 1e6:7.2f} MB  {entry['precision']}")
        print(f"  tensorrt: {manifest['tensorrt']['reason']}")
        print("parity: " + json.dumps(manifest["parity"]))
    return 0
