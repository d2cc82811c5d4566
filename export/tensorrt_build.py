"""TensorRT engines from the exported ONNX graphs (TensorRT Python API).

NOT RUN on any machine this project has had: TensorRT cannot be installed
there (see docs/DEPLOYMENT.md). The code follows the TensorRT 8.6 / 10.x
Python API; tests/test_runtime_tensorrt.py runs it wherever ``tensorrt``
imports and a CUDA device exists, and skips with that reason elsewhere.

- FP16 engines for every graph except the LLM (the LLM runs on ONNX Runtime,
  see ros_pgpt/inference/tensorrt_engine.py).
- INT8 for ``frame.onnx`` (the vision encoder, where int8 pays): entropy
  calibration on scenes from ``ros_pgpt.data.SceneGenerator``, with FP16
  fallback for layers TensorRT keeps in higher precision. The calibration
  cache is kept next to the engine. The small per-count projectors and the
  perception decoder stay FP16 in the "int8" set.
- One timing cache (``tensorrt/timing.cache``) shared by every build.
- Each engine ``X.engine`` has a stamp ``X.engine.json`` (TensorRT version,
  GPU name and compute capability, ONNX sha256, precision, profiles);
  ``ensure_engine`` rebuilds when the stamp does not match the machine.

The ``trtexec`` equivalent (Jetson) is in docs/DEPLOYMENT.md.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ros_pgpt.export.artifacts import file_sha256

log = logging.getLogger(__name__)
ENGINE_DIR = "tensorrt"
TIMING_CACHE = "timing.cache"
WORKSPACE_BYTES = 1 << 30
MAX_BATCH = 4
MAX_OBJECTS = 16


def tensorrt_available() -> tuple[bool, str]:
    """(True, version) when ``tensorrt`` imports and a CUDA device is visible, else (False, why)."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or a placeholder wheel failing at import
        return False, f"tensorrt is not importable ({type(exc).__name__}: {exc})"
    device = gpu_identity()
    if device is None:
        return False, f"tensorrt {trt.__version__} imports but no CUDA device is visible"
    return True, f"tensorrt {trt.__version__} on {device['name']}"


def gpu_identity() -> dict | None:
    """Name and compute capability of CUDA device 0 (via torch), or None."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        major, minor = torch.cuda.get_device_capability(0)
        return {"name": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}
    except Exception:
        return None


@dataclass(frozen=True)
class Profile:
    """min/opt/max shape of one engine input."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def as_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def profiles_for(graph: str, manifest: dict) -> list[Profile]:
    """Optimization profiles from the manifest's recorded shapes: batch 1..MAX_BATCH, objects 1..MAX_OBJECTS,
    visual-token grid side 1..sqrt(max visual tokens)."""
    entry = manifest["files"][graph]
    out = []
    for tensor in entry["inputs"]:
        dims = tensor["shape"]
        lo, opt, hi = [], [], []
        for axis, dim in enumerate(dims):
            if isinstance(dim, int) and dim > 0:
                lo.append(dim), opt.append(dim), hi.append(dim)
            elif dim == "batch":
                lo.append(1), opt.append(1), hi.append(MAX_BATCH)
            elif dim in ("objects", "count"):
                lo.append(1), opt.append(2), hi.append(MAX_OBJECTS)
            elif dim == "side":  # the visual-token grid: 1 x 1 up to the model's largest
                largest = math.isqrt(manifest["model"]["max_visual_tokens"])
                lo.append(1), opt.append(largest), hi.append(largest)
            else:
                raise ValueError(f"{graph}: no profile rule for axis {axis} ({dim!r}) of {tensor['name']}")
        out.append(Profile(tensor["name"], tuple(lo), tuple(opt), tuple(hi)))
    return out


def engine_stamp(onnx_path: Path, precision: str, profiles: list[Profile]) -> dict:
    import tensorrt as trt

    return {"tensorrt": trt.__version__, "gpu": gpu_identity(), "onnx_sha256": file_sha256(onnx_path),
            "precision": precision, "profiles": {p.name: p.as_dict() for p in profiles}}


def stamp_matches(stamp_path: Path, expected: dict) -> tuple[bool, str]:
    """Whether an engine's stamp equals ``expected``; the reason names the first difference."""
    if not stamp_path.is_file():
        return False, "no stamp"
    try:
        stamp = json.loads(stamp_path.read_text())
    except ValueError:
        return False, "unreadable stamp"
    for key in ("tensorrt", "gpu", "onnx_sha256", "precision", "profiles"):
        if stamp.get(key) != expected.get(key):
            return False, f"{key} differs (engine: {stamp.get(key)!r}, now: {expected.get(key)!r})"
    return True, "stamp matches"


