"""Per-condition evaluation: ``ros-pgpt eval --conditions [NAMES]``.

Each condition is a held-out set of its own: scenes from a seed range that
neither training nor the plain held-out split (``evaluate.EVAL_SEED_BASE``)
draws from, one range per condition. Scene conditions change the generator
(photographs held out of training, occlusion and frame borders, clutter with
distractors, camera effects, resolutions not trained, sizes across the whole
range); prompt conditions keep the plain scenes and change the words
(``user_wording``; held-out TEST synonyms, ``data.held_out_words.with_test_synonyms``)
or ask about things outside the vocabulary (``unknown_concept_prompt``). Reported per condition, at the model's
largest visual-token count: single Acc@0.5, plural F1, absent "none" rate; for
unknown concepts, how often an object is returned.

The prompt conditions pass the changed prompt to the predictor as it is: any
normalisation of the user's words belongs to the model's input path, so this
measures whatever the predictor does with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ros_pgpt.data.camera import HELD_OUT_PHOTOS
from ros_pgpt.data.held_out_words import with_test_synonyms
from ros_pgpt.data.scenes import COLOURS, SHAPES, SINGLE_TEMPLATES, SIZES, SceneGenerator
from ros_pgpt.training.metrics import Tally, ratio

#: far above the plain held-out split (EVAL_SEED_BASE + seed * 100_000 + index, 10**12)
CONDITION_SEED_BASE = 2 * 10**12
CONDITION_STRIDE = 10**9  # one seed range per condition
QUERIES_PER_SCENE = 4


# --------------------------------------------------------------------------- prompt changes

_COLOUR_OR_SIZE = "|".join(SIZES + tuple(COLOURS))
_NOUNS = "|".join(SHAPES + ("object",))


def user_wording(prompt: str, rng: np.random.Generator) -> str | None:
    """The prompt as a person might type it: one to three of word order ("the circle that is red"),
    "where's", no article, "please"/filler, casing and punctuation. None when it holds a <box>."""
    if "<box>" in prompt:
        return None
    changes = ["order", "contraction", "article", "polite", "case", "punctuation"]
    chosen = set(rng.choice(changes, size=int(rng.integers(1, 4)), replace=False))
    text, mark = prompt.removesuffix("?"), "?" if prompt.endswith("?") else ""
    if "order" in chosen:  # "the red circle" -> "the circle that is red" (the phrase ends the prompt)
        text = re.sub(rf"\bthe ((?:(?:{_COLOUR_OR_SIZE}) )+)({_NOUNS})$",
                      lambda m: f"the {m[2]} that is {' and '.join(m[1].split())}", text)
    if "contraction" in chosen:
        text = text.replace("where is ", "where's ").replace("can you find ", "can u find ")
    if "article" in chosen:
        text = re.sub(r"\bthe ", "", text)
    if "polite" in chosen:
        fillers = ["please {}", "{} please", "{}, please", "hey, {}"]
        if re.match(r"(find|locate|show|point|segment) ", text):
            fillers.append("could you {}")
        elif not text.startswith(("where", "can ")):
            fillers.append("i'm looking for {}")
        text = str(rng.choice(fillers)).format(text)
    if "case" in chosen:
        text = str(rng.choice([text.capitalize(), text.upper(), text.title()]))
    if "punctuation" in chosen:
        mark = str(rng.choice(["?", ".", "!", " ?", "??", ""] if mark else [".", "!", "?", ""]))
    return text + mark


#: things a user may ask about that no scene holds and the model was never told about
UNKNOWN_CONCEPTS: tuple[str, ...] = (
    "person", "coffee mug", "dog", "cat", "car", "bottle", "chair", "laptop", "cup", "phone", "banana",
    "bicycle", "tree", "book", "keyboard", "apple", "face", "clock", "spoon", "shoe",
)


def unknown_concept_prompt(rng: np.random.Generator) -> str:
    """A prompt about an unknown thing, a third of them with a known colour ("the red car")."""
    concept = str(rng.choice(UNKNOWN_CONCEPTS))
    if rng.random() < 1 / 3:
        concept = f"{rng.choice(tuple(COLOURS))} {concept}"
    return str(rng.choice(SINGLE_TEMPLATES)).format("the " + concept)


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Condition:
    name: str
    description: str
    seed: int  # this condition's seed range; never reuse one for another condition
    scenes: dict = field(default_factory=dict)  # SceneGenerator options
    #: (prompt, rng) -> the prompt asked instead, or None to leave the query out
    prompts: Callable[[str, np.random.Generator], str | None] | None = None
    unknown: bool = False  # ask unknown_concept_prompt()s instead of the scene's queries


CONDITIONS: tuple[Condition, ...] = (
    Condition("clean", "default scenes, a seed range of their own", 1),
    Condition("photos", "held-out photographs as backgrounds", 2,
              {"photo_backgrounds": 1.0, "photos": HELD_OUT_PHOTOS}),
    Condition("occlusion", "objects on each other and cut by the frame border", 3,
              {"occlusion": 0.6, "truncation": 0.35}),
    Condition("clutter", "8-11 objects, about 30 % distractors", 4,
              {"min_objects": 8, "max_objects": 11, "distractors": 0.3}),
    Condition("camera", "exposure, colour cast, noise, blur, JPEG", 5, {"camera_effects": 1.0}),
    Condition("resolutions", "320x240, 800x600, 1024x768, 1920x1080 (not trained)", 6,
              {"resolutions": ((320, 240), (800, 600), (1024, 768), (1920, 1080))}),
    Condition("sizes", "object sizes across the whole range", 7, {"whole_size_range": 1.0}),
    Condition("wording", "user wording: order, where's, no article, please, casing, punctuation", 8,
              prompts=user_wording),
    Condition("synonyms", "only held-out synonyms of colour, shape and size words", 9, prompts=with_test_synonyms),
    Condition("unknown", "unknown concepts (person, coffee mug, dog...), half on held-out photographs", 10,
              {"photo_backgrounds": 0.5, "photos": HELD_OUT_PHOTOS}, unknown=True),
)
CONDITION_NAMES = tuple(c.name for c in CONDITIONS)


def condition_samples(condition: Condition, samples: int, *, seed: int = 0):
    """Yield (index, Sample) of one condition's held-out set; the same for every evaluation."""
    generator = SceneGenerator(**condition.scenes)
    first = CONDITION_SEED_BASE + condition.seed * CONDITION_STRIDE + seed * 100_000
    for index in range(samples):
        yield index, generator.sample(first + index, n_queries=QUERIES_PER_SCENE)


