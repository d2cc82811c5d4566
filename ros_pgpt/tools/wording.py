"""``ros-pgpt wording``: how the model reads a prompt, and how held-out words fare.

    ros-pgpt wording "Where's the crimson circle?"     # the trained phrasing, or exit 4: unknown words
    ros-pgpt wording --check [--eval 100] [--json]     # held-out synonyms and unknown concepts
"""
from __future__ import annotations

import json
import sys

from ros_pgpt.data.scenes import COLOURS
from ros_pgpt.data.wording import (
    EXIT_UNKNOWN_WORDS,
    UnknownWords,
    _kind,
    _unknown,
    canonical_prompt,
    known_prompt,
    synonym_table,
)

# Probe prompts per kind of synonym: the held-out word in its place, and what it must read as.
_PROBES = {"colour": ("find the {} star", "the circle that is {}"), "size": ("the {} red circle", "all the {} squares"),
           "noun": ("find the red {}", "where is the small {}?")}
_UNKNOWN_PROBES = ("the {}", "find the {}", "where is the red {}?", "the {} star")


def check_held_out() -> dict:
    """Held-out synonyms read as the right word, and unknown concepts refused, through ``canonical_prompt``."""
    from ros_pgpt.data.held_out_words import DEV_SYNONYMS, DEV_UNKNOWN, TEST_SYNONYMS, TEST_UNKNOWN

    def synonyms(table: dict[str, str]) -> dict:
        rows = {}
        for word, meant in table.items():
            probes = _PROBES[_kind(meant)]
            expected = [canonical_prompt(p.format(meant)) for p in probes]
            read = [canonical_prompt(p.format(word)) for p in probes]
            rows[word] = {"means": meant, "read_as": synonym_table().get(word), "right": read == expected}
        right = sum(row["right"] for row in rows.values())
        return {"accuracy": round(right / len(rows), 3), "right": right, "words": len(rows), "per_word": rows}

    def unknown(words) -> dict:
        answered = {w: [p.format(w) for p in _UNKNOWN_PROBES if not _unknown(canonical_prompt(p.format(w)))]
                    for w in words}
        count = sum(len(v) for v in answered.values())
        total = len(words) * len(_UNKNOWN_PROBES)
        return {"answered_rate": round(count / total, 3), "answered": count, "prompts": total,
                "answered_prompts": {w: v for w, v in answered.items() if v}}

    return {"test": {"synonyms": synonyms(TEST_SYNONYMS), "unknown": unknown(TEST_UNKNOWN)},
            "dev": {"synonyms": synonyms(DEV_SYNONYMS), "unknown": unknown(DEV_UNKNOWN)}}


def evaluate_held_out_words(predictor, *, samples: int, seed: int) -> dict:
    """The held-out scenes' single, plural and absent prompts, as generated and with every colour, shape
    and size word replaced by a TEST synonym (the true meaning, whatever the table says); a refused prompt
    answers no object. Same scenes, same prompts otherwise: the gap is what the unseen words cost."""
    import numpy as np

    from ros_pgpt.data.held_out_words import with_test_synonyms
    from ros_pgpt.training.evaluate import held_out_samples
    from ros_pgpt.training.metrics import Tally
    from ros_pgpt.inference.predictor import GroundingResult

    rng = np.random.default_rng(seed)
    names = ("trained_words", "held_out_words", "held_out_colours")
    tallies, refused, examples = {n: Tally() for n in names}, dict.fromkeys(names, 0), []
    tallies["trained_words_colour_prompts"] = Tally()  # the baseline of held_out_colours: the same prompts
    for index, sample in held_out_samples(samples, seed=seed):
        predictor.set_image(sample.scene.image, key=("held_out_words", index))
        for query in sample.queries:
            held_out = with_test_synonyms(query.prompt, rng)
            if query.kind not in ("single", "plural", "absent") or held_out is None:
                continue
            # held_out_colours: the prompts with a colour word, only the colours replaced
            colours = with_test_synonyms(query.prompt, rng, meanings=COLOURS)
            for name, prompt in zip(names, (query.prompt, held_out, colours)):
                if prompt is None:
                    continue
                try:
                    result = predictor.ground(None, prompt, masks=True)
                except UnknownWords:
                    refused[name] += 1
                    result = GroundingResult(prompt=prompt, answer="", objects=[], visual_tokens=0, frame_cached=True)
                tallies[name].add(sample.scene, query, result)
                if name == "trained_words" and colours is not None:
                    tallies["trained_words_colour_prompts"].add(sample.scene, query, result)
            if len(examples) < 8:
                examples.append([held_out, canonical_prompt(held_out)])
    report = {name: {**tally.summary(), "refused": refused.get(name, 0)} for name, tally in tallies.items()}
    report["examples"] = examples
    return report


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="ros-pgpt wording", description="How the model reads a prompt (its trained phrasing), or, with "
        "--check, how held-out synonyms and unknown concepts fare. Exit 4: the prompt has unknown words.")
    parser.add_argument("prompt", nargs="?", help='a prompt as typed, e.g. "Where\'s the crimson circle?"')
    parser.add_argument("--check", action="store_true", help="measure the held-out word lists "
                        "(ros_pgpt/data/held_out_words.py) and print per-word results and rates")
    parser.add_argument("--json", action="store_true", help="with --check: print the full report as JSON")
    parser.add_argument("--eval", type=int, default=0, metavar="SCENES", help="with --check: also ground the "
                        "held-out scenes' prompts as generated and in held-out synonyms with the model")
    parser.add_argument("--seed", type=int, default=3, help="held-out split of --eval (default 3)")
    args = parser.parse_args(argv)
    if args.check:
        report = check_held_out()
        if args.eval:
            from ros_pgpt.checkpoints import default_checkpoint
            from ros_pgpt.inference.predictor import Predictor

            report["model"] = evaluate_held_out_words(Predictor.from_checkpoint(default_checkpoint()),
                                                      samples=args.eval, seed=args.seed)
        if args.json:
            print(json.dumps(report, indent=1))
            return 0
        for split in ("test", "dev"):
            syn, unk = report[split]["synonyms"], report[split]["unknown"]
            print(f"{split}: held-out synonyms read right {syn['right']}/{syn['words']} ({syn['accuracy']:.3f}); "
                  f"unknown-concept prompts answered {unk['answered']}/{unk['prompts']} ({unk['answered_rate']:.3f})")
            for word, row in syn["per_word"].items():
                print(f"  {word:<12} means {row['means']:<9} read as {row['read_as'] or '(unknown)':<9} "
                      f"{'ok' if row['right'] else 'WRONG'}")
            for word, prompts in unk["answered_prompts"].items():
                print(f"  unknown {word!r} answered in: {prompts}")
        if "model" in report:
            for name in ("trained_words", "held_out_words", "trained_words_colour_prompts", "held_out_colours"):
                metrics = report["model"][name]
                print(f"model, {args.eval} held-out scenes (seed {args.seed}), {name}: "
                      + "  ".join(f"{k}={metrics[k]}" for k in ("acc50", "plural_f1", "absent_acc", "refused",
                                                                 "counts")))
            print("  e.g. " + "; ".join(f"{a!r} -> {b!r}" for a, b in report["model"]["examples"][:4]))
        return 0
    if not args.prompt:
        parser.error("give a prompt, or --check")
    try:
        print(known_prompt(args.prompt))
    except UnknownWords as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNKNOWN_WORDS
    return 0
