"""Tokenizer loading, the conversation template and label masking (spec §3.8)."""
import sentencepiece as spm

from onellm.data.template import (SYSTEM, Segment, conversation_segments, encode_caption, encode_conversation,
                                  encode_prompt, encode_segments, extract_answer)
from onellm.data.text import load_tokenizer


def sp(tokenizer_dir):
    return spm.SentencePieceProcessor(model_file=str(tokenizer_dir / "tokenizer.model"))


def test_hf_tokenizer_ids_equal_sentencepiece_on_template_strings(tokenizer_dir, text_tokenizer):
    proc = sp(tokenizer_dir)
    for s in [f"{SYSTEM}\n\n### Human: What colour is it?\n### Assistant:", "red.\n###", "Human: and now?",
              "###Human: hi\n###Assistant:", "a blue ball moving horizontally"]:
        assert text_tokenizer.encode(s) == proc.encode(s)
    assert text_tokenizer.bos_id == 1 and text_tokenizer.eos_id == 2
    # loading the .model file directly gives the same tokenizer
    assert load_tokenizer(tokenizer_dir / "tokenizer.model").encode("a red circle") == text_tokenizer.encode("a red circle")


def test_loading_a_model_file_leaves_no_temporary_folder(tokenizer_dir, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    tok = load_tokenizer(tokenizer_dir / "tokenizer.model")
    assert list((tmp_path / "tmp").iterdir()) == []
    tok.save(tmp_path / "saved")  # the .model file is still copied from its source
    assert (tmp_path / "saved" / "tokenizer.model").read_bytes() == (tokenizer_dir / "tokenizer.model").read_bytes()


def test_segment_encoding_equals_whole_string(tokenizer_dir, text_tokenizer):
    conv = [{"from": "human", "value": "What colour is the object?"}, {"from": "gpt", "value": "red."},
            {"from": "human", "value": "And its shape?"}, {"from": "gpt", "value": "a circle"}]
    ids, labels = encode_conversation(text_tokenizer, conv)
    whole = (f"{SYSTEM}\n\n### Human: What colour is the object?\n### Assistant: red.\n###"
             f" Human: And its shape?\n### Assistant: a circle\n###")
    assert ids == [1] + sp(tokenizer_dir).encode(whole) + [2]


def test_labels_supervise_exactly_the_answer_spans_and_eos(text_tokenizer):
    conv = [{"from": "human", "value": "What colour is the object?"}, {"from": "gpt", "value": "red."},
            {"from": "human", "value": "And its shape?"}, {"from": "gpt", "value": "a circle"}]
    ids, labels = encode_conversation(text_tokenizer, conv)
    assert len(ids) == len(labels)
    supervised = [i for i, l in zip(ids, labels) if l != -100]
    expected = text_tokenizer.encode("red.\n###") + text_tokenizer.encode("a circle\n###") + [2]
    assert supervised == expected
    assert all(l in (-100, i) for i, l in zip(ids, labels))
    # the supervised tokens are two contiguous spans plus EOS
    spans, prev = 0, False
    for l in labels:
        cur = l != -100
        spans += cur and not prev
        prev = cur
    assert spans == 2  # the second answer's span runs into the final EOS
    assert text_tokenizer.decode([i for i, l in zip(ids, labels) if l == -100]).count("Human") == 2


def test_inference_prompt_matches_training_prefix(text_tokenizer):
    conv = [{"from": "human", "value": "Describe it."}, {"from": "gpt", "value": "a red circle"}]
    train_ids, _ = encode_conversation(text_tokenizer, conv)
    prompt = encode_prompt(text_tokenizer, "Describe it.")
    assert train_ids[: len(prompt)] == prompt  # no train/inference mismatch by default
    history = encode_prompt(text_tokenizer, "And the shape?", history=[("Describe it.", "a red circle")])
    assert history[: len(train_ids) - 1] == train_ids[:-1]  # multi-turn: previous answer kept, EOS not


def test_legacy_prompt_is_the_released_format(text_tokenizer):
    (seg,) = conversation_segments([("What is this?", None)], legacy=True)
    assert seg.text == f"{SYSTEM}\n\n###Human: What is this?\n###Assistant:"
    (seg,) = conversation_segments([("Q1", "A1"), ("Q2", None)], legacy=True)
    assert seg.text.endswith("###Human: Q1\n###Assistant: A1\n###Human: Q2\n###Assistant:")
    assert encode_prompt(text_tokenizer, "What is this?", legacy=True) != encode_prompt(text_tokenizer, "What is this?")


def test_caption_encoding_and_answer_extraction(text_tokenizer):
    ids, labels = encode_caption(text_tokenizer, "a red circle")
    assert ids[0] == 1 and ids[-1] == 2 and labels[0] == -100 and labels[1:] == ids[1:]
    assert extract_answer(" red.\n### Human: more") == "red."
    assert extract_answer("no separator ") == "no separator"
    ids, labels = encode_segments(text_tokenizer, [Segment("x", False), Segment("y", True)], bos=False)
    assert labels[: len(text_tokenizer.encode("x"))] == [-100] * len(text_tokenizer.encode("x"))
