"""A frozen vision encoder run through ONNX Runtime.

Training with a frozen encoder only needs its outputs; ONNX Runtime computes
them 3-5x faster than PyTorch eager on a small CPU (depthwise convolutions),
with outputs equal to 1e-3. The same export serves deployment (export/).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

PYRAMID_NAMES = ("stride4", "stride8", "stride16", "stride32")


def export_image_encoder(encoder: nn.Module, path: Path, *, image_size: int) -> Path:
    """Export ``encoder`` (images (B,3,S,S) in [0,1] -> pyramid) with a dynamic batch axis."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(1, 3, image_size, image_size)
    outputs = PYRAMID_NAMES[: len(encoder.strides)]
    axes = {"images": {0: "batch"}} | {name: {0: "batch"} for name in outputs}
    with torch.no_grad():
        torch.onnx.export(encoder.eval(), (example,), str(path), input_names=["images"], output_names=list(outputs),
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


class OrtImageEncoder:
    """Callable like the torch encoder: (B,3,S,S) tensor -> list of feature tensors."""

    def __init__(self, path: Path, *, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Spinning workers would hold the cores for the PyTorch ops that run right after each call.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        outputs = self.session.run(None, {"images": images.detach().cpu().numpy()})
        return [torch.from_numpy(o).to(images.device) for o in outputs]
