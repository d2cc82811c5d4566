"""Training: ``ros-pgpt train --config configs/default.yaml --out checkpoints/default``.

Scenes are generated on the fly, deterministically: step s of rank r renders
scenes from a seed derived from (train seed, s, r), and the visual-token count
of step s is drawn from the step seed (Matryoshka training: the same count on
every rank). Held-out evaluation uses a disjoint seed range (``EVAL_SEED_BASE``).
Checkpoints are safetensors; ``--resume`` continues from the last one with the
same optimizer state and schedule. Under torchrun it trains with DDP (gloo on
CPU, NCCL on CUDA).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from ros_pgpt.training.batching import collate
from ros_pgpt.model.build import WEIGHTS_FILE, build_model, load_model, read_model_config, save_checkpoint
from ros_pgpt.model.config import ModelConfig
from ros_pgpt.training.config import TrainConfig, load_config
from ros_pgpt.model.language_model import NONE_ANSWER
from ros_pgpt.training.numerics import flush_denormals
from ros_pgpt.training.teacher_forcing import TeacherForcing, collate_options

TRAIN_STATE_FILE = "train_state.safetensors"
TRAIN_META_FILE = "train_state.json"
SEED_STRIDE = 1_000_003  # spacing between runs' seed streams (a prime)


def scene_generator(train: TrainConfig):
    """The config's scenes: the plain generator, or a SceneMix of its ``scene_mix`` entries. A mix entry
    that names a held-out photograph is refused: those are the evaluation's."""
    from ros_pgpt.data import SceneGenerator, SceneMix
    from ros_pgpt.data.camera import HELD_OUT_PHOTOS

    base = {"resolutions": [tuple(r) for r in train.resolutions], "plural_several": train.plural_several}
    if not train.scene_mix:
        return SceneGenerator(**base)
    parts = []
    for entry in train.scene_mix:
        options = dict(entry)
        weight = options.pop("weight")
        if "resolutions" in options:
            options["resolutions"] = [tuple(r) for r in options["resolutions"]]
        held_out = set(options.get("photos") or ()) & set(HELD_OUT_PHOTOS)
        if held_out:
            raise ValueError(f"train.scene_mix names held-out photographs {sorted(held_out)}: "
                             "they are the evaluation's (camera.HELD_OUT_PHOTOS)")
        parts.append((weight, SceneGenerator(**(base | options))))
    return SceneMix(parts)


def step_items(generator, train: TrainConfig, step: int, rank: int):
    """The (scene, queries) pairs of one rank at one step: a pure function of its arguments."""
    first = (train.seed * SEED_STRIDE + step) * 64 + rank * train.scenes_per_step
    items = []
    for offset in range(train.scenes_per_step):
        sample = generator.sample(first + offset, n_queries=train.queries_per_scene)
        items.append((sample.scene, sample.queries))
    return items


def step_token_count(train: TrainConfig, step: int) -> int:
    rng = np.random.default_rng([train.seed, step, 7])
    return int(rng.choice(train.visual_token_choices))


def configure_trainable(model, train: TrainConfig) -> None:
    """Freeze what the config says is frozen; BN of a frozen encoder stays in eval mode."""
    model.image_encoder.requires_grad_(train.train_vision)
    llm = model.language_model.model
    if train.llm_mode == "full":
        llm.requires_grad_(True)
    elif train.llm_mode in ("lora", "frozen"):
        llm.requires_grad_(False)
        if train.llm_mode == "lora":
            lora = [p for n, p in llm.named_parameters() if "lora_" in n]
            if not lora:
                raise ValueError("llm_mode 'lora' needs model.lora_rank > 0")
            for parameter in lora:
                parameter.requires_grad_(True)
    else:
        raise ValueError(f"unknown llm_mode {train.llm_mode!r}: use full, lora or frozen")
    if llm.config.tie_word_embeddings is False or train.llm_mode != "full":
        # New special tokens need trainable embeddings even when the LLM is frozen.
        llm.get_input_embeddings().requires_grad_(True)


def set_train_mode(model, train: TrainConfig) -> None:
    model.train()
    if not train.train_vision:
        model.image_encoder.eval()


def build_optimizer(model, train: TrainConfig) -> torch.optim.Optimizer:
    llm_params, head_params = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (llm_params if name.startswith("language_model.") else head_params).append(parameter)
    groups = [{"params": head_params, "lr": train.lr}, {"params": llm_params, "lr": train.llm_lr}]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=train.weight_decay)


def schedule_progress(train: TrainConfig, step: int, elapsed: float = 0.0) -> float:
    """How far the cosine schedule is after warmup, 0 to 1: by steps, or by wall time under a budget."""
    progress = (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps)
    if train.time_budget_s > 0:
        progress = max(progress, elapsed / train.time_budget_s)
    return min(1.0, progress)


