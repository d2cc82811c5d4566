"""From a prompt as people type it to the phrasing the model was trained on.

    canonical_prompt("Where's the circle that is red, please?")  ->  "where is the red circle?"
    canonical_prompt("could you find the crimson circle")        ->  "can you find the red circle?"
    known_prompt("find the dog")  raises  UnknownWords(["dog"])

The default model has only seen the generator's language (``ros_pgpt/data/PHRASING.md``).
``canonical_prompt`` rewrites what a person types onto it: any casing and
punctuation, politeness and filler ("please", "could you", "i need", "thanks"),
contractions ("where's"), missing articles ("find red star"), plurals ("red
stars"), attributes after the noun ("the circle that is red", "the star which
is small and blue"), position phrases ("the circle on the far left"), and
colour, shape and size words the model never saw ("crimson", "ball", "huge")
through a table derived offline from WordNet and the xkcd colour survey (``ros_pgpt/data/synonyms.json``,
written by ``scripts/build_synonyms.py``). It is the identity on every prompt the
generator makes (``tests/test_wording.py`` checks thousands), and it runs in
``ros_pgpt.data.prompts.encode_prompt``, so training, every backend and the node
see the same text. ``known_prompt`` also refuses, with ``UnknownWords``,
a prompt whose canonical form still holds a word the model has never seen:
such a prompt asks about something the model cannot know ("the person", "the
coffee mug"), and an answer to it would be a guess.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from ros_pgpt.data.scenes import (
    COLOURS,
    DESCRIBE_TEMPLATES,
    PLURAL_NOUNS,
    PLURAL_TEMPLATES,
    POSITION_WORDS,
    RELATION_WORDS,
    SHAPES,
    SINGLE_TEMPLATES,
    SINGULAR_NOUNS,
    SIZES,
)

__all__ = ["KNOWN_WORDS", "UnknownWords", "canonical_prompt", "known_prompt", "unknown_words",
           "SYNONYMS_FILE", "synonym_table", "VOCABULARY_DOC"]

BOX = "<box>"
VOCABULARY_DOC = "ros_pgpt/data/PHRASING.md"
SYNONYMS_FILE = Path(__file__).resolve().parent / "synonyms.json"

_GENERIC = ("object", "shape")  # nouns that name no shape
_TEMPLATE_WORDS = {word for template in SINGLE_TEMPLATES + PLURAL_TEMPLATES + DESCRIBE_TEMPLATES
                   for word in re.findall(r"[a-z<>-]+", template.replace("{}", " "))}
#: Every word of the generator's prompts: the words the model knows.
KNOWN_WORDS: frozenset[str] = frozenset(
    {"the", "all", "every", BOX} | _TEMPLATE_WORDS | set(COLOURS) | set(SIZES) | set(POSITION_WORDS)
    | set(PLURAL_NOUNS) | set(PLURAL_NOUNS.values())
    | {word for relation in RELATION_WORDS for word in relation.split()})


class UnknownWords(ValueError):
    """The prompt uses words the model has never seen; it cannot answer it.

    ``words``: those words in the order they appear; ``prompt``: the prompt as given.
    """

    #: How its message starts, in the node's Query response too (clients tell a refusal by it).
    PREFIX = "unknown words: "

    def __init__(self, words: list[str], prompt: str) -> None:
        self.words = list(words)
        self.prompt = prompt
        named = ", ".join(repr(word) for word in self.words)
        super().__init__(f"{self.PREFIX}{named}. The model knows only the words listed in {VOCABULARY_DOC} "
                         f"(colours {', '.join(COLOURS)}; shapes {', '.join(SHAPES)}; sizes "
                         f"{', '.join(SIZES)}); it cannot find what it has no word for")


# ---------------------------------------------------------------------------- words

_CONTRACTIONS = {
    "where's": "where is", "wheres": "where is", "what's": "what is", "whats": "what is",
    "that's": "that is", "thats": "that is", "it's": "it is", "there's": "there is",
    "which's": "which is", "i'd": "i would", "i'm": "i am", "im": "i am", "can't": "cannot",
    "where're": "where are", "they're": "they are", "you're": "you are",
}
# Multi-word phrases (longest first) -> their canonical words. "" drops the phrase.
_PHRASES = {
    # relations
    "to the left of": "left of", "on the left of": "left of", "on the left side of": "left of",
    "to the left side of": "left of", "at the left of": "left of", "left side of": "left of",
    "to the right of": "right of", "on the right of": "right of", "on the right side of": "right of",
    "to the right side of": "right of", "at the right of": "right of", "right side of": "right of",
    # superlatives (a phrase after the noun, or a spelling of the word)
    "left-most": "leftmost", "left most": "leftmost", "most left": "leftmost", "furthest left": "leftmost",
    "farthest left": "leftmost", "furthest to the left": "leftmost", "farthest to the left": "leftmost",
    "on the far left": "leftmost", "at the far left": "leftmost", "to the far left": "leftmost",
    "on the left": "leftmost", "at the left": "leftmost",
    "right-most": "rightmost", "right most": "rightmost", "most right": "rightmost",
    "furthest right": "rightmost", "farthest right": "rightmost", "furthest to the right": "rightmost",
    "farthest to the right": "rightmost", "on the far right": "rightmost", "at the far right": "rightmost",
    "to the far right": "rightmost", "on the right": "rightmost", "at the right": "rightmost",
    "top-most": "topmost", "top most": "topmost", "uppermost": "topmost", "upper-most": "topmost",
    "highest": "topmost", "at the top": "topmost", "on top": "topmost", "at the very top": "topmost",
    "bottommost": "bottom-most", "bottom most": "bottom-most", "lowermost": "bottom-most",
    "lower-most": "bottom-most", "lowest": "bottom-most", "at the bottom": "bottom-most",
    "at the very bottom": "bottom-most",
    # requests -> a trained verb (trained ones map to themselves, so that no shorter phrase eats them)
    "can you find": "can you find", "could you find": "can you find", "would you find": "can you find",
    "will you find": "can you find", "can you locate": "locate", "could you locate": "locate",
    "i am looking for": "find", "looking for": "find", "look for": "find",
    "search for": "find", "give me": "find", "show me": "show me", "show": "show me", "display": "show me",
    "point to": "point to", "point at": "point to", "point out": "point to", "tell me where": "where",
    "is there": "find", "are there": "find", "mark": "find", "highlight": "find", "detect": "find",
    "spot": "find", "get": "find", "select": "find", "outline": "segment", "mask": "segment",
    # politeness and filler
    "thank you": "", "thanks": "", "please": "", "pls": "", "plz": "", "kindly": "", "hey": "", "hi": "",
    "hello": "", "ok": "", "okay": "", "robot": "", "now": "", "just": "", "quickly": "", "for me": "",
    "i need": "", "i want": "", "i would like": "", "i would like you to": "", "i want you to": "",
    "i need you to": "", "help me": "", "try to": "", "go ahead and": "", "can you": "", "could you": "",
    "would you": "", "will you": "", "do you see": "find", "can you see": "find", "where can i find": "where",
}
_PHRASE_PATTERN = re.compile(
    r"(?<![\w<>-])(" + "|".join(re.escape(p) for p in sorted(_PHRASES, key=len, reverse=True)) + r")(?![\w<>-])")
# Words inside a noun phrase that carry nothing the canonical form needs.
_LINKS = {"that", "which", "is", "are", "and", "in", "coloured", "colored", "colour", "color", "of", "with",
          "shaped", "a", "an", "the"}
_ONE = {"one": "object", "ones": "objects", "thing": "object", "things": "objects", "item": "object",
        "items": "objects"}
_DETERMINERS = {"the": "the", "a": "the", "an": "the", "this": "the", "that": "the", "all": "all",
                "every": "every", "each": "every", "any": "all", "both": "all", "these": "all", "those": "all"}
# Words of a describe request ("what is in <box>?") besides the box; "describe" picks that template.
_DESCRIBE_WORDS = {"what", "which", "is", "in", "inside", "the", "this", "that", "object", "thing", "shape",
                   "there", "at", "describe", "identify", "tell", "me", "about", "do", "you", "see", "here",
                   "region", "area", "box", "within", "kind", "of", "a"}


def _words(text: str) -> list[str]:
    """Lower-case words; "<box>" and hyphenated words stay whole, punctuation goes."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"([a-z])-\s*shaped\b", r"\1 shaped", text)
    words = re.findall(r"<box>|[a-z]+(?:['-][a-z]+)*", text)
    return " ".join(_CONTRACTIONS.get(word, word) for word in words).split()


