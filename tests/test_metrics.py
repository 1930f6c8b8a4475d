"""Metrics of onellm.evaluation: hand-computed numbers, official VQA normalisation, pycocoevalcap wiring.

caption_metrics starts Java processes (PTBTokenizer, METEOR ~ several seconds each), so the Java path is called
only three times, through a module-scoped fixture; everything else runs without Java (java_available patched).
"""
from __future__ import annotations

import math
import urllib.request
from collections import Counter

import pytest

from onellm.evaluation import metrics
from onellm.evaluation import (caption_metrics, classification_accuracy, exact_match, extract_option_letter,
                               lenient_match, mean_metric, option_accuracy, vqa_accuracy, vqa_normalize)
from onellm.evaluation.metrics import simple_ptb_tokenize

needs_java = pytest.mark.skipif(not metrics.java_available(), reason="java not installed")


# ----------------------------------------------------------------------------------------------------------------
# VQA soft accuracy
# ----------------------------------------------------------------------------------------------------------------
# 10 answers, k of them match; leaving out a matching answer leaves k-1 matches, any other leaves k:
#   acc = [k*min(1,(k-1)/3) + (10-k)*min(1,k/3)] / 10
#   k=1: (1*0   + 9*1/3) / 10 = 3/10  = 0.3
#   k=2: (2*1/3 + 8*2/3) / 10 = 6/10  = 0.6
#   k=3: (3*2/3 + 7*1)   / 10 = 9/10  = 0.9
#   k=4: (4*1   + 6*1)   / 10 = 1.0
@pytest.mark.parametrize("k,expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0), (10, 1.0)])
def test_vqa_accuracy_ten_answers(k: int, expected: float) -> None:
    # The ground truth says "two", the prediction "2": official normalisation maps number words to digits.
    answers = ["two"] * k + ["three"] * (10 - k)
    assert vqa_accuracy("2", answers) == pytest.approx(expected, abs=1e-12)


def _loo_reference(pred: str, answers: list[str]) -> float:
    """Literal transcription of vqaEval's loop over annotators (with full normalisation)."""
    p = vqa_normalize(pred)
    gts = [vqa_normalize(a) for a in answers]
    accs = []
    for i in range(len(gts)):
        others = gts[:i] + gts[i + 1:]
        accs.append(min(1.0, sum(o == p for o in others) / 3))
    return sum(accs) / len(accs)


@pytest.mark.parametrize("pred,answers,expected", [
    # 2 answers, both match: each leave-one-out subset has 1 match -> 1/3.
    ("yes", ["yes", "yes"], 1 / 3),
    # 3 answers, 2 match: drop a match -> 1/3 (x2), drop the other -> 2/3; mean = (1/3+1/3+2/3)/3 = 4/9.
    ("dog", ["dog", "a dog", "cat"], 4 / 9),
    # 5 answers, 4 match: drop a match -> 3/3=1 (x4), drop the other -> 1; mean 1.
    ("red", ["Red", "red.", "RED", "red", "blue"], 1.0),
    # 1 answer: leave-one-out is degenerate, falls back to normalised exact match.
    ("Yes.", ["yes"], 1.0),
    ("no", ["yes"], 0.0),
])
def test_vqa_accuracy_other_counts(pred: str, answers: list[str], expected: float) -> None:
    assert vqa_accuracy(pred, answers) == pytest.approx(expected, abs=1e-12)
    if len(answers) > 1:
        assert vqa_accuracy(pred, answers) == pytest.approx(_loo_reference(pred, answers), abs=1e-12)


def test_vqa_accuracy_matches_loop_on_mixed_answers() -> None:
    answers = ["2", "two", "Two.", "3", "three", "2 ", "4", "none", "0", "zero"]
    # "2": matches 2, two, Two., "2 " -> k=4 -> 1.0; "0": none/0/zero -> k=3 -> 0.9; "3": k=2 -> 0.6.
    assert vqa_accuracy("2", answers) == pytest.approx(1.0)
    assert vqa_accuracy("zero", answers) == pytest.approx(0.9)
    assert vqa_accuracy("3", answers) == pytest.approx(0.6)
    assert vqa_accuracy("4", answers) == pytest.approx(0.3)
    for pred in ["2", "0", "3", "4", "5"]:
        assert vqa_accuracy(pred, answers) == pytest.approx(_loo_reference(pred, answers))
    with pytest.raises(ValueError):
        vqa_accuracy("x", [])


def _reference_rule(pred: str, answers: list[str], official: bool) -> float:
    """Transcription of the two references' loops (vqa_accuracy's docstring): the ground truth is normalised
    only when the answers differ -- lmms-eval with both steps (its prediction also through EvalAIAnswerProcessor,
    whose extra first step lower-cases and drops "," and "?"), the official vqaEval.py with punctuation alone."""
    from onellm.evaluation.vqa_normalize import process_digit_article, process_punctuation

    if official:
        p = vqa_normalize(pred)
    else:
        p = vqa_normalize(pred.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip())
    gts = [a.replace("\n", " ").replace("\t", " ").strip() for a in answers]
    if len(set(gts)) > 1:
        gts = [process_punctuation(g) if official else process_digit_article(process_punctuation(g)) for g in gts]
        if not official:
            p = process_digit_article(process_punctuation(p))
    return sum(min(1.0, sum(o == p for o in gts[:i] + gts[i + 1:]) / 3) for i in range(len(gts))) / len(gts)


@pytest.mark.parametrize("pred,answers", [
    ("2", ["two", "Two", "2", "2", "three", "3", "2", "two", "4", "2"]),
    ("Yes.", ["yes", "yes", "Yes", "no", "yes", "yes", "yes", "no", "yes", "yes"]),
    ("a red car", ["red", "red car", "Red", "a red car", "red car", "maroon", "red", "red", "red car", "red"]),
    ("none", ["0", "zero", "none", "1", "0", "0", "0", "one", "0", "0"]),
])
def test_vqa_accuracy_is_lmms_eval_rule_where_answers_differ(pred: str, answers: list[str]) -> None:
    assert vqa_accuracy(pred, answers) == pytest.approx(_reference_rule(pred, answers, official=False))


def test_vqa_accuracy_where_the_references_differ() -> None:
    # The official script does not map the annotators' number words: "2" never matches "two" / "Two" there.
    answers = ["two", "Two", "two", "three", "two", "Two", "two", "two", "three", "two"]
    assert _reference_rule("2", answers, official=True) == 0.0
    assert vqa_accuracy("2", answers) == pytest.approx(1.0) == _reference_rule("2", answers, official=False)
    # Ten identical raw answers: lmms-eval compares them un-normalised, so nothing can match "T-shirt"; we
    # normalise them too (the one departure from lmms-eval, documented in vqa_accuracy).
    assert _reference_rule("T-shirt", ["T-shirt"] * 10, official=False) == 0.0
    assert vqa_accuracy("T-shirt", ["T-shirt"] * 10) == 1.0
    # Answers already in normal form (VQAv2's annotations): all three rules agree.
    norm = ["t shirt"] * 10
    assert vqa_accuracy("T-shirt", norm) == _reference_rule("T-shirt", norm, official=False) == \
        _reference_rule("T-shirt", norm, official=True) == 1.0


@pytest.mark.parametrize("a,b,same", [
    ("Yes.", "yes", True),            # trailing period stripped, lowercased
    ("yes!", "yes", True),            # '!' in the punctuation list
    ("a dog", "dog", True),           # articles dropped
    ("The Dog", "dog", True),
    ("don't", "dont", True),          # contractions map: dont -> don't
    ("isnt", "isn't", True),
    ("1,000", "1000", True),          # digit-comma-digit: punctuation deleted, not spaced
    ("two", "2", True),               # manualMap
    ("none", "0", True),
    ("t-shirt", "t shirt", True),     # '-' without neighbouring space -> replaced by a space
    ("t-shirt", "tshirt", False),
    ("t - shirt", "t shirt", True),   # '-' next to a space -> deleted; whitespace collapses
    ("3.5", "35", False),             # a period followed by a digit is kept
    ("left/right", "left right", True),
    ("yes", "no", False),
])
def test_vqa_normalize_edge_cases(a: str, b: str, same: bool) -> None:
    assert (vqa_normalize(a) == vqa_normalize(b)) is same
    assert (vqa_accuracy(a, [b] * 10) == 1.0) is same


def test_vqa_normalize_exact_outputs() -> None:
    assert vqa_normalize("Two Dogs.") == "2 dogs"
    assert vqa_normalize("1,000") == "1000"
    assert vqa_normalize("t-shirt") == "t shirt"
    assert vqa_normalize("3.5") == "3.5"
    assert vqa_normalize("dont") == "don't"
    assert vqa_normalize("  yes\n") == "yes"
    assert vqa_normalize("a,b") == "b"            # ',' -> ' ' then article 'a' dropped
    # Faithful quirk: the period regex runs with count=re.UNICODE (32), so only 32 periods go.
    assert vqa_normalize("x" + "." * 40) == "x" + "." * 8


# ----------------------------------------------------------------------------------------------------------------
# Short-answer matching
# ----------------------------------------------------------------------------------------------------------------
def test_exact_vs_lenient_match() -> None:
    assert exact_match("  Dog. ", "dog") == 1.0
    assert exact_match("red  car", "Red car") == 1.0
    assert exact_match("a dog", "dog") == 0.0          # no article removal in exact match
    assert exact_match("dogs", "dog") == 0.0
    # MSVD-QA rule: containment either way.
    assert lenient_match("dogs", "dog") == 1.0
    assert lenient_match("a dog", "dog") == 1.0
    assert lenient_match("dog", "hot dog") == 1.0
    assert lenient_match(" DOG ", "dog") == 1.0
    assert lenient_match("cat", "dog") == 0.0
    assert lenient_match("", "dog") == 0.0             # "" in gt would be True in the original
    assert lenient_match("   ", "dog") == 0.0


def test_mean_metric() -> None:
    assert mean_metric([1.0, 0.0, 0.5, 0.5]) == 0.5
    assert mean_metric(x for x in (0.3, 0.6)) == pytest.approx(0.45)
    with pytest.raises(ValueError):
        mean_metric([])


# ----------------------------------------------------------------------------------------------------------------
# Multiple choice
# ----------------------------------------------------------------------------------------------------------------
OPTIONS = ["cat", "dog", "hot dog", "bird"]


@pytest.mark.parametrize("pred,no_options,with_options", [
    ("B", "B", "B"),
    ("(B)", "B", "B"),
    ("B.", "B", "B"),
    ("b", "B", "B"),
    ("b) dog", "B", "B"),
    ("C. hot dog", "C", "C"),
    ("The answer is B", "B", "B"),
    ("The answer is (c).", "C", "C"),
    ("answer: b", "B", "B"),
    ("Option D", "D", "D"),
    ("I think C is right", "C", "C"),
    ("E", "E", None),                    # beyond 4 options: not a valid letter, and no option text matches
    ("the answer is a dog", None, "B"),  # 'a' is an article; text matches option B
    ("A dog", None, "B"),
    ("dog", None, "B"),
    ("a hot dog", None, "C"),            # nested option names: longest mention wins
    ("It is a cat.", None, "A"),
    ("B and C", None, None),             # ambiguous
    ("", None, None),
    ("no idea", None, None),
])
def test_extract_option_letter(pred: str, no_options: str | None, with_options: str | None) -> None:
    assert extract_option_letter(pred) == no_options
    assert extract_option_letter(pred, OPTIONS) == with_options


def test_option_accuracy() -> None:
    assert option_accuracy("The answer is B.", "B") == 1.0
    assert option_accuracy("(b)", "(B)") == 1.0
    assert option_accuracy("hot dog", "C", OPTIONS) == 1.0
    assert option_accuracy("A", "B") == 0.0
    assert option_accuracy("A. cat", "A", ["A. cat", "B. dog"]) == 1.0   # labelled option texts
    assert option_accuracy("dog", "B", ["A. cat", "B. dog"]) == 1.0
    with pytest.raises(ValueError):
        option_accuracy("A", "AB")


# ----------------------------------------------------------------------------------------------------------------
# Zero-shot scene classification
# ----------------------------------------------------------------------------------------------------------------
CLASSES = ["bedroom", "living_room", "room", "home_office", "office", "dining room"]


@pytest.mark.parametrize("pred,label,expected", [
    ("Bedroom", "bedroom", 1.0),
    ("bedroom.", "bedroom", 1.0),
    ("living room", "living_room", 1.0),          # underscores == spaces
    ("This is a living room.", "living_room", 1.0),
    ("This is a living room.", "room", 0.0),      # "room" is nested in "living room"
    ("It is a room", "room", 1.0),
    ("a bedroom", "room", 0.0),                   # whole words only: bedroom does not contain the class "room"
    ("bedrooms", "bedroom", 1.0),                 # plural accepted
    ("a home office", "home_office", 1.0),
    ("a home office", "office", 0.0),
    ("the office", "office", 1.0),
    ("bedroom or living room", "living_room", 0.0),  # several classes named: ambiguous, not the longest
    ("kitchen", "bedroom", 0.0),
    ("", "bedroom", 0.0),
])
def test_classification_accuracy(pred: str, label: str, expected: float) -> None:
    assert classification_accuracy(pred, label, CLASSES) == expected


def test_classification_label_must_be_a_class() -> None:
    with pytest.raises(ValueError):
        classification_accuracy("kitchen", "kitchen", CLASSES)


# ----------------------------------------------------------------------------------------------------------------
# Captioning
# ----------------------------------------------------------------------------------------------------------------
# Two images. Raw strings carry capitals and punctuation so the tokenizer is part of what is checked.
HAND_PRED = {"1": "A black dog runs on the grass.", "2": "Two cats on a sofa!"}
HAND_REFS = {
    "1": ["A dog runs on the green grass.", "A black dog is running."],
    "2": ["A cat sleeping on a sofa.", "Two cats lying on the couch."],
    "3": ["An id that is not predicted is not scored."],
}
HAND_TOK_PRED = {"1": ["a black dog runs on the grass"], "2": ["two cats on a sofa"]}
HAND_TOK_REFS = {
    "1": ["a dog runs on the green grass", "a black dog is running"],
    "2": ["a cat sleeping on a sofa", "two cats lying on the couch"],
}
# BLEU by hand (corpus level, "closest" reference length):
#   image 1: 7 candidate words, all 7 in some reference (clipped counts 1 each); closest ref length 7 (diff 0).
#            bigrams: a-black, black-dog, dog-runs, runs-on, on-the match, the-grass does not -> 5/6.
#   image 2: 5 words two, cats, on, a, sofa -> 5/5; both references have 6 words -> ref length 6.
#            bigrams: two-cats, on-a, a-sofa match, cats-on does not -> 3/4.
#   p1 = 12/12 = 1, p2 = 8/10; candidate length 12 < reference length 13 -> BP = exp(1 - 13/12).
HAND_BP = math.exp(1 - 13 / 12)                   # 0.920044...
HAND_BLEU1 = HAND_BP * 1.0                        # 0.920044...
HAND_BLEU2 = HAND_BP * math.sqrt(1.0 * 8 / 10)    # 0.822912...
# ROUGE-L (beta 1.2, max precision and max recall over refs, mean over images):
#   image 1: LCS with ref 1 = "a dog runs on the grass" = 6 -> P = 6/7, R = 6/7 -> F = 6/7.
#   image 2: LCS 3 with both refs -> P = 3/5, R = 3/6 -> F = 2.44*0.6*0.5 / (0.5 + 1.44*0.6) = 0.732/1.364.
HAND_ROUGE = (6 / 7 + 0.732 / 1.364) / 2          # 0.696900...


def _bleu_independent(cands: dict[str, list[str]], refs: dict[str, list[str]], n: int) -> float:
    """Corpus BLEU-n with clipped counts and 'closest' reference length (no smoothing)."""
    correct, total = [0] * n, [0] * n
    c_len = r_len = 0
    for k in cands:
        c = cands[k][0].split()
        rs = [r.split() for r in refs[k]]
        c_len += len(c)
        r_len += min((abs(len(r) - len(c)), len(r)) for r in rs)[1]
        for order in range(1, n + 1):
            grams = Counter(tuple(c[i:i + order]) for i in range(len(c) - order + 1))
            best: Counter = Counter()
            for r in rs:
                best |= Counter(tuple(r[i:i + order]) for i in range(len(r) - order + 1))
            correct[order - 1] += sum(min(v, best[g]) for g, v in grams.items())
            total[order - 1] += sum(grams.values())
    bp = 1.0 if c_len >= r_len else math.exp(1 - r_len / c_len)
    return bp * math.exp(sum(math.log(correct[i] / total[i]) for i in range(n)) / n)


@pytest.fixture(scope="module")
def java_results() -> dict[str, dict[str, float]]:
    """The three Java-path caption_metrics calls of this file: hand corpus, exact matches, unrelated."""
    if not metrics.java_available():
        pytest.skip("java not installed")
    exact_pred = {"1": "A dog runs on the green grass.", "2": "Two cats lying on the couch."}
    unrelated_pred = {"1": "Colourful kites fly above beaches.", "2": "Several trains wait inside stations."}
    return {
        "hand": caption_metrics(HAND_PRED, HAND_REFS, spice=False),
        "exact": caption_metrics(exact_pred, HAND_REFS, spice=False),
        "unrelated": caption_metrics(unrelated_pred, HAND_REFS, spice=False),
    }


def test_hand_numbers_match_independent_bleu() -> None:
    # The hand values and the independent implementation agree (checks the comments above).
    assert _bleu_independent(HAND_TOK_PRED, HAND_TOK_REFS, 1) == pytest.approx(HAND_BLEU1, rel=1e-12)
    assert _bleu_independent(HAND_TOK_PRED, HAND_TOK_REFS, 2) == pytest.approx(HAND_BLEU2, rel=1e-12)
    assert HAND_BLEU1 == pytest.approx(0.9200444146, rel=1e-9)


@needs_java
def test_caption_metrics_hand_corpus(java_results: dict[str, dict[str, float]]) -> None:
    r = java_results["hand"]
    assert set(r) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}
    # pycocoevalcap adds 1e-15 / 1e-9 smoothing to the precisions: invisible at rel 1e-6.
    assert r["BLEU-1"] == pytest.approx(HAND_BLEU1, rel=1e-6)
    assert r["BLEU-2"] == pytest.approx(HAND_BLEU2, rel=1e-6)
    for n in (3, 4):
        assert r[f"BLEU-{n}"] == pytest.approx(_bleu_independent(HAND_TOK_PRED, HAND_TOK_REFS, n), rel=1e-6)
    assert r["ROUGE-L"] == pytest.approx(HAND_ROUGE, rel=1e-9)
    # CIDEr straight from pycocoevalcap on pre-tokenised text (id "3" is not predicted, so not in the corpus):
    # equal numbers prove the wiring, PTB tokenisation included.
    from pycocoevalcap.cider.cider import Cider
    cider, _ = Cider().compute_score(HAND_TOK_REFS, HAND_TOK_PRED)
    assert r["CIDEr"] == pytest.approx(float(cider), rel=1e-12)
    assert r["CIDEr"] == pytest.approx(3.006677803878228, rel=1e-9)  # idf over 2 images: high values
    assert 0.0 < r["METEOR"] <= 1.0