def lr_factor(train: TrainConfig, step: int, elapsed: float = 0.0) -> float:
    if step < train.warmup_steps:
        return (step + 1) / train.warmup_steps
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * schedule_progress(train, step, elapsed)))


def save_train_state(directory: Path, optimizer: torch.optim.Optimizer, step: int, elapsed: float) -> None:
    state = optimizer.state_dict()
    tensors = {f"{index}.{key}": value.contiguous() for index, entry in state["state"].items()
               for key, value in entry.items() if torch.is_tensor(value)}
    save_file(tensors, str(directory / TRAIN_STATE_FILE))
    groups = [{k: v for k, v in group.items()} for group in state["param_groups"]]
    (directory / TRAIN_META_FILE).write_text(json.dumps({"step": step, "elapsed_s": elapsed,
                                                         "param_groups": groups}, indent=1))


def load_train_state(directory: Path, optimizer: torch.optim.Optimizer) -> tuple[int, float]:
    meta = json.loads((directory / TRAIN_META_FILE).read_text())
    tensors = load_file(str(directory / TRAIN_STATE_FILE))
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"]), float(meta["elapsed_s"])


def new_model(model_config: ModelConfig, train_config: TrainConfig):
    """A freshly initialised model, its tokenizer trained on the generator's text (``train.seed``)."""
    from ros_pgpt.data.corpus import text_corpus

    texts = text_corpus(train_config.tokenizer_corpus_samples, seed=train_config.seed)
    # "none" is an answer, not a prompt word: repeat it so BPE gives it one token.
    texts += [NONE_ANSWER] * (len(texts) // 20)
    return build_model(model_config, tokenizer_texts=texts)


def train_step(model, optimizer: torch.optim.Optimizer, train: TrainConfig, generator, step: int, *, rank: int = 0,
               device: str = "cpu", frozen_encoder=None, wrapped=None, lap=None):
    """One optimizer step on step ``step``'s scenes: (losses, weighted total, visual-token count).

    ``wrapped``: the module to call (DDP's wrapper of a ``TeacherForcing``; default ``TeacherForcing(model)``).
    ``lap(stage)`` is called after each stage (scenes, collate, encoder, forward, backward, optimizer):
    ``train-bench`` times them.
    """
    lap = lap or (lambda stage: None)
    if train.flush_denormals:
        flush_denormals()  # again: without it a trained model's step takes ~1.25x longer (numerics.py)
    items = step_items(generator, train, step, rank)
    lap("scenes")
    images, batch = collate(items, model.language_model.tokenizer, model.ids, **collate_options(model))
    images = images.to(device)
    batch = batch.to(device)
    lap("collate")
    count = step_token_count(train, step)
    pyramid = frozen_encoder(images) if frozen_encoder else None
    lap("encoder")
    losses = (wrapped or TeacherForcing(model))(images, batch, count, pyramid=pyramid)
    total = sum(getattr(train, f"{name}_weight") * value for name, value in losses.items())
    lap("forward")
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    lap("backward")
    torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
    optimizer.step()
    lap("optimizer")
    return losses, total, count


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def train(model_config: ModelConfig, train_config: TrainConfig, out_dir: Path, *, resume: bool = False,
          device: str = "cpu", progress: bool = True, stop_after: int | None = None) -> dict:
    """Run (or resume) one training run; returns the final metrics record.

    ``stop_after``: checkpoint and stop after that many steps of this call (the
    schedule still spans ``train_config.steps``), to split a run; resume later.
    """
    from tqdm import tqdm

    from ros_pgpt.training.evaluate import evaluate_model

    if train_config.flush_denormals:
        flush_denormals()
    rank, world = _distributed()
    if world > 1 and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    torch.manual_seed(train_config.seed)
    out_dir = Path(out_dir)
    resuming = resume and (out_dir / TRAIN_META_FILE).is_file()
    if resuming:
        model_config = read_model_config(out_dir)
        model = load_model(out_dir)
    elif train_config.init_from:
        model_config = read_model_config(Path(train_config.init_from))
        model = load_model(train_config.init_from)
    else:
        model = new_model(model_config, train_config)
    model.to(device)
    configure_trainable(model, train_config)
    optimizer = build_optimizer(model, train_config)
    start, elapsed = (load_train_state(out_dir, optimizer) if resuming else (0, 0.0))
    wrapped = TeacherForcing(model)
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(wrapped, find_unused_parameters=True)
    frozen_encoder = ort_encoder(model, train_config, device) if not train_config.train_vision else None
    generator = scene_generator(train_config)
    history: list[dict] = []
    log_path = out_dir / "train_log.jsonl"
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    end = train_config.steps if stop_after is None else min(train_config.steps, start + stop_after)
    bar = tqdm(range(start, end), initial=start, total=train_config.steps,
               disable=not progress or rank != 0, dynamic_ncols=True)
    began = time.perf_counter() - elapsed
    running: dict[str, float] = {}
    steps_done = start
    for step in bar:
        factor = lr_factor(train_config, step, _budget_clock(train_config, began, world))
        set_train_mode(model, train_config)
        for group, base in zip(optimizer.param_groups, (train_config.lr, train_config.llm_lr)):
            group["lr"] = base * factor
        losses, total, count = train_step(model, optimizer, train_config, generator, step, rank=rank, device=device,
                                          frozen_encoder=frozen_encoder, wrapped=wrapped)
        # The last step: the schedule's, or the one during which the wall-clock budget ran out.
        budget = train_config.time_budget_s
        last = step + 1 == train_config.steps or (budget > 0 and _budget_clock(train_config, began, world) >= budget)
        for name, value in losses.items():
            running[name] = 0.9 * running.get(name, value.item()) + 0.1 * value.item()
        if rank == 0:
            bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()} | {"n": count})
            if (step + 1) % train_config.log_every == 0:
                record = {"step": step + 1, "elapsed_s": round(time.perf_counter() - began, 1), "tokens": count,
                          "lr_factor": round(factor, 4), "loss": round(total.item(), 4)}
                record |= {k: round(v.item(), 4) for k, v in losses.items()}
                with log_path.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
            if (step + 1) % train_config.eval_every == 0 or last:
                metrics = evaluate_model(model, samples=train_config.eval_samples,
                                         token_counts=[model.projector.max_tokens], seed=train_config.seed)
                history.append({"step": step + 1, "elapsed_s": round(time.perf_counter() - began, 1)} | metrics)
                with (out_dir / "eval_history.jsonl").open("a") as handle:
                    handle.write(json.dumps(history[-1]) + "\n")
                bar.write(f"step {step + 1}: {json.dumps(metrics)}")
            if (step + 1) % train_config.checkpoint_every == 0 or step + 1 == end or last:
                elapsed = time.perf_counter() - began
                save_checkpoint(model, out_dir, config=model_config,
                                metadata={"step": step + 1, "train_wall_s": round(elapsed, 1),
                                          "train_config": train_config.to_dict()})
                save_train_state(out_dir, optimizer, step + 1, elapsed)
        if world > 1:
            dist.barrier()
        steps_done = step + 1
        if last:
            break
    wall = time.perf_counter() - began
    if world > 1:
        dist.destroy_process_group()
    return {"steps": steps_done, "train_wall_s": round(wall, 1), "history": history}