def _replace_phrases(words: list[str]) -> list[str]:
    text = _PHRASE_PATTERN.sub(lambda m: _PHRASES[m.group(1)], " ".join(words))
    # "on the left"/"at the top" are superlatives, but "... left of ..." is a relation: restore those.
    text = re.sub(r"\b(leftmost|rightmost) of\b", lambda m: m.group(1)[:-4] + " of", text)
    return text.split()


@lru_cache(maxsize=1)
def synonym_table() -> dict[str, str]:
    """Held-out word -> known word, as derived by scripts/build_synonyms.py (empty without the file)."""
    if not SYNONYMS_FILE.is_file():
        return {}
    return dict(json.loads(SYNONYMS_FILE.read_text())["synonyms"])


def _kind(word: str) -> str | None:
    if word in COLOURS:
        return "colour"
    if word in SIZES:
        return "size"
    if word in SHAPES or word in SINGULAR_NOUNS or word in _GENERIC or word in _ONE:
        return "noun"
    if word in POSITION_WORDS:
        return "position"
    return None


# ---------------------------------------------------------------------------- noun phrases

def _synonym(word: str, synonyms: dict[str, str]) -> str | None:
    """The known word a synonym stands for; a plural of a noun synonym ("balls" for "ball") -> the plural."""
    if word in synonyms:
        return synonyms[word]
    for ending in ("s", "es"):
        singular = synonyms.get(word[:-len(ending)]) if word.endswith(ending) else None
        if singular in PLURAL_NOUNS:
            return PLURAL_NOUNS[singular]
    return None


