"""Evaluation metrics of the OneLLM benchmarks (spec §5): pure functions on strings, no model.

* Captioning (COCO, NoCaps, Flickr30K, Clotho, VATEX, IMU, fMRI, point clouds): ``caption_metrics`` wraps
  pycocoevalcap the way the original ``caption_eval.py`` (``COCOEvalCap``) does: PTB tokenisation, then
  BLEU-1..4, METEOR, ROUGE-L, CIDEr and, where its jars are present, SPICE (+ SPIDEr).
* Open-ended VQA (VQAv2, OKVQA, TextVQA, VizWiz, ...): ``vqa_accuracy`` (soft accuracy over annotators).
* Short answers: ``exact_match``; MSVD-QA's own rule: ``lenient_match``.
* Multiple choice (ScienceQA, MMBench, SEED, NextQA, How2QA): ``extract_option_letter``, ``option_accuracy``.
* Zero-shot classification of a free answer: ``classification_accuracy`` (class names and plurals only); the
  NYUv2 / SUN RGB-D scene benchmarks use ``onellm.evaluation.scene``, which adds each label set's synonyms.

Scale: these functions return per-item scores and corpus metrics on their own 0..1 scale (pycocoevalcap's, CIDEr
may exceed 1); the benchmark scorers (``onellm.evaluation.benchmark``) multiply by 100, so every number a report
shows is a percentage, as in the paper's tables.

Java: pycocoevalcap's PTBTokenizer, METEOR and SPICE run ``java`` subprocesses. Without Java, METEOR and SPICE
are skipped with a warning and captions are tokenised by ``simple_ptb_tokenize`` (same tokens as the PTB
tokenizer on ordinary caption text). SPICE never downloads anything: pycocoevalcap's ``Spice()`` fetches Stanford
CoreNLP from the internet when ``lib/stanford-corenlp-3.6.0*.jar`` is missing, so we check the jars ourselves and
bypass that constructor.
"""
from __future__ import annotations

import math
import re
import shutil
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from onellm.evaluation.vqa_normalize import vqa_normalize

__all__ = [
    "caption_metrics", "vqa_accuracy", "exact_match", "lenient_match", "extract_option_letter",
    "option_accuracy", "classification_accuracy", "mean_metric", "java_available", "spice_available",
    "simple_ptb_tokenize",
]

# Jars SPICE needs next to pycocoevalcap/spice/spice.py; the two CoreNLP ones are what Spice() would download.
_SPICE_JAR = "spice-1.0.jar"
_CORENLP_JARS = ("lib/stanford-corenlp-3.6.0.jar", "lib/stanford-corenlp-3.6.0-models.jar")


# --------------------------------------------------------------------------------------------------------------
# Captioning
# --------------------------------------------------------------------------------------------------------------
def java_available() -> bool:
    """True when a ``java`` executable is on PATH (PTBTokenizer, METEOR and SPICE need it)."""
    return shutil.which("java") is not None


def _spice_dir() -> Path | None:
    try:
        import pycocoevalcap.spice as spice_pkg
    except ImportError:
        return None
    return Path(next(iter(spice_pkg.__path__)))


def spice_available() -> bool:
    """True when Java and all SPICE jars (SPICE itself and Stanford CoreNLP 3.6.0) are present locally."""
    d = _spice_dir()
    if d is None or not java_available():
        return False
    return all((d / name).is_file() for name in (_SPICE_JAR, *_CORENLP_JARS))


# PTBTokenizer output pieces that pycocoevalcap removes afterwards (its PUNCTUATIONS list). The bracket codes are
# listed in upper case there but the tokenizer runs with -lowerCase, so "-lrb-" etc. survive; we keep that quirk.
_PTB_DROPPED = frozenset({'"', "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":",
                          "-", "--", "...", ";"})
