"""The language model with an explicit KV cache, as one exportable graph.

``KVLlama`` re-states transformers' Llama forward over the model's own
weights (RMSNorm, rotary, causal attention over past + new tokens, SwiGLU)
with the cache as plain tensors, so one ONNX graph serves the image-prefix
prefill (past length 0), the prompt prefill (T tokens) and each decode step
(T = 1). Positions are the past length onwards, as in the predictor.

Inputs: ``embeds`` (B,T,D), then ``past_key_i``/``past_value_i`` (B,KVH,P,hd)
per layer. Outputs: ``hidden`` (B,T,D) of every new position (the image
prefix's visual tokens are the pointer's keys), ``logits`` (B,V) of the last
one, then ``present_key_i``/``present_value_i`` (B,KVH,P+T,hd).
Checked against the transformers model in tests/test_export.py.
"""

from __future__ import annotations

import torch
from torch import nn


def _rms(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    variance = x.pow(2).mean(-1, keepdim=True)
    return norm.weight * (x * torch.rsqrt(variance + norm.variance_epsilon))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class KVLlama(nn.Module):
    def __init__(self, language_model) -> None:
        super().__init__()
        causal = language_model.model  # LlamaForCausalLM
        config = causal.config
        self.layers = causal.model.layers
        self.norm = causal.model.norm
        self.lm_head = causal.lm_head
        rotary = causal.model.rotary_emb
        self.register_buffer("inv_freq", rotary.inv_freq.detach().clone().float(), persistent=False)
        self.rope_scaling = float(getattr(rotary, "attention_scaling", 1.0))
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.num_layers = len(self.layers)
        self.hidden_size = config.hidden_size
        self.vocab_size = self.lm_head.out_features

    def input_names(self) -> list[str]:
        return ["embeds"] + [f"past_{kind}_{i}" for i in range(self.num_layers) for kind in ("key", "value")]

    def output_names(self) -> list[str]:
        return ["hidden", "logits"] + [f"present_{kind}_{i}" for i in range(self.num_layers)
                                       for kind in ("key", "value")]

    def empty_past(self, batch: int = 1) -> list[torch.Tensor]:
        return [torch.zeros(batch, self.kv_heads, 0, self.head_dim) for _ in range(2 * self.num_layers)]

    def forward(self, embeds: torch.Tensor, *past: torch.Tensor):
        batch, length = embeds.shape[0], embeds.shape[1]
        past_len = past[0].shape[2]
        positions = torch.arange(length, device=embeds.device).float() + past_len
        freqs = positions[:, None] * self.inv_freq[None, :]
        angles = torch.cat([freqs, freqs], dim=-1)
        cos = (angles.cos() * self.rope_scaling)[None, None]
        sin = (angles.sin() * self.rope_scaling)[None, None]
        # Query i (absolute past_len + i) sees keys 0 .. past_len + i.
        keys_at = torch.arange(length, device=embeds.device)[None, :]
        rows = torch.arange(length, device=embeds.device)[:, None]
        text_mask = keys_at <= rows
        past_mask = torch.ones(length, past_len, dtype=torch.bool, device=embeds.device)
        allowed = torch.cat([past_mask, text_mask], dim=1)
        bias = torch.zeros(allowed.shape, dtype=embeds.dtype, device=embeds.device).masked_fill(
            ~allowed, float("-inf"))
        scale = self.head_dim ** -0.5
        x = embeds
        presents = []
        for index, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = _rms(layer.input_layernorm, x)
            q = attn.q_proj(h).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            k = torch.cat([past[2 * index], k], dim=2)
            v = torch.cat([past[2 * index + 1], v], dim=2)
            presents += [k, v]
            if self.kv_heads != self.heads:
                repeat = self.heads // self.kv_heads
                k = k.repeat_interleave(repeat, dim=1)
                v = v.repeat_interleave(repeat, dim=1)
            scores = torch.matmul(q, k.transpose(-1, -2)) * scale + bias
            weights = torch.softmax(scores, dim=-1)
            out = torch.matmul(weights, v).transpose(1, 2).reshape(batch, length, self.heads * self.head_dim)
            x = x + attn.o_proj(out)
            x = x + layer.mlp(_rms(layer.post_attention_layernorm, x))
        x = _rms(self.norm, x)
        return (x, self.lm_head(x[:, -1]), *presents)