def _budget_clock(train: TrainConfig, began: float, world: int) -> float:
    """Seconds since ``began`` on rank 0's clock, on every rank, so all ranks share one learning rate
    and stop together; 0 without a time budget, which nothing then reads (no collective per step)."""
    if not train.time_budget_s:
        return 0.0
    elapsed = time.perf_counter() - began
    if world == 1:
        return elapsed
    value = torch.tensor([elapsed], dtype=torch.float64)
    dist.broadcast(value, src=0)
    return float(value.item())


def ort_encoder(model, train: TrainConfig, device: str):
    """ONNX Runtime for the frozen encoder on CPU (3-5x faster than eager); None on GPU."""
    if not str(device).startswith("cpu"):
        return None
    import tempfile

    from ros_pgpt.training.frozen_vision import OrtImageEncoder, export_image_encoder

    with tempfile.TemporaryDirectory() as tmp:
        path = export_image_encoder(model.image_encoder, Path(tmp) / "image_encoder.onnx",
                                    image_size=model.image_size)
        return OrtImageEncoder(path, threads=train.threads or torch.get_num_threads())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ros-pgpt train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML file with model: and train: sections")
    parser.add_argument("--out", required=True, help="checkpoint directory")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, help="override train.steps")
    parser.add_argument("--time-budget", type=float, metavar="SECONDS",
                        help="override train.time_budget_s (0: none, the run takes all its steps)")
    parser.add_argument("--stop-after", type=int, help="checkpoint and stop after N steps (continue with --resume)")
    parser.add_argument("--init", metavar="CHECKPOINT",
                        help="override train.init_from: start from this checkpoint's weights, tokenizer and model "
                             "config instead of a new model")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    model_config, train_config = load_config(args.config)
    if args.steps:
        train_config.steps = args.steps
    if args.init:
        train_config.init_from = args.init
    if train_config.init_from and not (Path(train_config.init_from) / WEIGHTS_FILE).is_file():
        parser.error(f"no checkpoint to start from in {train_config.init_from}")
    if args.time_budget is not None:
        if args.time_budget < 0:
            parser.error("--time-budget must be >= 0")
        train_config.time_budget_s = args.time_budget
    if (Path(args.out) / WEIGHTS_FILE).exists() and not args.resume:
        parser.error(f"{args.out} already holds a checkpoint: pass --resume or choose another --out")
    result = train(model_config, train_config, Path(args.out), resume=args.resume, device=args.device,
                   progress=not args.no_progress, stop_after=args.stop_after)
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    return 0
