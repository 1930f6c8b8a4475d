"""The text tokenizer: a LLaMA SentencePiece model loaded through HF ``transformers`` from a local path.

Encoding never adds special tokens implicitly: callers place BOS/EOS themselves, so the ids are the same whether
``transformers`` would add them or not. Text is encoded in segments that each start right after a space of the
full string (SentencePiece never merges across a word-initial "▁"), so a conversation encoded segment by segment
has the same ids as the whole string, which lets labels cover exact answer spans without a sub-list search.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

TOKENIZER_FILE = "tokenizer.model"


class TextTokenizer:
    """Thin wrapper around a HF LLaMA tokenizer with explicit BOS/EOS handling."""

    def __init__(self, hf_tokenizer, source_model: str | Path | None = None):
        self.hf = hf_tokenizer
        # the SentencePiece file it was loaded from: copied into model directories next to the HF files
        self.source_model = str(source_model) if source_model is not None else None
        self.bos_id = int(hf_tokenizer.bos_token_id if hf_tokenizer.bos_token_id is not None else 1)
        self.eos_id = int(hf_tokenizer.eos_token_id if hf_tokenizer.eos_token_id is not None else 2)
        self.pad_id = int(hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0)

    def __len__(self) -> int:
        return len(self.hf)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (SentencePiece adds its dummy "▁" prefix), no BOS/EOS."""
        if not text:
            return []
        return list(self.hf(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=True)

    def save(self, directory: str | Path) -> None:
        self.hf.save_pretrained(str(directory))
        source = self.source_model
        if source and Path(source).is_file() and not (Path(directory) / TOKENIZER_FILE).exists():
            shutil.copyfile(source, Path(directory) / TOKENIZER_FILE)


def load_tokenizer(path: str | Path) -> TextTokenizer:
    """Load from a directory (HF tokenizer files and/or ``tokenizer.model``) or a SentencePiece ``.model`` file."""
    from transformers import AutoTokenizer, LlamaTokenizer

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: tokenizer not found")
    if path.is_file():
        # transformers needs the file to be called tokenizer.model inside a directory (read once, at load)
        with tempfile.TemporaryDirectory(prefix="onellm-tok-") as tmp:
            shutil.copyfile(path, Path(tmp) / TOKENIZER_FILE)
            return TextTokenizer(LlamaTokenizer.from_pretrained(tmp), source_model=path)
    source = path / TOKENIZER_FILE if (path / TOKENIZER_FILE).exists() else None
    if (path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists():
        return TextTokenizer(AutoTokenizer.from_pretrained(str(path)), source_model=source)
    if source is not None:
        return TextTokenizer(LlamaTokenizer.from_pretrained(str(path)), source_model=source)
    raise FileNotFoundError(f"{path}: no tokenizer.json, tokenizer_config.json or {TOKENIZER_FILE} in it")


def train_sentencepiece(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 512) -> Path:
    """Train a small LLaMA-style SentencePiece BPE model (byte fallback, unk 0, bos 1, eos 2, no pad).

    For tests and tiny models: nothing is downloaded. Returns ``out_dir/tokenizer.model``.
    """
    import sentencepiece as spm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("cannot train a tokenizer on no text")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(out_dir / "tokenizer"), vocab_size=vocab_size,
        model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=True, character_coverage=1.0,
        split_digits=True, add_dummy_prefix=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, hard_vocab_limit=False,
        num_threads=1, minloglevel=2, seed_sentencepiece_size=100000)
    (out_dir / "tokenizer.vocab").unlink(missing_ok=True)
    return out_dir / TOKENIZER_FILE