def _names_no_shape(word: str) -> bool:
    """"object", "things", "ones": a noun the model reads as any shape."""
    noun = _ONE.get(word, word)
    return SINGULAR_NOUNS.get(noun, noun) in _GENERIC


def _noun_phrase(words: list[str], force_plural: bool = False) -> str | None:
    """Words of one noun phrase -> its canonical form ("the small red star", "all the circles"), or None."""
    words = list(words)
    quantity = None
    while words and words[0] in _DETERMINERS:
        word = words.pop(0)
        quantity = _DETERMINERS[word] if quantity in (None, "the") else quantity
    synonyms = synonym_table()
    size = colour = position = head = None
    plural = force_plural
    # The noun's place is the last content word before "that"/"which": a synonym maps to a shape only there or
    # before a noun that names no shape ("the round blue object"), and to a colour or size only elsewhere
    # ("the ball that is crimson"): "the banana" is no colour.
    clause = next((i for i, w in enumerate(words) if w in ("that", "which")), len(words))
    noun_place = max((i for i, w in enumerate(words[:clause]) if w not in _LINKS), default=-1)
    shapeless_noun = noun_place >= 0 and _names_no_shape(words[noun_place])
    for index, word in enumerate(words):
        if word in _LINKS:
            continue
        kind = _kind(word)
        mapped = _synonym(word, synonyms) if kind is None else None
        if mapped and _kind(mapped) == "noun":
            if index == noun_place or shapeless_noun:
                word, kind = mapped, "noun"
        elif mapped and (index != noun_place or head is not None):
            word, kind = mapped, _kind(mapped)
        if kind == "colour" and colour in (None, word):
            colour = word
        elif kind == "size" and size in (None, word):
            size = word
        elif kind == "position" and position in (None, word):
            position = word
        elif kind == "noun":
            noun = _ONE.get(word, word)
            plural = plural or noun in SINGULAR_NOUNS
            noun = SINGULAR_NOUNS.get(noun, noun)
            if head is not None and head not in _GENERIC and noun not in _GENERIC:
                return None  # two shapes
            if head is None or noun not in _GENERIC:  # a shape names it better: "the star shaped object"
                head = noun
        else:
            return None
    if head is None and size is None and colour is None:
        return None
    head = head or "object"
    if quantity in ("all", "every") or plural:
        if position is not None:
            return None
        if quantity == "every":
            return "every " + " ".join(w for w in (size, colour, head) if w)
        return "all the " + " ".join(w for w in (size, colour, PLURAL_NOUNS[head]) if w)
    if head == "shape":  # singular "shape" is never generated; "object" means the same
        head = "object"
    return "the " + " ".join(w for w in (position, size, colour, head) if w)


