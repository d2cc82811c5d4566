"""Words for results: an object's phrase from its prompt, and a readable answer.

The model answers with perception tokens (``<obj><obj>``), not words, so the
words a result carries come from the prompt:

* ``object_phrase(prompt)``: the noun phrase the prompt asks for, in the
  singular, without the request around it: "where are all the red stars?" ->
  "red star", "point to every shape" -> "shape", "the star left of the blue
  circle" -> "star left of the blue circle";
* ``readable_answer(answer, phrase, count)``: the model's answer with the
  perception tokens removed; where nothing else is left, "none" or
  "2 objects: red star".

A few rules for the request forms people (and the training data,
``ros_pgpt/data/PHRASING.md``) use, not a parser: a prompt they do not fit
keeps its words.
"""
from __future__ import annotations

import re

from ros_pgpt.data.prompts import normalize_prompt

# Requests around the noun phrase, longest first so "can you find" wins over "find".
_REQUESTS = ('can you find', 'can you show me', 'can you see', 'please find', 'where is', 'where are',
             'show me', 'point to', 'point at', 'find', 'locate', 'segment', 'detect', 'highlight')
_DETERMINERS = ('all of the', 'all the', 'all', 'every', 'each', 'any', 'the', 'a', 'an')
# The special tokens of the model's vocabulary (ros_pgpt.model.language_model.SPECIAL_TOKENS): not words.
_TOKEN = re.compile(r'<(?:pad|bos|eos|/?image|answer|obj|box)>')


def _strip_prefix(text: str, prefixes) -> str:
    for prefix in prefixes:
        if text == prefix or text.startswith(prefix + ' '):
            return text[len(prefix):].lstrip()
    return text


def singular(word: str) -> str:
    """A regular English plural's singular ("stars" -> "star", "boxes" -> "box"); other words unchanged."""
    if len(word) <= 3 or not word.endswith('s') or word.endswith(('ss', 'us', 'is')):
        return word
    if word.endswith('ies'):
        return word[:-3] + 'y'
    if word.endswith(('ches', 'shes', 'xes', 'sses')):
        return word[:-2]
    return word[:-1]


def object_phrase(prompt: str) -> str:
    """The words each object of ``prompt`` answers (see the module docstring)."""
    text = normalize_prompt(prompt).rstrip('?.!').strip()
    text = _strip_prefix(text, _REQUESTS)
    text = _strip_prefix(text, _DETERMINERS)
    words = text.split()
    if not words:
        return normalize_prompt(prompt).rstrip('?.!').strip()
    # The head noun is the last word before a relation ("star" in "stars left of the circle").
    for i, word in enumerate(words):
        if i and word in ('left', 'right', 'above', 'below', 'near', 'next', 'in', 'on', 'inside', 'with'):
            words[i - 1] = singular(words[i - 1])
            break
    else:
        words[-1] = singular(words[-1])
    return ' '.join(words)


def readable_answer(answer: str, phrase: str, count: int) -> str:
    """The model's ``answer`` without perception tokens; "none" / "N object(s): phrase" when nothing else is left."""
    words = ' '.join(_TOKEN.sub(' ', answer).split())
    if words:
        return words
    if count == 0:
        return 'none'
    return f'{count} object{"" if count == 1 else "s"}: {phrase}'
