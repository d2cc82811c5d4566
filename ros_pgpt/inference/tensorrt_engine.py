"""TensorRT engine: vision, projector and perception graphs as TensorRT engines; LLM on ONNX Runtime.

NOT RUN on any machine this project has had (no TensorRT there); written
against the TensorRT 8.6 / 10.x Python API (named I/O tensors,
``execute_async_v3``) with PyTorch CUDA tensors as device buffers.
tests/test_runtime_tensorrt.py runs it wherever TensorRT and a GPU exist.

Per frame, ``frame`` runs once and its outputs (memory, mask map, projector
trunk) stay on the GPU; projectors and the perception decoder read them
there. The LLM (4 layers, 256-d, KV cache) runs on ONNX Runtime with the
CUDA EP when present (fp32), else on the CPU (int8). Engines are built on
first use from the export and rebuilt when their stamp (TensorRT version,
GPU, ONNX hash, precision) does not match (export/tensorrt_build.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ros_pgpt.inference.ort_engine import OrtEngine, choose_providers

log = logging.getLogger(__name__)


class TrtRunner:
    """One TensorRT engine: named inputs (numpy or CUDA tensors) -> named CUDA tensor outputs."""

    def __init__(self, path: Path) -> None:
        import tensorrt as trt
        import torch

        self.torch = torch
        self.trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT cannot load {path}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: self._torch_dtype(self.engine.get_tensor_dtype(n)) for n in names}
        self.stream = torch.cuda.Stream()

    def _torch_dtype(self, dtype):
        trt, torch = self.trt, self.torch
        table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
                 trt.int8: torch.int8, trt.bool: torch.bool}
        if hasattr(trt, "int64"):
            table[trt.int64] = torch.int64
        return table[dtype]

    def __call__(self, **feeds) -> dict:
        torch = self.torch
        keep = []
        for name in self.inputs:
            value = feeds[name]
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(np.ascontiguousarray(value))
            value = value.to(device="cuda", dtype=self.dtypes[name]).contiguous()
            keep.append(value)
            self.context.set_input_shape(name, tuple(value.shape))
            self.context.set_tensor_address(name, int(value.data_ptr()))
        outputs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device="cuda")
            self.context.set_tensor_address(name, int(outputs[name].data_ptr()))
        self.stream.wait_stream(torch.cuda.current_stream())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        self.stream.synchronize()
        return outputs


class TensorRTEngine(OrtEngine):
    name = "tensorrt"

    def __init__(self, checkpoint: Path, export_dir: Path, *, precision: str = "fp16",
                 threads: int | None = None) -> None:
        if precision not in ("fp16", "int8", "fp32"):
            raise ValueError(f"tensorrt precision {precision!r}: choose from fp16, int8, fp32")
        self.trt_precision = precision
        self._runners: dict[str, TrtRunner] = {}
        # The LLM: ONNX Runtime on CUDA (fp32) where it has the CUDA EP, else int8 on the CPU.
        providers = [p for p in choose_providers() if p != "TensorrtExecutionProvider"
                     and not (isinstance(p, tuple) and p[0] == "TensorrtExecutionProvider")]
        llm_precision = "fp32" if "CUDAExecutionProvider" in providers else "int8"
        super().__init__(checkpoint, export_dir, precision=llm_precision, threads=threads, providers=providers)
        self.precision = precision

    def _load_graphs(self) -> None:
        from ros_pgpt.export.tensorrt_build import engine_plan, ensure_engine

        for graph, engine_precision in engine_plan(self.manifest, self.trt_precision):
            if self.trt_precision == "fp32":
                engine_precision = "fp32"
            path = ensure_engine(self.export_dir, self.manifest, graph, engine_precision)
            self._runners[graph] = TrtRunner(path)

    def _run(self, graph: str, outputs: list[str], feeds: dict) -> list:
        result = self._runners[graph](**feeds)
        return [result[name] for name in outputs]

    def _host(self, value) -> np.ndarray:
        if isinstance(value, np.ndarray):
            return value
        return value.float().cpu().numpy()

    def describe(self) -> dict:
        return {"backend": self.name, "precision": self.precision,
                "engines": sorted(self._runners), "llm": f"onnxruntime {self._llm.get_providers()[0]}",
                "export_dir": str(self.export_dir)}