_PTB_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_LEADING = ('"', "'", "`", "(", "[", "{", "$")
# Trailing punctuation; a run of "!"/"?" is one PTB token ("!!!", "!?"), which pycocoevalcap then keeps.
_TRAILING = re.compile(r"(\.\.\.|[!?]+|[\"')\]}.,;:])$")
_CLITICS = ("n't", "'s", "'m", "'re", "'ve", "'ll", "'d")
_ABBREVIATION = re.compile(r"^(?:[a-z]\.)+$")  # "u.s.", "e.g." keep their final period, as in PTB
# The PTB lexer makes every "%" a token of its own ("50%" -> "50 %", "x%y" -> "x % y"), and dashes in front of a
# letter are punctuation ("-cotton", and so "100%-cotton" -> "100 % cotton"); "-10" stays a number.
_PERCENT = re.compile(r"(%)")
_LEADING_DASHES = re.compile(r"^(-+)(?=[a-z])")


def simple_ptb_tokenize(text: str) -> str:
    """Tokenise one caption like pycocoevalcap's PTBTokenizer (+ punctuation removal), without Java.

    Lowercases, splits off surrounding punctuation and quotes, splits clitics (``don't`` -> ``do n't``,
    ``dog's`` -> ``dog 's``), maps brackets to ``-lrb-`` etc. and drops the punctuation tokens pycocoevalcap drops.
    Internal hyphens, periods and commas (``t-shirt``, ``3.5``, ``1,000``) stay inside their token. It matches the
    Java tokenizer on ordinary caption text; exotic input (URLs, emoticons, odd abbreviations) may differ.
    """
    out: list[str] = []
    words = [piece for raw in text.lower().split() for piece in _PERCENT.split(raw) if piece]
    for raw in words:
        if raw == "%":
            out.append(raw)
            continue
        head: list[str] = []
        tail: list[str] = []
        word = raw
        changed = True
        while word and changed:  # peel punctuation off both ends until nothing changes
            changed = False
            for p in _LEADING:
                if word.startswith(p) and len(word) > len(p):
                    head.append(p)
                    word = word[len(p):]
                    changed = True
            m = _LEADING_DASHES.match(word)
            if m:
                head.append(m.group(1))
                word = word[m.end():]
                changed = True
            m = _TRAILING.search(word)
            if m and m.start() > 0 and not (m.group() == "." and _ABBREVIATION.match(word)):
                tail.insert(0, m.group())
                word = word[: m.start()]
                changed = True
        pieces = [word]
        for c in _CLITICS:
            if word.endswith(c) and len(word) > len(c):
                pieces = [word[: -len(c)], c]
                break
        for tok in (*head, *pieces, *tail):
            tok = _PTB_BRACKETS.get(tok, tok)
            if tok and tok not in _PTB_DROPPED:
                out.append(tok)
    return " ".join(out)


def _tokenize(captions: dict[str, list[str]], use_java: bool) -> dict[str, list[str]]:
    """{id: [caption, ...]} -> {id: [tokenised caption, ...]}; PTBTokenizer when Java is there."""
    if not use_java:
        return {k: [simple_ptb_tokenize(c) for c in v] for k, v in captions.items()}
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # PTBTokenizer runs with -preserveLines and pairs output lines with inputs by position; it only replaces
    # "\n", so every other line break (\r, \u2028, ...) must go too or the pairing silently shifts.
    wrapped = {k: [{"caption": " ".join(c.splitlines())} for c in v] for k, v in captions.items()}
    tokenized = PTBTokenizer().tokenize(wrapped)
    if any(len(tokenized.get(k, [])) != len(v) for k, v in captions.items()):
        raise RuntimeError("PTBTokenizer returned a different number of captions than it was given")
    return tokenized


