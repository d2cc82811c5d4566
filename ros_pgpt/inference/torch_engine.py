"""PyTorch engine: the GroundingModel in eager mode (fp32), optionally with an int8 LLM.

``precision="int8"`` applies torch.ao dynamic int8 quantization to the LLM's
nn.Linear layers (weights int8, activations quantized per call); vision and
perception heads stay fp32.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch

from ros_pgpt.inference.engine import Engine, LMState

PRECISIONS = ("fp32", "int8")


class TorchEngine(Engine):
    name = "pytorch"

    def __init__(self, model, *, precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"pytorch precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        self.model = model.eval()
        self.precision = precision
        if precision == "int8":
            quantize_llm_dynamic(model)
        self.device = next(model.parameters()).device
        self.image_size = model.image_size
        self.mask_side = model.mask_side
        self.max_visual_tokens = model.projector.max_tokens
        self.tokenizer = model.language_model.tokenizer
        self.ids = model.ids
        self.has_match_head = model.perception_decoder.match_head is not None

    def describe(self) -> dict:
        return {"backend": self.name, "precision": self.precision, "device": str(self.device),
                "threads": torch.get_num_threads()}

    def tokens_for(self, count: int) -> int:
        return self.model.projector.tokens_for(count)

    def pixels(self, image: np.ndarray, letterbox) -> torch.Tensor:
        """``batching.image_tensor`` as in training, strides included: PyTorch's convolutions pick
        their kernels by memory layout, so this engine sees exactly the tensor it always saw."""
        from ros_pgpt.data.letterbox import image_tensor

        return image_tensor(image, letterbox).unsqueeze(0)

    @torch.inference_mode()
    def encode_frame(self, pixels) -> object:
        if isinstance(pixels, np.ndarray):
            pixels = torch.from_numpy(pixels)
        return self.model.encode_frames(pixels.to(self.device))

    @torch.inference_mode()
    def image_prefix(self, frame, count: int) -> LMState:
        from transformers import DynamicCache

        model = self.model
        embeds = model.image_prefix(frame, count)
        cache = DynamicCache()
        hidden, _, _ = model.language_model(embeds, past_key_values=cache)
        return LMState(cache, embeds.shape[1], model.visual_grid(hidden) if model.pointer is not None else None)

    def fork(self, state: LMState) -> LMState:
        # A private copy: the prefix cache stays as it was for the next prompt (a few hundred KB).
        return LMState(copy.deepcopy(state.cache), state.length)

    @torch.inference_mode()
    def embed(self, ids, box_positions=(), boxes=None, feedback=None):
        model = self.model
        embeds = model.language_model.embed(torch.tensor([list(ids)], device=self.device))
        if len(box_positions):
            codes = model.perception_encoder(torch.from_numpy(np.asarray(boxes, np.float32)).to(self.device))
            embeds[0, list(box_positions)] += codes
        if feedback is not None:
            embeds = embeds + feedback
        return embeds

    @torch.inference_mode()
    def forward(self, state: LMState, embeds):
        positions = torch.arange(state.length, state.length + embeds.shape[1], device=embeds.device).unsqueeze(0)
        hidden, logits, _ = self.model.language_model(embeds, past_key_values=state.cache, position_ids=positions)
        return LMState(state.cache, state.length + embeds.shape[1]), hidden[:, -1:], \
            logits[0, -1].float().cpu().numpy()

    @torch.inference_mode()
    def perceive(self, frame, hidden, visual):
        box, mask_logits, feedback, match = self.model.perceive(hidden, frame.keys_values, frame.mask_map, visual)
        return box[0, 0].cpu().numpy(), mask_logits[0, 0].cpu().numpy(), feedback, \
            None if match is None else float(match[0, 0].sigmoid())


def quantize_llm_dynamic(model) -> None:
    """Replace the LLM's nn.Linear layers by torch.ao dynamic int8 ones (in place)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        from torch.ao.quantization import quantize_dynamic

        lm = model.language_model.model
        # The lm_head shares its weight with the input embedding: quantize the backbone and a copy of the head.
        lm.model = quantize_dynamic(lm.model, {torch.nn.Linear}, dtype=torch.qint8)
        head = torch.nn.Linear(lm.lm_head.in_features, lm.lm_head.out_features, bias=lm.lm_head.bias is not None)
        head.weight = torch.nn.Parameter(lm.lm_head.weight.detach().clone(), requires_grad=False)
        if lm.lm_head.bias is not None:
            head.bias = torch.nn.Parameter(lm.lm_head.bias.detach().clone(), requires_grad=False)
        lm.lm_head = quantize_dynamic(torch.nn.Sequential(head), {torch.nn.Linear}, dtype=torch.qint8)[0]