def _prompt_rng(condition: Condition, index: int, seed: int) -> np.random.Generator:
    """The generator that words a condition's prompts on scene ``index``: the same for every evaluation."""
    return np.random.default_rng([condition.seed, seed, index])


def asked_prompts(condition: Condition, sample, index: int, *, seed: int = 0):
    """Yield (query, the prompt asked for it, or None where the condition leaves it out) for each of a
    sample's queries: the same prompts for every evaluation of a condition."""
    rng = _prompt_rng(condition, index, seed)
    for query in sample.queries:
        yield query, condition.prompts(query.prompt, rng) if condition.prompts else query.prompt


def ground_or_refuse(predictor, prompt: str, **options):
    """(result, refused): a prompt with words the model does not know is refused, i.e. answered with nothing."""
    from ros_pgpt.inference.predictor import GroundingResult
    from ros_pgpt.data.wording import UnknownWords

    try:
        return predictor.ground(None, prompt, **options), False
    except UnknownWords:
        return GroundingResult(prompt=prompt, answer="", objects=[], visual_tokens=0, frame_cached=True), True


def evaluate_condition(predictor, condition: Condition, *, samples: int, visual_tokens: int, seed: int = 0) -> dict:

    tally = Tally()
    unknown = {"plain": [0, 0], "photo": [0, 0]}  # background -> [answered with an object, asked]
    skipped = refused = 0
    for index, sample in condition_samples(condition, samples, seed=seed):
        scene = sample.scene
        predictor.set_image(scene.image, key=("conditions", condition.name, seed, index))
        if condition.unknown:
            rng = _prompt_rng(condition, index, seed)
            side = unknown["photo" if scene.background.startswith("photo:") else "plain"]
            for _ in range(QUERIES_PER_SCENE):
                result, was_refused = ground_or_refuse(predictor, unknown_concept_prompt(rng),
                                                       visual_tokens=visual_tokens, masks=False)
                side[0] += bool(result.objects)
                refused += was_refused
                side[1] += 1
            continue
        for query, prompt in asked_prompts(condition, sample, index, seed=seed):
            if prompt is None:
                skipped += 1
                continue
            result, was_refused = ground_or_refuse(predictor, prompt, visual_tokens=visual_tokens, masks=True,
                                                   boxes=query.input_boxes)
            refused += was_refused
            tally.add(scene, query, result)
    if condition.unknown:
        asked = sum(n for _, n in unknown.values())
        return {"object_rate": ratio(sum(a for a, _ in unknown.values()), asked),
                "object_rate_plain": ratio(*unknown["plain"]), "object_rate_photo": ratio(*unknown["photo"]),
                "counts": {"prompts": asked, "plain": unknown["plain"][1], "photo": unknown["photo"][1],
                           "refused": refused}}
    summary = tally.summary()
    summary["counts"].update(skipped=skipped, refused=refused)
    return summary


def evaluate_conditions(predictor, names, *, samples: int, visual_tokens: int, seed: int = 0, progress=None) -> dict:
    """{condition name: metrics} for the named conditions (in CONDITIONS' order)."""
    import time

    unknown = set(names) - set(CONDITION_NAMES)
    if unknown:
        raise ValueError(f"unknown conditions {sorted(unknown)}; known: {', '.join(CONDITION_NAMES)}")
    results = {}
    for condition in CONDITIONS:
        if condition.name in names:
            started = time.perf_counter()
            results[condition.name] = evaluate_condition(predictor, condition, samples=samples,
                                                         visual_tokens=visual_tokens, seed=seed)
            results[condition.name]["wall_s"] = round(time.perf_counter() - started, 1)
            if progress:
                progress(condition.name, results[condition.name])
    return results


def conditions_table(results: dict) -> str:
    """A Markdown table: one row per condition."""
    def cell(value):
        return "–" if value is None else f"{value:.3f}"

    descriptions = {c.name: c.description for c in CONDITIONS}
    lines = ["| condition | single Acc@0.5 | plural F1 | absent \"none\" | unknown: object returned | "
             "counted (single / plural targets / absent) |", "|---|---|---|---|---|---|"]
    for name, metrics in results.items():
        counts = metrics["counts"]
        if "object_rate" in metrics:
            row = ["–", "–", "–", f"{cell(metrics['object_rate'])} (plain {cell(metrics['object_rate_plain'])}, "
                   f"photo {cell(metrics['object_rate_photo'])})", f"{counts['prompts']} prompts"]
        else:
            row = [cell(metrics["acc50"]), cell(metrics["plural_f1"]), cell(metrics["absent_acc"]), "–",
                   f"{counts['single']} / {counts['plural_targets']} / {counts['absent']}"]
        lines.append(f"| {name}: {descriptions[name]} | " + " | ".join(row) + " |")
    return "\n".join(lines)
