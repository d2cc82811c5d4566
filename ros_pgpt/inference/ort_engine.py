"""ONNX Runtime engine over an export directory (``ros-pgpt export``).

Execution providers: TensorRT EP, then CUDA EP when ONNX Runtime has them
(GPU builds), else the CPU EP. Precisions:
- ``int8`` (the CPU default): the LLM graph quantized to int8 (dynamic,
  per-channel weights), everything else fp32;
- ``fp32``: every graph fp32 (the default on CUDA, where the int8 LLM's
  integer matmuls would fall back to the CPU);
- ``int4``: weight-only int4 LLM (MatMulNBits; ``ros-pgpt export --int4``).

No PyTorch model is built: the graphs, the embedding table and the
checkpoint's tokenizer are all it loads.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ros_pgpt.export.artifacts import read_manifest
from ros_pgpt.inference.engine import Engine, LMState
from ros_pgpt.model.grounding_model import GroundingModel

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "int8", "int4")


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_providers(engine_cache: Path | None = None, fp16: bool = True) -> list:
    """Best first: TensorRT EP (fp16, engine cache), CUDA EP, CPU EP."""
    available = available_providers()
    providers: list = []
    if "TensorrtExecutionProvider" in available:
        options = {"trt_fp16_enable": fp16}
        if engine_cache is not None:
            options |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(engine_cache),
                        "trt_timing_cache_enable": True}
        providers.append(("TensorrtExecutionProvider", options))
    if "CUDAExecutionProvider" in available:
        providers.append("CUDAExecutionProvider")
    providers.append("CPUExecutionProvider")
    return providers


def _provider_name(provider) -> str:
    return provider[0] if isinstance(provider, tuple) else provider


class OrtEngine(Engine):
    name = "onnxruntime"

    def __init__(self, checkpoint: Path, export_dir: Path, *, precision: str | None = None,
                 threads: int | None = None, providers: list | None = None) -> None:
        from ros_pgpt.model.language_model import TokenIds, load_tokenizer

        manifest = read_manifest(export_dir)
        if manifest is None:
            raise FileNotFoundError(f"no export manifest in {export_dir}")
        self.export_dir = Path(export_dir)
        self.manifest = manifest
        self.providers = providers or choose_providers(self.export_dir / "ort_trt_cache")
        on_gpu = _provider_name(self.providers[0]) != "CPUExecutionProvider"
        precision = precision or ("fp32" if on_gpu else "int8")
        if precision not in PRECISIONS:
            raise ValueError(f"onnxruntime precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        if precision != "fp32" and f"llm_{precision}" not in manifest["files"]:
            raise FileNotFoundError(f"{export_dir} has no {precision} LLM (see ros-pgpt export --help)")
        self.precision = precision
        self.threads = threads or default_threads()
        meta = manifest["model"]
        self.image_size = meta["image_size"]
        self.mask_side = meta["mask_side"]
        self.max_visual_tokens = meta["max_visual_tokens"]
        self.counts = list(meta["visual_token_counts"])
        self.layers = meta["llm_layers"]
        self.kv_heads = meta["llm_kv_heads"]
        self.head_dim = meta["llm_head_dim"]
        self.tokenizer = load_tokenizer(Path(checkpoint))
        self.ids = TokenIds.from_tokenizer(self.tokenizer)
        self.table = np.load(self.export_dir / manifest["files"]["embeddings"]["file"])
        # Whether the perception graph points over the visual tokens (models with a visual pointer).
        self._pointing = any(i["name"] == "visual" for i in manifest["files"]["perception"]["inputs"])
        self.has_match_head = any(o["name"] == "match_logits" for o in manifest["files"]["perception"]["outputs"])
        self._sessions: dict[str, object] = {}
        self._load_graphs()
        self._llm = self._session(f"llm_{precision}", cpu_only=precision == "int8")
        self._past_names = [f"past_{kind}_{i}" for i in range(self.layers) for kind in ("key", "value")]
        self._out_names = ["hidden", "logits"] + [f"present_{kind}_{i}" for i in range(self.layers)
                                                  for kind in ("key", "value")]

    # -- sessions -----------------------------------------------------------------------
    def _load_graphs(self) -> None:
        for name in ["frame", "perception", "box_encoder"] + [f"projector_n{c}" for c in self.counts]:
            self._sessions[name] = self._session(name)

    def _session(self, graph: str, cpu_only: bool = False):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Thirteen small sessions, each with its own intra-op pool: spinning workers of one session
        # steal the cores from the next (measured on 2 cores: vision 76 ms in the loop vs 30 ms alone).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"] if cpu_only else self.providers
        path = self.export_dir / self.manifest["files"][graph]["file"]
        return ort.InferenceSession(str(path), options, providers=providers)

    def _run(self, graph: str, outputs: list[str], feeds: dict) -> list:
        return self._sessions[graph].run(outputs, feeds)

    def describe(self) -> dict:
        return {"backend": self.name, "precision": self.precision, "threads": self.threads,
                "providers": [_provider_name(p) for p in self.providers],
                "llm": f"llm_{self.precision}.onnx" + (" (CPU EP)" if self.precision == "int8" else ""),
                "export_dir": str(self.export_dir)}

    # -- engine interface ---------------------------------------------------------------
    def tokens_for(self, count: int) -> int:
        if count < 1:
            raise ValueError(f"visual token count must be >= 1, got {count}")
        fitting = [c for c in self.counts if c <= count]
        if not fitting:
            raise ValueError(f"no exported visual-token count <= {count} (exported: {self.counts})")
        return fitting[-1]

    def encode_frame(self, pixels: np.ndarray):
        names = [o["name"] for o in self.manifest["files"]["frame"]["outputs"]]
        outputs = self._run("frame", names, {"images": np.ascontiguousarray(pixels, np.float32)})
        return dict(zip(names, outputs))

    def _host(self, value) -> np.ndarray:
        return value

    def image_prefix(self, frame, count: int) -> LMState:
        prefix = self._run(f"projector_n{count}", ["prefix"], {"proj_map": frame["proj_map"]})[0]
        empty = np.zeros((1, self.kv_heads, 0, self.head_dim), np.float32)
        state, hidden, _ = self._llm_step(LMState([empty] * (2 * self.layers), 0), self._host(prefix))
        if self._pointing:  # the visual tokens' hiddens as their grid: the perception graph's "visual"
            state.visual = np.ascontiguousarray(GroundingModel.visual_grid(hidden))
        return state

    def fork(self, state: LMState) -> LMState:
        return state  # KV arrays are never written in place: each step returns new ones

    def embed(self, ids, box_positions=(), boxes=None, feedback=None):
        embeds = self.table[np.asarray(ids, np.int64)][None]
        if len(box_positions):
            codes = self._run("box_encoder", ["embeddings"], {"boxes": np.asarray(boxes, np.float32)})[0]
            embeds[0, list(box_positions)] += self._host(codes)
        if feedback is not None:
            embeds = embeds + feedback
        return embeds

    def _llm_step(self, state: LMState, embeds):
        """(new state, hidden states of every new position (1, T, D), last logits (V,))."""
        feeds = {"embeds": np.ascontiguousarray(embeds, np.float32)} | dict(zip(self._past_names, state.cache))
        out = self._llm.run(self._out_names, feeds)
        return LMState(out[2:], state.length + embeds.shape[1]), out[0], out[1][0]

    def forward(self, state: LMState, embeds):
        state, hidden, logits = self._llm_step(state, embeds)
        return state, hidden[:, -1:], logits

    def perceive(self, frame, hidden, visual):
        graph = self.manifest["files"]["perception"]
        feeds = {i["name"]: frame[i["name"]] for i in graph["inputs"] if i["name"] in frame}
        feeds["hidden"] = np.ascontiguousarray(hidden, np.float32)
        if self._pointing:
            feeds["visual"] = visual
        names = [o["name"] for o in graph["outputs"]]  # match_logits only with a match head
        out = dict(zip(names, (self._host(value) for value in self._run("perception", names, feeds))))
        match = out.get("match_logits")
        return out["boxes"][0, 0], out["mask_logits"][0, 0], out["feedback"], \
            None if match is None else float(1.0 / (1.0 + np.exp(-match[0, 0])))


def default_threads() -> int:
    """CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
