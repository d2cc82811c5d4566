"""Where a checkpoint fails: ``ros-pgpt diagnose [--checkpoint DIR] [--samples N] [--seed S] [--json]``.

Every single-object prompt of the held-out split (the scenes ``ros-pgpt eval``
uses) gets one outcome for its first object:

- ``right``: box IoU with the target >= 0.5 (what Acc@0.5 counts);
- ``other_object``: IoU >= 0.5 with another object of the scene (a wrong pick);
- ``distractor``: IoU >= 0.5 with a distractor (a colour or shape outside the
  vocabulary, never an answer);
- ``loose``: on the target, but at IoU 0.1-0.5;
- ``off``: on no object (the box of neither the target nor another object);
- ``none``: no object (the LLM answered "none" or the match head refused);
- ``refused``: the prompt holds a word the model does not know.

Outcomes are counted per prompt family (attributes only, a superlative such as
"the leftmost red object", a relation to another object, a relation to an input
box), per target size (the longer side of its box in source pixels), per
share of the target left visible by occlusion and the frame border and per
background (a plain kind, or ``photo:<name>`` for a photograph); mask IoU is
reported on the right picks alone, plural answers by whether they hold too few
or too many objects, and absent prompts by what answered them (``none``,
``refused``, or a box on an ``object``, a ``distractor`` or ``off`` both).

``--condition NAME`` diagnoses one of ``ros-pgpt eval --conditions``' held-out
sets instead (its scenes and its prompts, e.g. clutter or held-out synonyms).

With a PyTorch model that kept its training-only attribute heads, the report
also says how well they read each object's colour, shape and size off the
decoder's pixel memory and off the LLM's visual tokens: accuracy and
cross-entropy over the cells an object owns and over all cells (empty cells,
class 0, are most of a frame, so the second alone flatters the heads).

Last, the match head's scores on the easiest prompt there is: a scene holding
one object, asked for by colour and shape ("where is the green triangle?", the
node's smoke test), where a refusal tells a robot "none" about the only object
in view; this is what the run-time ``match_threshold`` was chosen against.
With ``--probe N``, fresh linear probes fitted on N scenes of another held-out
split say whether the visual tokens carry each attribute at all, before and
after the LLM.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from ros_pgpt.training.batching import ATTRIBUTE_CLASSES, ATTRIBUTE_NAMES, collate
from ros_pgpt.data.scenes import POSITION_WORDS, RELATION_WORDS
from ros_pgpt.training.eval_conditions import CONDITIONS, asked_prompts, condition_samples, ground_or_refuse
from ros_pgpt.training.evaluate import add_held_out_arguments, held_out_samples, predictor_from_arguments
from ros_pgpt.data.geometry import box_iou, mask_iou
from ros_pgpt.training.regions import attribute_labels, region_owners
from ros_pgpt.training.teacher_forcing import collate_options

OUTCOMES = ("right", "other_object", "distractor", "loose", "off", "none", "refused")
ABSENT_OUTCOMES = ("none", "refused", "object", "distractor", "off")
FAMILIES = ("attribute", "superlative", "relation", "relation_box")
# Upper bounds (source pixels, the box's longer side) of the target-size bins; the last is open.
SIZE_BINS = (30, 50, 80)
SIZE_NAMES = ("<30", "30-50", "50-80", ">=80")
# Lower bounds of the visible share of the target (occlusion, frame border), and their names.
VISIBLE_BINS = (0.99, 0.8)
VISIBLE_NAMES = ("whole", "80-99 %", "<80 %")


def prompt_family(query) -> str:
    if query.kind == "relation_box":
        return "relation_box"
    if any(word in query.phrase for word in RELATION_WORDS):
        return "relation"
    if any(word in query.phrase for word in POSITION_WORDS):
        return "superlative"
    return "attribute"


def size_bin(box) -> str:
    """The SIZE_NAMES bin of a box (x0, y0, x1, y1) by its longer side."""
    side = max(box[2] - box[0], box[3] - box[1])
    return SIZE_NAMES[sum(side >= bound for bound in SIZE_BINS)]


def visible_bin(obj) -> str:
    """The VISIBLE_NAMES bin of a scene object by the share of it left visible."""
    return VISIBLE_NAMES[sum(obj.visible_fraction < bound for bound in VISIBLE_BINS)]


def _on_a_distractor(scene, box) -> bool:
    return any(box_iou(box, distractor.box) >= 0.5 for distractor in scene.distractors)


def single_outcome(scene, query, result, refused: bool = False) -> tuple[str, float | None]:
    """(outcome, mask IoU with the target when the pick is right, else None)."""
    if refused:
        return "refused", None
    if not result.objects:
        return "none", None
    first = result.objects[0]
    ious = [box_iou(first.box, obj.box) for obj in scene.objects]
    target = query.targets[0]
    if ious[target] >= 0.5:
        mask = mask_iou(first.mask, scene.objects[target].mask) if first.mask is not None else None
        return "right", mask
    if max((iou for index, iou in enumerate(ious) if index != target), default=0.0) >= 0.5:
        return "other_object", None
    if _on_a_distractor(scene, first.box):
        return "distractor", None
    return ("loose" if ious[target] >= 0.1 else "off"), None


def absent_outcome(scene, result, refused: bool = False) -> str:
    """What answered a prompt whose description fits nothing in the scene (ABSENT_OUTCOMES)."""
    if refused:
        return "refused"
    if not result.objects:
        return "none"
    box = result.objects[0].box
    if any(box_iou(box, obj.box) >= 0.5 for obj in scene.objects):
        return "object"
    return "distractor" if _on_a_distractor(scene, box) else "off"


def diagnosed_prompts(samples: int, *, seed: int, condition: str | None = None):
    """Yield (index, sample, [(query, prompt asked or None)]): the plain held-out split, or with
    ``condition`` that ``eval --conditions`` set's scenes and prompts."""
    if condition is None:
        for index, sample in held_out_samples(samples, seed=seed):
            yield index, sample, [(query, query.prompt) for query in sample.queries]
        return
    chosen = next((c for c in CONDITIONS if c.name == condition), None)
    if chosen is None or chosen.unknown:
        usable = ", ".join(c.name for c in CONDITIONS if not c.unknown)
        raise ValueError(f"cannot diagnose condition {condition!r}: choose from {usable} "
                         "(unknown concepts have no target; `ros-pgpt eval --conditions unknown` counts them)")
    for index, sample in condition_samples(chosen, samples, seed=seed):
        yield index, sample, list(asked_prompts(chosen, sample, index, seed=seed))