@needs_java
def test_caption_metrics_exact_beats_unrelated(java_results: dict[str, dict[str, float]]) -> None:
    exact, unrelated, hand = java_results["exact"], java_results["unrelated"], java_results["hand"]
    # A prediction equal to one reference: every n-gram matches and that reference is the closest length.
    for n in range(1, 5):
        assert exact[f"BLEU-{n}"] == pytest.approx(1.0, abs=1e-6)
    assert exact["ROUGE-L"] == pytest.approx(1.0)
    # No shared word with any reference: BLEU (up to smoothing), ROUGE-L and CIDEr are zero.
    assert unrelated["BLEU-1"] == pytest.approx(0.0, abs=1e-6)
    assert unrelated["ROUGE-L"] == 0.0
    assert unrelated["CIDEr"] == 0.0
    assert exact["CIDEr"] > hand["CIDEr"] > unrelated["CIDEr"]
    assert 0.0 < exact["METEOR"] <= 1.0
    assert exact["METEOR"] > hand["METEOR"] > unrelated["METEOR"] >= 0.0


def test_caption_metrics_without_java(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "java_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="java not found"):
        r = caption_metrics(HAND_PRED, HAND_REFS)
    assert set(r) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"}  # no METEOR, no SPICE
    assert r["BLEU-1"] == pytest.approx(HAND_BLEU1, rel=1e-6)
    assert r["BLEU-2"] == pytest.approx(HAND_BLEU2, rel=1e-6)
    assert r["ROUGE-L"] == pytest.approx(HAND_ROUGE, rel=1e-9)
    from pycocoevalcap.cider.cider import Cider
    assert r["CIDEr"] == pytest.approx(float(Cider().compute_score(HAND_TOK_REFS, HAND_TOK_PRED)[0]), rel=1e-12)
    with pytest.raises(RuntimeError, match="SPICE"):   # SPICE needs Java: reported, not attempted
        caption_metrics(HAND_PRED, HAND_REFS, spice=True)


TOKENIZER_CASES = [
    ("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard"),
    ("Two dogs' toys, (red) and blue!", "two dogs toys -lrb- red -rrb- and blue"),
    ("The cat's bowl isn't empty...", "the cat 's bowl is n't empty"),
    ('A t-shirt that says "hello"; nice?', "a t-shirt that says hello nice"),
    ("An e-mail at 3:30 for $5 -- really.", "an e-mail at 3:30 for $ 5 really"),
    ("People in the U.S. can't wait; they won't.", "people in the u.s. ca n't wait they wo n't"),
    ("Coins: 1,000 of them (3.5 kg) [approx] {x}.",
     "coins 1,000 of them -lrb- 3.5 kg -rrb- -lsb- approx -rsb- -lcb- x -rcb-"),
    ("I'm here, you're there, we've gone, he'll go, she'd say.",
     "i 'm here you 're there we 've gone he 'll go she 'd say"),
    ("Dogs!!! Cats?? Wow!?", "dogs !!! cats ?? wow !?"),
    ("A dog - running  fast", "a dog running fast"),
    # "%" is always a token of its own in the Java tokenizer; a dash before a letter is punctuation
    ("50% of the glass, a 100%-cotton shirt (10%).", "50 % of the glass a 100 % cotton shirt -lrb- 10 % -rrb-"),
    ("Rates of 5%-10% rose; x%y and -cotton but -10.", "rates of 5 % -10 % rose x % y and cotton but -10"),
    ("", ""),
]


@pytest.mark.parametrize("text,expected", TOKENIZER_CASES)
def test_simple_ptb_tokenize(text: str, expected: str) -> None:
    assert simple_ptb_tokenize(text) == expected


@needs_java
def test_simple_tokenizer_agrees_with_ptb() -> None:
    # Expected strings above were taken from the Java PTBTokenizer; check they still agree (one Java call).
    tokenized = metrics._tokenize({str(i): [t] for i, (t, _) in enumerate(TOKENIZER_CASES)}, use_java=True)
    assert [tokenized[str(i)][0] for i in range(len(TOKENIZER_CASES))] == [e for _, e in TOKENIZER_CASES]


def test_caption_metrics_input_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "java_available", lambda: False)
    with pytest.raises(ValueError, match="no predictions"):
        caption_metrics({}, HAND_REFS)
    with pytest.raises(ValueError, match="missing-id"):
        caption_metrics({"1": "a dog", "missing-id": "a cat"}, HAND_REFS)
    with pytest.raises(ValueError, match="non-empty list"):
        caption_metrics({"1": "a dog"}, {"1": []})
    with pytest.raises(ValueError, match="non-empty list"):
        caption_metrics({"1": "a dog"}, {"1": "a dog"})


