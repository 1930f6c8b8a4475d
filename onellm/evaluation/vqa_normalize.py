"""Answer normalisation of the official VQA evaluation (``vqaEval.py`` of the VQA API), written from its rules.

The official script normalises an answer in two steps:

1. ``process_punctuation``: each character of a fixed punctuation list is deleted if the answer has it next to a
   space (``"p "`` / ``" p"``) or contains a digit-comma-digit group (``1,000``), and is otherwise replaced by a
   space (so ``t-shirt`` -> ``t shirt``); then every period not followed by a digit is deleted (``yes.`` ->
   ``yes``, ``3.5`` kept).
2. ``process_digit_article``: lowercase, split on whitespace, map number words ``zero``..``ten`` (and ``none``)
   to digits, drop the articles ``a``/``an``/``the``, restore apostrophes of contractions (``dont`` ->
   ``don't``), join with single spaces.

Quirks of the original that are kept on purpose, so that scores match it:
* the period regex is ``(?!<=\\d)(\\.)(?!\\d)`` -- a mistyped lookbehind that is really a (vacuous) lookahead,
  so only "not followed by a digit" matters -- and it is applied with ``count=re.UNICODE`` (= 32) because the
  original passes the flag in the ``count`` position: at most 32 periods are removed;
* the apostrophe and ``.``/``:`` are not in the punctuation list; ``'`` survives, which is why ``dont`` is
  mapped to ``don't`` rather than the other way round;
* a few contraction keys have capitals (``Im``, ``Ive``, ``Id've``) and can never match after lowercasing.
"""
from __future__ import annotations

import re

__all__ = ["CONTRACTIONS", "MANUAL_MAP", "ARTICLES", "PUNCTUATION", "process_punctuation",
           "process_digit_article", "vqa_normalize"]

# Contraction written without apostrophe (as annotators typed it) -> canonical form with apostrophe.
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}

# Number words -> digits ("none" counts as zero, as in the official map).
MANUAL_MAP: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# Order matters only for readability; every character is processed independently.
PUNCTUATION: tuple[str, ...] = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
                                "@", "`", ",", "?", "!")

# Mistyped lookbehind kept verbatim (see module docstring): effectively "a period not followed by a digit".
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# The original calls ``periodStrip.sub("", text, re.UNICODE)``: the flag lands in ``count``.
_PERIOD_STRIP_COUNT = int(re.UNICODE)


def process_punctuation(text: str) -> str:
    """Delete or space out punctuation exactly like ``vqaEval.processPunctuation``."""
    out = text
    has_digit_comma = _COMMA_STRIP.search(text) is not None
    for p in PUNCTUATION:
        # The condition looks at the *input* text, not the partially processed one, as in the original.
        if (p + " " in text or " " + p in text) or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """Lowercase, number words -> digits, drop articles, restore contractions (``vqaEval.processDigitArticle``)."""
    words = [MANUAL_MAP.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def vqa_normalize(answer: str) -> str:
    """Full official normalisation of one answer: newline/tab -> space, strip, punctuation, digits/articles.

    Example:
        >>> vqa_normalize("Two dogs.")
        '2 dogs'
        >>> vqa_normalize("1,000")
        '1000'
    """
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))
