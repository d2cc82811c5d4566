"""Where a training step's time goes: ``ros-pgpt train-bench --config configs/default.yaml --json``.

Builds a fresh model from the config (or takes ``--checkpoint``'s or ``train.init_from``'s trained weights,
whose sharper softmaxes give denormal floats that ``--keep-denormals`` leaves
unflushed, to measure what flushing buys) and runs ``--steps`` real training steps
on the CPU (the trainer's own ``train_step``: generated scenes, collate, the
frozen encoder on ONNX Runtime, forward, backward, optimizer) after
``--warmup``, timing each stage. Reports the median ms per stage and per step,
and what the config's ``train.steps`` would take at that median (evaluations
excluded), or with ``train.time_budget_s`` how many steps fit in it.
The visual-token count follows the config's per-step draw, so steps differ:
read medians, and compare code changes within one invocation's machine state.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

STAGES = ("scenes", "collate", "encoder", "forward", "backward", "optimizer")


def bench_steps(config: str, *, steps: int, warmup: int, checkpoint: str | None = None,
                keep_denormals: bool = False) -> dict:
    """Time ``steps`` training steps on the CPU after ``warmup`` (see the module docstring).

    ``checkpoint``: start from that checkpoint's weights (model config included) instead of a fresh
    model; ``keep_denormals``: do not flush denormal floats (``train.flush_denormals: false``).
    """
    import numpy as np
    import torch

    from ros_pgpt.model.build import load_model
    from ros_pgpt.training.config import load_config
    from ros_pgpt.training.numerics import flush_denormals
    from ros_pgpt.inference.predictor import Stopwatch
    from ros_pgpt.training.loop import (
        build_optimizer,
        configure_trainable,
        new_model,
        ort_encoder,
        scene_generator,
        set_train_mode,
        train_step,
    )

    model_config, train_config = load_config(config)
    train_config.flush_denormals = train_config.flush_denormals and not keep_denormals
    if train_config.flush_denormals:
        flush_denormals()
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    torch.manual_seed(train_config.seed)
    checkpoint = checkpoint or train_config.init_from or None  # the weights the run would start from
    model = load_model(checkpoint) if checkpoint else new_model(model_config, train_config)
    configure_trainable(model, train_config)
    optimizer = build_optimizer(model, train_config)
    encoder = ort_encoder(model, train_config, "cpu") if not train_config.train_vision else None
    generator = scene_generator(train_config)
    records = []
    for step in range(warmup + steps):
        set_train_mode(model, train_config)
        watch = Stopwatch()
        train_step(model, optimizer, train_config, generator, step, frozen_encoder=encoder, lap=watch.lap)
        record = watch.timings | {"step": sum(watch.timings.values())}
        if step >= warmup:
            records.append(record)
    median = {stage: round(float(np.median([r[stage] for r in records])), 1) for stage in STAGES + ("step",)}
    report = {"config": config, "checkpoint": checkpoint, "flush_denormals": train_config.flush_denormals,
              "steps": steps, "warmup": warmup, "threads": torch.get_num_threads(),
              "median_ms": median, "projected_run_s": round(median["step"] * train_config.steps / 1000.0),
              "config_steps": train_config.steps}
    if train_config.time_budget_s:
        report["steps_in_budget"] = min(train_config.steps, int(train_config.time_budget_s * 1000.0 / median["step"]))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ros-pgpt train-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/default.yaml", help="YAML file with model: and train: sections")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--checkpoint", metavar="DIR",
                        help="start from a trained checkpoint's weights (a trained model's denormal "
                             "floats cost time; default: a fresh model)")
    parser.add_argument("--keep-denormals", action="store_true",
                        help="do not flush denormal floats to zero, to measure what flushing buys")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    report = bench_steps(args.config, steps=args.steps, warmup=args.warmup, checkpoint=args.checkpoint,
                         keep_denormals=args.keep_denormals)
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