def test_spice_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    if metrics.spice_available():
        pytest.skip("SPICE jars are installed here")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    import pycocoevalcap.spice.get_stanford_models as gsm
    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
    monkeypatch.setattr(gsm, "urlretrieve", no_network)
    with pytest.raises(RuntimeError, match="SPICE requested but unavailable"):
        caption_metrics(HAND_PRED, HAND_REFS, spice=True)


def test_spice_available_checks_jars(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(metrics, "_spice_dir", lambda: tmp_path)
    monkeypatch.setattr(metrics, "java_available", lambda: True)
    (tmp_path / "spice-1.0.jar").write_bytes(b"")
    (tmp_path / "lib").mkdir()
    assert not metrics.spice_available()                # CoreNLP missing: what Spice() would download
    (tmp_path / "lib" / "stanford-corenlp-3.6.0.jar").write_bytes(b"")
    assert not metrics.spice_available()
    (tmp_path / "lib" / "stanford-corenlp-3.6.0-models.jar").write_bytes(b"")
    assert metrics.spice_available()
    monkeypatch.setattr(metrics, "java_available", lambda: False)
    assert not metrics.spice_available()


def test_spider_is_mean_of_cider_and_spice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "java_available", lambda: False)
    monkeypatch.setattr(metrics, "spice_available", lambda: True)
    monkeypatch.setattr(metrics, "_run_spice", lambda gts, res: 0.25)
    with pytest.warns(RuntimeWarning):
        r = caption_metrics(HAND_PRED, HAND_REFS)        # spice=None -> on, since "available"
    assert r["SPICE"] == 0.25
    assert r["SPIDEr"] == pytest.approx((r["CIDEr"] + 0.25) / 2)
