"""Runtime backends behind one predictor interface.

    from ros_pgpt.inference.backends import create_predictor
    predictor = create_predictor(checkpoint, backend="auto")    # node, demo, bench
    result = predictor.ground(image, "the red star")

Backends (``BACKENDS``):
- ``tensorrt``: TensorRT engines for the vision/projector/perception graphs
  (built from the export on first use, stamped per TensorRT version and GPU),
  the LLM on ONNX Runtime. Needs ``tensorrt`` and a CUDA device.
- ``onnxruntime``: every graph on ONNX Runtime (TensorRT/CUDA execution
  providers where ONNX Runtime has them, else CPU); int8 LLM on CPU.
- ``pytorch``: the model in eager PyTorch (fp32, or ``precision="int8"``
  for a torch.ao dynamic int8 LLM).
- ``auto``: tensorrt if usable, else onnxruntime (exporting the checkpoint on
  first use, under a lock, when no export exists), else pytorch; the choice and
  the reason are logged at INFO and kept in ``predictor.backend["reason"]``.

The ONNX/engine files live in ``engine_dir`` (default: see
``artifacts.default_export_dir``: $ROS_PGPT_EXPORT_DIR or <checkpoint>/export).
Every backend but pytorch exports the checkpoint there when no matching export
exists (about a minute on 2 CPU cores, once per checkpoint; ``scripts/setup.sh``
does it for the shipped checkpoint).
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

BACKENDS = ("auto", "tensorrt", "onnxruntime", "pytorch")
PRECISIONS = {"pytorch": ("fp32", "int8"), "onnxruntime": ("fp32", "int8", "int4"), "tensorrt": ("fp16", "int8", "fp32")}

log = logging.getLogger(__name__)


def tensorrt_usable() -> tuple[bool, str]:
    """Whether the TensorRT backend can run here, and why (not)."""
    try:
        from ros_pgpt.export.tensorrt_build import tensorrt_available
    except ImportError as exc:  # ros_pgpt.export not installed
        return False, f"ros_pgpt.export is not importable ({exc})"
    return tensorrt_available()


def onnxruntime_usable() -> tuple[bool, str]:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return False, f"onnxruntime is not importable ({exc})"
    return True, f"onnxruntime {ort.__version__} with {', '.join(ort.get_available_providers())}"


def select_backend(checkpoint: Path, engine_dir: Path, *, export: bool = False) -> tuple[str, str]:
    """(backend, reason) for ``backend="auto"``."""
    from ros_pgpt.export.artifacts import export_status

    reasons = []
    ok, why = tensorrt_usable()
    if ok:
        return "tensorrt", why
    reasons.append(f"not tensorrt: {why}")
    ok, why = onnxruntime_usable()
    if ok:
        ready, status = export_status(checkpoint, engine_dir)
        if ready or export:
            return "onnxruntime", "; ".join(reasons + [why, status if ready else "exporting: " + status])
        reasons.append(f"not onnxruntime: {status}")
    else:
        reasons.append(f"not onnxruntime: {why}")
    return "pytorch", "; ".join(reasons)


EXPORT_LOCK = ".export.lock"


def ensure_export(checkpoint: Path, engine_dir: Path) -> None:
    """Export ``checkpoint`` into ``engine_dir`` unless a matching export is there.

    An exclusive file lock in ``engine_dir`` serialises processes: a second node
    started meanwhile waits, then finds the export done instead of writing it twice.
    """
    from ros_pgpt.export.artifacts import export_status

    if export_status(checkpoint, engine_dir)[0]:
        return
    engine_dir = Path(engine_dir)
    engine_dir.mkdir(parents=True, exist_ok=True)
    with open(engine_dir / EXPORT_LOCK, "w") as lock:
        if _try_lock(lock) is False:
            log.info("waiting for another process exporting to %s", engine_dir)
            fcntl.flock(lock, fcntl.LOCK_EX)
        ready, status = export_status(checkpoint, engine_dir)
        if ready:
            return
        log.info("exporting %s to %s for ONNX Runtime (%s); about a minute on 2 CPU cores, once per checkpoint",
                 checkpoint, engine_dir, status)
        from ros_pgpt.export.onnx_export import export_checkpoint

        export_checkpoint(checkpoint, engine_dir, tensorrt=())


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def create_engine(checkpoint: str | Path | None = None, *, backend: str = "auto", precision: str | None = None,
                  engine_dir: str | Path | None = None, threads: int | None = None, export: bool | None = None):
    """The engine behind ``create_predictor`` (see there)."""
    from ros_pgpt.checkpoints import default_checkpoint
    from ros_pgpt.export.artifacts import default_export_dir

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose from {', '.join(BACKENDS)}")
    directory = Path(checkpoint) if checkpoint else default_checkpoint()
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {directory}")
    export_dir = Path(engine_dir) if engine_dir else default_export_dir(directory)
    reason, auto = "asked for explicitly", backend == "auto"
    if auto:
        backend, reason = select_backend(directory, export_dir, export=export is not False)
        log.info("backend auto -> %s: %s", backend, reason)
    _check_precision(backend, precision)  # before a minute of export
    if backend != "pytorch":
        try:
            _prepare_export(directory, export_dir, export)
        except Exception as exc:  # noqa: BLE001 - with auto the slower backend still serves
            if not auto:
                raise
            reason = f"export to {export_dir} failed ({type(exc).__name__}: {exc}); pytorch instead"
            log.warning("backend auto -> pytorch: %s", reason)
            backend = "pytorch"
            _check_precision(backend, precision)
    engine = _engine(directory, export_dir, backend, precision, threads)
    engine.reason = reason
    return engine


def _prepare_export(directory: Path, export_dir: Path, export: bool | None) -> None:
    """Export when missing, or (``export=False``) insist that a matching export is there."""
    if export is not False:
        ensure_export(directory, export_dir)
        return
    from ros_pgpt.export.artifacts import export_status

    ready, status = export_status(directory, export_dir)
    if not ready:
        raise FileNotFoundError(f"this backend needs an export: {status}")


def _check_precision(backend: str, precision: str | None) -> None:
    if precision is not None and precision not in PRECISIONS[backend]:
        raise ValueError(f"{backend} precision {precision!r}: choose from {', '.join(PRECISIONS[backend])}")


def _engine(directory: Path, export_dir: Path, backend: str, precision: str | None, threads: int | None):
    if threads:
        import torch

        torch.set_num_threads(threads)
    if backend == "pytorch":
        from ros_pgpt.model.build import load_model
        from ros_pgpt.inference.torch_engine import TorchEngine

        return TorchEngine(load_model(directory), precision=precision or "fp32")
    if backend == "onnxruntime":
        from ros_pgpt.inference.ort_engine import OrtEngine

        return OrtEngine(directory, export_dir, precision=precision, threads=threads)
    ok, why = tensorrt_usable()
    if not ok:
        raise RuntimeError(f"backend 'tensorrt' is not usable here: {why}")
    from ros_pgpt.inference.tensorrt_engine import TensorRTEngine

    return TensorRTEngine(directory, export_dir, precision=precision or "fp16", threads=threads)


def create_predictor(checkpoint: str | Path | None = None, *, backend: str = "auto", precision: str | None = None,
                     engine_dir: str | Path | None = None, threads: int | None = None, export: bool | None = None,
                     **options):
    """Load ``checkpoint`` (default: the shipped one) on ``backend``; returns a ``Predictor``.

    precision: pytorch fp32|int8 (default fp32); onnxruntime fp32|int8|int4
      (default int8 on CPU, fp32 on CUDA; int4 needs ``export --int4``);
      tensorrt fp16|int8|fp32 (default fp16).
    engine_dir: where the export (ONNX, manifest, TensorRT engines) lives.
    threads: CPU threads for PyTorch / ONNX Runtime (default: all cores).
    export: True exports when missing even for ``auto``; False never exports
      (an explicit onnxruntime/tensorrt backend then needs an existing export);
      None (default): explicit backends export when missing, ``auto`` does not.
    options: ``Predictor`` options: ``rules=DecodingRules(...)`` and/or its fields (match_threshold, ...;
      ``ros_pgpt.inference.decoding``).
    """
    from ros_pgpt.inference.predictor import Predictor

    engine = create_engine(checkpoint, backend=backend, precision=precision, engine_dir=engine_dir,
                           threads=threads, export=export)
    log.info("predictor on %s", engine.describe())
    return Predictor.from_engine(engine, **options)
