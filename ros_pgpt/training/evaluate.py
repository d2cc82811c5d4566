"""Held-out evaluation: ``ros-pgpt eval --checkpoint DIR --json``.

Metrics per visual-token count, on scenes from a seed range no training run
draws from:
- ``acc50``: single-object prompts whose first object has box IoU >= 0.5;
- ``box_miou``: mean box IoU of the first object on single-object prompts (0
  when nothing was found): a continuous companion of ``acc50``;
- ``miou``: mean mask IoU on single-object prompts (0 when nothing was found);
- ``plural_f1``: F1 of boxes at IoU >= 0.5 on "all the ..." prompts (micro);
- ``absent_acc``: prompts about absent objects answered with no objects;
- ``describe_acc``: "what is in <box>?" answered with the exact attributes.

``--conditions`` evaluates per condition instead (photographs, occlusion,
clutter, camera effects, resolutions, sizes, wording, synonyms, unknown
concepts): ``ros_pgpt/training/eval_conditions.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ros_pgpt.training.eval_conditions import CONDITION_NAMES, conditions_table, evaluate_conditions
from ros_pgpt.training.metrics import Tally
from ros_pgpt.inference.decoding import DecodingRules

EVAL_SEED_BASE = 10**12  # far above any training seed (train seeds are < 10**11)
def held_out_samples(samples: int, *, seed: int = 0, resolutions=((640, 480),), queries_per_scene: int = 4):
    """Yield (index, Sample) for the held-out split: the same scenes for every evaluation."""
    from ros_pgpt.data import SceneGenerator

    generator = SceneGenerator(resolutions=[tuple(r) for r in resolutions])
    for index in range(samples):
        yield index, generator.sample(EVAL_SEED_BASE + seed * 100_000 + index, n_queries=queries_per_scene)


def evaluate_predictor(predictor, *, samples: int, token_counts: list[int], seed: int = 0,
                       resolutions=((640, 480),), queries_per_scene: int = 4) -> dict:
    """Ground every held-out query at every token count; one frame encode per scene."""
    tallies = {count: Tally() for count in token_counts}
    for index, sample in held_out_samples(samples, seed=seed, resolutions=resolutions,
                                          queries_per_scene=queries_per_scene):
        predictor.set_image(sample.scene.image, key=("eval", index))
        for query in sample.queries:
            for count in token_counts:
                result = predictor.ground(None, query.prompt, visual_tokens=count, masks=True,
                                          boxes=query.input_boxes)
                tallies[count].add(sample.scene, query, result)
    return {str(count): tally.summary() for count, tally in tallies.items()}


def evaluate_model(model, *, samples: int, token_counts: list[int], seed: int = 0) -> dict:
    """Evaluate a model in training (single count: flattened metrics for the log)."""
    from ros_pgpt.inference.predictor import Predictor

    was_training = model.training
    try:
        results = evaluate_predictor(Predictor(model), samples=samples, token_counts=token_counts, seed=seed)
    finally:
        model.train(was_training)
    return results[str(token_counts[0])] if len(token_counts) == 1 else results


def add_held_out_arguments(parser: argparse.ArgumentParser, *, samples: int) -> None:
    """--checkpoint, --samples, --seed and the decoding thresholds (--match-threshold, --next-object-threshold,
    --first-object-threshold): what evaluates which model on which scenes."""
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--samples", type=int, default=samples, help="held-out scenes (4 prompts each)")
    parser.add_argument("--seed", type=int, default=0, help="held-out split seed")
    rules = DecodingRules()
    parser.add_argument("--match-threshold", type=float, default=rules.match_threshold,
                        help="models with a match head: refuse a first object it scores below this "
                             "(0 = keep all; default %(default)s)")
    parser.add_argument("--next-object-threshold", type=float, default=rules.next_object_threshold,
                        help="after the first object, decode another whenever its token's probability reaches "
                             "this (0.5 = plain greedy; default %(default)s)")
    parser.add_argument("--first-object-threshold", type=float, default=rules.first_object_threshold,
                        help="models with a match head: where the LLM answers \"none\" but an object token is at "
                             "least this likely, decode it and let the match head decide (1 = the LLM's \"none\" "
                             "stands; default %(default)s)")


def predictor_from_arguments(args: argparse.Namespace):
    """(checkpoint directory, Predictor) for the arguments of ``add_held_out_arguments`` (and ``--backend``
    where the command has it: PyTorch unless it names another)."""
    from ros_pgpt.checkpoints import default_checkpoint
    from ros_pgpt.inference.predictor import Predictor

    directory = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    options = {"rules": DecodingRules(match_threshold=args.match_threshold,
                                      next_object_threshold=args.next_object_threshold,
                                      first_object_threshold=args.first_object_threshold)}
    backend = getattr(args, "backend", "pytorch")
    if backend != "pytorch":
        from ros_pgpt.inference.backends import create_predictor

        return directory, create_predictor(directory, backend=backend, **options)
    return directory, Predictor.from_checkpoint(directory, **options)


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="ros-pgpt eval", description=__doc__.split("\n\n")[0])
    add_held_out_arguments(parser, samples=300)
    parser.set_defaults(samples=None)
    parser.add_argument("--tokens", default=None, help="comma-separated visual-token counts (default: M/4,M/2,M; "
                                                       "with --conditions: M)")
    parser.add_argument("--conditions", nargs="?", const="all", default=None, metavar="NAMES",
                        help="evaluate per condition, each on its own held-out scenes (default --samples 40 each): "
                             f"comma-separated names from {', '.join(CONDITION_NAMES)}, or all")
    parser.add_argument("--backend", choices=("pytorch", "onnxruntime"), default="pytorch",
                        help="what runs the model (default pytorch fp32; onnxruntime: its default precision)")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                        help="write the report as JSON (to FILE, or stdout)")
    args = parser.parse_args(argv)
    from ros_pgpt.model.build import checkpoint_metadata

    if args.samples is None:
        args.samples = 40 if args.conditions else 300
    directory, predictor = predictor_from_arguments(args)
    maximum = predictor.max_visual_tokens
    counts = [int(t) for t in args.tokens.split(",")] if args.tokens else sorted({maximum // 4, maximum // 2, maximum})
    started = time.perf_counter()
    if args.conditions:
        names = CONDITION_NAMES if args.conditions == "all" else tuple(args.conditions.split(","))
        counts = counts if args.tokens else [maximum]
        if len(counts) != 1:
            parser.error("--conditions evaluates at one visual-token count: give --tokens N")
        progress = None if args.json == "-" else (
            lambda name, metrics: print(f"{name}: {json.dumps(metrics)}", file=sys.stderr, flush=True))
        results = evaluate_conditions(predictor, names, samples=args.samples, visual_tokens=counts[0],
                                      seed=args.seed, progress=progress)
    else:
        results = evaluate_predictor(predictor, samples=args.samples, token_counts=counts, seed=args.seed)
    metadata = checkpoint_metadata(directory)
    matching = predictor.engine.has_match_head
    report = {"checkpoint": str(directory), "samples": args.samples, "seed": args.seed,
              "match_threshold": predictor.rules.match_threshold if matching else None,
              "next_object_threshold": predictor.rules.next_object_threshold,
              "first_object_threshold": predictor.rules.first_object_threshold if matching else None,
              "max_visual_tokens": maximum, "train_steps": metadata.get("step"),
              "train_wall_s": metadata.get("train_wall_s"), "eval_wall_s": round(time.perf_counter() - started, 1),
              "results": results}
    if args.conditions:
        report |= {"backend": predictor.backend.get("backend", args.backend), "visual_tokens": counts[0],
                   "conditions": report.pop("results")}
    text = json.dumps(report, indent=2)
    if args.json == "-":
        print(text)
    else:
        if args.json:
            Path(args.json).write_text(text + "\n")
        if args.conditions:
            print(conditions_table(results))
            return 0
        for count, metrics in results.items():
            print(f"tokens={count:>3}  " + "  ".join(f"{k}={v}" for k, v in metrics.items() if k != "counts"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