def _expression(words: list[str]) -> str | None:
    """A referring expression: a noun phrase, optionally "left of"/"right of" another one or a <box>."""
    for relation in RELATION_WORDS:
        first, second = relation.split()
        for i in range(1, len(words) - 2):
            if words[i] == first and words[i + 1] == second:
                target = _noun_phrase(words[:i])
                rest = words[i + 2:]
                reference = BOX if rest == [BOX] else _noun_phrase(rest)
                if target is None or reference is None or not target.startswith("the "):
                    return None
                if reference != BOX and not reference.startswith("the "):
                    return None
                return f"{target} {relation} {reference}"
    if BOX in words:
        return None
    return _noun_phrase(words)


# ---------------------------------------------------------------------------- whole prompts

_VERBS = {"find": "find {}", "locate": "locate {}", "segment": "segment {}", "show me": "show me {}",
          "point to": "point to {}", "can you find": "can you find {}?", "where": "where is {}?"}


def _describe(words: list[str]) -> str | None:
    if words.count(BOX) != 1 or not set(words) <= _DESCRIBE_WORDS | {BOX}:
        return None
    if words[0] == "describe" or "identify" in words or "tell" in words:
        return "describe <box>"
    if "inside" in words:
        return "what is inside <box>?"
    if {"object", "thing", "shape"} & set(words):
        return "what object is in <box>?"
    return "what is in <box>?"


def _request(words: list[str]) -> str | None:
    """Words after the phrase replacement -> the canonical prompt, or None where they do not parse."""
    if not words:
        return None
    verb = None
    joined = " ".join(words)
    for key in sorted(_VERBS, key=len, reverse=True):
        if joined == key or joined.startswith(key + " "):
            verb, words = key, words[len(key.split()):]
            break
    if verb == "where":
        if words and words[0] in ("is", "are"):
            words = words[1:]
        if words and words[-1] in ("is", "are"):  # "tell me where the red star is"
            words = words[:-1]
    expression = _expression(words)
    if expression is None:
        return _describe(words)
    template = _VERBS.get(verb, "{}")
    if not expression.startswith("the "):  # plural: only the plural templates ("where are" with "all the")
        if verb == "where":
            template = "where are {}?"
            if expression.startswith("every "):
                expression = _noun_phrase(["all"] + expression.split()[1:], force_plural=True)
        elif template not in PLURAL_TEMPLATES:
            template = "find {}"
    return template.format(expression)


def canonical_prompt(text: str) -> str:
    """The trained phrasing of ``text`` (PHRASING.md); the identity on every prompt the generator makes.

    Where the wording cannot be parsed it returns the prompt's words, lower-case, with contractions
    expanded and politeness dropped; ``known_prompt`` then decides whether the model knows them.
    """
    words = _replace_phrases(_words(text))
    canonical = _request(words)
    # Unparsed wording keeps its own words (no synonym mapped out of place): the vocabulary check judges them.
    return " ".join(words) if canonical is None else canonical


def unknown_words(text: str) -> list[str]:
    """Words of ``canonical_prompt(text)`` the model has never seen, in order, each once."""
    return _unknown(canonical_prompt(text))


def _unknown(canonical: str) -> list[str]:
    return list(dict.fromkeys(w for w in canonical.replace("?", " ").split() if w not in KNOWN_WORDS))


def known_prompt(text: str) -> str:
    """``canonical_prompt(text)``, or ``UnknownWords`` when it still holds words the model has never seen."""
    canonical = canonical_prompt(text)
    unknown = _unknown(canonical)
    if unknown:
        raise UnknownWords(unknown, text)
    return canonical


EXIT_UNKNOWN_WORDS = 4  # exit status of ``ros-pgpt query`` and ``ros-pgpt wording`` on a refusal