def calibration_batches(manifest: dict, frames: int, batch: int = 1, seed: int = 20_000):
    """Letterboxed generator scenes as float32 (batch,3,S,S) arrays, for INT8 calibration."""
    from ros_pgpt.data.letterbox import image_tensor
    from ros_pgpt.data import SceneGenerator
    from ros_pgpt.data.letterbox import Letterbox

    size = manifest["model"]["image_size"]
    generator = SceneGenerator(resolutions=[(640, 480), (1280, 720), (480, 640)])
    images = []
    for index in range(frames):
        image = generator.sample(seed + index, n_queries=1).scene.image
        images.append(image_tensor(image, Letterbox.for_image(image, size)).numpy())
        if len(images) == batch:
            yield np.stack(images)
            images = []


def _calibrator_class():
    import tensorrt as trt
    import torch

    class SceneCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds generator scenes to TensorRT's entropy calibrator through a CUDA buffer."""

        def __init__(self, batches, input_name: str, cache_path: Path) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = iter(batches)
            self.input_name = input_name
            self.cache_path = Path(cache_path)
            self.device_buffer = None
            self.batch_size = 1

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names):
            try:
                batch = next(self.batches)
            except StopIteration:
                return None
            self.batch_size = batch.shape[0]
            self.device_buffer = torch.from_numpy(batch).cuda().contiguous()
            return [int(self.device_buffer.data_ptr()) for _ in names]

        def read_calibration_cache(self):
            return self.cache_path.read_bytes() if self.cache_path.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            self.cache_path.write_bytes(bytes(cache))

    return SceneCalibrator


def build_engine(onnx_path: Path, engine_path: Path, *, precision: str, profiles: list[Profile],
                 timing_cache: Path, calibrator=None) -> Path:
    """Parse ``onnx_path``, build a serialized engine at ``precision`` and write it with its stamp."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    for item in profiles:
        profile.set_shape(item.name, item.min, item.opt, item.max)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibrator is None:
            raise ValueError("an INT8 build needs a calibrator")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build {engine_path.name} from {onnx_path}")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    stamp = engine_stamp(onnx_path, precision, profiles)
    Path(str(engine_path) + ".json").write_text(json.dumps(stamp, indent=2) + "\n")
    return engine_path


def engine_plan(manifest: dict, precision: str) -> list[tuple[str, str]]:
    """(graph, engine precision) for every non-LLM graph in an engine set of ``precision``."""
    plan = []
    for graph in manifest["files"]:
        if graph.startswith("llm_") or graph == "embeddings":
            continue
        plan.append((graph, "int8" if precision == "int8" and graph == "frame" else "fp16"))
    return plan


def engine_path(export_dir: Path, graph: str, precision: str) -> Path:
    return Path(export_dir) / ENGINE_DIR / f"{graph}.{precision}.engine"


def ensure_engine(export_dir: Path, manifest: dict, graph: str, precision: str, *,
                  calibration_frames: int = 64) -> Path:
    """The engine for ``graph`` at ``precision``, (re)built when missing or stamped for another machine."""
    export_dir = Path(export_dir)
    onnx_path = export_dir / manifest["files"][graph]["file"]
    profiles = profiles_for(graph, manifest)
    path = engine_path(export_dir, graph, precision)
    matches, reason = stamp_matches(Path(str(path) + ".json"), engine_stamp(onnx_path, precision, profiles))
    if path.is_file() and matches:
        return path
    log.info("building TensorRT engine %s (%s)", path.name, reason if path.is_file() else "missing")
    calibrator = None
    if precision == "int8":
        batches = calibration_batches(manifest, calibration_frames)
        calibrator = _calibrator_class()(batches, profiles[0].name,
                                         export_dir / ENGINE_DIR / f"{graph}.int8.calibration")
        (export_dir / ENGINE_DIR).mkdir(parents=True, exist_ok=True)
    return build_engine(onnx_path, path, precision=precision, profiles=profiles,
                        timing_cache=export_dir / ENGINE_DIR / TIMING_CACHE, calibrator=calibrator)


def build_all(export_dir: Path, manifest: dict, *, precisions=("fp16", "int8"),
              calibration_frames: int = 64) -> list[dict]:
    built = []
    for precision in precisions:
        if precision not in ("fp16", "int8", "fp32"):
            raise ValueError(f"unknown TensorRT precision {precision!r}")
        for graph, engine_precision in engine_plan(manifest, precision):
            path = ensure_engine(export_dir, manifest, graph, engine_precision,
                                 calibration_frames=calibration_frames)
            built.append({"graph": graph, "set": precision, "precision": engine_precision,
                          "file": str(path.relative_to(export_dir)), "sha256": file_sha256(path),
                          "bytes": path.stat().st_size})
    return built