def _frame_passes(model, items, tokens: int, frames_per_batch: int = 6):
    """Per batch of ``items``: (images, batch, frames, visual tokens as the LLM gets them, the LLM's hidden
    states at them). Callers turn autograd off around the loop."""
    language_model = model.language_model
    for start in range(0, len(items), frames_per_batch):
        images, batch = collate(items[start:start + frames_per_batch], language_model.tokenizer,
                                language_model.ids, **collate_options(model))
        frames = model.encode_frames(images)
        prefix = model.image_prefix(frames, tokens)
        hidden, _, _ = language_model(prefix)
        yield images, batch, frames, model.visual_hidden(prefix), model.visual_hidden(hidden)


def attribute_readout(model, items, *, visual_tokens: int | None = None) -> dict | None:
    """Accuracy and mean cross-entropy of the attribute heads on ``items`` ((scene, queries) pairs),
    for the pixel memory and the visual tokens, over object-owned cells and over all labelled cells;
    None for a model without the heads (another engine, or a config without ``attribute_heads``)."""
    if model is None or model.pixel_attributes is None or model.token_attributes is None:
        return None
    sums = {}  # (side, cells) -> [correct per attribute, count per attribute, cross-entropy sum]
    with torch.no_grad():
        tokens = visual_tokens or model.projector.max_tokens
        for images, batch, frames, _, visual in _frame_passes(model, items, tokens):
            for side_name, features, heads, with_centres in (
                    ("pixels", frames.memory, model.pixel_attributes, False),
                    ("visual_tokens", visual, model.token_attributes, True)):
                side = int(round(features.shape[1] ** 0.5))
                owners = region_owners(batch, images.shape[0], side, with_centres=with_centres)
                labels = attribute_labels(batch, owners)
                flat = features.reshape(-1, features.shape[-1])
                for cells, rows in (("object_cells", owners >= 0), ("all_cells", labels[:, 0] >= 0)):
                    total = sums.setdefault((side_name, cells), [Counter(), Counter(), 0.0])
                    for index, (name, head) in enumerate(zip(ATTRIBUTE_NAMES, heads.heads)):
                        logits, target = head(flat[rows]), labels[rows, index]
                        total[0][name] += int((logits.argmax(dim=-1) == target).sum())
                        total[1][name] += len(target)
                        total[2] += float(F.cross_entropy(logits, target, reduction="sum"))
    report = {}
    for (side_name, cells), (correct, count, loss) in sums.items():
        report.setdefault(side_name, {})[cells] = {
            "accuracy": round(correct.total() / max(count.total(), 1), 4),
            "cross_entropy": round(loss / max(count.total(), 1), 4),
            "accuracy_by_attribute": {name: round(correct[name] / max(count[name], 1), 4) for name in ATTRIBUTE_NAMES}}
    return report


