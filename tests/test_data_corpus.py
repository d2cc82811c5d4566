"""Tests for ros_pgpt.data.corpus.text_corpus."""
import re

from ros_pgpt.data import COLOURS, SHAPES
from ros_pgpt.data import scenes as S
from ros_pgpt.data.corpus import text_corpus


def test_corpus_deterministic_and_seed_dependent():
    a = text_corpus(50, seed=3)
    assert a == text_corpus(50, seed=3)
    assert a != text_corpus(50, seed=4)
    assert len(a) >= 200 and all(isinstance(s, str) and s for s in a)


def test_corpus_covers_vocabulary_and_answers():
    texts = text_corpus(400, seed=0)
    words = set(w for t in texts for w in re.findall(r"[a-z\-]+", t))
    for w in [*COLOURS, *SHAPES, "small", "large", "leftmost", "left", "right", "all", "every"]:
        assert w in words, w
    assert any("<box>" in t for t in texts)
    answers = {f"{z} {c} {s}" for z in ("small", "large") for c in COLOURS for s in SHAPES}
    assert any(t in answers for t in texts)
    # only generator vocabulary, nothing else leaks in
    known = set(COLOURS) | set(SHAPES) | set(S.PLURAL_NOUNS.values()) | set(S.PLURAL_NOUNS) | {
        "small", "large", "the", "all", "every", "left", "right", "of", "box",
        "leftmost", "rightmost", "topmost", "bottom-most"}
    for t in S.SINGLE_TEMPLATES + S.PLURAL_TEMPLATES + S.DESCRIBE_TEMPLATES:
        known |= set(re.findall(r"[a-z\-]+", t))
    assert words <= known, words - known