def _run_spice(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    from pycocoevalcap.spice.spice import Spice

    # Spice.__init__ only calls get_stanford_models(), which downloads CoreNLP when its jar is missing; the jars
    # were checked by spice_available(), so skip the constructor and never risk a network call.
    scorer = Spice.__new__(Spice)
    score, _ = scorer.compute_score(gts, res)
    return float(score)


def caption_metrics(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]],
                    spice: bool | None = None) -> dict[str, float]:
    """COCO caption metrics of ``predictions`` against ``references``, as ``COCOEvalCap`` computes them.

    Args:
        predictions: id -> generated caption. Only these ids are scored (like the original ``caption_eval.py``,
            which restricts the evaluation to the predicted image ids).
        references: id -> ground-truth captions (at least one each); extra ids are ignored.
        spice: True: compute SPICE (RuntimeError if Java or its jars are missing -- nothing is downloaded);
            False: skip it; None: compute it when ``spice_available()``.

    Returns:
        ``{"BLEU-1".."BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}`` (+ ``"SPICE"``, ``"SPIDEr"`` = mean of CIDEr and
        SPICE), floats on pycocoevalcap's 0..1 scale (CIDEr may exceed 1). Without Java, METEOR is omitted with a
        warning. Note that CIDEr's idf comes from the references of the scored ids, so it depends on the corpus.

    Example:
        caption_metrics({"1": "a dog on grass"}, {"1": ["a dog on the grass", "a brown dog"]})["CIDEr"]
    """
    if not predictions:
        raise ValueError("caption_metrics: no predictions to evaluate")
    ids = list(predictions)
    missing = [i for i in ids if i not in references]
    if missing:
        raise ValueError(f"caption_metrics: no references for prediction id(s) {missing[:10]}")
    for i in ids:
        if not isinstance(predictions[i], str):
            raise TypeError(f"caption_metrics: prediction for id {i!r} is not a string")
        refs = references[i]
        if isinstance(refs, str) or len(refs) == 0 or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"caption_metrics: references for id {i!r} must be a non-empty list of strings")

    use_java = java_available()
    if spice is None:
        spice = spice_available()
    elif spice and not spice_available():
        raise RuntimeError("SPICE requested but unavailable: it needs Java and, next to pycocoevalcap/spice/spice.py, "
                           f"{_SPICE_JAR} and {', '.join(_CORENLP_JARS)} (they are never downloaded here)")
    if not use_java:
        warnings.warn("java not found: METEOR is skipped and captions are tokenised without the PTB tokenizer",
                      RuntimeWarning, stacklevel=2)

    gts = _tokenize({i: list(references[i]) for i in ids}, use_java)
    res = _tokenize({i: [predictions[i]] for i in ids}, use_java)

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, value in enumerate(bleu, start=1):
        out[f"BLEU-{n}"] = float(value)
    if use_java:
        from pycocoevalcap.meteor.meteor import Meteor

        meteor = Meteor()
        try:
            out["METEOR"] = float(meteor.compute_score(gts, res)[0])
        finally:
            del meteor  # its __del__ closes the Java process now rather than at interpreter exit
    out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    out["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if spice:
        out["SPICE"] = _run_spice(gts, res)
        out["SPIDEr"] = (out["CIDEr"] + out["SPICE"]) / 2
    return out


# --------------------------------------------------------------------------------------------------------------
# Question answering
# --------------------------------------------------------------------------------------------------------------
def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA soft accuracy: mean over leave-one-out subsets of ``min(1, #matches among the others / 3)``.

    Normalisation, and how it differs between the references:

    * the current official ``vqaEval.py`` (GT-Vision-Lab/VQA, ``PythonEvaluationTools/vqaEvaluation``) always
      normalises the prediction fully (``processPunctuation`` + ``processDigitArticle``), but touches the ten
      ground-truth answers only when they are not all identical, and then applies ``processPunctuation`` alone
      (no lower-casing, no number words -> digits, no articles);
    * lmms-eval (``tasks/vqav2/utils.py``) also normalises the ground truth only when the ten answers differ, but
      then with both steps, and the prediction with both steps;
    * here: the prediction and every ground-truth answer, always, with both steps (``vqa_normalize``), and the
      same leave-one-out counting as both.

    We follow lmms-eval, not the official script, where the two differ: it is the rule behind the validation
    numbers current multimodal LLM papers report, and it is the one consistent with the published metric
    (visualqa.org/evaluation.html: the processing "is done for ground truth answers as well"); under the official
    code, a prediction "2" can never match annotators who typed "two" and "Two" (their digits are not mapped).
    Always normalising is the one deliberate departure from lmms-eval: when all ten answers are identical
    lmms-eval compares the normalised prediction with the raw answer, so a raw "T-shirt" x 10 could never be
    matched. VQAv2's released annotations are already in normal form, where the two rules give the same score;
    the test-dev / test-std numbers come from the EvalAI server either way.

    With 10 answers and k matches: k=0 -> 0, 1 -> 0.3, 2 -> 0.6, 3 -> 0.9, >=4 -> 1. With n answers the maximum is
    ``min(1, (n-1)/3)``. A single answer would always give 0 under leave-one-out, so for ``n == 1`` the result
    is the normalised exact match (0 or 1) -- single-reference data should rather use ``exact_match``.
    """
    if not answers:
        raise ValueError("vqa_accuracy: no ground-truth answers")
    pred = vqa_normalize(prediction)
    gts = [vqa_normalize(a) for a in answers]
    if len(gts) == 1:
        return float(gts[0] == pred)
    matches = sum(g == pred for g in gts)
    # Leaving out a matching answer leaves matches-1 matches among the others; leaving out another leaves matches.
    total = sum(min(1.0, (matches - (g == pred)) / 3) for g in gts)
    return total / len(gts)


def _normalize_short(text: str) -> str:
    text = " ".join(text.lower().split())
    return text.rstrip(".").rstrip()


def exact_match(prediction: str, answer: str) -> float:
    """1.0 if equal after lowercasing, stripping, removing trailing periods and collapsing whitespace."""
    return float(_normalize_short(prediction) == _normalize_short(answer))


def lenient_match(prediction: str, answer: str) -> float:
    """MSVD-QA rule of the original ``video_qa_msvd.py``: lower/strip, correct if one contains the other.

    The original counts an empty prediction as correct (``"" in gt``); here an empty prediction or answer scores 0.
    """
    pred, gt = prediction.lower().strip(), answer.lower().strip()
    if not pred or not gt:
        return 0.0
    return float(pred in gt or gt in pred)


# --------------------------------------------------------------------------------------------------------------
# Multiple choice
# --------------------------------------------------------------------------------------------------------------
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Whole response is a letter: "B", "(b)", "B.", "b)", "[C]", "B:".
_ONLY_LETTER = re.compile(r"^[\(\[]?([A-Za-z])[\)\]]?[\.\:\)]?$")
# Response starts with a labelled letter: "B. dog", "b) dog", "(B) dog", "B: dog".
_LEADING_LETTER = re.compile(r"^(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Za-z])[\.\):])(?:\s|$)")
# "The answer is B", "answer: (c)", "Option B", "correct choice is b."; a lowercase letter must be bracketed or
# followed by punctuation / end, so that "the answer is a dog" is not read as option A.
_KEYWORD_LETTER = re.compile(
    r"\b(?:answer|option|choice)\b(?:\s+(?:is|would be|should be))?\s*[:\-]?\s*"
    r"(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Z])\b(?!')|([a-z])(?=[\.\):,;]|$))")
# Fallback: standalone capital letters ("I think B is right"); "(b)" in any case.
_STANDALONE_LETTER = re.compile(r"\(([A-Za-z])\)|(?<![\w'])([A-Z])(?![\w'])")
_OPTION_LABEL = re.compile(r"^\s*(?:\(([A-Za-z])\)|([A-Za-z])[\.\):])\s+")


def _first_group(m: re.Match[str]) -> str:
    return next(g for g in m.groups() if g)


def _plain(text: str) -> str:
    """Lowercase, punctuation -> space, collapse whitespace (for matching option text)."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _longest_mention(text: str, names: Sequence[str]) -> int | None:
    """Index of the one name mentioned in ``text`` (word-bounded, plural -s/-es allowed), or None.

    Mentions nested inside a longer mention ("room" inside "living room") are ignored; if several different names
    remain, the text is ambiguous and None is returned.
    """
    spans: list[tuple[int, int, int]] = []
    for idx, name in enumerate(names):
        if not name:
            continue
        for m in re.finditer(r"(?<![a-z0-9])" + re.escape(name) + r"(?:s|es)?(?![a-z0-9])", text):
            spans.append((m.start(), m.end(), idx))
    kept = {idx for s, e, idx in spans
            if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for s2, e2, _ in spans)}
    # Two different names with the same text (duplicate classes) count as one.
    if len({names[i] for i in kept}) != 1:
        return None
    return min(kept)


def extract_option_letter(prediction: str, options: Sequence[str] | None = None) -> str | None:
    """The option letter a free-form answer chooses, upper case, or None.

    Tried in order: the whole answer is a letter (``"B"``, ``"(b)"``, ``"B."``); it starts with a labelled letter
    (``"b) dog"``); a keyword phrase (``"The answer is B"``, ``"Option (c)"``); exactly one distinct standalone
    capital letter (``"I think B"``; ``A``/``I`` followed by a lowercase word are read as words). With ``options``
    (option texts in letter order, optionally prefixed by their own label like ``"A. cat"``) letters beyond the
    number of options are ignored, and if no letter is found the answer is matched against the option texts:
    equal text, else the one option mentioned (longest mention wins when nested, e.g. "hot dog" over "dog").
    """
    text = prediction.strip()
    if not text:
        return None
    valid = _LETTERS[: len(options)] if options is not None else _LETTERS

    def ok(letter: str | None) -> str | None:
        return letter.upper() if letter and letter.upper() in valid else None

    for pattern in (_ONLY_LETTER, _LEADING_LETTER):
        m = pattern.match(text)
        if m and (letter := ok(_first_group(m))):
            return letter
    for m in _KEYWORD_LETTER.finditer(text):
        if letter := ok(_first_group(m)):
            return letter
    found: set[str] = set()
    for m in _STANDALONE_LETTER.finditer(text):
        letter = _first_group(m)
        # "A dog ..." / "I think ..." are words, not option letters.
        if m.group(2) in ("A", "I") and re.match(r"\s+[a-z]", text[m.end():]):
            continue
        if letter := ok(letter):
            found.add(letter)
    if len(found) == 1:
        return found.pop()

    if options:
        texts = []
        for i, opt in enumerate(options):
            m = _OPTION_LABEL.match(opt)
            if m and _first_group(m).upper() == _LETTERS[i]:
                opt = opt[m.end():]  # "A. cat" -> "cat"
            texts.append(_plain(opt))
        pred = _plain(text)
        if pred in texts:
            return _LETTERS[texts.index(pred)]
        idx = _longest_mention(pred, texts)
        if idx is not None:
            return _LETTERS[idx]
    return None


def option_accuracy(prediction: str, answer_letter: str, options: Sequence[str] | None = None) -> float:
    """1.0 if the letter extracted from ``prediction`` equals ``answer_letter`` ("B", "(B)", "b." all accepted)."""
    gt = answer_letter.strip().strip("()[].:").strip().upper()
    if len(gt) != 1 or gt not in _LETTERS:
        raise ValueError(f"option_accuracy: answer_letter {answer_letter!r} is not a single letter")
    return float(extract_option_letter(prediction, options) == gt)


# --------------------------------------------------------------------------------------------------------------
# Zero-shot classification
# --------------------------------------------------------------------------------------------------------------
def _class_norm(text: str) -> str:
    return _plain(text.replace("_", " "))


def classification_accuracy(prediction: str, label: str, classes: Sequence[str]) -> float:
    """1.0 if the free-form ``prediction`` names class ``label`` and no other class.

    Names are normalised (lowercase, ``_`` -> space, punctuation -> space). An answer equal to a class name is that
    class. Otherwise every class mentioned as whole words (plural -s/-es allowed) is collected; a mention inside a
    longer one ("office" in "home office", "room" in "living room") is dropped, and the prediction counts only if
    exactly one class is left and it is the label. So "bedroom" never matches "room", "It is a home office" is
    "home_office" not "office", and an answer that lists several classes scores 0 instead of rewarding the longest.
    """
    names = [_class_norm(c) for c in classes]
    gt = _class_norm(label)
    if gt not in names:
        raise ValueError(f"classification_accuracy: label {label!r} is not one of the classes")
    pred = _class_norm(prediction)
    if pred in names:
        return float(pred == gt)
    idx = _longest_mention(pred, names)
    return float(idx is not None and names[idx] == gt)


def mean_metric(values: Iterable[float]) -> float:
    """Arithmetic mean of per-item scores; ValueError when there are none."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_metric: no values")
    return math.fsum(vals) / len(vals)