def _object_cells(model, items, tokens: int):
    """Features of the visual tokens that own an object (before and after the LLM) and their labels."""
    before, after, labels = [], [], []
    with torch.no_grad():
        for images, batch, _, visual_in, visual_out in _frame_passes(model, items, tokens):
            owners = region_owners(batch, images.shape[0], int(round(visual_in.shape[1] ** 0.5)), with_centres=True)
            kept = owners >= 0
            before.append(visual_in.reshape(-1, visual_in.shape[-1])[kept])
            after.append(visual_out.reshape(-1, visual_out.shape[-1])[kept])
            labels.append(attribute_labels(batch, owners)[kept])
    return {"projector_output": torch.cat(before), "llm_output": torch.cat(after)}, torch.cat(labels)


def linear_probes(model, items, *, fit_items, visual_tokens: int | None = None, steps: int = 400) -> dict | None:
    """Accuracy of fresh linear classifiers of colour, shape and size on the visual tokens that own an
    object, as the projector hands them to the LLM and as the LLM leaves them: fitted on ``fit_items``,
    scored on ``items``. A probe no better than the shared attribute head means the tokens lack the
    attribute, not that the head misreads them. None for a model without the heads."""
    if model is None or model.token_attributes is None:
        return None
    tokens = visual_tokens or model.projector.max_tokens
    fit_features, fit_labels = _object_cells(model, fit_items, tokens)
    features, labels = _object_cells(model, items, tokens)
    generator = torch.Generator().manual_seed(0)
    report = {"fit_cells": len(fit_labels), "cells": len(labels),
              # What a probe that learned nothing would score: the share of each attribute's commonest class.
              "commonest_class": {name: round(float(labels[:, index].bincount().max()) / max(len(labels), 1), 4)
                                  for index, name in enumerate(ATTRIBUTE_NAMES)}}
    for stage, train in fit_features.items():
        mean, scale = train.mean(dim=0), train.std(dim=0) + 1e-6
        for index, name in enumerate(ATTRIBUTE_NAMES):
            probe = torch.nn.Linear(train.shape[1], ATTRIBUTE_CLASSES[index])
            torch.nn.init.normal_(probe.weight, std=0.01, generator=generator)
            optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
            for _ in range(steps):
                optimizer.zero_grad()
                F.cross_entropy(probe((train - mean) / scale), fit_labels[:, index]).backward()
                optimizer.step()
            with torch.no_grad():
                right = probe((features[stage] - mean) / scale).argmax(dim=-1) == labels[:, index]
            report.setdefault(stage, {})[name] = round(float(right.float().mean()), 4)
    return report


def lone_objects(predictor, *, scenes: int, thresholds=(0.2, 0.5)) -> dict:
    """Scores of the first object found for "where is the <colour> <shape>?" on ``scenes`` one-object
    scenes (generator seeds 0, 1, ...; 0 when nothing is found), how many boxes hit the object (IoU >=
    0.5), and how many answers each match threshold would refuse."""
    from ros_pgpt.data import SceneGenerator

    generator = SceneGenerator(min_objects=1, max_objects=1)
    kept = predictor.rules
    predictor.rules = replace(kept, match_threshold=0.0)  # keep every object to read its score
    scores, boxed = [], 0
    try:
        for index in range(scenes):
            scene = generator.sample(index, n_queries=1).scene
            target = scene.objects[0]
            result = predictor.ground(scene.image, f"where is the {target.colour} {target.shape}?", masks=False)
            first = result.objects[0] if result.objects else None
            scores.append(first.score if first else 0.0)
            boxed += first is not None and box_iou(first.box, target.box) >= 0.5
    finally:
        predictor.rules = kept
    return {"scenes": scenes, "boxed": int(boxed),
            "score_min": round(min(scores), 3), "score_median": round(float(np.median(scores)), 3),
            "score_max": round(max(scores), 3),
            "refused_at": {str(t): sum(score < t for score in scores) for t in thresholds}}


def _outcome_rows(groups: dict[str, Counter]) -> dict[str, dict[str, int]]:
    """Each group's count of every outcome (0 where none fell there)."""
    return {name: {outcome: counts[outcome] for outcome in OUTCOMES} for name, counts in groups.items()}


def diagnose(predictor, *, samples: int, seed: int = 0, condition: str | None = None,
             visual_tokens: int | None = None, lone: int = 20, probe_samples: int = 0, probe_seed: int = 7) -> dict:
    families = {family: Counter() for family in FAMILIES}
    sizes = {name: Counter() for name in SIZE_NAMES}
    visible = {name: Counter() for name in VISIBLE_NAMES}
    backgrounds: dict[str, Counter] = {}
    absent = Counter()
    right_masks: list[float] = []
    plural = Counter()
    items = []  # (scene, queries) of every sample, for the attribute read-out
    for index, sample, prompts in diagnosed_prompts(samples, seed=seed, condition=condition):
        scene = sample.scene
        items.append((scene, sample.queries))
        predictor.set_image(scene.image, key=("diagnose", condition, index))
        for query, prompt in prompts:
            if prompt is None or query.kind not in ("single", "relation_box", "plural", "absent"):
                continue
            result, refused = ground_or_refuse(predictor, prompt, visual_tokens=visual_tokens,
                                               boxes=query.input_boxes, masks=query.kind in ("single", "relation_box"))
            if query.kind == "absent":
                absent[absent_outcome(scene, result, refused)] += 1
                continue
            if query.kind == "plural":
                found, wanted = len(result.objects), len(query.targets)
                plural["prompts"] += 1
                plural["too_few"] += found < wanted
                plural["too_many"] += found > wanted
                # Whether the model goes on after its first object at all, where it should.
                plural["several_targets"] += wanted > 1
                plural["several_targets_several_found"] += wanted > 1 and found > 1
                continue
            outcome, mask = single_outcome(scene, query, result, refused)
            target = scene.objects[query.targets[0]]
            families[prompt_family(query)][outcome] += 1
            sizes[size_bin(target.box)][outcome] += 1
            visible[visible_bin(target)][outcome] += 1
            backgrounds.setdefault(scene.background, Counter())[outcome] += 1
            if mask is not None:
                right_masks.append(mask)
    totals = sum(families.values(), Counter())
    return {
        "samples": samples, "seed": seed, "condition": condition,
        "visual_tokens": visual_tokens or predictor.max_visual_tokens,
        "match_threshold": predictor.rules.match_threshold,
        "single": {outcome: totals[outcome] for outcome in OUTCOMES} | {"prompts": sum(totals.values())},
        "by_family": _outcome_rows(families),
        "by_target_size": _outcome_rows(sizes),
        "by_visible_share": _outcome_rows(visible),
        "by_background": _outcome_rows(dict(sorted(backgrounds.items()))),
        "absent": {outcome: absent[outcome] for outcome in ABSENT_OUTCOMES} | {"prompts": absent.total()},
        "mask_iou_when_right": {"mean": round(float(np.mean(right_masks)), 4),
                                "median": round(float(np.median(right_masks)), 4)} if right_masks else None,
        "plural": dict(plural),
        "attribute_readout": attribute_readout(predictor.model, items, visual_tokens=visual_tokens),
        "lone_objects": lone_objects(predictor, scenes=lone) if lone else None,
        "linear_probes": linear_probes(
            predictor.model, items, visual_tokens=visual_tokens,
            fit_items=[(s.scene, s.queries) for _, s in held_out_samples(probe_samples, seed=probe_seed)],
        ) if probe_samples else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ros-pgpt diagnose", description=__doc__.split("\n\n")[0])
    add_held_out_arguments(parser, samples=100)
    parser.add_argument("--condition", default=None, metavar="NAME",
                        help="diagnose this `eval --conditions` held-out set (clutter, synonyms...) instead")
    parser.add_argument("--tokens", type=int, default=None, help="visual tokens (default: the model's maximum)")
    parser.add_argument("--lone", type=int, default=20, help="one-object scenes for the match scores (0: skip)")
    parser.add_argument("--probe", type=int, default=0, metavar="SCENES",
                        help="fit linear attribute probes on the visual tokens of this many scenes of another "
                             "held-out split (seed 7) and score them on the diagnosed scenes (0: skip)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    _, predictor = predictor_from_arguments(args)
    report = diagnose(predictor, samples=args.samples, seed=args.seed, condition=args.condition,
                      visual_tokens=args.tokens, lone=args.lone, probe_samples=args.probe)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    single = report["single"]
    print(f"single-object prompts: {single['prompts']}  " + "  ".join(f"{o}={single[o]}" for o in OUTCOMES))
    for group in ("by_family", "by_target_size", "by_visible_share", "by_background"):
        for name, counts in report[group].items():
            print(f"  {name:<17}" + "  ".join(f"{o}={counts[o]}" for o in OUTCOMES))
    print(f"mask IoU when right: {report['mask_iou_when_right']}")
    print(f"plural prompts: {report['plural']}")
    print("absent prompts: " + "  ".join(f"{o}={n}" for o, n in report["absent"].items()))
    for side_name, cells in (report["attribute_readout"] or {}).items():
        print(f"attribute heads on {side_name}: " + "  ".join(f"{name} {value}" for name, value in cells.items()))
    print(f"lone objects: {report['lone_objects']}")
    if report["linear_probes"]:
        print(f"linear probes on object-owning visual tokens: {report['linear_probes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
